//! S3 objects as blocking readers, streamed with ranged GETs that resume after a broken
//! connection.
//!
//! The splitter is synchronous (a `Read` in, records out) and runs on a blocking thread; the
//! SDK is async. [`open`] starts a task that fetches the object range by range and pushes each
//! body chunk into a bounded channel; [`ObjectReader`] is the blocking end of that channel. So
//! memory is bounded by the channel (a few body chunks), never by the object's size, and the
//! parser never waits for a whole range.
//!
//! A broken connection is resumed with a new range starting at the first byte not yet received, a bounded
//! number of times in a row without progress. Every GET after the HEAD pins the version read
//! first (`versionId`, or `If-Match` on the ETag of an unversioned bucket): an object replaced
//! mid-read fails with [`SourceError::Changed`] instead of splicing two versions together. The
//! replacement has its own event and is split on its own.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use meterflow_core::metric_names;
use meterflow_core::source::source_name;
use tokio::sync::mpsc;

use crate::retry::RetryPolicy;

/// An object's identity as read: what fragments record as their source and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Without quotes.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    /// Epoch milliseconds: the fragment version of data that carries none of its own.
    pub last_modified_ms: i64,
}

impl ObjectInfo {
    /// The source name of this exact content: `s3://bucket/key#@versionId`, else
    /// `s3://bucket/key#@etag` (see [`meterflow_core::source`]), so re-splitting it rewrites the
    /// same keys and a new upload gets new ones.
    pub fn source_id(&self) -> String {
        source_name(&self.name(), self.delivery())
    }

    /// Which content of the key this is: its version id, else its ETag (both content-derived
    /// or content-bound; an unversioned bucket's version id is `null`).
    pub fn delivery(&self) -> Option<&str> {
        match (&self.version_id, &self.etag) {
            (Some(v), _) if v != "null" => Some(v),
            (_, Some(e)) => Some(e),
            _ => None,
        }
    }

    /// `s3://bucket/key`: the object part of the source name, and what messages show.
    pub fn name(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// `s3://bucket/rest` as `(bucket, rest)`, where rest is a key or a prefix (maybe empty);
/// `None` when `url` is not an `s3://` URL at all (a local path, say), `Err` saying what is
/// wrong with the bucket name (S3's rules: 3 to 63 lowercase letters, digits, `-` or `.`).
/// The one parser of the CLI's sources and the Lambdas' S3 settings.
pub fn split_url(url: &str) -> Option<Result<(&str, &str), &'static str>> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    Some(if valid {
        Ok((bucket, rest))
    } else {
        Err("the bucket name must be 3 to 63 lowercase letters, digits, '-' or '.'")
    })
}

/// Why an object could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("{object}: no such object (or no permission to read it)")]
    NotFound { object: String },
    #[error("s3://{bucket}: no such bucket (or no permission to list it): check its name, and the account and region the credentials, AWS_REGION and AWS_ENDPOINT_URL point at")]
    NoBucket { bucket: String },
    #[error(
        "{object}: the object changed while being read; its new version is split by its own event"
    )]
    Changed { object: String },
    #[error("{object}: {message}")]
    Transient { object: String, message: String },
    #[error("{object}: {message}")]
    Permanent { object: String, message: String },
}

impl SourceError {
    /// Whether reading again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Transient { .. })
    }

    /// The source error inside an I/O error returned by [`ObjectReader`] (through any
    /// decompressor or parser that passes I/O errors on unchanged).
    pub fn of(e: &io::Error) -> Option<&SourceError> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }

    fn into_io(self) -> io::Error {
        let kind = match &self {
            SourceError::NotFound { .. } => io::ErrorKind::NotFound,
            SourceError::Transient { .. } => io::ErrorKind::ConnectionReset,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

/// The chunks of one GET's body.
pub trait ObjectBody: Send + 'static {
    /// The next chunk; `None` at the end of the body.
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Bytes, SourceError>>> + Send;
}

/// One external system, one trait: an object store that answers HEAD and ranged GET.
pub trait ObjectSource: Send + Sync + 'static {
    type Body: ObjectBody;

    /// The object's size and version (`version_id` pins one version of a versioned bucket).
    fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<ObjectInfo, SourceError>> + Send;

    /// Bytes `range` of exactly the version `object` describes.
    fn get_range(
        &self,
        object: &ObjectInfo,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Self::Body, SourceError>> + Send;
}

/// [`ObjectSource`] on `aws-sdk-s3`.
#[derive(Debug, Clone)]
pub struct S3Source {
    pub client: aws_sdk_s3::Client,
}

/// S3 error codes worth retrying (besides any 5xx).
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "ThrottlingException",
    // A conditional PutObject that raced another write of the same key (409): S3 asks for a
    // retry.
    "ConditionalRequestConflict",
];

pub(crate) fn classify<E>(object: String, e: SdkError<E, HttpResponse>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or_default();
            match (status, code) {
                (404, _) | (_, "NoSuchKey" | "NoSuchBucket" | "NoSuchVersion" | "NotFound") => {
                    SourceError::NotFound { object }
                }
                (412, _) | (_, "PreconditionFailed") => SourceError::Changed { object },
                (500.., _) | (429, _) => SourceError::Transient { object, message },
                (_, c) if RETRYABLE_CODES.contains(&c) => {
                    SourceError::Transient { object, message }
                }
                _ => SourceError::Permanent { object, message },
            }
        }
        SdkError::ConstructionFailure(_) => SourceError::Permanent { object, message },
        SdkError::DispatchFailure(d) if d.is_user() => SourceError::Permanent { object, message },
        _ => SourceError::Transient { object, message },
    }
}

/// An object a listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// Bytes (what a progress bar counts down).
    pub size: u64,
}

impl S3Source {
    /// The objects under `prefix` in `bucket`, in key order (ListObjectsV2, every page).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, SourceError> {
        self.list_in_pages(bucket, prefix, 1000).await
    }

    /// The keys of [`list`](Self::list).
    pub async fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, SourceError> {
        let listed = self.list(bucket, prefix).await?;
        Ok(listed.into_iter().map(|o| o.key).collect())
    }

    /// [`list`](Self::list) asking for at most `page_keys` keys per call (tests use small
    /// pages to follow continuation tokens on a few objects).
    pub async fn list_in_pages(
        &self,
        bucket: &str,
        prefix: &str,
        page_keys: i32,
    ) -> Result<Vec<Listed>, SourceError> {
        let mut listed = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .max_keys(page_keys)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| match &e {
                    SdkError::ServiceError(s) if s.err().code() == Some("NoSuchBucket") => {
                        SourceError::NoBucket {
                            bucket: bucket.to_owned(),
                        }
                    }
                    _ => classify(format!("s3://{bucket}/{prefix}"), e),
                })?;
            listed.extend(out.contents().iter().filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_owned(),
                    size: o.size().map_or(0, |s| s.max(0) as u64),
                })
            }));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(listed),
            }
        }
    }
}

/// The body of an S3 GET.
pub struct S3Body {
    body: aws_sdk_s3::primitives::ByteStream,
    object: String,
}

impl ObjectBody for S3Body {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, SourceError>> {
        let object = &self.object;
        self.body.next().await.map(|r| {
            r.map_err(|e| SourceError::Transient {
                object: object.clone(),
                message: format!("body broke: {}", DisplayErrorContext(&e)),
            })
        })
    }
}

impl ObjectSource for S3Source {
    type Body = S3Body;

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectInfo, SourceError> {
        let name = || format!("s3://{bucket}/{key}");
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify(name(), e))?;
        let permanent = |message: &str| SourceError::Permanent {
            object: name(),
            message: message.to_owned(),
        };
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| permanent("HEAD gave no Content-Length"))?;
        let last_modified_ms = out
            .last_modified()
            .and_then(|t| t.to_millis().ok())
            .ok_or_else(|| permanent("HEAD gave no Last-Modified"))?;
        Ok(ObjectInfo {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
            version_id: out.version_id().map(str::to_owned),
            last_modified_ms,
        })
    }

    async fn get_range(
        &self,
        object: &ObjectInfo,
        range: Range<u64>,
    ) -> Result<S3Body, SourceError> {
        let mut req = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .range(format!(
                "bytes={}-{}",
                range.start,
                range.end.saturating_sub(1)
            ));
        match (&object.version_id, &object.etag) {
            (Some(v), _) if v != "null" => req = req.version_id(v),
            (_, Some(e)) => req = req.if_match(format!("\"{e}\"")),
            _ => {}
        }
        let out = req.send().await.map_err(|e| classify(object.name(), e))?;
        Ok(S3Body {
            body: out.body,
            object: object.name(),
        })
    }
}

/// How to read an object.
#[derive(Debug, Clone, Copy)]
pub struct ReadSettings {
    /// Bytes per GET: a broken connection costs at most a re-request of the rest of one range.
    pub range_bytes: u64,
    /// Body chunks buffered between the fetching task and the reader: the memory bound (a
    /// chunk is one HTTP body frame, at most a few hundred KiB).
    pub buffered_chunks: usize,
    /// Retries of a failed GET or broken body in a row without receiving a byte; backoff and
    /// jitter between them. Progress resets the count.
    pub retry: RetryPolicy,
}

impl Default for ReadSettings {
    fn default() -> Self {
        ReadSettings {
            range_bytes: 8 << 20,
            buffered_chunks: 16,
            retry: RetryPolicy {
                max_attempts: 5,
                ..RetryPolicy::default()
            },
        }
    }
}

/// An object's bytes as a blocking [`io::Read`], from a task that fetches them (see the
/// module docs). Use it on a blocking thread (`spawn_blocking`), never on the async runtime.
/// Dropping it stops the task.
pub struct ObjectReader {
    rx: mpsc::Receiver<Result<Bytes, SourceError>>,
    chunk: Bytes,
    /// Bytes still to come; an early end of the channel is an error, never a short object.
    remaining: u64,
    failed: Option<SourceError>,
    object: String,
    task: tokio::task::JoinHandle<()>,
}

impl ObjectReader {
    /// Bytes not yet delivered by `read`.
    pub fn remaining(&self) -> u64 {
        self.remaining + self.chunk.len() as u64
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl io::Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            if let Some(e) = &self.failed {
                return Err(e.clone().into_io());
            }
            if self.remaining == 0 {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    let n = chunk.len() as u64;
                    if n > self.remaining {
                        let e = SourceError::Permanent {
                            object: self.object.clone(),
                            message: "more bytes than the object's size".to_owned(),
                        };
                        self.failed = Some(e);
                        continue;
                    }
                    self.remaining -= n;
                    self.chunk = chunk;
                }
                Some(Err(e)) => self.failed = Some(e),
                None => {
                    self.failed = Some(SourceError::Transient {
                        object: self.object.clone(),
                        message: format!("the fetch stopped {} bytes early", self.remaining),
                    })
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

/// Reads a small object (a hand-over note) whole; one larger than `limit` bytes is refused,
/// permanently, so a wrong key cannot fill the memory.
pub async fn read_small<S: ObjectSource>(
    source: &S,
    bucket: &str,
    key: &str,
    limit: u64,
) -> Result<(ObjectInfo, Vec<u8>), SourceError> {
    let info = source.head(bucket, key, None).await?;
    if info.size > limit {
        return Err(SourceError::Permanent {
            object: info.name(),
            message: format!("{} bytes is more than the {limit} expected", info.size),
        });
    }
    let mut data = Vec::with_capacity(info.size as usize);
    if info.size == 0 {
        // No range of an empty object exists to ask for.
        return Ok((info, data));
    }
    let mut body = source.get_range(&info, 0..info.size).await?;
    while let Some(chunk) = body.next_chunk().await {
        data.extend_from_slice(&chunk?);
    }
    Ok((info, data))
}

/// Starts reading `object` from byte `start` on the current tokio runtime (`handle`), and
/// returns the blocking reader of its bytes.
pub fn open<S: ObjectSource>(
    handle: &tokio::runtime::Handle,
    source: Arc<S>,
    object: ObjectInfo,
    start: u64,
    settings: ReadSettings,
) -> ObjectReader {
    let start = start.min(object.size);
    let (tx, rx) = mpsc::channel(settings.buffered_chunks.max(1));
    let name = object.name();
    let remaining = object.size - start;
    let task = handle.spawn(pump(source, object, start, settings, tx));
    ObjectReader {
        rx,
        chunk: Bytes::new(),
        remaining,
        failed: None,
        object: name,
        task,
    }
}

/// How a range ended early.
enum Stop {
    /// The reader is gone: nothing more to do.
    Closed,
    Failed(SourceError),
}

/// Fetches `[start, size)` range by range into `tx`, resuming after failures: the task behind
/// [`open`]'s reader, for a caller that runs it on a runtime of its own choosing (a test that
/// counts its metrics on one thread).
pub async fn pump<S: ObjectSource>(
    source: Arc<S>,
    object: ObjectInfo,
    start: u64,
    settings: ReadSettings,
    tx: mpsc::Sender<Result<Bytes, SourceError>>,
) {
    let mut offset = start;
    let mut failures = 0u32;
    let range_bytes = settings.range_bytes.max(1);
    while offset < object.size {
        let end = object.size.min(offset.saturating_add(range_bytes));
        let before = offset;
        let fetched = fetch(&*source, &object, offset..end, &tx, &mut offset).await;
        // Once per GET, not per body chunk.
        metrics::counter!(metric_names::S3_BYTES_READ).increment(offset - before);
        let stop = match fetched {
            Ok(()) => continue,
            Err(stop) => stop,
        };
        let e = match stop {
            Stop::Closed => return,
            Stop::Failed(e) => e,
        };
        if offset > before {
            failures = 0;
        }
        failures += 1;
        if !e.is_retryable() || failures >= settings.retry.max_attempts.max(1) {
            let _ = tx.send(Err(e)).await;
            return;
        }
        metrics::counter!(metric_names::S3_GET_RESUMES).increment(1);
        tokio::time::sleep(settings.retry.delay(failures)).await;
    }
}

/// One GET of `range`, its chunks sent on as they arrive; `offset` follows the bytes sent.
async fn fetch<S: ObjectSource>(
    source: &S,
    object: &ObjectInfo,
    range: Range<u64>,
    tx: &mpsc::Sender<Result<Bytes, SourceError>>,
    offset: &mut u64,
) -> Result<(), Stop> {
    let mut body = source
        .get_range(object, range.clone())
        .await
        .map_err(Stop::Failed)?;
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk.map_err(Stop::Failed)?;
        if chunk.is_empty() {
            continue;
        }
        let n = chunk.len() as u64;
        if *offset + n > range.end {
            return Err(Stop::Failed(SourceError::Permanent {
                object: object.name(),
                message: format!("GET of bytes {range:?} returned more"),
            }));
        }
        tx.send(Ok(chunk)).await.map_err(|_| Stop::Closed)?;
        *offset += n;
    }
    if *offset < range.end {
        // A body that ends cleanly but short: a proxy or the server cut it. Resume.
        return Err(Stop::Failed(SourceError::Transient {
            object: object.name(),
            message: format!("body ended at byte {} of range {range:?}", *offset),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_prefer_the_version_id() {
        let mut i = ObjectInfo {
            bucket: "b".into(),
            key: "k".into(),
            size: 0,
            etag: Some("e".into()),
            version_id: None,
            last_modified_ms: 1,
        };
        assert_eq!(i.source_id(), "s3://b/k#@e");
        i.version_id = Some("null".into());
        assert_eq!(i.source_id(), "s3://b/k#@e", "unversioned buckets say null");
        i.version_id = Some("3HL4kqtJ".into());
        assert_eq!(i.source_id(), "s3://b/k#@3HL4kqtJ");
    }
}
