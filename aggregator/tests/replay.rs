//! The replay driver against a moto stream, through the real Kinesis adapter: what a replay
//! applies equals what was put, exactly once, even when iterators expire and calls are
//! throttled in the middle of a shard (injected: moto does neither); a replay stopped after a
//! batch resumes from its last sequence number to the same totals.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meterflow_aggregator::replay::{
    lineage_waves, replay, replay_shard, Ended, Observer, Quiet, ReplaySettings, ShardPlan,
    ShardReport, Until,
};
use meterflow_aws::kinesis::Shipper;
use meterflow_aws::retry::RetryPolicy;
use meterflow_aws::shards::{KinesisShards, ShardReader, StartingPosition};
use meterflow_core::synth::Spec;
use meterflow_core::{Day, Format, Fragment, SeriesId};
use meterflow_splitter::{split, Collected, PackSettings};
use meterflow_store::{SqliteStore, Store, StoreError};
use meterflow_testkit::moto::Env;
use meterflow_testkit::shards::Unreliable;

const BUCKETS: u32 = 8;

/// A store that counts the records handed to it: the idempotent store alone would hide a
/// record applied twice.
struct Counting {
    inner: SqliteStore,
    records: AtomicU64,
}

impl Store for Counting {
    async fn put(&self, fragments: Vec<Fragment>) -> Result<(), StoreError> {
        self.inner.put(fragments).await
    }

    async fn put_records(&self, records: Vec<Vec<u8>>) -> Result<(), (usize, StoreError)> {
        self.records
            .fetch_add(records.len() as u64, Ordering::SeqCst);
        self.inner.put_records(records).await
    }

    async fn fragments(
        &self,
        series: &SeriesId,
        from: Day,
        to: Day,
    ) -> Result<Vec<Fragment>, StoreError> {
        self.inner.fragments(series, from, to).await
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        inner: SqliteStore::open_in_memory().unwrap(),
        records: AtomicU64::new(0),
    })
}

fn spec() -> Spec {
    let mut spec = Spec::new(24, 6);
    spec.seed = 5;
    spec
}

/// Splits the spec's wide file into small records and puts them on the stream (one call in
/// flight: moto may give concurrent puts one sequence number); returns how many.
async fn put_spec(env: &Env) -> u64 {
    let csv = spec().generate(Format::Wide).unwrap();
    let mut out = Collected::default();
    let settings = PackSettings {
        buckets: BUCKETS,
        max_record_bytes: 512,
        max_held_bytes: 16 * 1024,
    };
    split(&csv[..], spec().options("replay.csv"), settings, &mut out).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(out.records.len().max(1));
    let n = out.records.len() as u64;
    for r in out.records {
        tx.send(r).await.unwrap();
    }
    drop(tx);
    let mut shipper = Shipper::new(Arc::new(env.stream()), BUCKETS);
    shipper.max_in_flight = 1;
    let report = shipper.ship(rx).await.unwrap();
    assert_eq!(report.records, n);
    n
}

/// Fast settings: a few records per call (many pages), no waiting between calls, short
/// backoff.
fn settings() -> ReplaySettings {
    ReplaySettings {
        limit: 3,
        min_call_interval: Duration::ZERO,
        max_bytes_per_second: u64::MAX,
        retry: RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
        parallel: 2,
    }
}

async fn assert_oracle<S: Store>(store: &S) {
    let spec = spec();
    for want in spec.totals(Format::Wide) {
        let series: SeriesId = want.series.parse().unwrap();
        let totals = meterflow_store::daily_totals(store, &series, want.day, want.day)
            .await
            .unwrap();
        assert_eq!(totals.len(), 1, "{} {}", want.series, want.day);
        assert_eq!(totals[0].total, want.total, "{} {}", want.series, want.day);
    }
}

fn reader(env: &Env) -> KinesisShards {
    KinesisShards {
        client: env.kinesis.clone(),
        stream_name: env.stream.clone(),
    }
}

async fn plans(reader: &impl ShardReader) -> Vec<Vec<ShardPlan>> {
    let shards = reader.list_shards().await.unwrap();
    lineage_waves(&shards)
        .into_iter()
        .map(|wave| {
            wave.into_iter()
                .map(|s| ShardPlan {
                    shard: s.id,
                    from: StartingPosition::TrimHorizon,
                    until: Until::default(),
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_iterators_and_throttling_lose_and_repeat_nothing() {
    let env = Env::start("unused-bucket", "replayed", 4).await;
    let put = put_spec(&env).await;
    let flaky = Arc::new(Unreliable::new(reader(&env), 4, 7));
    let store = counting();
    let waves = plans(flaky.as_ref()).await;
    let results = replay(
        Arc::clone(&flaky),
        Arc::clone(&store),
        waves,
        settings(),
        Arc::new(AtomicBool::new(false)),
        Arc::new(Quiet),
    )
    .await;
    let reports: Vec<ShardReport> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(reports.len(), 4);
    let applied: u64 = reports.iter().map(|r| r.records).sum();
    assert_eq!(applied, put, "every record applied");
    assert_eq!(
        store.records.load(Ordering::SeqCst),
        put,
        "no record applied twice"
    );
    let expired = flaky.expired.load(Ordering::SeqCst);
    assert!(expired > 0 && flaky.throttled.load(Ordering::SeqCst) > 0);
    let renewed: u64 = reports.iter().map(|r| r.iterators_renewed).sum();
    assert_eq!(renewed, expired, "each expired iterator renewed once");
    assert!(reports.iter().all(|r| r.ended == Some(Ended::Tip)));
    assert_eq!(reports.iter().map(|r| r.quarantined).sum::<u64>(), 0);
    assert_oracle(store.as_ref()).await;
}

/// Sets the stop flag (Ctrl-C) once the first page is applied.
struct StopAfterFirstPage(Arc<AtomicBool>);

impl Observer for StopAfterFirstPage {
    fn progress(&self, _: &ShardReport, _: Option<i64>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn done(&self, _: &ShardReport) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replay_resumes_from_its_last_sequence_number() {
    let env = Env::start("unused-bucket", "one-shard", 1).await;
    let put = put_spec(&env).await;
    let reader = reader(&env);
    let store = counting();
    let stop = Arc::new(AtomicBool::new(false));
    let plan = ShardPlan {
        shard: "shardId-000000000000".into(),
        from: StartingPosition::TrimHorizon,
        until: Until::default(),
    };
    let first = replay_shard(
        &reader,
        store.as_ref(),
        &plan,
        &settings(),
        &stop,
        &StopAfterFirstPage(Arc::clone(&stop)),
    )
    .await
    .unwrap();
    assert_eq!(first.ended, Some(Ended::Stopped));
    assert_eq!(
        first.records, 3,
        "one page of `limit` records, then stopped"
    );
    let last = first.last_sequence_number.clone().unwrap();

    // As the summary says: --from-sequence LAST (LAST is applied again, harmlessly).
    let resumed = ShardPlan {
        from: StartingPosition::AtSequence(last),
        ..plan
    };
    let rest = replay_shard(
        &reader,
        store.as_ref(),
        &resumed,
        &settings(),
        &AtomicBool::new(false),
        &Quiet,
    )
    .await
    .unwrap();
    assert_eq!(rest.ended, Some(Ended::Tip));
    assert_eq!(first.records + rest.records, put + 1);
    assert_eq!(store.records.load(Ordering::SeqCst), put + 1);
    assert_oracle(store.as_ref()).await;
}
