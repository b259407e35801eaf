//! A moto server on loopback and the built binary pointed at it as a user would point it
//! (`AWS_ENDPOINT_URL`, keys in the environment, nothing read from the machine's own AWS
//! configuration): what the S3, Kinesis and replay tests share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use meterflow_aws::client::{http_client, kinesis_client, s3_client};
use meterflow_testkit::moto::Moto;
use serde_json::Value;

pub const BUCKET: &str = "meter-drop";

/// A moto server, SDK clients on it, and a scratch folder.
pub struct Aws {
    pub moto: Moto,
    pub rt: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub dir: tempfile::TempDir,
}

impl Aws {
    pub fn start() -> Aws {
        let moto = Moto::start().unwrap_or_else(|e| panic!("{e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let settings = moto.client_settings();
        let http = http_client();
        let s3 = s3_client(&settings, http.clone());
        let kinesis = kinesis_client(&settings, http);
        rt.block_on(s3.create_bucket().bucket(BUCKET).send())
            .unwrap();
        Aws {
            moto,
            rt,
            s3,
            kinesis,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with no AWS settings at all: none from the environment, no shared config
    /// or credentials file (those of the scratch folder, absent unless a test writes them),
    /// no instance metadata (it would wait for 169.254.169.254 to time out).
    pub fn bare_command(&self, store: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_meterflow"));
        for var in [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            c.env_remove(var);
        }
        c.env("AWS_CONFIG_FILE", self.path("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path("aws-credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .arg("--store")
            .arg(self.path(store));
        c
    }

    /// The binary with the AWS variables a user would set for an emulator.
    pub fn command(&self, store: &str) -> Command {
        let mut c = self.bare_command(store);
        c.env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        c
    }

    pub fn meterflow(&self, store: &str, args: &[&str]) -> Output {
        self.command(store)
            .args(args)
            .output()
            .expect("run meterflow")
    }

    pub fn ingest(&self, store: &str, args: &[&str]) -> Value {
        self.json(store, "ingest", args)
    }

    /// `meterflow COMMAND --json ARGS`, which must succeed; its summary.
    pub fn json(&self, store: &str, command: &str, args: &[&str]) -> Value {
        let mut all = vec![command, "--json"];
        all.extend_from_slice(args);
        let out = self.meterflow(store, &all);
        assert!(
            out.status.success(),
            "{command} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("summary JSON")
    }

    pub fn create_stream(&self, name: &str, shards: i32) {
        let create = self
            .kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(shards);
        self.rt.block_on(create.send()).unwrap();
    }

    pub fn upload(&self, key: &str, file: &Path) {
        let body = std::fs::read(file).unwrap();
        self.rt
            .block_on(meterflow_testkit::moto::upload(&self.s3, BUCKET, key, body))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `meterflow generate` into `name`; returns its file and the oracle's
    /// `series → [(date, total)]`.
    pub fn generate(&self, name: &str, format: &str, start: &str, days: u32) -> (PathBuf, Oracle) {
        let (data, expected) = (self.path(name), self.path(&format!("{name}.expected")));
        super::generate(format, 12, days, start, &data, &expected);
        let mut oracle = Oracle::new();
        for line in std::fs::read_to_string(&expected).unwrap().lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            oracle
                .entry(f[0].to_owned())
                .or_default()
                .push((f[1].to_owned(), f[2].to_owned()));
        }
        (data, oracle)
    }

    /// `(date, total as written)` of a meter in a store, and the whole JSON answer.
    pub fn query(&self, store: &str, meter: &str) -> (Vec<(String, String)>, String) {
        let out = self.meterflow(
            store,
            &["query", meter, "--from", "2019-01-01", "--to", "2019-12-31"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let days = v["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["date"].as_str().unwrap().to_owned(),
                    d["total"].to_string(),
                )
            })
            .collect();
        (days, String::from_utf8(out.stdout).unwrap())
    }

    pub fn fails(&self, args: &[&str], code: i32, needles: &[&str]) {
        let out = self.meterflow("x.db", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: no {n:?} in {stderr}");
        }
    }
}

pub type Oracle = BTreeMap<String, Vec<(String, String)>>;
