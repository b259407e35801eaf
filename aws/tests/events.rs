//! S3 event fixtures, written by hand from the documented notification shape.

use meterflow_aws::event::{created_objects, ObjectRef};
use meterflow_testkit::events::fixture;

#[test]
fn a_put_event_names_the_decoded_key_and_version() {
    let objects = created_objects(&fixture("s3_put_unicode_key.json")).unwrap();
    assert_eq!(
        objects,
        [ObjectRef {
            bucket: "meter-uploads".into(),
            key: "incoming/meter data 2019+é.csv".into(),
            version_id: Some("096fKKXTRTtl3on89fVO.nfljtsv6qko".into()),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            size: Some(1024),
            sequencer: Some("0055AED6DCD90281E5".into()),
        }]
    );
}

#[test]
fn the_test_event_is_ignored() {
    assert!(created_objects(&fixture("s3_test_event.json"))
        .unwrap()
        .is_empty());
}

#[test]
fn only_created_objects_count_and_moto_style_slashes_decode() {
    let objects = created_objects(&fixture("s3_mixed_records.json")).unwrap();
    let keys: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| (o.bucket.as_str(), o.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("meter-uploads", "nem12/VABD000163.zip"),
            ("other-bucket", "a b+c.csv.gz")
        ]
    );
    assert_eq!(
        objects[0].etag.as_deref(),
        Some("9b2cf535f27731c974343645a3985328-2"),
        "quotes stripped"
    );
    assert_eq!(objects[1].version_id, None, "an empty version id is none");
}

#[test]
fn malformed_events_are_errors() {
    assert!(created_objects(b"not json").is_err());
    let bad_key = br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"50%"}}}]}"#;
    let e = created_objects(bad_key).unwrap_err();
    assert!(e.to_string().contains("\"50%\""), "{e}");
}
