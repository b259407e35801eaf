//! Settings from environment variables, validated at cold start with messages that name the
//! variable and say what to set instead: a Lambda misconfigured by its deployment should fail
//! its first invocation with one clear line in the log, not misbehave later.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Where settings come from: the process environment, or a map in tests (changing the real
/// environment would race between tests).
pub trait Vars {
    /// The value of `name`; an empty value counts as unset.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Vars for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .filter(|v| !v.is_empty())
            .map(|v| (*v).to_owned())
    }
}

/// A setting that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("{name}={value:?} is not valid: {problem}")]
    Invalid {
        name: &'static str,
        value: String,
        problem: String,
    },
}

/// A variable that must be set; `hint` says what it should hold.
pub fn required(
    vars: &impl Vars,
    name: &'static str,
    hint: &'static str,
) -> Result<String, ConfigError> {
    vars.get(name).ok_or(ConfigError::Missing { name, hint })
}

/// A number in `range`, `default` when unset.
pub fn number<T>(
    vars: &impl Vars,
    name: &'static str,
    default: T,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let Some(value) = vars.get(name) else {
        return Ok(default);
    };
    match value.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            problem: format!(
                "set a whole number from {} to {} (default {default})",
                range.start(),
                range.end()
            ),
        }),
    }
}

/// An S3 location given as `s3://bucket/prefix`: where reports and dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl S3Location {
    /// Reads variable `name` (unset: `None`).
    pub fn from_var(
        vars: &impl Vars,
        name: &'static str,
    ) -> Result<Option<S3Location>, ConfigError> {
        vars.get(name)
            .map(|v| S3Location::parse(name, &v))
            .transpose()
    }

    fn parse(name: &'static str, value: &str) -> Result<S3Location, ConfigError> {
        let invalid = |problem: &str| ConfigError::Invalid {
            name,
            value: value.to_owned(),
            problem: format!("{problem}; write it as s3://bucket/prefix (the prefix may be empty)"),
        };
        let (bucket, prefix) = crate::s3::split_url(value)
            .ok_or_else(|| invalid("not an s3:// URL"))?
            .map_err(invalid)?;
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether `bucket`/`key` lies under this location.
    pub fn holds(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket && key.starts_with(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn numbers_default_and_refuse_out_of_range_with_the_range() {
        let v = vars(&[("A", "12"), ("B", "0"), ("C", "x"), ("D", "")]);
        assert_eq!(number(&v, "A", 4u32, 1..=64), Ok(12));
        assert_eq!(number(&v, "D", 4u32, 1..=64), Ok(4), "empty is unset");
        assert_eq!(number(&v, "Z", 4u32, 1..=64), Ok(4));
        for name in ["B", "C"] {
            let e = number(&v, name, 4u32, 1..=64).unwrap_err();
            assert!(e.to_string().contains("from 1 to 64 (default 4)"), "{e}");
        }
        let e = required(&v, "Z", "the stream's name").unwrap_err();
        assert_eq!(e.to_string(), "Z is not set: the stream's name");
    }

    #[test]
    fn s3_locations_parse_with_or_without_prefix() {
        let v = vars(&[
            ("A", "s3://my-bucket/rejects"),
            ("B", "s3://my-bucket"),
            ("C", "s3://my-bucket/dead/letters/"),
            ("D", "my-bucket/x"),
            ("E", "s3://My_Bucket/x"),
        ]);
        let loc = |n| S3Location::from_var(&v, n).unwrap().unwrap();
        assert_eq!(loc("A").key("b/k.csv"), "rejects/b/k.csv");
        assert_eq!(loc("B").key("k"), "k");
        assert_eq!(loc("C").prefix, "dead/letters/");
        assert!(loc("A").holds("my-bucket", "rejects/x"));
        assert!(!loc("A").holds("my-bucket", "incoming/x"));
        assert_eq!(S3Location::from_var(&v, "Z"), Ok(None));
        for name in ["D", "E"] {
            let e = S3Location::from_var(&v, name).unwrap_err();
            assert!(e.to_string().contains("s3://bucket/prefix"), "{e}");
        }
    }
}
