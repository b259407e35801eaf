//! What the splitter Lambda's tests share: a moto server with the bucket and stream the
//! fixtures name, and handlers tuned for small inputs.
#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meterflow_aws::kinesis::RecordStream;
use meterflow_aws::retry::RetryPolicy;
use meterflow_aws::s3::{ObjectInfo, ObjectSource};
use meterflow_aws::sink::ObjectSink;
use meterflow_splitter::lambda::{Splitter, SplitterConfig};
use meterflow_splitter::PackSettings;
pub use meterflow_testkit::events::{BUCKET, KEY, STREAM};
pub use meterflow_testkit::moto::Env;
use meterflow_testkit::s3::InMemory;

pub const SHARDS: i32 = 4;
pub const BUCKETS: u32 = 16;

pub fn config() -> SplitterConfig {
    SplitterConfig {
        stream_name: STREAM.to_owned(),
        buckets: BUCKETS,
        put_concurrency: 1,
        rejects_prefix: None,
        max_rejects: 1000,
        deadline_margin: Duration::from_secs(1),
        max_bytes_per_invocation: None,
        handover_prefix: None,
    }
}

pub fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    }
}

/// A splitter with small records (many per test file) and fast retries. One PutRecords call
/// at a time: moto can give two concurrent calls the same sequence number (ARCHITECTURE).
pub fn splitter<Src: ObjectSource, St: RecordStream, Snk: ObjectSink>(
    source: Src,
    stream: St,
    sink: Snk,
    config: &SplitterConfig,
) -> Splitter<Src, St, Snk> {
    let mut s = Splitter::new(Arc::new(source), stream, sink, config);
    s.shipper.policy = fast();
    s.settings.split.pack = PackSettings {
        buckets: config.buckets,
        max_record_bytes: 2048,
        max_held_bytes: 32 * 1024,
    };
    s.settings.read.retry = fast();
    s
}

/// `data` as the object the fixture names, without a server.
pub fn in_memory(data: impl Into<Bytes>) -> InMemory {
    let data = data.into();
    InMemory {
        info: ObjectInfo {
            bucket: BUCKET.into(),
            key: KEY.into(),
            size: data.len() as u64,
            etag: Some("e1".into()),
            version_id: None,
            last_modified_ms: 1_546_300_800_000,
        },
        data,
        chunk: 4096,
    }
}

/// A moto server with the fixture's bucket and a 4-shard stream.
pub async fn moto() -> Env {
    Env::start(BUCKET, STREAM, SHARDS).await
}
