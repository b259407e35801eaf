//! The wire envelope: many fragments in one compact, versioned Kinesis record.
//!
//! Why a custom binary encoding: Kinesis takes at most 1 MB/s and 1,000 records/s per shard
//! and on-demand streams bill every record rounded up to 1 KB, so one CSV row (≈300 bytes) per
//! record wastes both the record budget and the bill. Packing many fragments per record and
//! shrinking each complete half-hourly meter-day from ≈300 bytes of CSV to a few dozen bytes
//! multiplies what one shard carries. The encoding is exact (no floating point, every field
//! round-trips bit for bit) because the merge rules of [`crate::merge`] depend on exact values,
//! versions, sources and lines.
//!
//! # Layout (format version 1)
//!
//! All integers are unsigned LEB128 varints unless noted; "zigzag" maps signed to unsigned
//! (`0, -1, 1, -2` → `0, 1, 2, 3`) so small negative deltas stay one byte.
//!
//! ```text
//! envelope  = magic "MFEN" | version u8 (=1)
//!             | n_units | n_units × (len | utf-8 bytes)
//!             | n_series | n_series × (id_len | id | unit_index)
//!             | n_sources | n_sources × (len | utf-8 bytes)
//!             | n_fragments | n_fragments × fragment
//! fragment  = head u8
//!             | [zigzag(series index − prev)] | [zigzag(day − prev)] | [zigzag(version − prev)]
//!             | [zigzag(source index − prev)] | [zigzag(line − prev)] | [flags u8] | [quality u8]
//!             | [presence bitmap] | [values]
//! head      = which bracketed fields are present; an absent field repeats the previous
//!             fragment's value (or, for day and line, advances it by one):
//!             bit 0 series index given, bits 1–2 day (0 same as previous, 1 previous + 1,
//!             2 delta given, 3 undefined), bit 3 version delta given, bit 4 source index
//!             given, bit 5 line delta given (absent: previous + 1), bit 6 quality given,
//!             bit 7 flags given
//! flags     = bits 0–2 interval code (index into INTERVAL_MINUTES), bit 3 all slots present,
//!             bits 4–7 scale exponent e (every present value is a multiple of 10^e)
//! bitmap    = slots_per_day bits, slot i at bit i%8 of byte i/8; absent when flags bit 3 is
//!             set
//! values    = (only when at least one slot is present)
//!             pack u8 (bits 0–6 bit width w ≤ 64, bit 7 method: 0 frame of reference,
//!             1 delta) | zigzag(base) | bit-packed words, least significant bit first
//!   frame of reference: base = min, then every value − min in w bits
//!   delta:              base = first value, then zigzag(value − previous) in w bits
//! ```
//!
//! Why the head byte: a batch from one file repeats almost everything but the values (one
//! source and version, lines counting up, a meter's days in a row or many meters on one day,
//! the same interval, scale and quality), so eliding repeats cuts a fragment's fixed part from
//! about ten bytes to one. It is the same information as a plain field list, only omitted when
//! predictable.
//!
//! Every "previous" field (series and source index, day, version, line, flags, quality) starts
//! at 0 before the first fragment of an envelope. Version and line deltas wrap: both are
//! full-range integers, and wrapping arithmetic keeps them exact.
//!
//! A series is keyed in the dictionary together with its unit, since a series has one unit;
//! should a producer ever send one id under two units both entries are kept, so decoding is
//! exact regardless. Units have a dictionary of their own because thousands of meters share
//! one or two of them. Indices are sent as deltas because new series appear in order (a
//! one-day file of many meters is `+1` after `+1`).
//!
//! # Evolution
//!
//! The version byte is the only compatibility mechanism: any change to the layout bumps it, an
//! older decoder refuses a newer envelope with [`DecodeError::NewerVersion`] (upgrade the
//! aggregator before the splitter), and every other decode error means the bytes are corrupt
//! and will never decode (quarantine the record, do not retry it).

use crate::value::MAX_ABS_VALUE;

mod bits;
mod decode;
mod encode;
mod valid;

pub use decode::{
    decode, fragments, DecodeError, Envelope, Fragments, RawFragment, RawFragments, SummedFragment,
    SummedFragments,
};
pub use encode::{shift_lines, EnvelopeBuilder, InvalidFragment, PushError};
pub use valid::ValidRecord;

/// First bytes of every envelope: tells a meterflow record from anything else on the stream.
pub const MAGIC: [u8; 4] = *b"MFEN";
/// The layout this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;
/// The largest envelope, and the default cap of a builder: 1 MiB, Kinesis' limit on one
/// record, so that an envelope travels as one record.
///
/// Kinesis counts the partition key against the same limit (`meterflow_aws::kinesis`'s
/// `MAX_RECORD_BYTES`), so a producer with long partition keys passes
/// `MAX_ENVELOPE_BYTES - key.len()` as the cap.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// One envelope record ready for the stream, and the partition bucket its series are in
/// (which picks its Kinesis shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The partition bucket (see [`crate::partition::bucket`]) of every series in the record.
    pub bucket: u32,
    /// Fragments packed in `data`, for accounting.
    pub fragments: u32,
    /// The envelope's bytes, as [`EnvelopeBuilder::finish`] writes them.
    pub data: Vec<u8>,
}
/// Bytes of magic plus version that open every envelope.
pub const HEADER_BYTES: usize = MAGIC.len() + 1;

/// Largest scale exponent: four bits of the flags byte. Values stay below 10^15, so a non-zero
/// value never has more than 14 trailing decimal zeros.
const MAX_SCALE: usize = 15;
const POW10: [i64; MAX_SCALE + 1] = {
    let mut p = [1i64; MAX_SCALE + 1];
    let mut i = 1;
    while i <= MAX_SCALE {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};
const INTERVAL_CODE_MASK: u8 = 0b0000_0111;
const ALL_PRESENT: u8 = 0b0000_1000;
const SCALE_SHIFT: u32 = 4;
const WIDTH_MASK: u8 = 0b0111_1111;
const DELTA_METHOD: u8 = 0b1000_0000;
const HEAD_SERIES: u8 = 1;
const HEAD_DAY_SHIFT: u32 = 1;
const HEAD_DAY_MASK: u8 = 0b11 << HEAD_DAY_SHIFT;
const DAY_SAME: u8 = 0;
const DAY_NEXT: u8 = 1;
const DAY_DELTA: u8 = 2;
const HEAD_VERSION: u8 = 1 << 3;
const HEAD_SOURCE: u8 = 1 << 4;
const HEAD_LINE: u8 = 1 << 5;
const HEAD_QUALITY: u8 = 1 << 6;
const HEAD_FLAGS: u8 = 1 << 7;
/// Fewest bytes a fragment can take (a head byte, then a width-0 pack byte and a one-byte
/// base): bounds how many fragments a count may announce for the bytes that are left.
const MIN_FRAGMENT_BYTES: usize = 3;
/// Fewest bytes a series entry can take (id length, one id byte, unit index).
const MIN_SERIES_ENTRY_BYTES: usize = 3;

/// The previous fragment's fields, which the next one's deltas and omissions refer to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    series: u64,
    day: i64,
    version: i64,
    source: u64,
    line: u64,
    flags: u8,
    quality: u8,
}

fn value_in_range(v: i64) -> bool {
    v > -MAX_ABS_VALUE && v < MAX_ABS_VALUE
}

#[cfg(test)]
mod tests {
    use super::encode::exact_div;
    use super::*;
    use crate::day::Day;
    use crate::fragment::{slots_per_day, Fragment, Quality, Slots, INTERVAL_MINUTES};
    use crate::series::{SeriesId, Unit};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn frag(series: &str, day: Day, source: &str, line: u64, values: &[Option<i64>]) -> Fragment {
        let mut slots = Slots::new(values.len());
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                slots.set(i, *v);
            }
        }
        Fragment {
            series: series.parse().unwrap(),
            day,
            version: 1_546_300_800_000,
            source: Arc::from(source),
            line,
            interval_minutes: crate::fragment::interval_for_slots(values.len()).unwrap(),
            unit: Unit::kwh(),
            quality: Quality::UNSPECIFIED,
            slots,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> Day {
        Day::from_ymd(y, m, d).unwrap()
    }

    fn encode(fragments: &[Fragment]) -> Vec<u8> {
        let mut b = EnvelopeBuilder::new(usize::MAX);
        for f in fragments {
            b.try_push(f).unwrap();
        }
        assert_eq!(b.len(), fragments.len());
        let len = b.encoded_len();
        let out = b.finish();
        assert_eq!(out.len(), len);
        out
    }

    /// Packs fragments into envelopes under `cap` the way the splitter will; returns the
    /// envelopes and the indices of fragments refused as too large.
    fn pack(fragments: &[Fragment], cap: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
        let mut b = EnvelopeBuilder::new(cap);
        let mut records = Vec::new();
        let mut too_large = Vec::new();
        for (i, f) in fragments.iter().enumerate() {
            match b.try_push(f) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    records.push(b.take());
                    b.try_push(f)
                        .expect("Full promises the fragment fits alone");
                }
                Err(PushError::TooLarge { bytes, max }) => {
                    assert!(bytes > max);
                    assert_eq!(max, cap);
                    too_large.push(i);
                }
                Err(e) => panic!("{e}"),
            }
            // (An empty envelope is 9 bytes, more than the smallest caps tried.)
            assert!(b.is_empty() || b.encoded_len() <= cap);
        }
        if !b.is_empty() {
            records.push(b.take());
        }
        (records, too_large)
    }

    /// splitmix64: deterministic, dependency-free test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    /// A household's half-hourly day in Wh (0.001 kWh): a base load, a morning and an evening
    /// peak shaped as parabolic bumps, and noise; clamped to 0.05–2.0 kWh. Integer arithmetic
    /// only, so the data (and the measured size) is the same on every machine.
    fn household_day(rng: &mut Rng, base: i64, morning: i64, evening: i64) -> Vec<i64> {
        let bump = |t: i64, centre: i64, half: i64, amp: i64| {
            let d = t - centre;
            if d.abs() >= half {
                0
            } else {
                amp * (half * half - d * d) / (half * half)
            }
        };
        let m_centre = rng.range(13, 16);
        let e_centre = rng.range(35, 39);
        (0..48)
            .map(|t| {
                let v = base
                    + bump(t, m_centre, 5, morning)
                    + bump(t, e_centre, 8, evening)
                    + rng.range(-25, 25);
                v.clamp(50, 2000)
            })
            .collect()
    }

    /// `meters` households × `days` days, meter-major as wide CSV files list them.
    fn household_batch(seed: u64, meters: usize, days: usize) -> Vec<Fragment> {
        let mut rng = Rng(seed);
        let start = day(2024, 1, 1);
        let mut out = Vec::new();
        for m in 0..meters {
            let base = rng.range(100, 300);
            let morning = rng.range(150, 500);
            let evening = rng.range(300, 1000);
            for d in 0..days {
                let wh = household_day(&mut rng, base, morning, evening);
                let values: Vec<Option<i64>> = wh.iter().map(|v| Some(v * 1000)).collect();
                let line = (m * days + d + 2) as u64;
                let dd = Day::from_days(start.days() + d as i32).unwrap();
                out.push(frag(
                    &format!("NMI{:07}-E1", m),
                    dd,
                    "s3://meter-drop/2024/01/households.csv#etag=9b2cf535f27731c974343645a3985328",
                    line,
                    &values,
                ));
            }
        }
        out
    }

    /// Whole-kWh days in 4..=10 like the original project's sample file.
    fn integer_batch(seed: u64, meters: usize, days: usize) -> Vec<Fragment> {
        let mut rng = Rng(seed);
        let start = day(2019, 1, 1);
        let mut out = Vec::new();
        for m in 0..meters {
            for d in 0..days {
                let values: Vec<Option<i64>> = (0..48)
                    .map(|_| Some(rng.range(4, 10) * 1_000_000))
                    .collect();
                let dd = Day::from_days(start.days() + d as i32).unwrap();
                out.push(frag(
                    &format!("EE{:05}", m),
                    dd,
                    "consumption.csv",
                    (m * days + d + 2) as u64,
                    &values,
                ));
            }
        }
        out
    }

    fn csv_row_len(f: &Fragment) -> usize {
        let cells: Vec<String> = (0..f.slots.len())
            .map(|i| {
                f.slots
                    .get(i)
                    .map(crate::value::format_amount)
                    .unwrap_or_default()
            })
            .collect();
        format!("{},{},{}\n", f.series, f.day, cells.join(",")).len()
    }

    /// Envelope bytes per fragment (dictionaries and headers included) under the default
    /// 1 MiB cap and CSV bytes per row for the same data, both in tenths of a byte (integer
    /// arithmetic, like everything else here), and the number of records.
    fn measure(fragments: &[Fragment]) -> (usize, usize, usize) {
        let (records, too_large) = pack(fragments, MAX_ENVELOPE_BYTES);
        assert!(too_large.is_empty());
        let total: usize = records.iter().map(Vec::len).sum();
        let csv: usize = fragments.iter().map(csv_row_len).sum();
        let decoded: Vec<Fragment> = records.iter().flat_map(|r| decode(r).unwrap()).collect();
        assert_eq!(decoded, fragments);
        let n = fragments.len();
        (total * 10 / n, csv * 10 / n, records.len())
    }

    fn tenths(x: usize) -> String {
        format!("{}.{}", x / 10, x % 10)
    }

    /// The size target: a complete half-hourly meter-day in at most 60 bytes on typical data,
    /// against ≈300 bytes as a CSV row. The generated batches are deterministic, so the sizes
    /// printed (`--nocapture`) are the same on every run and machine.
    #[test]
    fn bytes_per_meter_day() {
        let households = household_batch(7, 200, 31);
        let (env, csv, records) = measure(&households);
        println!(
            "household profiles, 3-decimal kWh, 200 meters x 31 days: {} bytes per 48-slot \
             meter-day in {records} record(s), vs {} bytes of CSV",
            tenths(env),
            tenths(csv)
        );
        assert!(env <= 600, "{} bytes per fragment", tenths(env));

        let integers = integer_batch(8, 200, 31);
        let (env, csv, records) = measure(&integers);
        println!(
            "whole-kWh days (9,8,8,10,...), 200 meters x 31 days: {} bytes per 48-slot \
             meter-day in {records} record(s), vs {} bytes of CSV",
            tenths(env),
            tenths(csv)
        );
        assert!(env <= 300, "{} bytes per fragment", tenths(env));

        // One day of many meters: each series id is carried for a single fragment.
        let one_day = household_batch(9, 2000, 1);
        let (env, csv, _) = measure(&one_day);
        println!(
            "household profiles, 2000 meters x 1 day: {} bytes per meter-day, vs {} bytes \
             of CSV",
            tenths(env),
            tenths(csv)
        );
        assert!(env <= 800, "{} bytes per fragment", tenths(env));
    }

    #[test]
    fn limits() {
        assert_eq!(MAX_ENVELOPE_BYTES, 1_048_576);
        assert_eq!(MAGIC, *b"MFEN");
        assert_eq!(FORMAT_VERSION, 1);
        assert_eq!(HEADER_BYTES, 5);
        assert_eq!(EnvelopeBuilder::default().max_bytes(), MAX_ENVELOPE_BYTES);
        assert_eq!(POW10[MAX_SCALE], 1_000_000_000_000_000);
        // Every interval length yields whole bitmap bytes (the layout relies on it).
        for m in INTERVAL_MINUTES {
            assert_eq!(slots_per_day(m).unwrap() % 8, 0);
        }
        // The largest value fits the scaled range the packer assumes.
        assert!(MAX_ABS_VALUE <= POW10[MAX_SCALE]);
    }

    #[test]
    fn empty_envelope() {
        let b = EnvelopeBuilder::default();
        assert_eq!((b.len(), b.is_empty(), b.encoded_len()), (0, true, 9));
        let bytes = b.finish();
        assert_eq!(bytes, b"MFEN\x01\x00\x00\x00\x00");
        assert_eq!(decode(&bytes).unwrap(), vec![]);
    }

    /// The exact bytes of a small envelope. A failure here means the layout changed: bump
    /// FORMAT_VERSION (old aggregators must refuse, not misread) and update this test.
    #[test]
    fn golden_bytes() {
        let d = day(1970, 1, 3);
        let mut a = frag("EE1", d, "f.csv", 2, &[Some(1_111_000); 24]);
        a.version = 3;
        let mut values = [None; 24];
        values[0] = Some(9_000_000);
        values[9] = Some(-1_000_000);
        let b = frag("EE1", d.succ(), "f.csv", 3, &values);
        let mut b = b;
        b.version = 3;
        let bytes = encode(&[a.clone(), b.clone()]);
        #[rustfmt::skip]
        let want: &[u8] = &[
            b'M', b'F', b'E', b'N', 1,
            1, 3, b'k', b'W', b'h',                 // units
            1, 3, b'E', b'E', b'1', 0,              // series: id, unit index
            1, 5, b'f', b'.', b'c', b's', b'v',     // sources
            2,                                      // fragments
            // a: head = day delta, version, line, quality and flags given
            0b1110_1100, 4, 6, 4, 32,               // zigzag 2, 3, 2; quality UNSPECIFIED
            0x3c,                                   // 60-minute code 4, all present, scale 3
            0, 0xae, 0x11,                          // width 0, frame of reference, min 1111
            // b: head = next day, line + 1, flags given
            0b1000_0010,
            0x64,                                   // code 4, scale 6, bitmap follows
            0b0000_0001, 0b0000_0010, 0,            // slots 0 and 9
            4, 1, 0b0000_1010,                      // width 4, min -1, offsets 10 and 0
        ];
        assert_eq!(bytes, want);
        assert_eq!(decode(&bytes).unwrap(), vec![a, b]);
    }

    #[test]
    fn full_versus_too_large() {
        let d = day(2019, 1, 1);
        let small = frag("EE00027", d, "a.csv", 2, &[Some(1_000); 48]);
        let alone = encode(std::slice::from_ref(&small)).len();

        // Room for exactly one: the second push is Full and changes nothing.
        let mut b = EnvelopeBuilder::new(alone);
        b.try_push(&small).unwrap();
        let before = b.encoded_len();
        let mut next = small.clone();
        next.day = d.succ();
        next.line = 3;
        assert_eq!(b.try_push(&next), Err(PushError::Full));
        assert_eq!(b.encoded_len(), before);
        assert_eq!(b.len(), 1);
        assert_eq!(decode(&b.take()).unwrap(), vec![small.clone()]);
        assert!(b.is_empty());
        b.try_push(&next).unwrap();
        assert_eq!(decode(&b.take()).unwrap(), vec![next]);

        // A fragment that can never fit is TooLarge, on an empty or a non-empty builder.
        let long_source = "s3://bucket/".to_string() + &"k".repeat(300);
        let big = frag("EE00027", d, &long_source, 2, &[Some(1_000); 48]);
        let mut b = EnvelopeBuilder::new(200);
        let err = b.try_push(&big).unwrap_err();
        assert!(
            matches!(err, PushError::TooLarge { bytes, max: 200 } if bytes > 300),
            "{err}"
        );
        b.try_push(&small).unwrap();
        assert!(matches!(
            b.try_push(&big),
            Err(PushError::TooLarge { max: 200, .. })
        ));
        assert_eq!(decode(&b.finish()).unwrap(), vec![small]);
        assert!(
            err.to_string().contains("more than the 200-byte cap"),
            "{err}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_carry_exactly() {
        let d = day(2019, 1, 1);
        let ok = frag("EE1", d, "a", 2, &[Some(1); 48]);
        let mut b = EnvelopeBuilder::default();
        let mut f = ok.clone();
        f.interval_minutes = 7;
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Interval(7)))
        );
        let mut f = ok.clone();
        f.interval_minutes = 15;
        assert!(matches!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::SlotCount {
                len: 48,
                ..
            }))
        ));
        let mut f = ok.clone();
        f.quality = Quality(64);
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Quality(64)))
        );
        let mut f = ok.clone();
        f.day = day(2999, 12, 31).succ();
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Day(f.day)))
        );
        let mut f = ok.clone();
        f.slots.set(5, -MAX_ABS_VALUE);
        assert_eq!(
            b.try_push(&f),
            Err(PushError::Invalid(InvalidFragment::Value {
                slot: 5,
                value: -MAX_ABS_VALUE
            }))
        );
        assert!(b.is_empty());
        b.try_push(&ok).unwrap();
    }

    #[test]
    fn refuses_foreign_and_newer_records() {
        for bad in [
            &b""[..],
            b"MF",
            b"MFEX\x01",
            b"{\"meter\":1}",
            b"PK\x03\x04",
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err, DecodeError::BadMagic);
            assert_eq!(err.to_string(), "not a meterflow envelope (bad magic)");
            assert!(!err.is_newer_version());
        }
        let err = decode(b"MFEN\x07anything").unwrap_err();
        assert_eq!(
            err,
            DecodeError::NewerVersion {
                found: 7,
                supported: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "envelope version 7 is newer than this build understands (1); upgrade the aggregator"
        );
        assert!(err.is_newer_version());
        let err = decode(b"MFEN\x00\x00\x00\x00\x00").unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { offset: 4, .. }),
            "{err}"
        );
        assert!(!err.is_newer_version());
        let err = decode(b"MFEN").unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
    }

    #[test]
    fn reports_corruption_precisely() {
        let f = frag("EE1", day(2019, 1, 1), "a", 2, &[Some(1); 48]);
        let good = encode(std::slice::from_ref(&f));

        let mut extra = good.clone();
        extra.push(0);
        let err = decode(&extra).unwrap_err();
        assert!(
            err.to_string().contains("1 bytes follow the last fragment"),
            "{err}"
        );

        let cut = &good[..good.len() - 1];
        let err = decode(cut).unwrap_err();
        assert!(err.to_string().contains("ends at byte"), "{err}");

        // A count no input of this length could hold is refused before allocating.
        let mut huge = b"MFEN\x01\x00\x00\x00".to_vec();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = decode(&huge).unwrap_err();
        assert!(err.to_string().contains("announces 4294967295"), "{err}");

        // No units, one series `E E` naming unit 0, no sources, no fragments.
        let mut bad_series = b"MFEN\x01\x00\x01\x03E E\x00\x00\x00".to_vec();
        let err = decode(&bad_series).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("corrupt envelope at byte 7: series #0 in the dictionary: meter id `E E` contains ' '"),
            "{err}"
        );
        bad_series[9] = b'E';
        assert_eq!(
            decode(&bad_series).unwrap_err().to_string(),
            "corrupt envelope at byte 11: series #0 names unit 0 of a 0-entry dictionary"
        );
    }

    // Property tests -------------------------------------------------------------------------

    fn arb_value() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(0i64),
            Just(MAX_ABS_VALUE - 1),
            Just(-(MAX_ABS_VALUE - 1)),
            -(MAX_ABS_VALUE - 1)..MAX_ABS_VALUE,
            (0i64..3000).prop_map(|v| v * 1000),
            (-20i64..20).prop_map(|v| v * 1_000_000),
            (-5i64..5).prop_map(|v| v * 100_000_000_000_000),
        ]
    }

    fn arb_slots(len: usize) -> impl Strategy<Value = Vec<Option<i64>>> {
        prop_oneof![
            proptest::collection::vec(proptest::option::weighted(0.8, arb_value()), len),
            proptest::collection::vec(arb_value().prop_map(Some), len),
            (arb_value(), proptest::collection::vec(any::<bool>(), len))
                .prop_map(|(v, keep)| keep.into_iter().map(|k| k.then_some(v)).collect()),
            Just(vec![None; len]),
        ]
    }

    fn arb_series() -> impl Strategy<Value = SeriesId> {
        prop_oneof![
            proptest::sample::select(vec!["EE00027", "VABD000163-E1", "a", "m.n:o_p-q"]),
            "[A-Za-z0-9._:-]{1,64}".prop_map(|s| Box::leak(s.into_boxed_str()) as &str),
        ]
        .prop_map(|s| s.parse().unwrap())
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(vec![
                "",
                "kWh",
                "kVArh",
                "s3://drop/2024/a.csv#etag=9b2cf535",
                "日本語 ünïcode",
            ])
            .prop_map(String::from),
            "\\PC{0,12}",
            "x{200,300}",
        ]
    }

    fn arb_fragment() -> impl Strategy<Value = Fragment> {
        let days =
            Day::from_ymd(1900, 1, 1).unwrap().days()..=Day::from_ymd(2999, 12, 31).unwrap().days();
        (
            arb_series(),
            arb_text(),
            prop_oneof![days.clone(), Just(*days.start()), Just(*days.end())],
            prop_oneof![
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
                -3i64..3,
                1_500_000_000_000i64..1_800_000_000_000
            ],
            arb_text(),
            prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..100],
            0u8..64,
            proptest::sample::select(INTERVAL_MINUTES.to_vec()),
        )
            .prop_flat_map(
                |(series, unit, days, version, source, line, quality, minutes)| {
                    arb_slots(slots_per_day(minutes).unwrap()).prop_map(move |values| {
                        let mut slots = Slots::new(values.len());
                        for (i, v) in values.iter().enumerate() {
                            if let Some(v) = v {
                                slots.set(i, *v);
                            }
                        }
                        Fragment {
                            series: series.clone(),
                            day: Day::from_days(days).unwrap(),
                            version,
                            source: Arc::from(source.as_str()),
                            line,
                            interval_minutes: minutes,
                            unit: Unit::from_stored(&unit),
                            quality: Quality(quality),
                            slots,
                        }
                    })
                },
            )
    }

    /// Random fragments, each one by a random mask made to repeat parts of the previous one
    /// (series, day or next day, version, source, next line, quality, layout) as real batches
    /// do, so every elision in the head byte is exercised.
    fn arb_batch(max: usize) -> impl Strategy<Value = Vec<Fragment>> {
        proptest::collection::vec((arb_fragment(), any::<u8>()), 0..max).prop_map(|items| {
            let mut out: Vec<Fragment> = Vec::with_capacity(items.len());
            for (mut f, mask) in items {
                if let Some(p) = out.last() {
                    if mask & 1 != 0 {
                        f.series = p.series.clone();
                        f.unit = p.unit.clone();
                    }
                    if mask & 2 != 0 {
                        f.day = p.day;
                    } else if mask & 4 != 0 {
                        f.day = Day::from_days(p.day.days() + 1).unwrap_or(p.day);
                    }
                    if mask & 8 != 0 {
                        f.version = p.version;
                    }
                    if mask & 16 != 0 {
                        f.source = p.source.clone();
                    }
                    if mask & 32 != 0 {
                        f.line = p.line.wrapping_add(1);
                    }
                    if mask & 64 != 0 {
                        f.quality = p.quality;
                    }
                    if mask & 128 != 0 {
                        f.interval_minutes = p.interval_minutes;
                        f.slots = p.slots.clone();
                    }
                }
                out.push(f);
            }
            out
        })
    }

    proptest! {
        #[test]
        fn round_trips_exactly(batch in arb_batch(12)) {
            let bytes = encode(&batch);
            prop_assert_eq!(&decode(&bytes).unwrap(), &batch);
            let lazily: Result<Vec<_>, _> = fragments(&bytes).unwrap().collect();
            prop_assert_eq!(&lazily.unwrap(), &batch);
        }

        #[test]
        fn splits_under_any_cap(batch in arb_batch(16), cap in 8usize..700) {
            let (records, too_large) = pack(&batch, cap);
            let mut decoded = Vec::new();
            for r in &records {
                prop_assert!(r.len() <= cap);
                let fs = decode(r).unwrap();
                prop_assert!(!fs.is_empty());
                decoded.extend(fs);
            }
            let expected: Vec<Fragment> = batch
                .iter()
                .enumerate()
                .filter(|(i, _)| !too_large.contains(i))
                .map(|(_, f)| f.clone())
                .collect();
            prop_assert_eq!(decoded, expected);
            for &i in &too_large {
                prop_assert!(encode(std::slice::from_ref(&batch[i])).len() > cap);
            }
        }

        #[test]
        fn exact_division_agrees_with_the_operator(
            q in prop_oneof![-MAX_ABS_VALUE..MAX_ABS_VALUE, Just(0i64), Just(-1i64), Just(1i64)],
            e in 0usize..=MAX_SCALE,
        ) {
            // Every multiple of 10^e whose quotient a scaled value can have.
            let v = q / POW10[e] * POW10[e];
            prop_assert_eq!(exact_div(v, e), v / POW10[e]);
        }

        #[test]
        fn raw_copies_encode_like_the_decoded_fragments(batch in arb_batch(12), cap in 64usize..2000) {
            // Regrouping without decoding: the same bytes as encoding the fragments afresh,
            // whatever envelope boundaries the cap puts between them.
            let (records, _) = pack(&batch, cap);
            for record in &records {
                let env = Envelope::parse(record).unwrap();
                let mut copy = EnvelopeBuilder::new(cap);
                for raw in env.raw_fragments() {
                    copy.push_raw(&raw.unwrap()).unwrap();
                }
                prop_assert_eq!(&copy.finish(), record);
            }
            // One fragment at a time into separate envelopes, in reverse order.
            let bytes = encode(&batch);
            let env = Envelope::parse(&bytes).unwrap();
            let raws = env.all_raw_fragments().unwrap();
            prop_assert_eq!(raws.len(), batch.len());
            for (raw, f) in raws.iter().rev().zip(batch.iter().rev()) {
                prop_assert_eq!((raw.series, raw.day, raw.version, &**raw.source, raw.line), (&f.series, f.day, f.version, &*f.source, f.line));
                let mut one = EnvelopeBuilder::default();
                one.push_raw(raw).unwrap();
                prop_assert_eq!(decode(&one.finish()).unwrap(), vec![f.clone()]);
            }
        }

        #[test]
        fn shifted_lines_decode_as_the_fragments_further_down(batch in arb_batch(12), by in prop_oneof![Just(0u64), 1u64..1_000_000, Just(u64::MAX - 3)]) {
            let mut record = encode(&batch);
            shift_lines(&mut record, by).unwrap();
            let moved: Vec<Fragment> = batch
                .iter()
                .map(|f| Fragment { line: f.line.wrapping_add(by), ..f.clone() })
                .collect();
            prop_assert_eq!(decode(&record).unwrap(), moved.clone());
            // As if encoded with those lines in the first place.
            prop_assert_eq!(record, encode(&moved));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), headed in any::<bool>()) {
            let input = if headed { [&b"MFEN\x01"[..], &bytes].concat() } else { bytes };
            if let Ok(fs) = decode(&input) {
                // Whatever decodes is valid: it re-encodes and decodes to itself.
                prop_assert_eq!(decode(&encode(&fs)).unwrap(), fs);
            }
            if let Ok(env) = Envelope::parse(&input) {
                // All at once, or one by one: the same fragments, or the same first error.
                let one_by_one: Result<Vec<_>, _> = env.raw_fragments().collect();
                prop_assert_eq!(format!("{:?}", env.all_raw_fragments()), format!("{one_by_one:?}"));
            }
        }

        #[test]
        fn a_valid_record_gives_the_fragments_a_walk_gives(
            batch in arb_batch(6),
            flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..3),
        ) {
            let mut bytes = encode(&batch);
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            let walked = Envelope::parse(&bytes).and_then(|env| {
                env.all_raw_fragments().map(|raw| format!("{raw:?}"))
            });
            let mut observed = Vec::new();
            match (ValidRecord::check(bytes.clone(), |f| observed.push(format!("{f:?}"))), walked) {
                (Ok(valid), Ok(raw)) => {
                    prop_assert_eq!(valid.len(), batch.len());
                    prop_assert_eq!(valid.with_fragments(|f| format!("{f:?}")).unwrap(), raw.clone());
                    prop_assert_eq!(format!("[{}]", observed.join(", ")), raw);
                    prop_assert_eq!(valid.into_bytes(), bytes);
                }
                (Err((back, e)), Err(walk_error)) => {
                    prop_assert_eq!(back, bytes);
                    prop_assert_eq!(e.to_string(), walk_error.to_string());
                    prop_assert!(observed.is_empty(), "a corrupt record was observed");
                }
                (valid, walked) => prop_assert!(false, "check gave {valid:?}, the walk {walked:?}"),
            }
        }

        #[test]
        fn damaged_envelopes_never_panic(
            batch in arb_batch(6),
            flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut bytes = encode(&batch);
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            let whole = bytes.len();
            if let Some(c) = cut {
                bytes.truncate(c % whole);
            }
            // The raw walk accepts exactly what the decoder accepts: it decides quarantine.
            let raw_ok = Envelope::parse(&bytes)
                .is_ok_and(|env| env.raw_fragments().all(|r| r.is_ok()));
            prop_assert_eq!(raw_ok, decode(&bytes).is_ok());
            match decode(&bytes) {
                Ok(fs) => {
                    prop_assert_eq!(bytes.len(), whole, "a truncated envelope decoded");
                    prop_assert_eq!(decode(&encode(&fs)).unwrap(), fs);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
