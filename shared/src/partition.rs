//! Spreading series over stream shards.
//!
//! Every fragment of a series must travel on one Kinesis shard (so one aggregator sees a
//! series' records in order), yet a record carries many series. So series are hashed into a
//! fixed number of buckets, a record only holds series of one bucket, and the record is sent
//! with an `ExplicitHashKey` at the middle of that bucket's slice of the 128-bit hash space:
//! whatever the shard layout, one point belongs to exactly one shard, and with evenly split
//! shards the buckets, and so the series, spread evenly.

use crate::series::SeriesId;

/// FNV-1a, 64-bit: stable across builds, which a placement function must be.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The bucket (`0..buckets`) of a series. `buckets` must be at least 1.
pub fn bucket(series: &SeriesId, buckets: u32) -> u32 {
    (fnv1a(series.as_str().as_bytes()) % u64::from(buckets.max(1))) as u32
}

/// The `ExplicitHashKey` for a bucket: the middle of its equal slice of `0..2^128`.
pub fn explicit_hash_key(bucket: u32, buckets: u32) -> u128 {
    let step = u128::MAX / u128::from(buckets.max(1));
    step * u128::from(bucket) + step / 2
}

/// A partition key naming the bucket (Kinesis requires one even with an explicit hash key).
pub fn partition_key(bucket: u32) -> String {
    format!("bucket-{bucket}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_even() {
        let id: SeriesId = "EE00027".parse().unwrap();
        // Placement must never change between builds: pin one value.
        assert_eq!(bucket(&id, 1024), (fnv1a(b"EE00027") % 1024) as u32);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let s: SeriesId = format!("NMI{i:07}-E1").parse().unwrap();
            counts[bucket(&s, 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn hash_keys_sit_inside_their_slices() {
        let n = 4;
        let step = u128::MAX / 4;
        for b in 0..n {
            let k = explicit_hash_key(b, n);
            assert!(k >= step * u128::from(b) && k < step * u128::from(b + 1));
        }
        assert_eq!(explicit_hash_key(0, 1), u128::MAX / 2);
    }
}
