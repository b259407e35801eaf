//! Corpora and measured functions of the parse benchmark (`cargo bench -p meterflow-bench`).
//!
//! Kept in a library so that the benchmark, its checks and any ad-hoc driver measure exactly
//! the same code: meterflow's push [`Parser`] fed 64 KiB chunks, and a baseline that does what a
//! typical implementation does (the `csv` crate, `str::from_utf8`, `str::parse::<f64>`).

use meterflow_core::synth::Spec;
use meterflow_core::{Format, Fragment, Parser, Reject, Sink};

/// Chunk size fed to the parser: what a streaming reader (S3 ranged GET, gzip) hands over.
pub const CHUNK: usize = 64 * 1024;
/// Fixed seed: the corpora are the same bytes on every run and machine.
pub const SEED: u64 = 20_190_101;

/// Counts what the parser emits, and sums it, so that no work can be optimised away.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counting {
    pub fragments: u64,
    pub slots: u64,
    pub total: i64,
    pub rejects: u64,
}

impl Sink for Counting {
    fn fragment(&mut self, f: &Fragment) {
        self.fragments += 1;
        self.slots += f.slots.len() as u64;
        self.total += f.total();
    }
    fn reject(&mut self, _reject: Reject) {
        self.rejects += 1;
    }
}

/// Parses `bytes` as one input, fed in [`CHUNK`]-sized pieces.
pub fn parse_chunked(
    bytes: &[u8],
    spec: &Spec,
) -> Result<Counting, meterflow_core::reject::FileError> {
    let mut sink = Counting::default();
    let mut parser = Parser::new(spec.options("bench"));
    for chunk in bytes.chunks(CHUNK) {
        parser.feed(chunk, &mut sink)?;
    }
    parser.finish(&mut sink)?;
    Ok(sink)
}

/// What the baseline saw: rows and the float sum of their interval values.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct BaselineSum {
    pub rows: u64,
    pub id_bytes: u64,
    pub total: f64,
}

/// The typical implementation of a wide-CSV daily total: `csv` byte records, UTF-8 checks on
/// the meter and date, `str::parse::<f64>` on every interval value, summed per row.
pub fn baseline_wide(bytes: &[u8]) -> csv::Result<BaselineSum> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    let mut out = BaselineSum::default();
    while rdr.read_byte_record(&mut rec)? {
        let meter = std::str::from_utf8(&rec[0]).unwrap_or_default();
        let date = std::str::from_utf8(&rec[1]).unwrap_or_default();
        out.id_bytes += (meter.len() + date.len()) as u64;
        let mut row = 0.0f64;
        for field in rec.iter().skip(2) {
            let text = std::str::from_utf8(field).unwrap_or("x");
            row += text.parse::<f64>().unwrap_or(0.0);
        }
        out.rows += 1;
        out.total += row;
    }
    Ok(out)
}

/// One benchmark input, generated in memory.
pub struct Corpus {
    /// Criterion group name, e.g. `wide-30min`.
    pub name: &'static str,
    pub format: Format,
    pub spec: Spec,
    pub bytes: Vec<u8>,
    /// The exact sum of the values blanked out of the generated file ([`Corpus::with_blanks`]).
    pub blanked: i64,
}

impl Corpus {
    pub fn new(name: &'static str, format: Format, spec: Spec) -> Corpus {
        let bytes = spec.generate(format).expect("benchmark specs are valid");
        Corpus {
            name,
            format,
            spec,
            bytes,
            blanked: 0,
        }
    }

    /// A wide corpus with about `per_mille` of its interval cells left empty, as missing
    /// readings are in real files (`M1,2019-01-01,0.1,,0.3`); each row keeps at least one
    /// value, so the series-days stay the oracle's.
    pub fn with_blanks(name: &'static str, spec: Spec, per_mille: u64) -> Corpus {
        let mut c = Corpus::new(name, Format::Wide, spec);
        let mut rng = meterflow_core::synth::SplitMix64::new(SEED ^ per_mille);
        let mut out = Vec::with_capacity(c.bytes.len());
        let mut lines = c.bytes.split_inclusive(|&b| b == b'\n');
        out.extend_from_slice(lines.next().unwrap_or_default());
        for line in lines {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let cells: Vec<&[u8]> = body.split(|&b| b == b',').collect();
            let blank: Vec<bool> = (0..cells.len())
                .map(|i| i >= 3 && rng.chance(per_mille))
                .collect();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if blank[i] {
                    let v = meterflow_core::value::parse_decimal(cell, 6);
                    c.blanked += v.ok().flatten().expect("generated cells are values");
                } else {
                    out.extend_from_slice(cell);
                }
            }
            out.push(b'\n');
        }
        c.bytes = out;
        c
    }

    /// The oracle's grand total and number of series-days.
    pub fn expected(&self) -> (i64, u64) {
        let (mut total, mut days) = (0i64, 0u64);
        self.spec.for_each_total(self.format, |_, _, t| {
            total += t;
            days += 1;
        });
        (total - self.blanked, days)
    }
}

/// The corpora's size in percent for a benchmark binary: `METERFLOW_BENCH_SCALE` (default
/// 100) under `cargo bench`, 1 when run as a test (`cargo test --benches`, no `--bench` flag),
/// so that the check stays quick.
pub fn scale() -> u32 {
    if !std::env::args().any(|a| a == "--bench") {
        return 1;
    }
    std::env::var("METERFLOW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000)
}

/// Meter-days per corpus are scaled by `percent` (100 = the sizes recorded in RESULTS.md:
/// wide ~90 MB, long ~50 MB, NEM12 30-min ~45 MB, NEM12 5-min ~50 MB).
pub fn corpora(percent: u32) -> Vec<Corpus> {
    let scaled = |meters: u32| (meters * percent / 100).max(1);
    let spec = |meters: u32, interval_minutes: u16| Spec {
        seed: SEED,
        interval_minutes,
        ..Spec::new(scaled(meters), 300)
    };
    vec![
        Corpus::new("wide-30min", Format::Wide, spec(1000, 30)),
        // The same file with 5 % of its readings missing (blank cells).
        Corpus::with_blanks("wide-gaps", spec(1000, 30), 50),
        Corpus::new("long-30min", Format::Long, spec(100, 30)),
        Corpus::new("nem12-30min", Format::Nem12, spec(500, 30)),
        Corpus::new("nem12-5min", Format::Nem12, spec(100, 5)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_and_baseline_agree_with_the_oracle_on_wide() {
        let c = Corpus::new("wide", Format::Wide, Spec::new(7, 20));
        let (total, days) = c.expected();
        let got = parse_chunked(&c.bytes, &c.spec).unwrap();
        assert_eq!((got.total, got.fragments, got.rejects), (total, days, 0));
        let base = baseline_wide(&c.bytes).unwrap();
        assert_eq!(base.rows, days);
        let exact = total as f64 / 1e6;
        assert!(
            (base.total - exact).abs() < 1e-6 * exact,
            "{base:?} {exact}"
        );
    }

    #[test]
    fn blanked_cells_are_missing_readings_to_the_parser_and_the_oracle() {
        let c = Corpus::with_blanks("gaps", Spec::new(7, 20), 100);
        let plain = Corpus::new("wide", Format::Wide, Spec::new(7, 20));
        assert!(c.blanked > 0 && c.bytes.len() < plain.bytes.len());
        assert!(c.bytes.windows(2).any(|w| w == b",,"));
        let (total, days) = c.expected();
        let got = parse_chunked(&c.bytes, &c.spec).unwrap();
        assert_eq!((got.total, got.fragments, got.rejects), (total, days, 0));
        // Missing, not zero: the parser's fragments hold fewer values than the full file's.
        #[derive(Default)]
        struct Present(usize);
        impl Sink for Present {
            fn fragment(&mut self, f: &Fragment) {
                self.0 += f.slots.present();
            }
            fn reject(&mut self, _: Reject) {}
        }
        let present = |c: &Corpus| {
            let (mut sink, mut parser) = (Present::default(), Parser::new(c.spec.options("b")));
            parser.feed(&c.bytes, &mut sink).unwrap();
            parser.finish(&mut sink).unwrap();
            sink.0
        };
        let blanks = c
            .bytes
            .windows(2)
            .filter(|w| w == b",," || w == b",\n")
            .count();
        assert_eq!(present(&c) + blanks, present(&plain));
    }

    #[test]
    fn small_chunks_change_nothing() {
        let c = Corpus::new("wide", Format::Wide, Spec::new(3, 4));
        let whole = parse_chunked(&c.bytes, &c.spec).unwrap();
        let mut sink = Counting::default();
        let mut parser = Parser::new(c.spec.options("bench"));
        for chunk in c.bytes.chunks(97) {
            parser.feed(chunk, &mut sink).unwrap();
        }
        parser.finish(&mut sink).unwrap();
        assert_eq!(sink, whole);
    }
}
