//! Writing whole small objects to S3: the splitter's rejects reports and the aggregator's
//! dead letters.
//!
//! One PutObject each: both are small (a report keeps at most the configured number of
//! rejects, a dead letter is one Kinesis record of at most 1 MiB), so there is no multipart
//! upload to resume. Keys are deterministic (from the input key, or from the stream position),
//! so a retried invocation overwrites what an earlier attempt wrote instead of adding copies.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;

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

/// An in-memory [`ObjectSink`] that keeps what it is given, or fails every write with a
/// planned error (tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// `(bucket, key, body)` of each write, in order.
    pub objects: Mutex<Vec<(String, String, Bytes)>>,
    /// `(bucket, key)` of each delete, in order.
    pub deleted: Mutex<Vec<(String, String)>>,
    /// `(bucket, key)` of each object there now (written and not deleted since).
    pub present: Mutex<BTreeSet<(String, String)>>,
    /// Fails every write with this retryability when set.
    pub fail: Option<bool>,
}

impl MemorySink {
    fn injected(&self, bucket: &str, key: &str) -> Result<(), SinkError> {
        match self.fail {
            Some(retryable) => Err(SinkError {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: "injected failure".to_owned(),
                retryable,
            }),
            None => Ok(()),
        }
    }

    /// Every write so far.
    pub fn written(&self) -> Vec<(String, String, Bytes)> {
        self.objects.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

impl MemorySink {
    /// Keeps `body` as `bucket`/`key`; with `if_absent`, only if no object is there, checked
    /// and recorded under one lock so that of two racing writes exactly one succeeds.
    fn write(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        if_absent: bool,
    ) -> Result<bool, SinkError> {
        self.injected(bucket, key)?;
        let fresh = self
            .present
            .lock()
            .map(|mut p| p.insert((bucket.to_owned(), key.to_owned())))
            .unwrap_or(true);
        if if_absent && !fresh {
            return Ok(false);
        }
        if let Ok(mut o) = self.objects.lock() {
            o.push((bucket.to_owned(), key.to_owned(), body));
        }
        Ok(true)
    }
}

impl ObjectSink for MemorySink {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<(), SinkError> {
        self.write(bucket, key, body, false).map(|_| ())
    }

    async fn put_object_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        _content_type: &str,
    ) -> Result<bool, SinkError> {
        self.write(bucket, key, body, true)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), SinkError> {
        self.injected(bucket, key)?;
        if let Ok(mut d) = self.deleted.lock() {
            d.push((bucket.to_owned(), key.to_owned()));
        }
        if let Ok(mut p) = self.present.lock() {
            p.remove(&(bucket.to_owned(), key.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_sink_writes_if_absent_only_when_nothing_is_there() {
        let s = MemorySink::default();
        let put = |body: &'static str| s.put_object_if_absent("b", "k", Bytes::from(body), "");
        assert!(put("first").await.unwrap());
        assert!(!put("second").await.unwrap(), "a second write is refused");
        s.put_object("b", "k", Bytes::from("over"), "")
            .await
            .unwrap();
        s.delete_object("b", "k").await.unwrap();
        assert!(put("third").await.unwrap(), "written again once deleted");
        let bodies: Vec<Bytes> = s.written().into_iter().map(|(_, _, b)| b).collect();
        assert_eq!(bodies, ["first", "over", "third"]);
    }
}
