//! What the aggregator's on-failure destination receives when the event source mapping gives
//! up on a batch: an invocation record whose `KinesisBatchInfo` names the shard and the first
//! and last sequence numbers of the batch (the records themselves stay on the stream). `replay
//! --from-failure FILE` reads such records from a file: one, a JSON array of them, JSON lines,
//! or the output of `aws sqs receive-message` (whose messages' bodies hold them).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// One failed batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedBatch {
    pub shard_id: String,
    pub start_sequence_number: String,
    /// Absent in some records of one-record batches: then `batch_size` records are replayed.
    #[serde(default)]
    pub end_sequence_number: Option<String>,
    #[serde(default)]
    pub batch_size: Option<u64>,
    #[serde(default)]
    pub stream_arn: Option<String>,
}

#[derive(Deserialize)]
struct InvocationRecord {
    #[serde(rename = "KinesisBatchInfo")]
    kinesis_batch_info: FailedBatch,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsOutput {
    messages: Vec<SqsMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsMessage {
    body: String,
}

/// The failed batches the file at `path` names, in order.
pub fn read(path: &Path) -> Result<Vec<FailedBatch>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| {
        format!(
            "{}: not an on-failure record of a Kinesis event source mapping (a JSON object with KinesisBatchInfo.shardId and .startSequenceNumber), nor an array, JSON lines or `aws sqs receive-message` output of them",
            path.display()
        )
    })
}

/// Parses the forms [`read`] accepts.
pub fn parse(text: &str) -> Result<Vec<FailedBatch>> {
    let whole: Result<serde_json::Value, _> = serde_json::from_str(text);
    let values = match whole {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(v) => vec![v],
        // Not one JSON document: JSON lines.
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).with_context(|| format!("line {} is not JSON", i + 1))
            })
            .collect::<Result<_>>()?,
    };
    let mut batches = Vec::new();
    for v in values {
        if v.get("Messages").is_some() {
            let sqs: SqsOutput = serde_json::from_value(v)?;
            for m in sqs.messages {
                batches.extend(parse(&m.body)?);
            }
        } else {
            let record: InvocationRecord = serde_json::from_value(v)?;
            batches.push(record.kinesis_batch_info);
        }
    }
    anyhow::ensure!(!batches.is_empty(), "no failed batch in it");
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The invocation record of the AWS documentation ("Retain discarded batch records for a
    /// Kinesis Data Streams event source").
    const RECORD: &str = include_str!("../tests/fixtures/kinesis_on_failure_record.json");

    #[test]
    fn the_documented_record_and_its_wrappings_read_alike() {
        let want = FailedBatch {
            shard_id: "shardId-000000000001".into(),
            start_sequence_number: "49601189658422359378836298521827638475320189012309704722"
                .into(),
            end_sequence_number: Some(
                "49601189658422359378836298522902373528957594348623495186".into(),
            ),
            batch_size: Some(500),
            stream_arn: Some("arn:aws:kinesis:us-east-2:123456789012:stream/mystream".into()),
        };
        assert_eq!(parse(RECORD).unwrap(), std::slice::from_ref(&want));
        let compact =
            serde_json::to_string(&serde_json::from_str::<serde_json::Value>(RECORD).unwrap())
                .unwrap();
        let lines = format!("{compact}\n\n{compact}\n");
        assert_eq!(parse(&lines).unwrap(), [want.clone(), want.clone()]);
        assert_eq!(
            parse(&format!("[{compact}]")).unwrap(),
            std::slice::from_ref(&want)
        );
        let sqs = serde_json::json!({"Messages": [{"MessageId": "m1", "Body": compact}]});
        assert_eq!(parse(&sqs.to_string()).unwrap(), [want]);
        assert!(parse("{}").is_err());
        assert!(parse("not json\n").is_err());
    }
}
