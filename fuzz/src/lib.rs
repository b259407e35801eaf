//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz_targets/`, nightly,
//! `cargo fuzz run NAME`) and the stable smoke test (`tests/smoke.rs`, run by `scripts/test`),
//! so that CI exercises every target without the nightly toolchain and sanitizers.

use meterflow_core::day::{parse_instant_ms, Day, MAX_YEAR, MIN_YEAR};
use meterflow_core::decompress::{for_each_input, Limits};
use meterflow_core::envelope::{decode, EnvelopeBuilder};
use meterflow_core::reject::Collect;
use meterflow_core::{Options, Parser, Stats};

/// A target: a name (its folders under `seeds/` and `regressions/`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 4] = [
    ("parse_chunks", parse_chunks),
    ("decompress", decompress),
    ("envelope", envelope),
    ("dates", dates),
];

/// Parses `input` cut at the lengths `cuts` gives in turn (0 means the rest).
fn parse(input: &[u8], cuts: &[u8]) -> (Collect, Result<Stats, String>) {
    let mut sink = Collect::default();
    let mut parser = Parser::new(Options::new("fuzz.csv", 1_546_300_800_000));
    let mut rest = input;
    let mut sizes = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = match sizes.next().copied().unwrap_or(0) {
            0 => rest.len(),
            n => usize::from(n).min(rest.len()),
        };
        if let Err(e) = parser.feed(&rest[..n], &mut sink) {
            return (sink, Err(e.to_string()));
        }
        rest = &rest[n..];
    }
    let stats = parser.finish(&mut sink).map_err(|e| e.to_string());
    (sink, stats)
}

/// Format detection and every parser, fed the same bytes whole and in chunks cut anywhere
/// (the first four bytes choose the chunk sizes): the fragments, rejects and counts must be
/// identical (hand-over cuts and S3's ranged reads cut inputs at arbitrary bytes), and every
/// row must be accepted or rejected.
pub fn parse_chunks(data: &[u8]) {
    let (cuts, input) = data.split_at(data.len().min(4));
    let (whole, whole_stats) = parse(input, &[0]);
    let (chunked, chunked_stats) = parse(input, cuts);
    assert_eq!(
        whole.fragments, chunked.fragments,
        "fragments differ by chunking"
    );
    assert_eq!(whole.rejects, chunked.rejects, "rejects differ by chunking");
    assert_eq!(whole_stats, chunked_stats, "counts differ by chunking");
    if let Ok(s) = whole_stats {
        assert_eq!(
            s.rows_read,
            s.rows_accepted + s.rows_rejected,
            "a row unaccounted for"
        );
    }
}

const MAX_DECOMPRESSED: u64 = 8 << 20;

/// The gzip and zip adapters on any bytes: they stream, stay within their limits, and fail
/// with an error rather than a panic or unbounded output.
pub fn decompress(data: &[u8]) {
    let limits = Limits {
        max_bytes: MAX_DECOMPRESSED,
        ratio_after: 1 << 20,
        ..Limits::default()
    };
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let _ = for_each_input(data, "fuzz.gz", limits, |_name, input| loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        assert!(
            total <= MAX_DECOMPRESSED + buf.len() as u64,
            "read past the limit"
        );
    });
}

/// The envelope decoder on any bytes (a Kinesis record can be anything): an error or
/// fragments, never a panic or a huge allocation; what decodes re-encodes to the same
/// fragments.
pub fn envelope(data: &[u8]) {
    let Ok(fragments) = decode(data) else {
        return;
    };
    let mut builder = EnvelopeBuilder::new(usize::MAX);
    for f in &fragments {
        if builder.try_push(f).is_err() {
            return;
        }
    }
    let again = decode(&builder.finish()).expect("an envelope we built decodes");
    assert_eq!(
        fragments, again,
        "decode → encode → decode changed the fragments"
    );
}

/// The date and timestamp readers used by every format and by the API's `from`/`to`: any
/// text gives a day in range or an error, and a day prints and reads back as itself.
pub fn dates(data: &[u8]) {
    if let Ok(day) = Day::parse(data) {
        let text = day.to_string();
        let year: i32 = text[..4].parse().expect("a four-digit year");
        assert!((MIN_YEAR..=MAX_YEAR).contains(&year), "{text}");
        assert_eq!(
            Day::parse_iso(&text).ok(),
            Some(day),
            "{text} does not read back"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Day::parse_iso(text);
        let _ = parse_instant_ms(text);
    }
}
