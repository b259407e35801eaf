//! The AWS adapters against a real `moto_server` with the real SDK clients: S3 key listing,
//! the object sink, Kinesis stream checks, SSM parameters. (The S3 → Kinesis pipeline is
//! tested in the splitter crate.)

use bytes::Bytes;
use meterflow_aws::client::http_client;
use meterflow_aws::kinesis::KinesisStream;
use meterflow_aws::s3::{S3Source, SourceError};
use meterflow_aws::sink::{ObjectSink, S3Sink};
use meterflow_testkit::moto::{Env, Moto};

const BUCKET: &str = "meter-uploads";
const STREAM: &str = "meterflow-fragments";
const SHARDS: i32 = 4;

async fn env() -> Env {
    Env::start(BUCKET, STREAM, SHARDS).await
}

async fn upload(env: &Env, key: &str, body: Vec<u8>) {
    env.upload(BUCKET, key, body).await;
}

fn kinesis_stream(env: &Env) -> KinesisStream {
    env.stream()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_follows_every_page_and_missing_buckets_and_streams_are_named() {
    let env = env().await;
    for key in [
        "in/b.csv",
        "in/a.csv",
        "in/sub/c.csv.gz",
        "in/d.csv",
        "in/e.csv",
        "other/x.csv",
    ] {
        upload(&env, key, b"x".to_vec()).await;
    }
    let source = S3Source {
        client: env.s3.clone(),
    };
    let listed = source.list_in_pages(BUCKET, "in/", 2).await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "in/a.csv",
            "in/b.csv",
            "in/d.csv",
            "in/e.csv",
            "in/sub/c.csv.gz"
        ]
    );
    assert!(listed.iter().all(|o| o.size == 1), "sizes: {listed:?}");
    assert_eq!(source.list_keys(BUCKET, "").await.unwrap().len(), 6);
    assert!(source
        .list_keys(BUCKET, "nothing/")
        .await
        .unwrap()
        .is_empty());
    let e = source.list_keys("no-such-bucket", "in/").await.unwrap_err();
    assert!(
        matches!(&e, SourceError::NoBucket { bucket } if bucket == "no-such-bucket"),
        "{e}"
    );
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("AWS_ENDPOINT_URL"), "{e}");

    assert_eq!(
        kinesis_stream(&env).open_shards().await.unwrap(),
        SHARDS as u32
    );
    let missing = KinesisStream {
        client: env.kinesis.clone(),
        stream_name: "no-such-stream".into(),
    };
    let e = missing.open_shards().await.unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException", "{e}");
    assert!(!e.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_and_overwrites_objects_and_a_missing_bucket_is_permanent() {
    let env = env().await;
    let sink = S3Sink {
        client: env.s3.clone(),
    };
    let key = "reports/meter data.csv.rejects.csv";
    for body in ["first", "second"] {
        sink.put_object(BUCKET, key, Bytes::from(body), "text/csv")
            .await
            .unwrap();
    }
    let got = env
        .s3
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/csv"));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"second", "a write replaces, never appends");
    let listed = env
        .s3
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(1));

    let e = sink
        .put_object("no-such-bucket", "k", Bytes::from("x"), "text/csv")
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("s3://no-such-bucket/k"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_secure_strings_are_read_decrypted_and_a_missing_one_is_named() {
    use meterflow_aws::secrets::{SecretSource, SsmParameters};
    let moto = tokio::task::spawn_blocking(Moto::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let client = meterflow_aws::client::ssm_client(&moto.client_settings(), http_client());
    client
        .put_parameter()
        .name("/meterflow/keyspaces/password")
        .value("s3cr3t, with a comma")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let ssm = SsmParameters { client };
    assert_eq!(
        ssm.secure_string("/meterflow/keyspaces/password")
            .await
            .unwrap(),
        "s3cr3t, with a comma"
    );
    let e = ssm
        .secure_string("/meterflow/keyspaces/nope")
        .await
        .unwrap_err();
    assert!(!e.retryable);
    let text = e.to_string();
    assert!(
        text.contains("/meterflow/keyspaces/nope") && text.contains("no such parameter"),
        "{text}"
    );
}
