//! The splitter's rejects report: where it goes and what it holds.
//!
//! The report is the CLI's `--rejects` CSV (`file,line,column,kind,reason`, one writer in
//! `meterflow_core::Reject`), written as one object per input: next to the input as
//! `<key>.rejects.csv` by default, or under `METERFLOW_REJECTS_PREFIX` as
//! `<prefix><bucket>/<key>.rejects.csv`. Its key is a function of the input's, so a retried
//! invocation overwrites the report rather than adding one. An input that fails as a whole
//! (a bad header, a corrupt archive) gets a report of one row naming the failure (line 0 when
//! no line is at fault), so every failure is found where the rejects are.

use crate::s3::PipelineError;
use meterflow_aws::event::ObjectRef;
use meterflow_core::{FileError, Reject, RejectKind};

use meterflow_aws::env::S3Location;

/// What a report's key ends with. The splitter never splits such an object: a report written
/// next to its input would otherwise trigger the bucket's notification and be split itself.
pub const REPORT_SUFFIX: &str = ".rejects.csv";

/// Bucket and key of the report for `object`.
pub fn location(object: &ObjectRef, prefix: Option<&S3Location>) -> (String, String) {
    match prefix {
        None => (
            object.bucket.clone(),
            format!("{}{REPORT_SUFFIX}", object.key),
        ),
        Some(p) => (
            p.bucket.clone(),
            p.key(&format!("{}/{}{REPORT_SUFFIX}", object.bucket, object.key)),
        ),
    }
}

/// Whether `object` is a report (by its suffix or its place) rather than an input.
pub fn is_report(object: &ObjectRef, prefix: Option<&S3Location>) -> bool {
    object.key.ends_with(REPORT_SUFFIX)
        || prefix.is_some_and(|p| p.holds(&object.bucket, &object.key))
}

/// The report's bytes.
pub fn csv(rejects: &[Reject]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * (rejects.len() + 1));
    // Writing to a Vec cannot fail.
    let _ = Reject::write_csv_header(&mut out);
    for r in rejects {
        let _ = r.write_csv(&mut out);
    }
    out
}

/// The one row that reports an input that failed as a whole.
pub fn failure_row(object: &ObjectRef, error: &PipelineError) -> Reject {
    let line = match error {
        PipelineError::File(
            FileError::Header { line, .. } | FileError::RecordTooLong { line, .. },
        ) => *line,
        _ => 0,
    };
    Reject {
        source: format!("s3://{}/{}", object.bucket, object.key).into(),
        line,
        column: None,
        kind: RejectKind::File,
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str) -> ObjectRef {
        ObjectRef::new(bucket, key)
    }

    #[test]
    fn reports_go_next_to_the_input_or_under_the_prefix_and_are_never_split() {
        let input = object("uploads", "incoming/meter data.csv");
        assert_eq!(
            location(&input, None),
            (
                "uploads".to_owned(),
                "incoming/meter data.csv.rejects.csv".to_owned()
            )
        );
        let prefix = S3Location {
            bucket: "reports".into(),
            prefix: "rejects/".into(),
        };
        let (bucket, key) = location(&input, Some(&prefix));
        assert_eq!(
            (bucket.as_str(), key.as_str()),
            (
                "reports",
                "rejects/uploads/incoming/meter data.csv.rejects.csv"
            )
        );
        assert!(!is_report(&input, Some(&prefix)));
        assert!(is_report(
            &object("uploads", &location(&input, None).1),
            None
        ));
        assert!(is_report(&object(&bucket, &key), Some(&prefix)));
        assert!(is_report(
            &object("reports", "rejects/x.csv"),
            Some(&prefix)
        ));
    }
}
