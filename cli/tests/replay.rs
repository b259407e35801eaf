//! `meterflow replay` and `meterflow reprocess` with the built binary against a moto server:
//! a stream replayed into an empty store gives the generator's exact totals, twice the same;
//! from a middle sequence number or time only the later records; a corrupt record is
//! quarantined; an on-failure record replays exactly its range; a resharded stream replays
//! exactly; objects re-split from S3 land once. Credentials come from a profile as the AWS
//! CLI finds them.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::aws::{Aws, Oracle, BUCKET};
use meterflow_core::envelope::decode;
use meterflow_core::value::write_amount;
use meterflow_core::{daily_totals, Day, Fragment};
use meterflow_testkit::moto::{read_stream, ShardRecord};
use serde_json::Value;

/// Every record on `stream`, in shard and sequence order.
fn records(aws: &Aws, stream: &str) -> Vec<ShardRecord> {
    aws.rt
        .block_on(read_stream(&aws.kinesis, stream))
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn fragments(record: &ShardRecord) -> Vec<Fragment> {
    decode(&record.data).expect("an envelope record")
}

/// The totals of `fragments` as the oracle writes them.
fn totals_of<'a>(fragments: impl IntoIterator<Item = &'a Fragment>) -> Oracle {
    let mut got = Oracle::new();
    for t in daily_totals(fragments) {
        let mut total = String::new();
        write_amount(&mut total, t.total);
        got.entry(t.series.as_str().to_owned())
            .or_default()
            .push((t.day.to_string(), total));
    }
    got
}

/// What a store answers for every series of `series`, as an oracle (series without days
/// left out).
fn stored(aws: &Aws, store: &str, series: impl IntoIterator<Item = String>) -> Oracle {
    series
        .into_iter()
        .map(|s| {
            let days = aws.query(store, &s).0;
            (s, days)
        })
        .filter(|(_, days)| !days.is_empty())
        .collect()
}

fn all_series(oracle: &Oracle) -> Vec<String> {
    oracle.keys().cloned().collect()
}

fn merged(a: &Oracle, b: &Oracle) -> Oracle {
    let mut out = a.clone();
    for (series, days) in b {
        out.entry(series.clone()).or_default().extend(days.clone());
    }
    out
}

/// Puts `file` on `stream` as `meterflow ingest --stream` does (one call in flight: moto may
/// give concurrent puts one sequence number).
fn put(aws: &Aws, stream: &str, file: &std::path::Path) -> u64 {
    let url = format!("kinesis://{stream}");
    let summary = aws.ingest(
        "unused.db",
        &[
            file.to_str().unwrap(),
            "--stream",
            &url,
            "--puts-in-flight",
            "1",
        ],
    );
    summary["put"]["records"].as_u64().unwrap()
}

fn replay(aws: &Aws, store: &str, args: &[&str]) -> Value {
    aws.json(store, "replay", args)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Epoch milliseconds as RFC 3339 (UTC).
fn rfc3339(ms: i64) -> String {
    let day = Day::from_days(ms.div_euclid(86_400_000) as i32).unwrap();
    let t = ms.rem_euclid(86_400_000);
    format!(
        "{day}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3_600_000,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    )
}

#[test]
fn a_stream_replayed_into_an_empty_store_gives_the_oracle_twice_the_same() {
    let aws = Aws::start();
    aws.create_stream("s", 4);
    let (file, oracle) = aws.generate("w.csv", "wide", "2019-01-01", 5);
    let put = put(&aws, "s", &file);

    let first = replay(
        &aws,
        "r.db",
        &["--stream", "s", "--all-shards", "--trim-horizon"],
    );
    assert_eq!(u(&first["records"]), put);
    assert_eq!(u(&first["quarantined"]), 0);
    assert_eq!(u(&first["fragments"]), 12 * 5);
    let shards = first["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4);
    for s in shards {
        assert_eq!(s["ended"], "tip", "{s}");
        assert_eq!(u(&s["records"]) > 0, s["last_sequence_number"].is_string());
    }
    let after_first = stored(&aws, "r.db", all_series(&oracle));
    assert_eq!(after_first, oracle);
    let json_first: Vec<String> = all_series(&oracle)
        .iter()
        .map(|s| aws.query("r.db", s).1)
        .collect();

    let second = replay(
        &aws,
        "r.db",
        &["--stream", "kinesis://s", "--all-shards", "--trim-horizon"],
    );
    assert_eq!(second["records"], first["records"]);
    let json_second: Vec<String> = all_series(&oracle)
        .iter()
        .map(|s| aws.query("r.db", s).1)
        .collect();
    assert_eq!(json_first, json_second, "a second replay changes nothing");

    let dry = replay(
        &aws,
        "dry.db",
        &[
            "--stream",
            "s",
            "--all-shards",
            "--trim-horizon",
            "--dry-run",
        ],
    );
    assert_eq!(
        (dry["records"].clone(), dry["dry_run"].clone()),
        (first["records"].clone(), Value::Bool(true))
    );
    assert!(!aws.path("dry.db").exists(), "--dry-run makes no store");
}

#[test]
fn from_a_middle_sequence_number_or_time_only_the_later_records_are_applied() {
    let aws = Aws::start();
    aws.create_stream("s", 2);
    let (jan, jan_oracle) = aws.generate("jan.csv", "wide", "2019-01-01", 3);
    let (feb, feb_oracle) = aws.generate("feb.csv", "wide", "2019-02-01", 3);
    put(&aws, "s", &jan);
    put(&aws, "s", &feb);
    let everything = merged(&jan_oracle, &feb_oracle);
    let series = all_series(&everything);

    let on_stream = records(&aws, "s");
    let is_feb = |r: &ShardRecord| fragments(r).iter().all(|f| f.day.ymd().1 == 2);
    let (feb_records, jan_records): (Vec<&ShardRecord>, Vec<&ShardRecord>) =
        on_stream.iter().partition(|r| is_feb(r));
    assert!(jan_records
        .iter()
        .all(|r| fragments(r).iter().all(|f| f.day.ymd().1 == 1)));
    let first_feb = feb_records.iter().map(|r| r.arrival_ms).min().unwrap();
    let last_jan = jan_records.iter().map(|r| r.arrival_ms).max().unwrap();
    assert!(
        last_jan < first_feb,
        "the second ingest ran after the first"
    );

    // From a time: February only; up to a time: January only.
    let from_time = replay(
        &aws,
        "from-time.db",
        &[
            "--stream",
            "s",
            "--all-shards",
            "--from-time",
            &rfc3339(first_feb),
        ],
    );
    assert_eq!(u(&from_time["records"]), feb_records.len() as u64);
    assert_eq!(stored(&aws, "from-time.db", series.clone()), feb_oracle);
    let to_time = replay(
        &aws,
        "to-time.db",
        &[
            "--stream",
            "s",
            "--all-shards",
            "--trim-horizon",
            "--to-time",
            &rfc3339(last_jan),
        ],
    );
    assert_eq!(u(&to_time["records"]), jan_records.len() as u64);
    assert!(to_time["shards"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ended"] == "to_time"));
    assert_eq!(stored(&aws, "to-time.db", series.clone()), jan_oracle);

    // From a sequence number of one shard: that shard's February records only.
    let shard = &feb_records[0].shard;
    let of_shard: Vec<&&ShardRecord> = feb_records.iter().filter(|r| &r.shard == shard).collect();
    let seq = &of_shard[0].sequence_number;
    let summary = replay(
        &aws,
        "from-seq.db",
        &["--stream", "s", "--shard", shard, "--from-sequence", seq],
    );
    assert_eq!(u(&summary["records"]), of_shard.len() as u64);
    let want = totals_of(
        &of_shard
            .iter()
            .flat_map(|r| fragments(r))
            .collect::<Vec<_>>(),
    );
    assert!(!want.is_empty());
    assert_eq!(stored(&aws, "from-seq.db", series), want);

    // --from-sequence names a position in one shard.
    aws.fails(
        &[
            "replay",
            "--stream",
            "s",
            "--all-shards",
            "--from-sequence",
            seq,
        ],
        2,
        &["--from-sequence"],
    );
}

#[test]
fn a_corrupt_record_is_quarantined_and_the_rest_applied() {
    let aws = Aws::start();
    aws.create_stream("s", 2);
    let (file, oracle) = aws.generate("w.csv", "wide", "2019-03-01", 2);
    put(&aws, "s", &file);
    let garbage = aws
        .kinesis
        .put_record()
        .stream_name("s")
        .partition_key("not-ours")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            b"MF? not an envelope".to_vec(),
        ));
    aws.rt.block_on(garbage.send()).unwrap();

    let out = aws.meterflow(
        "r.db",
        &["replay", "--stream", "s", "--all-shards", "--trim-horizon"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 quarantined"), "{stderr}");
    assert!(stderr.contains("can never be decoded"), "{stderr}");
    assert_eq!(stored(&aws, "r.db", all_series(&oracle)), oracle);
}

#[test]
fn an_on_failure_record_replays_exactly_its_range() {
    let aws = Aws::start();
    aws.create_stream("s", 1);
    let (file, oracle) = aws.generate("w.csv", "wide", "2019-04-01", 4);
    put(&aws, "s", &file);
    let on_stream = records(&aws, "s");
    assert!(on_stream.len() >= 4, "{} records", on_stream.len());
    let range = &on_stream[1..3];

    // The record the event source mapping's on-failure destination receives, for this range.
    let mut record: Value =
        serde_json::from_str(include_str!("fixtures/kinesis_on_failure_record.json")).unwrap();
    let info = &mut record["KinesisBatchInfo"];
    info["shardId"] = range[0].shard.clone().into();
    info["startSequenceNumber"] = range[0].sequence_number.clone().into();
    info["endSequenceNumber"] = range[1].sequence_number.clone().into();
    info["batchSize"] = 2.into();
    let failure = aws.path("failure.json");
    std::fs::write(&failure, record.to_string()).unwrap();

    let summary = replay(
        &aws,
        "r.db",
        &["--stream", "s", "--from-failure", failure.to_str().unwrap()],
    );
    let fragments: Vec<Fragment> = range.iter().flat_map(fragments).collect();
    assert_eq!(u(&summary["records"]), 2);
    assert_eq!(u(&summary["fragments"]), fragments.len() as u64);
    assert_eq!(
        summary["shards"][0]["last_sequence_number"],
        range[1].sequence_number.as_str()
    );
    assert_eq!(summary["shards"][0]["ended"], "end_sequence");
    let want = totals_of(&fragments);
    assert!(
        want.len() < oracle.len(),
        "the range holds some meters only"
    );
    assert_eq!(stored(&aws, "r.db", all_series(&oracle)), want);

    std::fs::write(&failure, "{\"requestContext\": {}}").unwrap();
    aws.fails(
        &[
            "replay",
            "--stream",
            "s",
            "--from-failure",
            failure.to_str().unwrap(),
        ],
        1,
        &["not an on-failure record", "KinesisBatchInfo"],
    );
}

#[test]
fn a_resharded_stream_still_replays_exactly() {
    let aws = Aws::start();
    aws.create_stream("s", 4);
    let (before, before_oracle) = aws.generate("before.csv", "wide", "2019-05-01", 3);
    let (after, after_oracle) = aws.generate("after.csv", "long", "2019-05-10", 3);
    let mut put_records = put(&aws, "s", &before);

    // Split shard 1 at the middle of its hash keys; the new data lands on its children.
    let (_, ranges) = aws
        .rt
        .block_on(read_stream(&aws.kinesis, "s"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (first, last) = ranges["shardId-000000000001"];
    let split = aws
        .kinesis
        .split_shard()
        .stream_name("s")
        .shard_to_split("shardId-000000000001")
        .new_starting_hash_key((first + (last - first) / 2).to_string());
    aws.rt.block_on(split.send()).unwrap();
    put_records += put(&aws, "s", &after);

    let summary = replay(
        &aws,
        "r.db",
        &["--stream", "s", "--all-shards", "--trim-horizon"],
    );
    let shards: Vec<&str> = summary["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shard"].as_str().unwrap())
        .collect();
    assert_eq!(
        shards.len(),
        6,
        "the closed parent and its two children: {shards:?}"
    );
    let parent = shards
        .iter()
        .position(|s| *s == "shardId-000000000001")
        .unwrap();
    for child in ["shardId-000000000004", "shardId-000000000005"] {
        let at = shards.iter().position(|s| *s == child).unwrap();
        assert!(
            parent < at,
            "{child} replayed before its parent: {shards:?}"
        );
    }
    assert_eq!(u(&summary["records"]), put_records);
    let everything = merged(&before_oracle, &after_oracle);
    assert_eq!(stored(&aws, "r.db", all_series(&everything)), everything);
}

#[test]
fn objects_reprocessed_from_s3_give_the_oracle_and_land_once() {
    let aws = Aws::start();
    let (wide, wide_oracle) = aws.generate("a.csv", "wide", "2019-06-01", 4);
    let (long, long_oracle) = aws.generate("b.csv", "long", "2019-07-01", 3);
    let oracle = merged(&wide_oracle, &long_oracle);
    aws.upload("in/a.csv", &wide);
    aws.upload("in/b.csv", &long);
    // What the splitter Lambda leaves beside its objects is never data.
    aws.upload("in/a.csv.rejects.csv", &wide);
    aws.upload("in/a.csv.part-00002.handover.json", &wide);

    let first = aws.json("r.db", "reprocess", &["s3://meter-drop/in/"]);
    assert_eq!(u(&first["files"]), 2);
    let skipped: BTreeMap<String, String> = first["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        skipped[&format!("s3://{BUCKET}/in/a.csv.rejects.csv")],
        "report"
    );
    assert_eq!(
        skipped[&format!("s3://{BUCKET}/in/a.csv.part-00002.handover.json")],
        "extension"
    );
    assert_eq!(stored(&aws, "r.db", all_series(&oracle)), oracle);
    let json = |store: &str| -> BTreeSet<String> {
        all_series(&oracle)
            .iter()
            .map(|s| aws.query(store, s).1)
            .collect()
    };
    let once = json("r.db");
    aws.json("r.db", "reprocess", &["s3://meter-drop/in/"]);
    assert_eq!(json("r.db"), once, "a second reprocess changes nothing");

    // To the stream, as the splitter Lambda would put it, then through the aggregator.
    aws.create_stream("s", 2);
    let to_stream = aws.json(
        "unused.db",
        "reprocess",
        &[
            "s3://meter-drop/in/",
            "--stream",
            "kinesis://s",
            "--puts-in-flight",
            "1",
        ],
    );
    assert!(u(&to_stream["put"]["records"]) > 0);
    replay(
        &aws,
        "via-stream.db",
        &["--stream", "s", "--all-shards", "--trim-horizon"],
    );
    assert_eq!(json("via-stream.db"), once);

    aws.fails(
        &["reprocess", wide.to_str().unwrap()],
        1,
        &["not an S3 prefix", "meterflow ingest"],
    );
}

#[test]
fn credentials_and_region_come_from_a_profile_as_the_aws_cli_finds_them() {
    let aws = Aws::start();
    aws.create_stream("s", 1);
    let (file, oracle) = aws.generate("w.csv", "wide", "2019-08-01", 2);
    put(&aws, "s", &file);
    // A profile whose keys come from a credential process: the marker file proves the chain
    // ran it (moto takes any keys, so a request alone proves nothing).
    let marker = aws.path("process-ran");
    let script = aws.path("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKIDPROFILE\", \"SecretAccessKey\": \"secret\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    std::fs::write(
        aws.path("aws-config"),
        format!(
            "[profile operator]\nregion = us-east-1\nendpoint_url = {}\ncredential_process = {}\n",
            aws.moto.endpoint(),
            script.display()
        ),
    )
    .unwrap();
    let out = aws
        .bare_command("r.db")
        .env("AWS_PROFILE", "operator")
        .args(["replay", "--stream", "s", "--all-shards", "--trim-horizon"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        marker.exists(),
        "the profile's credential_process was not run"
    );
    assert_eq!(stored(&aws, "r.db", all_series(&oracle)), oracle);

    // A profile that does not exist fails before any work, naming it.
    let out = aws
        .bare_command("x.db")
        .env("AWS_PROFILE", "nobody")
        .env("AWS_REGION", "us-east-1")
        .args(["replay", "--stream", "s", "--all-shards", "--trim-horizon"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no AWS credentials (AWS_PROFILE=nobody)"),
        "{stderr}"
    );
    assert!(stderr.contains("aws sso login"), "{stderr}");
}
