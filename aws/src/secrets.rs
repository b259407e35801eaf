//! Secrets kept in SSM Parameter Store: Amazon Keyspaces service-specific credentials, for a
//! Lambda that does not sign in with SigV4 (the original project kept them there).
//!
//! One external system, one trait ([`SecretSource`]); [`SsmParameters`] is the real client,
//! tested against moto. Values are read once, at a Lambda's start, never logged.

use std::future::Future;

use aws_sdk_ssm::error::ProvideErrorMetadata;

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
                let code = e.code().unwrap_or_default().to_owned();
                let message = aws_sdk_ssm::error::DisplayErrorContext(&e).to_string();
                match code.as_str() {
                    "ParameterNotFound" => fail(
                        "no such parameter: check its name (a full path, /like/this) and the region".into(),
                        false,
                    ),
                    "AccessDeniedException" => fail(
                        format!("access denied ({message}): give the role ssm:GetParameter on it, and kms:Decrypt on its key"),
                        false,
                    ),
                    "ThrottlingException" | "InternalServerError" => fail(message, true),
                    _ => fail(message, !matches!(e, aws_sdk_ssm::error::SdkError::ServiceError(_))),
                }
            })?;
        out.parameter
            .and_then(|p| p.value)
            .ok_or_else(|| fail("the parameter has no value".into(), false))
    }
}

/// A [`SecretSource`] of fixed values (tests).
#[derive(Debug, Default)]
pub struct FixedSecrets(pub Vec<(String, String)>);

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
