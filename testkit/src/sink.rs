//! [`MemorySink`]: an in-memory [`ObjectSink`] for reports, notes and dead letters in tests.

use std::collections::BTreeSet;
use std::sync::Mutex;

use bytes::Bytes;
use meterflow_aws::sink::{ObjectSink, SinkError};

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
