//! Source names: which input a fragment came from, and which delivery of it.
//!
//! A fragment's source is `<object>#@<delivery>`: the *object* names the input (a canonical
//! path, `s3://bucket/key`, or either followed by `!entry` inside an archive), the *delivery*
//! names one content of it (for S3 the version id or ETag; for a local file when it was last
//! written). Re-reading the same delivery gives the same name, so writes stay idempotent;
//! rewriting the input gives a new one.
//!
//! Why the delivery matters: a fragment's version is the data's update time or else the
//! input's modification time, and two contents of one input can share it (a file rewritten
//! with its timestamp kept by `cp -p`, `touch -r` or a coarse file system; two uploads of a
//! key within S3's one-second Last-Modified). Without the delivery the merge would mix their
//! slots into a day neither delivered; with it, [`crate::merge`] lets only the greatest
//! delivery of an object count at a version (see there).
//!
//! The mark `#@` never occurs in a delivery (ETags, version ids and our local stamps are made
//! of other characters), so the last one in a name separates the two parts even when the
//! object holds one. Names written before deliveries existed have none: their whole text is
//! the object.

/// Separates the object from the delivery in a source name.
pub const DELIVERY_MARK: &str = "#@";

/// The source name of `delivery` of `object` (just `object` when the delivery is unknown).
pub fn source_name(object: &str, delivery: Option<&str>) -> String {
    match delivery {
        Some(d) => {
            debug_assert!(
                !d.contains(DELIVERY_MARK),
                "a delivery never holds the mark"
            );
            format!("{object}{DELIVERY_MARK}{d}")
        }
        None => object.to_owned(),
    }
}

/// `(object, delivery)` of a source name.
pub fn split_source(source: &str) -> (&str, Option<&str>) {
    match source.rfind(DELIVERY_MARK) {
        Some(at) => (&source[..at], Some(&source[at + DELIVERY_MARK.len()..])),
        None => (source, None),
    }
}

/// The object a source name names: what messages and reports show (the delivery is an
/// internal tie-break that would only clutter them).
pub fn object_of(source: &str) -> &str {
    split_source(source).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_back_into_object_and_delivery() {
        for (object, delivery) in [
            ("s3://b/in/a#1.csv", Some("3/L4kqtJlcpXro+DTDm=")),
            ("/data/x #@ y.csv", Some("1733222400.123456789")),
            (
                "s3://b/k.zip!dir/e.csv",
                Some("d41d8cd98f00b204e9800998ecf8427e-2"),
            ),
            ("/legacy/path.csv", None),
        ] {
            let name = source_name(object, delivery);
            assert_eq!(split_source(&name), (object, delivery), "{name}");
            assert_eq!(object_of(&name), object);
        }
    }
}
