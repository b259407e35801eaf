//! `s3://bucket/prefix` inputs: listed like a directory, then each object read on a parser
//! thread like a local file, as a blocking reader over ranged GETs (`meterflow_aws::s3::open`).

use std::sync::Arc;

use anyhow::{Context, Result};
use meterflow_aws::client::{http_client, s3_client};
use meterflow_aws::s3::{self, Listed, ObjectSource, ReadSettings, S3Source};
use tokio::runtime::Handle;

use meterflow_splitter::files::Opened;
use meterflow_splitter::object::ObjectName;

/// A bucket and the key prefix under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Prefix {
    pub bucket: String,
    pub prefix: String,
}

impl S3Prefix {
    /// `None` when `arg` is not an `s3://` URL (a local path).
    pub fn parse(arg: &str) -> Option<Result<S3Prefix>> {
        Some(match meterflow_aws::s3::split_url(arg)? {
            Ok((bucket, prefix)) => Ok(S3Prefix {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            }),
            Err(problem) => Err(anyhow::anyhow!(
                "`{arg}`: {problem}; expected s3://bucket/prefix"
            )),
        })
    }
}

/// The S3 client and the runtime its reads run on.
pub struct S3Inputs {
    handle: Handle,
    source: Arc<S3Source>,
    place: String,
}

impl S3Inputs {
    /// Clients from the standard chain; call on the runtime the reads will use.
    pub async fn from_env() -> Result<S3Inputs> {
        let settings = crate::aws_env::settings().await?;
        Ok(S3Inputs {
            handle: Handle::current(),
            source: Arc::new(S3Source {
                client: s3_client(&settings, http_client()),
            }),
            place: crate::aws_env::place(&settings),
        })
    }

    /// Every object under the prefix; none at all is an error (a mistyped prefix, most
    /// likely).
    pub async fn list(&self, at: &S3Prefix) -> Result<Vec<Listed>> {
        let keys = self
            .source
            .list(&at.bucket, &at.prefix)
            .await
            .with_context(|| {
                format!(
                    "cannot list s3://{}/{} ({})",
                    at.bucket, at.prefix, self.place
                )
            })?;
        anyhow::ensure!(
            !keys.is_empty(),
            "no objects under s3://{}/{} ({}): check the prefix (it is case-sensitive)",
            at.bucket,
            at.prefix,
            self.place
        );
        Ok(keys)
    }

    /// Opens one object for a parser thread (blocking: never call it on the runtime). Its
    /// fragments are named and versioned as the splitter Lambda names them
    /// ([`ObjectInfo::source_id`](meterflow_aws::s3::ObjectInfo::source_id): `s3://bucket/key#etag`;
    /// Last-Modified), so an object ingested both ways writes the same keys once.
    pub fn open(&self, bucket: &str, key: &str) -> Result<Opened, String> {
        let info = self
            .handle
            .block_on(self.source.head(bucket, key, None))
            .map_err(|e| e.to_string())?;
        Ok(Opened {
            name: ObjectName {
                object: info.name(),
                delivery: info.delivery().map(str::to_owned),
                version: info.last_modified_ms,
                etag: info.etag.clone(),
            },
            size: info.size,
            reader: Box::new(s3::open(
                &self.handle,
                self.source.clone(),
                info,
                0,
                ReadSettings::default(),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let p = |s: &str| S3Prefix::parse(s).map(|r| r.map_err(|e| e.to_string()));
        let ok = |b: &str, k: &str| {
            Some(Ok(S3Prefix {
                bucket: b.into(),
                prefix: k.into(),
            }))
        };
        assert_eq!(p("s3://bkt/in/2019/"), ok("bkt", "in/2019/"));
        assert_eq!(p("s3://bkt"), ok("bkt", ""));
        assert_eq!(p("s3://bkt/"), ok("bkt", ""));
        assert_eq!(p("data/s3.csv"), None);
        assert!(matches!(p("s3:///x"), Some(Err(e)) if e.contains("s3://bucket/prefix")));
        assert!(matches!(p("s3://My_Bucket/x"), Some(Err(e)) if e.contains("lowercase")));
    }
}
