//! Writing whole small objects to S3: the splitter's rejects reports and the aggregator's
//! dead letters.
//!
//! One PutObject each: both are small (a report keeps at most the configured number of
//! rejects, a dead letter is one Kinesis record of at most 1 MiB), so there is no multipart
//! upload to resume. Keys are deterministic (from the input key, or from the stream position),
//! so a retried invocation overwrites what an earlier attempt wrote instead of adding copies.

use std::future::Future;

use bytes::Bytes;

use crate::s3::{classify, SourceError};

/// Why an object could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("writing s3://{bucket}/{key}: {message}")]
pub struct SinkError {
    pub bucket: String,
    pub key: String,
    pub message: String,
    /// Throttling, a 5xx or a broken connection: writing again later may succeed. A missing
    /// bucket or a denied permission will not.
    pub retryable: bool,
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// One external system, one trait: an object store that takes PutObject (and DeleteObject,
/// so that a report from an earlier version of an input does not outlive it).
pub trait ObjectSink: Send + Sync + 'static {
    /// Writes `body` as `bucket`/`key`, replacing any object there.
    fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes `body` as `bucket`/`key` only if no object is there (`If-None-Match: *`):
    /// `Ok(false)`, with nothing written, when one is. Of two such writes racing for one key,
    /// exactly one succeeds.
    fn put_object_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<bool, SinkError>> + Send;

    /// Removes `bucket`/`key`; removing an object that is not there succeeds.
    fn delete_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// [`ObjectSink`] on `aws-sdk-s3`.
#[derive(Debug, Clone)]
pub struct S3Sink {
    pub client: aws_sdk_s3::Client,
}

impl S3Sink {
    /// PutObject, with `If-None-Match: *` when `if_absent`: `Ok(false)` when that condition
    /// failed (412).
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        if_absent: bool,
    ) -> Result<bool, SinkError> {
        let result = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_if_none_match(if_absent.then(|| "*".to_owned()))
            .body(body.into())
            .send()
            .await;
        match result.map_err(|e| classify(format!("s3://{bucket}/{key}"), e)) {
            Ok(_) => Ok(true),
            Err(SourceError::Changed { .. }) if if_absent => Ok(false),
            Err(e) => Err(sink_error(bucket, key, e)),
        }
    }
}

impl ObjectSink for S3Sink {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), SinkError> {
        self.put(bucket, key, body, content_type, false)
            .await
            .map(|_| ())
    }

    async fn put_object_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, SinkError> {
        self.put(bucket, key, body, content_type, true).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), SinkError> {
        let result = self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        result
            .map(|_| ())
            .map_err(|e| sink_error(bucket, key, classify(format!("s3://{bucket}/{key}"), e)))
    }
}

fn sink_error(bucket: &str, key: &str, source: SourceError) -> SinkError {
    SinkError {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        retryable: source.is_retryable(),
        message: match source {
            SourceError::NotFound { .. } | SourceError::NoBucket { .. } => {
                "no such bucket (or no permission to write to it)".to_owned()
            }
            SourceError::Transient { message, .. } | SourceError::Permanent { message, .. } => {
                message
            }
            SourceError::Changed { object } => format!("{object} changed"),
        },
    }
}
