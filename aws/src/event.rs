//! S3 event notifications to object references.
//!
//! S3 writes object keys in events URL-encoded the way HTML forms are (`+` for a space, `%XX`
//! for other bytes, UTF-8), and moto also encodes `/` as `%2F`; the key must be decoded before
//! it is used in a GET. When a notification is configured, S3 first sends an `s3:TestEvent`
//! that names no object: it is ignored, not an error. Only `ObjectCreated:*` records name an
//! input to split; removals and other records are skipped.

use serde::Deserialize;

/// An object an event names, key decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// Without quotes.
    pub etag: Option<String>,
    pub size: Option<u64>,
    /// Orders events for one key (hex, compare as strings of equal length).
    pub sequencer: Option<String>,
}

impl ObjectRef {
    /// `bucket`/`key`, with nothing else known of it (an object named by configuration or by
    /// a note, not by an event).
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            etag: None,
            size: None,
            sequencer: None,
        }
    }
}

/// Why an event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not an S3 event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("object key {key:?}: {reason}")]
    Key { key: String, reason: &'static str },
}

/// Decodes an event's object key: `+` is a space, `%XX` a byte, and the bytes must be UTF-8.
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    let err = |reason| EventError::Key {
        key: raw.to_owned(),
        reason,
    };
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or_else(|| err("a % without two hex digits"))?;
                let hi = hex_digit(hex[0]).ok_or_else(|| err("a % without two hex digits"))?;
                let lo = hex_digit(hex[1]).ok_or_else(|| err("a % without two hex digits"))?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| err("the decoded key is not UTF-8"))
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    key: String,
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

/// The objects an S3 event notification (the Lambda payload) names as created, in order.
/// A test event, or any record other than `ObjectCreated:*`, yields nothing.
pub fn created_objects(json: &[u8]) -> Result<Vec<ObjectRef>, EventError> {
    let event: Event = serde_json::from_slice(json)?;
    event
        .records
        .into_iter()
        .filter(|r| r.event_name.starts_with("ObjectCreated:"))
        .map(|r| {
            Ok(ObjectRef {
                key: decode_key(&r.s3.object.key)?,
                bucket: r.s3.bucket.name,
                version_id: r.s3.object.version_id.filter(|v| !v.is_empty()),
                etag: r.s3.object.e_tag.map(|e| e.trim_matches('"').to_owned()),
                size: r.s3.object.size,
                sequencer: r.s3.object.sequencer,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_plus_percent_and_utf8() {
        let cases = [
            ("plain.csv", "plain.csv"),
            ("meter+data/2019+01.csv", "meter data/2019 01.csv"),
            ("incoming%2Fnem12%2Ffile.zip", "incoming/nem12/file.zip"),
            ("a%2Bb.csv", "a+b.csv"),
            ("caf%C3%A9+%E2%82%AC.csv", "café €.csv"),
            ("%2f%2F", "//"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_key(raw).unwrap(), want, "{raw}");
        }
        for bad in ["50%", "50%2", "%zz", "%C3", "%FF.csv"] {
            assert!(decode_key(bad).is_err(), "{bad}");
        }
    }
}
