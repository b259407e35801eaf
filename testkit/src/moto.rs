//! A `moto_server` (PyPI `moto[server]` 5.x) on a free loopback port, for tests.
//!
//! Found through `MOTO_SERVER` (a path), else the workspace's `.venv-moto` that
//! `scripts/moto-venv` creates (the one CI installs), else `moto_server` on `PATH`. Readiness is polled (a `POST
//! /moto-api/reset` that answers 200), never assumed after a fixed sleep. The server runs in
//! its own process group, killed with it on drop, so no Python process outlives a test. Its
//! log (it prints every request) goes to a file in the temp directory, quoted in errors.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::DisplayErrorContext;
use meterflow_aws::shards::{KinesisShards, ReadError, ShardReader, StartingPosition};

use meterflow_aws::client::ClientSettings;

/// How long a server may take to answer its first request (Python imports are slow on a busy
/// 2-core machine).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a server could not be started or reset.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("moto_server not found: set MOTO_SERVER, put it on PATH, or run scripts/moto-venv")]
    NotFound,
    #[error("starting {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "moto_server did not become ready within {STARTUP_TIMEOUT:?}; its log ({log}):\n{tail}"
    )]
    NotReady { log: String, tail: String },
    #[error("moto reset: {0}")]
    Reset(String),
}

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// The `moto_server` executable to run.
pub fn find_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    // Beside this crate in the checkout being built, wherever that is.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-moto/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    })
}

impl Moto {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Result<Moto, MotoError> {
        let path = find_server().ok_or(MotoError::NotFound)?;
        // The port is free when chosen; another process may take it before moto binds it,
        // so a server that exits at once is started again on another port.
        let mut last = None;
        for _ in 0..3 {
            match Moto::try_start(&path) {
                Ok(m) => return Ok(m),
                Err(e @ MotoError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(MotoError::NotFound))
    }

    fn try_start(path: &Path) -> Result<Moto, MotoError> {
        let port = free_port().map_err(|source| MotoError::Spawn {
            path: path.to_owned(),
            source,
        })?;
        let log = std::env::temp_dir().join(format!("moto-{port}-{}.log", std::process::id()));
        let spawn_err = |source| MotoError::Spawn {
            path: path.to_owned(),
            source,
        };
        let out = std::fs::File::create(&log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let child = Command::new(path)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if moto.reset().is_ok() {
                return Ok(moto);
            }
            let exited = matches!(moto.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let tail = std::fs::read_to_string(&moto.log).unwrap_or_default();
                let tail = tail.lines().rev().take(20).collect::<Vec<_>>();
                let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                return Err(MotoError::NotReady {
                    log: moto.log.display().to_string(),
                    tail,
                });
            }
            // Poll interval, not a guess at readiness.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Client settings for this server: dummy credentials, `us-east-1`.
    pub fn client_settings(&self) -> ClientSettings {
        ClientSettings::emulator(self.endpoint())
    }

    /// Wipes every resource (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<(), MotoError> {
        let fail = |e: std::io::Error| MotoError::Reset(e.to_string());
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(fail)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(fail)?;
        write!(
            s,
            "POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .map_err(fail)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).map_err(fail)?;
        let status = answer.lines().next().unwrap_or_default();
        if status.split(' ').nth(1) == Some("200") {
            Ok(())
        } else {
            Err(MotoError::Reset(format!("answered {status:?}")))
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The whole group: a wrapper script (a pyenv shim, a venv launcher) may have children.
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// One record read back from a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRecord {
    pub shard: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// When the stream received it, epoch milliseconds.
    pub arrival_ms: i64,
}

/// Creates a bucket and a stream of `shards` shards: the tests' usual starting point.
pub async fn create_bucket_and_stream(
    s3: &aws_sdk_s3::Client,
    kinesis: &aws_sdk_kinesis::Client,
    bucket: &str,
    stream: &str,
    shards: i32,
) -> Result<(), String> {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| format!("creating s3://{bucket}: {}", DisplayErrorContext(&e)))?;
    kinesis
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("creating kinesis://{stream}: {}", DisplayErrorContext(&e)))
}

/// Puts `body` at `s3://bucket/key`: the tests' upload, as an S3 client would do it.
pub async fn upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("uploading s3://{bucket}/{key}: {}", DisplayErrorContext(&e)))
}

/// Every record of every shard of `stream` (closed ones too), from TRIM_HORIZON, and each
/// shard's hash key range: what tests check a put against (which shard holds which bucket, and
/// the data). Sequence numbers are not compared across shards (moto repeats them). Read with
/// the replay's own adapter ([`KinesisShards`]).
pub async fn read_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<(Vec<ShardRecord>, BTreeMap<String, (u128, u128)>), String> {
    let fail = |e: &dyn std::fmt::Display| format!("reading kinesis://{stream} back: {e}");
    let reader = KinesisShards {
        client: client.clone(),
        stream_name: stream.to_owned(),
    };
    let mut ranges = BTreeMap::new();
    for s in reader.list_shards().await.map_err(|e| fail(&e))? {
        let keys = s
            .hash_keys
            .ok_or_else(|| fail(&"a shard without hash keys"))?;
        ranges.insert(s.id, keys);
    }
    let mut records = Vec::new();
    for shard in ranges.keys() {
        records.extend(read_shard(&reader, shard).await.map_err(|e| fail(&e))?);
    }
    Ok((records, ranges))
}

/// Every record of `shard`, from TRIM_HORIZON to the first empty page: an open shard always
/// has a next iterator, so an empty page is how the reader knows it has seen everything.
pub async fn read_shard(
    reader: &impl ShardReader,
    shard: &str,
) -> Result<Vec<ShardRecord>, ReadError> {
    let mut iterator = Some(
        reader
            .iterator(shard, &StartingPosition::TrimHorizon)
            .await?,
    );
    let mut out = Vec::new();
    while let Some(it) = iterator {
        let page = reader.records(&it, 1000).await?;
        iterator = page.next_iterator.filter(|_| !page.records.is_empty());
        out.extend(page.records.into_iter().map(|r| ShardRecord {
            shard: shard.to_owned(),
            sequence_number: r.sequence_number,
            partition_key: r.partition_key,
            data: r.data,
            arrival_ms: r.arrival_ms,
        }));
    }
    Ok(out)
}

/// A moto server with one bucket and one stream, and SDK clients pointed at it: what the S3
/// and Kinesis tests of every crate start from.
pub struct Env {
    pub moto: Moto,
    pub s3: aws_sdk_s3::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub bucket: String,
    pub stream: String,
}

impl Env {
    /// Starts a server (off the async runtime: it blocks until moto answers) and creates
    /// `bucket` and a stream `stream` of `shards` shards. Panics with moto's log on failure.
    pub async fn start(bucket: &str, stream: &str, shards: i32) -> Env {
        let moto = tokio::task::spawn_blocking(Moto::start)
            .await
            .expect("the moto starter panicked")
            .unwrap_or_else(|e| panic!("{e}"));
        let http = meterflow_aws::client::http_client();
        let settings = moto.client_settings();
        let env = Env {
            s3: meterflow_aws::client::s3_client(&settings, http.clone()),
            kinesis: meterflow_aws::client::kinesis_client(&settings, http),
            moto,
            bucket: bucket.to_owned(),
            stream: stream.to_owned(),
        };
        create_bucket_and_stream(&env.s3, &env.kinesis, bucket, stream, shards)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        env
    }

    /// The real adapters on this server: the S3 source and sink, the stream.
    pub fn source(&self) -> meterflow_aws::s3::S3Source {
        meterflow_aws::s3::S3Source {
            client: self.s3.clone(),
        }
    }

    pub fn sink(&self) -> meterflow_aws::sink::S3Sink {
        meterflow_aws::sink::S3Sink {
            client: self.s3.clone(),
        }
    }

    pub fn stream(&self) -> meterflow_aws::kinesis::KinesisStream {
        meterflow_aws::kinesis::KinesisStream {
            client: self.kinesis.clone(),
            stream_name: self.stream.clone(),
        }
    }

    /// Puts `body` at `bucket`/`key`.
    pub async fn upload(&self, bucket: &str, key: &str, body: Vec<u8>) {
        upload(&self.s3, bucket, key, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The object at `bucket`/`key`, as text.
    pub async fn download(&self, bucket: &str, key: &str) -> String {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e}"));
        let body = out.body.collect().await.expect("a body").into_bytes();
        String::from_utf8(body.to_vec()).expect("UTF-8")
    }

    /// Every record on the stream, and each shard's hash key range.
    pub async fn read_back(&self) -> (Vec<ShardRecord>, BTreeMap<String, (u128, u128)>) {
        read_stream(&self.kinesis, &self.stream)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
