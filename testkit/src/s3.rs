//! S3 source doubles: [`InMemory`] serves an object from memory in chunks; [`Breaking`] breaks
//! the first GETs' bodies after some bytes, as a dropped connection does.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use meterflow_aws::s3::{ObjectBody, ObjectInfo, ObjectSource, SourceError};

/// A fault-injecting [`ObjectSource`] for tests: the bodies of the first `breaks` GETs fail
/// with a reset connection after `after` bytes, and every GET's range is recorded.
#[derive(Debug)]
pub struct Breaking<S> {
    pub inner: S,
    after: u64,
    breaks: AtomicU64,
    ranges: Mutex<Vec<Range<u64>>>,
}

impl<S> Breaking<S> {
    pub fn new(inner: S, after: u64, breaks: u64) -> Breaking<S> {
        Breaking {
            inner,
            after,
            breaks: AtomicU64::new(breaks),
            ranges: Mutex::new(Vec::new()),
        }
    }

    /// The ranges requested, in order.
    pub fn ranges(&self) -> Vec<Range<u64>> {
        self.ranges.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A body that breaks after a number of bytes (or never).
pub struct BreakingBody<B> {
    inner: B,
    left: Option<u64>,
}

impl<B: ObjectBody> ObjectBody for BreakingBody<B> {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, SourceError>> {
        let Some(left) = self.left else {
            return self.inner.next_chunk().await;
        };
        if left == 0 {
            self.left = None;
            // Never ends again after this: the next call would continue the inner body, but
            // the reader stops at the first error.
            return Some(Err(SourceError::Transient {
                object: "injected".to_owned(),
                message: "connection reset by peer (injected)".to_owned(),
            }));
        }
        match self.inner.next_chunk().await? {
            Ok(mut chunk) => {
                let n = (chunk.len() as u64).min(left);
                chunk.truncate(n as usize);
                self.left = Some(left - n);
                Some(Ok(chunk))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl<S: ObjectSource> ObjectSource for Breaking<S> {
    type Body = BreakingBody<S::Body>;

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectInfo, SourceError> {
        self.inner.head(bucket, key, version_id).await
    }

    async fn get_range(
        &self,
        object: &ObjectInfo,
        range: Range<u64>,
    ) -> Result<Self::Body, SourceError> {
        if let Ok(mut r) = self.ranges.lock() {
            r.push(range.clone());
        }
        let inner = self.inner.get_range(object, range).await?;
        let breaks = self
            .breaks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_ok();
        Ok(BreakingBody {
            inner,
            left: breaks.then_some(self.after),
        })
    }
}

/// An in-memory [`ObjectSource`] (tests of the reader without a server).
#[derive(Debug, Clone)]
pub struct InMemory {
    pub info: ObjectInfo,
    pub data: Bytes,
    /// Body chunk size.
    pub chunk: usize,
}

/// Chunks of an in-memory object.
pub struct InMemoryBody {
    data: Bytes,
    chunk: usize,
}

impl ObjectBody for InMemoryBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, SourceError>> {
        if self.data.is_empty() {
            return None;
        }
        let n = self.chunk.max(1).min(self.data.len());
        Some(Ok(self.data.split_to(n)))
    }
}

impl ObjectSource for InMemory {
    type Body = InMemoryBody;

    async fn head(&self, _: &str, _: &str, _: Option<&str>) -> Result<ObjectInfo, SourceError> {
        Ok(self.info.clone())
    }

    async fn get_range(
        &self,
        _: &ObjectInfo,
        range: Range<u64>,
    ) -> Result<InMemoryBody, SourceError> {
        let len = self.data.len() as u64;
        let (start, end) = (range.start.min(len), range.end.min(len));
        Ok(InMemoryBody {
            data: self.data.slice(start as usize..end as usize),
            chunk: self.chunk,
        })
    }
}
