//! Where the cluster is and how to talk to it: a plain struct, filled from environment
//! variables (the Lambdas) or from a `cql://` URL (the CLI's `--store`).
//!
//! Every setting has one environment variable:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `METERFLOW_CQL_NODES` | (required) | contact points, `host[:port]` separated by commas; the port defaults to 9042, or 9142 with TLS |
//! | `METERFLOW_CQL_KEYSPACE` | `meterflow` | keyspace holding the `day_fragments` table |
//! | `METERFLOW_CQL_TLS` | `false` | `true` for TLS (rustls); required by Amazon Keyspaces |
//! | `METERFLOW_CQL_CA_FILE` | built-in Mozilla roots | PEM file of trusted roots, for clusters with a private CA |
//! | `METERFLOW_CQL_TLS_SERVER_NAME` | host of the first node | the name the server certificate must carry |
//! | `METERFLOW_CQL_AUTH` | `password` | `sigv4`: sign in to Amazon Keyspaces with the IAM role's credentials (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, which Lambda sets); `password`: the two variables below, if set |
//! | `METERFLOW_CQL_USERNAME`, `METERFLOW_CQL_PASSWORD` | none | plain-text authentication: Keyspaces service-specific credentials, or a Cassandra role |
//! | `METERFLOW_CQL_DATACENTER` | none | local datacenter for LOCAL_QUORUM routing (the AWS region on Keyspaces) |
//! | `METERFLOW_CQL_CONCURRENCY` | `32` | writes in flight per `put` |
//! | `METERFLOW_CQL_REQUEST_TIMEOUT_MS` | `10000` | client-side timeout of one request |
//! | `METERFLOW_CQL_CREATE_SCHEMA` | `false` | create the keyspace (SimpleStrategy, RF 1) and table if missing: dev clusters only |
//! | `METERFLOW_CQL_AWAIT_SCHEMA_AGREEMENT` | `true` | wait for every node to agree on a schema change; `false` only for test servers that cannot take part |
//!
//! Why credentials never come from the URL: a `--store` argument ends up in shell history and
//! process listings. On Lambda, prefer `METERFLOW_CQL_AUTH=sigv4` (no secret to keep at all);
//! service-specific credentials kept in SSM Parameter Store are the fallback: the Lambdas read
//! them at start from the parameters `METERFLOW_CQL_USERNAME_SSM`/`_PASSWORD_SSM` name
//! (`meterflow_aws::cql_store`).

use std::path::PathBuf;
use std::time::Duration;

/// Port of plain CQL.
pub const DEFAULT_PORT: u16 = 9042;
/// Port of CQL over TLS (Amazon Keyspaces, and Cassandra's usual TLS port).
pub const DEFAULT_TLS_PORT: u16 = 9142;
/// Keyspace used when none is configured.
pub const DEFAULT_KEYSPACE: &str = "meterflow";
/// Writes in flight per `put`: enough to hide a round trip of a few milliseconds, few enough
/// not to trip Keyspaces' per-connection throttling on a small table.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Why a configuration was refused. Each message names the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no CQL nodes given: set METERFLOW_CQL_NODES=host[:port][,host[:port]...] or use --store cql://host:port/keyspace")]
    NoNodes,
    #[error("`{0}` is not a node address: expected host[:port] (IPv6 as [addr]:port)")]
    BadNode(String),
    #[error("`{0}` is not a keyspace name: use 1 to 48 letters, digits or underscores, starting with a letter")]
    BadKeyspace(String),
    #[error("{name}=`{value}` is not valid: {expected}")]
    BadValue {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("`{0}` is not a CQL store URL: expected cql://host[:port][,host[:port]...]/keyspace[?tls=true&datacenter=..&ca_file=..&create_schema=true&concurrency=N]")]
    BadUrl(String),
    #[error("credentials do not belong in the store URL (they would leak into shell history): set METERFLOW_CQL_USERNAME and METERFLOW_CQL_PASSWORD instead")]
    CredentialsInUrl,
    #[error("`{0}` is not a setting of a CQL store URL (known: tls, ca_file, tls_server_name, datacenter, create_schema, await_schema_agreement, concurrency, request_timeout_ms)")]
    UnknownUrlSetting(String),
    #[error("METERFLOW_CQL_USERNAME and METERFLOW_CQL_PASSWORD go together: set both or neither")]
    HalfCredentials,
}

/// Plain-text (SASL PLAIN) credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Keeps the password out of logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS settings; `None` in [`CqlConfig::tls`] means plain TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM bundle of trusted roots; `None` trusts the built-in Mozilla roots (which include
    /// the Amazon and Starfield roots Keyspaces certificates chain to).
    pub ca_file: Option<PathBuf>,
    /// The name the certificate must be valid for. The driver hands rustls the node's IP, so
    /// without this name a hostname certificate (Keyspaces') would never verify; defaults to
    /// the host of the first node.
    pub server_name: Option<String>,
}

/// Everything [`crate::CqlStore::connect`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlConfig {
    /// Contact points, `host:port` each (the port always present after parsing).
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub tls: Option<TlsConfig>,
    pub credentials: Option<Credentials>,
    /// Sign in with AWS SigV4 (Amazon Keyspaces with an IAM role) instead of a password.
    pub sigv4: Option<crate::sigv4::SigV4>,
    /// Local datacenter: LOCAL_QUORUM is counted there and requests prefer its nodes.
    pub datacenter: Option<String>,
    /// Writes in flight per `put` (at least 1).
    pub concurrency: usize,
    /// Rows per page of a read.
    pub page_size: i32,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Create keyspace and table if missing (dev clusters; CloudFormation owns them on AWS).
    pub create_schema: bool,
    /// Wait for schema agreement after DDL. Real clusters need it before preparing against a
    /// new table; the in-process test server answers `system.local` in a way the driver
    /// misreads, so its tests turn it off.
    pub await_schema_agreement: bool,
}

impl CqlConfig {
    /// A configuration with defaults for everything but the nodes and keyspace.
    pub fn new(nodes: Vec<String>, keyspace: impl Into<String>) -> CqlConfig {
        CqlConfig {
            nodes,
            keyspace: keyspace.into(),
            tls: None,
            credentials: None,
            sigv4: None,
            datacenter: None,
            concurrency: DEFAULT_CONCURRENCY,
            page_size: 5000,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            create_schema: false,
            await_schema_agreement: true,
        }
    }

    /// Reads the `METERFLOW_CQL_*` variables of the process environment (see the module docs).
    pub fn from_env() -> Result<CqlConfig, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) over any lookup, so tests need not touch the process
    /// environment (which is shared between test threads).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<CqlConfig, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let tls = match get("METERFLOW_CQL_TLS") {
            Some(v) => parse_bool("METERFLOW_CQL_TLS", &v)?,
            None => false,
        };
        let nodes = parse_nodes(get("METERFLOW_CQL_NODES").as_deref().unwrap_or(""), tls)?;
        let keyspace = get("METERFLOW_CQL_KEYSPACE").unwrap_or_else(|| DEFAULT_KEYSPACE.into());
        let mut config = CqlConfig::new(nodes, check_keyspace(keyspace.trim())?);
        if tls {
            config.tls = Some(TlsConfig {
                ca_file: get("METERFLOW_CQL_CA_FILE").map(PathBuf::from),
                server_name: get("METERFLOW_CQL_TLS_SERVER_NAME"),
            });
        }
        config.credentials = credentials_from(&get)?;
        match get("METERFLOW_CQL_AUTH").as_deref().map(str::trim) {
            None | Some("password") => {}
            Some("sigv4") => {
                if config.credentials.is_some() {
                    return Err(ConfigError::BadValue {
                        name: "METERFLOW_CQL_AUTH".into(),
                        value: "sigv4".into(),
                        expected: "sigv4 without METERFLOW_CQL_USERNAME/PASSWORD (unset them), or password",
                    });
                }
                config.sigv4 = Some(crate::sigv4::SigV4::from_lookup(&get).map_err(|missing| {
                    ConfigError::BadValue {
                        name: "METERFLOW_CQL_AUTH".into(),
                        value: format!("sigv4 (but {missing} is not set)"),
                        expected: "the Lambda role's AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                    }
                })?);
            }
            Some(other) => {
                return Err(ConfigError::BadValue {
                    name: "METERFLOW_CQL_AUTH".into(),
                    value: other.into(),
                    expected: "sigv4 (Amazon Keyspaces with the IAM role) or password",
                })
            }
        }
        config.datacenter = get("METERFLOW_CQL_DATACENTER");
        if let Some(v) = get("METERFLOW_CQL_CONCURRENCY") {
            config.concurrency = parse_concurrency("METERFLOW_CQL_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("METERFLOW_CQL_REQUEST_TIMEOUT_MS") {
            config.request_timeout = parse_millis("METERFLOW_CQL_REQUEST_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("METERFLOW_CQL_CREATE_SCHEMA") {
            config.create_schema = parse_bool("METERFLOW_CQL_CREATE_SCHEMA", &v)?;
        }
        if let Some(v) = get("METERFLOW_CQL_AWAIT_SCHEMA_AGREEMENT") {
            config.await_schema_agreement = parse_bool("METERFLOW_CQL_AWAIT_SCHEMA_AGREEMENT", &v)?;
        }
        Ok(config)
    }

    /// Parses `cql://host[:port][,host[:port]...]/keyspace[?setting=value&...]`; `cqls://`
    /// is the same with TLS on. Settings: `tls`, `ca_file`, `tls_server_name`, `datacenter`,
    /// `create_schema`, `await_schema_agreement`, `concurrency`, `request_timeout_ms`. Values
    /// are taken literally (no percent-decoding). Credentials are refused here: see [`Self::with_env_credentials`].
    pub fn from_url(url: &str) -> Result<CqlConfig, ConfigError> {
        let bad = || ConfigError::BadUrl(url.to_string());
        let (mut tls, rest) = if let Some(r) = url.strip_prefix("cql://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("cqls://") {
            (true, r)
        } else {
            return Err(bad());
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, keyspace) = rest.split_once('/').ok_or_else(bad)?;
        if authority.contains('@') {
            return Err(ConfigError::CredentialsInUrl);
        }
        let keyspace = keyspace.strip_suffix('/').unwrap_or(keyspace);
        let keyspace = if keyspace.is_empty() {
            DEFAULT_KEYSPACE.to_string()
        } else {
            check_keyspace(keyspace)?
        };
        let mut tls_config = TlsConfig::default();
        let mut settings = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            match k {
                "tls" => tls = parse_bool("tls", v)?,
                "ca_file" => tls_config.ca_file = Some(PathBuf::from(v)),
                "tls_server_name" => tls_config.server_name = Some(v.to_string()),
                "datacenter"
                | "create_schema"
                | "await_schema_agreement"
                | "concurrency"
                | "request_timeout_ms" => settings.push((k, v)),
                other => return Err(ConfigError::UnknownUrlSetting(other.to_string())),
            }
        }
        let mut config = CqlConfig::new(parse_nodes(authority, tls)?, keyspace);
        if tls {
            config.tls = Some(tls_config);
        } else if tls_config != TlsConfig::default() {
            return Err(ConfigError::BadValue {
                name: "tls".into(),
                value: "false".into(),
                expected: "ca_file and tls_server_name need tls=true (or a cqls:// URL)",
            });
        }
        for (k, v) in settings {
            match k {
                "datacenter" => config.datacenter = Some(v.to_string()),
                "create_schema" => config.create_schema = parse_bool(k, v)?,
                // Off only for servers that answer schema-version queries oddly (the
                // in-process test server behind the CLI's tests).
                "await_schema_agreement" => config.await_schema_agreement = parse_bool(k, v)?,
                "concurrency" => config.concurrency = parse_concurrency(k, v)?,
                _ => config.request_timeout = parse_millis(k, v)?,
            }
        }
        Ok(config)
    }

    /// Adds credentials from `METERFLOW_CQL_USERNAME`/`METERFLOW_CQL_PASSWORD` if both are
    /// set: how a URL-configured store (the CLI) authenticates.
    pub fn with_env_credentials(mut self) -> Result<CqlConfig, ConfigError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(c) = credentials_from(&get)? {
            self.credentials = Some(c);
        }
        Ok(self)
    }
}

fn credentials_from(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, ConfigError> {
    match (get("METERFLOW_CQL_USERNAME"), get("METERFLOW_CQL_PASSWORD")) {
        (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
        (None, None) => Ok(None),
        _ => Err(ConfigError::HalfCredentials),
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::BadValue {
            name: name.into(),
            value: v.into(),
            expected: "true or false",
        }),
    }
}

fn parse_concurrency(name: &str, v: &str) -> Result<usize, ConfigError> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(ConfigError::BadValue {
            name: name.into(),
            value: v.into(),
            expected: "a whole number from 1 to 4096",
        }),
    }
}

fn parse_millis(name: &str, v: &str) -> Result<Duration, ConfigError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
        _ => Err(ConfigError::BadValue {
            name: name.into(),
            value: v.into(),
            expected: "a positive number of milliseconds",
        }),
    }
}

/// A keyspace name is spliced into CQL text (it cannot be a bind marker), so only unquoted
/// identifiers are accepted: nothing else can reach the statement.
fn check_keyspace(ks: &str) -> Result<String, ConfigError> {
    let b = ks.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 48
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(ks.to_string())
    } else {
        Err(ConfigError::BadKeyspace(ks.to_string()))
    }
}

/// `host[:port]` list → `host:port` list, with the TLS or plain default port.
fn parse_nodes(list: &str, tls: bool) -> Result<Vec<String>, ConfigError> {
    let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
    let mut out = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || ConfigError::BadNode(raw.to_string());
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            // [v6]:port or [v6]
            let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (format!("[{addr}]"), port)
        } else {
            match raw.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => return Err(bad()), // bare IPv6
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (raw.to_string(), None),
            }
        };
        let valid_host = host.len() > 2 && host.starts_with('[')
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_'));
        if !valid_host {
            return Err(bad());
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad()),
            },
        };
        out.push(format!("{host}:{port}"));
    }
    if out.is_empty() {
        return Err(ConfigError::NoNodes);
    }
    Ok(out)
}

/// The host part of a `host:port` node (brackets of IPv6 removed).
#[cfg(any(feature = "keyspaces", test))]
pub(crate) fn node_host(node: &str) -> &str {
    let host = node.rsplit_once(':').map_or(node, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CqlConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CqlConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn url_minimal_and_defaults() {
        let c = CqlConfig::from_url("cql://127.0.0.1/meter_ks").expect("parse");
        assert_eq!(c.nodes, ["127.0.0.1:9042"]);
        assert_eq!(c.keyspace, "meter_ks");
        assert_eq!(c.tls, None);
        assert_eq!(c.concurrency, DEFAULT_CONCURRENCY);
        assert!(!c.create_schema);
        let c = CqlConfig::from_url("cql://db:19042/").expect("parse");
        assert_eq!(
            (c.nodes[0].as_str(), c.keyspace.as_str()),
            ("db:19042", "meterflow")
        );
    }

    #[test]
    fn url_with_settings_and_several_nodes() {
        let c = CqlConfig::from_url(
            "cqls://cassandra.eu-west-1.amazonaws.com,[::1]:9999,h2:1/ks?datacenter=eu-west-1&concurrency=8&request_timeout_ms=2500&create_schema",
        )
        .expect("parse");
        assert_eq!(
            c.nodes,
            [
                "cassandra.eu-west-1.amazonaws.com:9142",
                "[::1]:9999",
                "h2:1"
            ]
        );
        assert_eq!(c.tls, Some(TlsConfig::default()));
        assert_eq!(c.datacenter.as_deref(), Some("eu-west-1"));
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.request_timeout, Duration::from_millis(2500));
        assert!(c.create_schema);
        assert!(c.await_schema_agreement);
        let c = CqlConfig::from_url("cql://h/ks?create_schema=true&await_schema_agreement=false")
            .expect("parse");
        assert!(c.create_schema && !c.await_schema_agreement);
        let c = CqlConfig::from_url(
            "cql://h/ks?tls=true&ca_file=/etc/ca.pem&tls_server_name=db.example",
        )
        .expect("parse");
        assert_eq!(
            c.tls,
            Some(TlsConfig {
                ca_file: Some("/etc/ca.pem".into()),
                server_name: Some("db.example".into())
            })
        );
        assert_eq!(c.nodes, ["h:9142"]);
    }

    #[test]
    fn url_mistakes_say_what_to_fix() {
        for (url, want) in [
            ("http://h/ks", ConfigError::BadUrl("http://h/ks".into())),
            ("cql://h", ConfigError::BadUrl("cql://h".into())),
            ("cql://u:p@h/ks", ConfigError::CredentialsInUrl),
            (
                "cql://h/ks?tsl=1",
                ConfigError::UnknownUrlSetting("tsl".into()),
            ),
            ("cql:///ks", ConfigError::NoNodes),
            ("cql://h:0/ks", ConfigError::BadNode("h:0".into())),
            ("cql://h:x/ks", ConfigError::BadNode("h:x".into())),
            ("cql://::1/ks", ConfigError::BadNode("::1".into())),
            ("cql://h/bad-ks", ConfigError::BadKeyspace("bad-ks".into())),
            (
                "cql://h/ks;DROP",
                ConfigError::BadKeyspace("ks;DROP".into()),
            ),
            ("cql://h/1ks", ConfigError::BadKeyspace("1ks".into())),
        ] {
            assert_eq!(CqlConfig::from_url(url), Err(want), "{url}");
        }
        let e = CqlConfig::from_url("cql://h/ks?concurrency=0").expect_err("zero");
        assert!(e.to_string().contains("1 to 4096"), "{e}");
        let e = CqlConfig::from_url("cql://h/ks?ca_file=x").expect_err("ca without tls");
        assert!(e.to_string().contains("tls=true"), "{e}");
        assert!(CqlConfig::from_url("cql://h/ks")
            .map(|c| format!("{c:?}"))
            .is_ok());
    }

    #[test]
    fn env_reads_every_variable() {
        let c = env(&[
            ("METERFLOW_CQL_NODES", "cassandra.us-east-1.amazonaws.com"),
            ("METERFLOW_CQL_KEYSPACE", "prod"),
            ("METERFLOW_CQL_TLS", "TRUE"),
            ("METERFLOW_CQL_CA_FILE", "/opt/ca.pem"),
            ("METERFLOW_CQL_USERNAME", "svc-at-123"),
            ("METERFLOW_CQL_PASSWORD", "s3cret"),
            ("METERFLOW_CQL_DATACENTER", "us-east-1"),
            ("METERFLOW_CQL_CONCURRENCY", "64"),
            ("METERFLOW_CQL_REQUEST_TIMEOUT_MS", "1500"),
            ("METERFLOW_CQL_CREATE_SCHEMA", "no"),
            ("METERFLOW_CQL_AWAIT_SCHEMA_AGREEMENT", "off"),
        ])
        .expect("parse");
        assert_eq!(c.nodes, ["cassandra.us-east-1.amazonaws.com:9142"]);
        assert_eq!(c.keyspace, "prod");
        assert_eq!(
            c.tls.as_ref().and_then(|t| t.ca_file.clone()),
            Some(PathBuf::from("/opt/ca.pem"))
        );
        let creds = c.credentials.as_ref().expect("credentials");
        assert_eq!(creds.username, "svc-at-123");
        assert!(
            !format!("{creds:?}").contains("s3cret"),
            "password leaks into Debug"
        );
        assert_eq!(c.datacenter.as_deref(), Some("us-east-1"));
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert!(!c.create_schema);
        assert!(!c.await_schema_agreement);
    }

    #[test]
    fn env_defaults_and_mistakes() {
        let c = env(&[("METERFLOW_CQL_NODES", "a, b:9000")]).expect("parse");
        assert_eq!(c.nodes, ["a:9042", "b:9000"]);
        assert_eq!(c.keyspace, DEFAULT_KEYSPACE);
        assert_eq!((c.tls, c.credentials), (None, None));
        assert_eq!(env(&[]), Err(ConfigError::NoNodes));
        assert_eq!(
            env(&[
                ("METERFLOW_CQL_NODES", "a"),
                ("METERFLOW_CQL_USERNAME", "u")
            ]),
            Err(ConfigError::HalfCredentials)
        );
        let e = env(&[("METERFLOW_CQL_NODES", "a"), ("METERFLOW_CQL_TLS", "maybe")])
            .expect_err("bad bool");
        assert!(e.to_string().contains("METERFLOW_CQL_TLS"), "{e}");
        let e = env(&[
            ("METERFLOW_CQL_NODES", "a"),
            ("METERFLOW_CQL_REQUEST_TIMEOUT_MS", "-1"),
        ])
        .expect_err("bad timeout");
        assert!(e.to_string().contains("milliseconds"), "{e}");
    }

    #[test]
    fn sigv4_from_the_role_environment() {
        let base = |extra: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                [
                    ("METERFLOW_CQL_NODES", "cassandra.eu-west-1.amazonaws.com"),
                    ("METERFLOW_CQL_TLS", "true"),
                ]
                .iter()
                .chain(extra)
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
            }
        };
        let c = CqlConfig::from_lookup(base(&[
            ("METERFLOW_CQL_AUTH", "sigv4"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ]))
        .unwrap();
        let sigv4 = c.sigv4.expect("sigv4 configured");
        assert_eq!(sigv4.region, "eu-west-1");
        assert_eq!(sigv4.credentials.session_token.as_deref(), Some("token"));
        assert_eq!(c.nodes, ["cassandra.eu-west-1.amazonaws.com:9142"]);
        let e = CqlConfig::from_lookup(base(&[("METERFLOW_CQL_AUTH", "sigv4")])).unwrap_err();
        assert!(e.to_string().contains("AWS_REGION"), "{e}");
        let e = CqlConfig::from_lookup(base(&[("METERFLOW_CQL_AUTH", "iam")])).unwrap_err();
        assert!(e.to_string().contains("sigv4"), "{e}");
    }

    #[test]
    fn node_hosts() {
        assert_eq!(node_host("db.example:9142"), "db.example");
        assert_eq!(node_host("[::1]:9042"), "::1");
        assert_eq!(node_host("10.0.0.1:9042"), "10.0.0.1");
    }
}
