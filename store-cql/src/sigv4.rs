//! SigV4 authentication for Amazon Keyspaces: the Lambda's role signs in, no long-lived
//! password anywhere.
//!
//! The exchange (Keyspaces' "SigV4" SASL mechanism, as AWS's driver plugins speak it):
//! 1. the client's initial response is `SigV4\0\0`;
//! 2. the server challenges with `nonce=<32 chars>`;
//! 3. the client answers `signature=<hex>,access_key=<id>,amzdate=<ISO-8601 ms>` plus
//!    `,session_token=<token>` for temporary credentials, where the signature is AWS
//!    Signature Version 4 of a canonical `PUT /authenticate` request whose query holds the
//!    algorithm, credential scope (`<date>/<region>/cassandra/aws4_request`), date and a 900 s
//!    expiry, and whose payload hash is the SHA-256 of the nonce.
//!
//! Everything but the clock and the credentials is a pure function ([`respond`]), tested against
//! the published plugin's test vector.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use meterflow_core::Day;
use scylla::authentication::{AuthError, AuthenticatorProvider, AuthenticatorSession};
use sha2::{Digest, Sha256};

const INITIAL_RESPONSE: &[u8] = b"SigV4\0\0";
const NONCE_KEY: &[u8] = b"nonce=";
const NONCE_LEN: usize = 32;
const SERVICE: &str = "cassandra";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The AWS credentials that sign (an IAM role's temporary ones on Lambda).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Keeps secrets out of logs.
impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// SigV4 settings: the region signed for and the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4 {
    pub region: String,
    pub credentials: AwsCredentials,
}

impl SigV4 {
    /// From the variables Lambda sets for the execution role: `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<SigV4, &'static str> {
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or("AWS_REGION")?;
        Ok(SigV4 {
            region,
            credentials: AwsCredentials {
                access_key_id: get("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID")?,
                secret_access_key: get("AWS_SECRET_ACCESS_KEY").ok_or("AWS_SECRET_ACCESS_KEY")?,
                session_token: get("AWS_SESSION_TOKEN"),
            },
        })
    }
}

/// The scylla driver's hook: one [`SigV4Session`] per connection.
#[derive(Debug)]
pub struct SigV4Authenticator(Arc<SigV4>);

impl SigV4Authenticator {
    pub fn new(settings: SigV4) -> SigV4Authenticator {
        SigV4Authenticator(Arc::new(settings))
    }
}

#[async_trait]
impl AuthenticatorProvider for SigV4Authenticator {
    async fn start_authentication_session(
        &self,
        _authenticator_name: &str,
    ) -> Result<(Option<Vec<u8>>, Box<dyn AuthenticatorSession>), AuthError> {
        Ok((
            Some(INITIAL_RESPONSE.to_vec()),
            Box::new(SigV4Session(self.0.clone())),
        ))
    }
}

/// Answers the server's nonce challenge.
pub struct SigV4Session(Arc<SigV4>);

#[async_trait]
impl AuthenticatorSession for SigV4Session {
    async fn evaluate_challenge(
        &mut self,
        token: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, AuthError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| {
            "the system clock is before 1970; SigV4 needs the current time".to_string()
        })?;
        let response = respond(token.unwrap_or_default(), now.as_millis() as i64, &self.0)?;
        Ok(Some(response.into_bytes()))
    }

    async fn success(&mut self, _token: Option<&[u8]>) -> Result<(), AuthError> {
        Ok(())
    }
}

/// The answer to `challenge` signed at `unix_ms` (milliseconds since the epoch, UTC).
pub fn respond(challenge: &[u8], unix_ms: i64, settings: &SigV4) -> Result<String, AuthError> {
    let nonce = nonce(challenge)?;
    let (date, amzdate) = timestamps(unix_ms);
    let c = &settings.credentials;
    let scope = format!("{date}/{}/{SERVICE}/aws4_request", settings.region);
    // Query parameters in sorted order (they already are), values URL-encoded.
    let query = format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}%2F{}&X-Amz-Date={}&X-Amz-Expires=900",
        c.access_key_id,
        scope.replace('/', "%2F"),
        amzdate.replace(':', "%3A"),
    );
    let canonical = format!(
        "PUT\n/authenticate\n{query}\nhost:{SERVICE}\n\nhost\n{}",
        hex(&Sha256::digest(nonce))
    );
    let to_sign = format!(
        "{ALGORITHM}\n{amzdate}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", c.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [settings.region.as_str(), SERVICE, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    let mut out = format!(
        "signature={signature},access_key={},amzdate={amzdate}",
        c.access_key_id
    );
    if let Some(token) = &c.session_token {
        out.push_str(",session_token=");
        out.push_str(token);
    }
    Ok(out)
}

/// The 32 characters after `nonce=` in the server's challenge.
fn nonce(challenge: &[u8]) -> Result<&[u8], AuthError> {
    let at = challenge
        .windows(NONCE_KEY.len())
        .position(|w| w == NONCE_KEY)
        .map(|i| i + NONCE_KEY.len());
    at.and_then(|i| challenge.get(i..i + NONCE_LEN)).ok_or_else(|| {
        format!(
            "the server's SigV4 challenge has no {NONCE_LEN}-character nonce (got {:?}); is this Amazon Keyspaces?",
            String::from_utf8_lossy(challenge)
        )
    })
}

/// `YYYYMMDD` and `YYYY-MM-DDTHH:MM:SS.mmmZ` of a UTC instant.
fn timestamps(unix_ms: i64) -> (String, String) {
    let (days, ms) = (
        unix_ms.div_euclid(86_400_000),
        unix_ms.rem_euclid(86_400_000),
    );
    let (y, m, d) = Day::from_days(days as i32).map_or((1970, 1, 1), |day| day.ymd());
    let (h, min, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z"),
    )
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: Option<&str>) -> SigV4 {
        SigV4 {
            region: "us-west-2".into(),
            credentials: AwsCredentials {
                access_key_id: "UserID-1".into(),
                secret_access_key: "UserSecretKey-1".into(),
                session_token: token.map(Into::into),
            },
        }
    }

    /// 2020-06-09T22:41:51.000Z
    const AT: i64 = 1_591_742_511_000;

    #[test]
    fn signs_like_the_published_plugin() {
        // The test vector of AWS's SigV4 plugin for the Python Cassandra driver.
        let got = respond(
            b"garbage nonce=91703fdc2ef562e19fbdab0f58e42fe5 garbage",
            AT,
            &settings(None),
        )
        .unwrap();
        assert_eq!(
            got,
            "signature=7f3691c18a81b8ce7457699effbfae5b09b4e0714ab38c1292dbdf082c9ddd87,access_key=UserID-1,amzdate=2020-06-09T22:41:51.000Z"
        );
    }

    #[test]
    fn temporary_credentials_send_their_token() {
        let got = respond(
            b"nonce=91703fdc2ef562e19fbdab0f58e42fe5",
            AT,
            &settings(Some("tok")),
        )
        .unwrap();
        assert!(
            got.ends_with(",amzdate=2020-06-09T22:41:51.000Z,session_token=tok"),
            "{got}"
        );
    }

    #[test]
    fn a_challenge_without_a_nonce_is_refused_with_advice() {
        let e = respond(b"nonce=short", AT, &settings(None)).unwrap_err();
        assert!(e.contains("Keyspaces"), "{e}");
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(
            timestamps(AT + 999),
            (
                "20200609".to_string(),
                "2020-06-09T22:41:51.999Z".to_string()
            )
        );
        assert_eq!(timestamps(0).1, "1970-01-01T00:00:00.000Z");
    }

    #[tokio::test]
    async fn the_driver_hook_speaks_the_exchange() {
        let provider = SigV4Authenticator::new(settings(None));
        let (initial, mut session) = provider.start_authentication_session("x").await.unwrap();
        assert_eq!(initial.as_deref(), Some(&b"SigV4\0\0"[..]));
        let answer = session
            .evaluate_challenge(Some(b"nonce=91703fdc2ef562e19fbdab0f58e42fe5"))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(
            answer.starts_with("signature=") && answer.contains(",access_key=UserID-1,amzdate="),
            "{answer}"
        );
    }

    #[test]
    fn settings_come_from_the_lambda_environment() {
        let env = |k: &str| match k {
            "AWS_REGION" => Some("eu-west-1".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("AKIA".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("s".to_string()),
            _ => None,
        };
        let s = SigV4::from_lookup(&env).unwrap();
        assert_eq!(
            (s.region.as_str(), s.credentials.session_token.is_none()),
            ("eu-west-1", true)
        );
        assert!(
            !format!("{s:?}").contains("\"s\""),
            "secrets stay out of Debug"
        );
        assert_eq!(SigV4::from_lookup(&|_| None).unwrap_err(), "AWS_REGION");
    }
}
