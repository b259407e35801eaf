//! Secrets kept in SSM Parameter Store: Amazon Keyspaces service-specific credentials, for a
//! Lambda that does not sign in with SigV4 (the original project kept them there).
//!
//! One external system, one trait ([`SecretSource`]); [`SsmParameters`] is the real client,
//! tested against moto. Values are read once, at a Lambda's start, never logged.

use std::future::Future;

use aws_sdk_ssm::error::ProvideErrorMetadata;

use crate::s3::{classify, SourceError};

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SSM parameter {name}: {message}")]
pub struct SecretError {
    pub name: String,
    pub message: String,
    /// Throttling or an unavailable service: the next cold start may succeed.
    pub retryable: bool,
}

/// Where secrets come from.
pub trait SecretSource: Send + Sync {
    /// The decrypted value of the (SecureString or String) parameter `name`.
    fn secure_string(&self, name: &str)
        -> impl Future<Output = Result<String, SecretError>> + Send;
}

/// [`SecretSource`] on `aws-sdk-ssm` (GetParameter with decryption: the role needs
/// `ssm:GetParameter` on the parameter and `kms:Decrypt` on its key).
#[derive(Debug, Clone)]
pub struct SsmParameters {
    pub client: aws_sdk_ssm::Client,
}

impl SecretSource for SsmParameters {
    async fn secure_string(&self, name: &str) -> Result<String, SecretError> {
        let fail = |message: String, retryable| SecretError {
            name: name.to_owned(),
            message,
            retryable,
        };
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                let advice = match e.code() {
                    Some("ParameterNotFound") => {
                        Some("no such parameter: check its name (a full path, /like/this) and the region")
                    }
                    Some("AccessDeniedException") => Some(
                        "access denied: give the role ssm:GetParameter on it, and kms:Decrypt on its key",
                    ),
                    _ => None,
                };
                // Retryable or not by the same rules as every other AWS call here.
                let source = classify(format!("ssm:{name}"), e);
                let retryable = source.is_retryable();
                let detail = match source {
                    SourceError::Transient { message, .. }
                    | SourceError::Permanent { message, .. } => message,
                    other => other.to_string(),
                };
                match advice {
                    Some(advice) => fail(format!("{advice} ({detail})"), retryable),
                    None => fail(detail, retryable),
                }
            })?;
        out.parameter
            .and_then(|p| p.value)
            .ok_or_else(|| fail("the parameter has no value".into(), false))
    }
}

/// A [`SecretSource`] of fixed values, for this crate's unit tests (which cannot use the test
/// kit's doubles: those implement the trait of this crate as a dependency, another crate
/// than the one under test).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FixedSecrets(pub Vec<(String, String)>);

#[cfg(test)]
impl SecretSource for FixedSecrets {
    async fn secure_string(&self, name: &str) -> Result<String, SecretError> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| SecretError {
                name: name.to_owned(),
                message: "no such parameter".into(),
                retryable: false,
            })
    }
}
