//! The store of the aggregator and api Lambdas, from the environment (with the `cql` feature:
//! the splitter Lambda builds without the CQL driver).
//!
//! `METERFLOW_STORE` (a SQLite path or `cql://` URL, for local runs) or else the
//! `METERFLOW_CQL_*` variables (see `meterflow_store_cql::CqlConfig::from_env`). On AWS the
//! CQL store signs in to Amazon Keyspaces with SigV4 (`METERFLOW_CQL_AUTH=sigv4`, no secret at
//! all) or, as the fallback the original project used, with service-specific credentials kept
//! in SSM Parameter Store:
//!
//! | variable | meaning |
//! |---|---|
//! | `METERFLOW_CQL_USERNAME_SSM` | name of the parameter holding the user name |
//! | `METERFLOW_CQL_PASSWORD_SSM` | name of the (SecureString) parameter holding the password |
//!
//! Both or neither; not together with `METERFLOW_CQL_USERNAME`/`_PASSWORD` or SigV4. They are
//! read once, at cold start (the role needs `ssm:GetParameter` and `kms:Decrypt`), and never
//! logged.

use meterflow_store_cql::{AnyStore, CqlConfig, Credentials};

use crate::client::{http_client, ssm_client, ClientSettings};
use crate::env::{ProcessEnv, Vars};
use crate::secrets::{SecretSource, SsmParameters};

/// Why the store could not be set up: the message says which variable to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreSetupError(String);

impl StoreSetupError {
    fn of(e: impl std::fmt::Display) -> StoreSetupError {
        StoreSetupError(e.to_string())
    }
}

const USERNAME_SSM: &str = "METERFLOW_CQL_USERNAME_SSM";
const PASSWORD_SSM: &str = "METERFLOW_CQL_PASSWORD_SSM";

/// Opens the store the process environment names, reading SSM credentials if asked to.
pub async fn store_from_env() -> Result<AnyStore, StoreSetupError> {
    let vars = ProcessEnv;
    let ssm = vars.get(USERNAME_SSM).is_some() || vars.get(PASSWORD_SSM).is_some();
    match (AnyStore::spec_from_env(), ssm) {
        (Some(_), true) => Err(StoreSetupError::of(format!(
            "{USERNAME_SSM}/{PASSWORD_SSM} sign in to the CQL store of the METERFLOW_CQL_* variables, but METERFLOW_STORE names another store: unset one or the other"
        ))),
        (_, false) => AnyStore::from_env().await.map_err(StoreSetupError::of),
        (None, true) => {
            let mut config = AnyStore::cql_config_from_env().map_err(StoreSetupError::of)?;
            let settings = ClientSettings::from_env().map_err(StoreSetupError::of)?;
            let ssm = SsmParameters {
                client: ssm_client(&settings, http_client()),
            };
            credentials_from_ssm(&mut config, &vars, &ssm).await?;
            AnyStore::cql(&config).await.map_err(StoreSetupError::of)
        }
    }
}

/// Fills `config.credentials` from the parameters `METERFLOW_CQL_USERNAME_SSM` and
/// `METERFLOW_CQL_PASSWORD_SSM` name (nothing when neither is set).
pub async fn credentials_from_ssm(
    config: &mut CqlConfig,
    vars: &impl Vars,
    secrets: &impl SecretSource,
) -> Result<(), StoreSetupError> {
    let (user, password) = match (vars.get(USERNAME_SSM), vars.get(PASSWORD_SSM)) {
        (None, None) => return Ok(()),
        (Some(u), Some(p)) => (u, p),
        _ => {
            return Err(StoreSetupError::of(format!(
                "set both {USERNAME_SSM} and {PASSWORD_SSM} (the parameters holding the Keyspaces user name and password), or neither"
            )))
        }
    };
    if config.credentials.is_some() || config.sigv4.is_some() {
        return Err(StoreSetupError::of(format!(
            "{USERNAME_SSM}/{PASSWORD_SSM} are set together with other CQL credentials (METERFLOW_CQL_USERNAME/_PASSWORD or METERFLOW_CQL_AUTH=sigv4): choose one way to sign in"
        )));
    }
    let username = secrets
        .secure_string(&user)
        .await
        .map_err(StoreSetupError::of)?;
    let password = secrets
        .secure_string(&password)
        .await
        .map_err(StoreSetupError::of)?;
    config.credentials = Some(Credentials { username, password });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::FixedSecrets;
    use std::collections::HashMap;

    fn config() -> CqlConfig {
        CqlConfig::new(
            vec!["cassandra.eu-west-1.amazonaws.com:9142".into()],
            "meterflow",
        )
    }

    fn secrets() -> FixedSecrets {
        FixedSecrets(vec![
            ("/mf/user".into(), "svc-user-at-123".into()),
            ("/mf/password".into(), "p@ss,word".into()),
        ])
    }

    #[tokio::test]
    async fn credentials_come_from_the_two_parameters() {
        let vars: HashMap<&str, &str> =
            HashMap::from([(USERNAME_SSM, "/mf/user"), (PASSWORD_SSM, "/mf/password")]);
        let mut c = config();
        credentials_from_ssm(&mut c, &vars, &secrets())
            .await
            .unwrap();
        let got = c.credentials.unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("svc-user-at-123", "p@ss,word")
        );
        // Neither set: nothing changes.
        let mut c = config();
        credentials_from_ssm(&mut c, &HashMap::new(), &secrets())
            .await
            .unwrap();
        assert!(c.credentials.is_none());
    }

    #[tokio::test]
    async fn half_a_pair_a_clash_or_a_missing_parameter_say_what_to_fix() {
        let half: HashMap<&str, &str> = HashMap::from([(USERNAME_SSM, "/mf/user")]);
        let e = credentials_from_ssm(&mut config(), &half, &secrets())
            .await
            .unwrap_err();
        assert!(format!("{e:?}").contains("set both"), "{e:?}");
        let both: HashMap<&str, &str> =
            HashMap::from([(USERNAME_SSM, "/mf/user"), (PASSWORD_SSM, "/mf/other")]);
        let e = credentials_from_ssm(&mut config(), &both, &secrets())
            .await
            .unwrap_err();
        assert!(format!("{e:?}").contains("/mf/other"), "{e:?}");
        let mut clash = config();
        clash.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        });
        let e = credentials_from_ssm(&mut clash, &both, &secrets())
            .await
            .unwrap_err();
        assert!(format!("{e:?}").contains("choose one"), "{e:?}");
    }
}
