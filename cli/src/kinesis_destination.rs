//! `--stream kinesis://NAME`: envelope records go on a Kinesis stream with PutRecords, as the
//! splitter Lambda puts them, for the aggregator Lambda to write to the store.

use std::sync::Arc;

use anyhow::Result;
use meterflow_aws::client::{http_client, kinesis_client};
use meterflow_aws::kinesis::{KinesisStream, PutReport, Shipper};
use meterflow_core::envelope::StreamRecord;
use meterflow_splitter::PackSettings;
use serde::Serialize;
use tokio::sync::mpsc;

/// The splitter Lambda's packing: full records over many buckets, so they spread over the
/// shards, and a file split here gives the very records the Lambda would put.
pub fn packing() -> PackSettings {
    PackSettings::default()
}

/// A stream to put records on.
pub struct KinesisDestination {
    url: String,
    shipper: Shipper<KinesisStream>,
}

/// What was put, for the summary (the JSON `put` object: the stream and the report's fields).
#[derive(Debug, Default, Serialize)]
pub struct PutSummary {
    pub stream: String,
    #[serde(flatten)]
    pub report: PutReport,
}

/// The stream an argument names: `kinesis://NAME` or `NAME` (Kinesis' rules: 1 to 128
/// letters, digits, `_`, `-` or `.`).
pub fn stream_name(arg: &str) -> Result<&str> {
    let name = arg.strip_prefix("kinesis://").unwrap_or(arg);
    let valid = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    anyhow::ensure!(
        valid,
        "`{arg}` is not a stream: expected kinesis://NAME or NAME (1 to 128 letters, digits, _, - or .)"
    );
    Ok(name)
}

impl KinesisDestination {
    /// Checks that the stream `arg` names exists (so a typo fails before any parsing) and
    /// readies a shipper with `puts_in_flight` PutRecords calls at once.
    pub async fn open(arg: &str, puts_in_flight: usize) -> Result<KinesisDestination> {
        let name = stream_name(arg)?;
        let url = &format!("kinesis://{name}");
        let settings = crate::aws_env::settings().await?;
        let stream = KinesisStream {
            client: kinesis_client(&settings, http_client()),
            stream_name: name.to_owned(),
        };
        if let Err(e) = stream.open_shards().await {
            let place = crate::aws_env::place(&settings);
            if e.code == "ResourceNotFoundException" {
                anyhow::bail!("{url}: no such stream ({place}): create it, or check the name, AWS_REGION and AWS_ENDPOINT_URL");
            }
            anyhow::bail!("{url}: cannot describe the stream ({place}): {e}");
        }
        let mut shipper = Shipper::new(Arc::new(stream), packing().buckets);
        shipper.max_in_flight = puts_in_flight.max(1);
        Ok(KinesisDestination {
            url: url.clone(),
            shipper,
        })
    }

    /// Puts every record received until the channel closes; on failure the channel is
    /// dropped, which stops the parsers.
    pub async fn ship(&self, rx: mpsc::Receiver<StreamRecord>) -> Result<PutSummary> {
        let report = self
            .shipper
            .ship(rx)
            .await
            .map_err(|e| anyhow::anyhow!("putting records on {} failed: {e}", self.url))?;
        Ok(PutSummary {
            stream: self.url.clone(),
            report,
        })
    }
}
