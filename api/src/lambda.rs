//! The API Lambda: the router of `meterflow serve` behind a Function URL (same routes, same
//! JSON, same errors).
//!
//! Configuration (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `METERFLOW_STORE` | unset | a SQLite path or a `cql://` URL (local runs); unset: the CQL store of the `METERFLOW_CQL_*` variables |
//! | `METERFLOW_CQL_*` | | the CQL store's settings |
//! | `METERFLOW_MAX_RANGE_DAYS` | 366 | longest date range one request may ask for (1–3660) |

use std::sync::Arc;

use meterflow_store::Store;

use meterflow_aws::env::{number, ConfigError, Vars};

use crate::{router, ApiConfig};

pub fn config_from_vars(vars: &impl Vars) -> Result<ApiConfig, ConfigError> {
    let default = ApiConfig::default().max_range_days;
    Ok(ApiConfig {
        max_range_days: number(vars, "METERFLOW_MAX_RANGE_DAYS", default, 1..=3660)?,
    })
}

/// The service the runtime calls with each Function URL request.
pub fn app<S: Store + 'static>(store: S, config: ApiConfig) -> axum::Router {
    router(Arc::new(store), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_range_limit_defaults_and_is_checked() {
        let mut vars: HashMap<&str, &str> = HashMap::new();
        assert_eq!(config_from_vars(&vars).unwrap().max_range_days, 366);
        vars.insert("METERFLOW_MAX_RANGE_DAYS", "a year");
        let e = config_from_vars(&vars).unwrap_err();
        assert!(e.to_string().contains("from 1 to 3660"), "{e}");
    }
}
