//! Driver errors → [`StoreError`], split by what the caller should do.
//!
//! The aggregator retries a batch (through Lambda's `batchItemFailures`) only when an error is
//! [`StoreError::Retryable`], so the split decides between "wait and try again" and "a human
//! must fix something": timeouts, overload, unavailable replicas, throttling and lost
//! connections are retryable (every write is an idempotent upsert, so repeating it is safe);
//! syntax, invalid requests, authentication and authorisation are permanent, and their messages
//! say which setting to change.

use meterflow_store::StoreError;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError,
    MetadataError, NewSessionError, NextPageError, NextRowError, PagerExecutionError, PrepareError,
    RequestAttemptError, RequestError,
};

/// The two outcomes, before a message is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Retryable,
    Permanent,
}

/// The error of `kind`: `message` says what failed and what to do, `cause` is the driver's.
fn make<E>(kind: Kind, message: String, cause: &E) -> StoreError
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    let cause = cause.clone();
    match kind {
        Kind::Retryable => StoreError::retryable(message, cause),
        Kind::Permanent => StoreError::permanent(message, cause),
    }
}

/// A server error: the kind, and advice for the message.
pub(crate) fn db_error(e: &DbError) -> (Kind, &'static str) {
    use Kind::*;
    match e {
        DbError::Unavailable { .. } => (Retryable, "too few replicas are alive for LOCAL_QUORUM"),
        DbError::Overloaded | DbError::RateLimitReached { .. } => {
            (Retryable, "the cluster is shedding load (on Keyspaces: throttled; raise the table's capacity or lower METERFLOW_CQL_CONCURRENCY)")
        }
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => {
            (Retryable, "replicas did not answer in time (on Keyspaces this is also how throttling shows)")
        }
        DbError::ReadFailure { .. } | DbError::WriteFailure { .. } => {
            (Retryable, "a replica failed the request")
        }
        DbError::IsBootstrapping => (Retryable, "the node is still starting"),
        DbError::ServerError => (Retryable, "the server reported an internal error"),
        DbError::TruncateError => (Retryable, "a truncate did not complete"),
        DbError::Unprepared { .. } => (Retryable, "the server forgot a prepared statement"),
        DbError::SyntaxError => (Permanent, "the server does not accept this CQL (a meterflow bug, or a server without the needed CQL support)"),
        DbError::Invalid => (Permanent, "the request is invalid for this schema: if the keyspace or table is missing, create it (METERFLOW_CQL_CREATE_SCHEMA=true or ?create_schema=true on a dev cluster, the CloudFormation stack on AWS)"),
        DbError::AlreadyExists { .. } => (Permanent, "the schema object already exists"),
        DbError::FunctionFailure { .. } => (Permanent, "a server-side function failed"),
        DbError::AuthenticationError => (Permanent, "authentication failed: check METERFLOW_CQL_USERNAME and METERFLOW_CQL_PASSWORD (Keyspaces: service-specific credentials of an IAM user)"),
        DbError::Unauthorized => (Permanent, "the role may not do this: grant it SELECT and MODIFY on the keyspace (and CREATE for create_schema)"),
        DbError::ConfigError => (Permanent, "the server refused its configuration"),
        DbError::ProtocolError => (Permanent, "the server does not speak the driver's protocol version"),
        _ => (Permanent, "unexpected server error"),
    }
}

fn attempt(e: &RequestAttemptError) -> (Kind, &'static str) {
    match e {
        RequestAttemptError::DbError(db, _) => db_error(db),
        RequestAttemptError::BrokenConnectionError(_) => {
            (Kind::Retryable, "the connection broke during the request")
        }
        RequestAttemptError::UnableToAllocStreamId => (
            Kind::Retryable,
            "the connection has too many requests in flight",
        ),
        _ => (
            Kind::Permanent,
            "the driver and server disagree on the protocol (a bug)",
        ),
    }
}

fn connection(e: &ConnectionError) -> (Kind, &'static str) {
    match e {
        ConnectionError::ConnectionSetupRequestError(s) => match s.get_error() {
            ConnectionSetupRequestErrorKind::DbError(db, _) => db_error(db),
            ConnectionSetupRequestErrorKind::MissingAuthentication => (
                Kind::Permanent,
                "the cluster requires authentication: set METERFLOW_CQL_USERNAME and METERFLOW_CQL_PASSWORD",
            ),
            ConnectionSetupRequestErrorKind::StartAuthSessionError(_)
            | ConnectionSetupRequestErrorKind::AuthChallengeEvaluationError(_)
            | ConnectionSetupRequestErrorKind::AuthFinishError(_) => (
                Kind::Permanent,
                "authentication failed: check METERFLOW_CQL_USERNAME and METERFLOW_CQL_PASSWORD",
            ),
            ConnectionSetupRequestErrorKind::BrokenConnection(_) => {
                (Kind::Retryable, "the connection broke while it was being set up")
            }
            _ => (
                Kind::Permanent,
                "the connection could not be set up (is this a CQL port? with TLS, set METERFLOW_CQL_TLS=true)",
            ),
        },
        // rustls reports certificate problems as `InvalidData` I/O errors: no retry fixes them.
        ConnectionError::IoError(io) if io.kind() == std::io::ErrorKind::InvalidData => (
            Kind::Permanent,
            "the TLS handshake failed: check METERFLOW_CQL_CA_FILE and METERFLOW_CQL_TLS_SERVER_NAME, or that the port speaks TLS",
        ),
        ConnectionError::ConnectTimeout | ConnectionError::IoError(_) => (
            Kind::Retryable,
            "cannot reach the node: check that it is up and that METERFLOW_CQL_NODES names the right host and port",
        ),
        ConnectionError::BrokenConnection(_) => (Kind::Retryable, "the connection broke"),
        _ => (Kind::Retryable, "the connection failed"),
    }
}

fn pool(e: &ConnectionPoolError) -> (Kind, &'static str) {
    match e {
        ConnectionPoolError::Broken {
            last_connection_error,
        } => connection(last_connection_error),
        ConnectionPoolError::Initializing => {
            (Kind::Retryable, "connections are still being opened")
        }
        _ => (
            Kind::Permanent,
            "no node may be used: check METERFLOW_CQL_DATACENTER",
        ),
    }
}

fn prepare(e: &PrepareError) -> (Kind, &'static str) {
    match e {
        PrepareError::ConnectionPoolError(p) => pool(p),
        PrepareError::AllAttemptsFailed { first_attempt } => attempt(first_attempt),
        _ => (
            Kind::Retryable,
            "nodes disagree on a prepared statement (schema change in progress?)",
        ),
    }
}

fn metadata(e: &MetadataError) -> (Kind, &'static str) {
    match e {
        MetadataError::ConnectionPoolError(p) => pool(p),
        _ => (Kind::Retryable, "cannot read the cluster's topology"),
    }
}

pub(crate) fn execution_kind(e: &ExecutionError) -> (Kind, &'static str) {
    match e {
        ExecutionError::RequestTimeout(_) => (
            Kind::Retryable,
            "no answer within the client timeout (raise METERFLOW_CQL_REQUEST_TIMEOUT_MS if this persists)",
        ),
        ExecutionError::ConnectionPoolError(p) => pool(p),
        ExecutionError::LastAttemptError(a) => attempt(a),
        ExecutionError::PrepareError(p) => prepare(p),
        ExecutionError::EmptyPlan => (
            Kind::Permanent,
            "no node to send the request to: check that METERFLOW_CQL_DATACENTER names a datacenter of the cluster",
        ),
        ExecutionError::BadQuery(_) => (Kind::Permanent, "the driver refused the request (a meterflow bug)"),
        ExecutionError::SchemaAgreementError(_) => (Kind::Retryable, "nodes have not agreed on the schema yet"),
        ExecutionError::MetadataError(m) => metadata(m),
        _ => (Kind::Permanent, "the request failed"),
    }
}

fn request(e: &RequestError) -> (Kind, &'static str) {
    match e {
        RequestError::RequestTimeout(_) => (
            Kind::Retryable,
            "no answer within the client timeout (raise METERFLOW_CQL_REQUEST_TIMEOUT_MS if this persists)",
        ),
        RequestError::ConnectionPoolError(p) => pool(p),
        RequestError::LastAttemptError(a) => attempt(a),
        _ => (Kind::Permanent, "no node to send the request to: check METERFLOW_CQL_DATACENTER"),
    }
}

/// `context` says what was being done ("writing fragments of X"), the driver's error what
/// happened, the advice what to do.
pub(crate) fn execution(context: &str, e: &ExecutionError) -> StoreError {
    let (kind, advice) = execution_kind(e);
    make(kind, format!("{context}; {advice}"), e)
}

pub(crate) fn prepare_error(context: &str, e: &PrepareError) -> StoreError {
    let (kind, advice) = prepare(e);
    make(kind, format!("{context}; {advice}"), e)
}

pub(crate) fn pager(context: &str, e: &PagerExecutionError) -> StoreError {
    let (kind, advice) = match e {
        PagerExecutionError::PrepareError(p) => prepare(p),
        PagerExecutionError::NextPageError(n) => next_page(n),
        PagerExecutionError::SerializationError(_) => (
            Kind::Permanent,
            "the driver refused the request (a meterflow bug)",
        ),
        PagerExecutionError::MetadataError(m) => metadata(m),
        _ => (Kind::Retryable, "the read could not start"),
    };
    make(kind, format!("{context}; {advice}"), e)
}

fn next_page(e: &NextPageError) -> (Kind, &'static str) {
    match e {
        NextPageError::RequestFailure(r) => request(r),
        _ => (
            Kind::Permanent,
            "a page of the answer is unreadable (schema mismatch?)",
        ),
    }
}

pub(crate) fn next_row(context: &str, e: &NextRowError) -> StoreError {
    let (kind, advice) = match e {
        NextRowError::NextPageError(n) => next_page(n),
        _ => (
            Kind::Permanent,
            "a row does not have the columns this build expects: is the table from an older or newer meterflow?",
        ),
    };
    make(kind, format!("{context}; {advice}"), e)
}

pub(crate) fn new_session(e: &NewSessionError) -> StoreError {
    let (kind, advice) = match e {
        NewSessionError::FailedToResolveAnyHostname(_) => (
            Kind::Permanent,
            "check the host names in METERFLOW_CQL_NODES (or the --store URL)",
        ),
        NewSessionError::EmptyKnownNodesList => (Kind::Permanent, "set METERFLOW_CQL_NODES"),
        NewSessionError::MetadataError(m) => metadata(m),
        NewSessionError::IllegalConfig(_) => (Kind::Permanent, "fix the store configuration"),
        _ => (Kind::Permanent, "check the keyspace name"),
    };
    make(
        kind,
        format!("cannot connect to the CQL cluster; {advice}"),
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn attempt_err(db: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, "msg".into()))
    }

    #[test]
    fn server_errors_split_by_what_retrying_would_do() {
        use scylla::errors::{OperationType, WriteType};
        use scylla::statement::Consistency;
        let retryable = [
            DbError::Unavailable {
                consistency: Consistency::LocalQuorum,
                required: 2,
                alive: 1,
            },
            DbError::Overloaded,
            DbError::WriteTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Simple,
            },
            DbError::ReadTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                data_present: false,
            },
            DbError::RateLimitReached {
                op_type: OperationType::Write,
                rejected_by_coordinator: true,
            },
            DbError::ServerError,
            DbError::IsBootstrapping,
        ];
        for db in retryable {
            let e = execution("writing", &attempt_err(db.clone()));
            assert!(e.is_retryable(), "{db:?} should be retryable: {e}");
        }
        let permanent = [
            DbError::SyntaxError,
            DbError::Invalid,
            DbError::AuthenticationError,
            DbError::Unauthorized,
            DbError::ConfigError,
            DbError::ProtocolError,
        ];
        for db in permanent {
            let e = execution("writing", &attempt_err(db.clone()));
            assert!(!e.is_retryable(), "{db:?} should be permanent: {e}");
        }
    }

    #[test]
    fn messages_carry_context_and_advice() {
        let e = execution("writing fragments of EE1", &attempt_err(DbError::Invalid));
        let m = e.to_string();
        assert!(m.starts_with("writing fragments of EE1; "), "{m}");
        assert!(m.contains("METERFLOW_CQL_CREATE_SCHEMA"), "{m}");
        // The driver's error is the source, and the report shows it.
        let cause = std::error::Error::source(&e).expect("the driver's error");
        assert!(
            cause.downcast_ref::<ExecutionError>().is_some(),
            "{cause:?}"
        );
        assert!(
            e.report().ends_with(&format!(": {cause}")),
            "{}",
            e.report()
        );
        let m = execution("x", &attempt_err(DbError::AuthenticationError)).to_string();
        assert!(m.contains("METERFLOW_CQL_USERNAME"), "{m}");
    }

    #[test]
    fn client_side_failures() {
        let timeout = ExecutionError::RequestTimeout(std::time::Duration::from_secs(1));
        assert!(execution("r", &timeout).is_retryable());
        assert!(!execution("r", &ExecutionError::EmptyPlan).is_retryable());
        let refused = ConnectionPoolError::Broken {
            last_connection_error: ConnectionError::IoError(Arc::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))),
        };
        let e = execution("r", &ExecutionError::ConnectionPoolError(refused.clone()));
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("METERFLOW_CQL_NODES"), "{e}");
        let bad_cert = ConnectionPoolError::Broken {
            last_connection_error: ConnectionError::IoError(Arc::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            ))),
        };
        let e = execution("r", &ExecutionError::ConnectionPoolError(bad_cert));
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("METERFLOW_CQL_CA_FILE"), "{e}");
        let e = new_session(&NewSessionError::MetadataError(
            MetadataError::ConnectionPoolError(refused),
        ));
        assert!(e.is_retryable(), "{e}");
        let e = new_session(&NewSessionError::FailedToResolveAnyHostname(vec![
            "nohost:9042".into(),
        ]));
        assert!(!e.is_retryable(), "{e}");
        let e = prepare_error(
            "preparing",
            &PrepareError::AllAttemptsFailed {
                first_attempt: RequestAttemptError::DbError(
                    DbError::Invalid,
                    "unconfigured table".into(),
                ),
            },
        );
        assert!(!e.is_retryable(), "{e}");
        assert!(e.report().contains("unconfigured table"), "{}", e.report());
    }
}
