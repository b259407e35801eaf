//! Parse throughput: meterflow's `Parser` on synthetic corpora, and the csv-crate baseline on
//! the same wide corpus in the same run. `bench/run.sh` runs this and prints the figures.
//!
//! `METERFLOW_BENCH_SCALE=N` scales the corpora to N percent (default 100). When run as a test
//! (`cargo test --benches`, no `--bench` flag) the corpora are 1% so the check stays quick.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use meterflow_bench::{baseline_wide, corpora, parse_chunked, scale};
use meterflow_core::value::format_amount;
use meterflow_core::Format;

fn parse(c: &mut Criterion) {
    for corpus in corpora(scale()) {
        let size = corpus.bytes.len() as u64;
        let (total, days) = corpus.expected();
        // Checked once, untimed: a wrong answer stops the run; a format whose handler cannot
        // read the corpus yet is reported and skipped.
        match parse_chunked(&corpus.bytes, &corpus.spec) {
            Ok(got) => {
                assert_eq!(
                    (got.total, got.rejects),
                    (total, 0),
                    "{}: parsed totals differ from the oracle",
                    corpus.name
                );
                eprintln!(
                    "{}: {:.1} MB, {days} series-days, {} fragments, {} kWh",
                    corpus.name,
                    size as f64 / 1e6,
                    got.fragments,
                    format_amount(got.total)
                );
            }
            Err(e) => {
                eprintln!(
                    "{}: SKIPPED, the parser refuses the corpus: {e}",
                    corpus.name
                );
                continue;
            }
        }
        let mut g = c.benchmark_group(corpus.name);
        g.throughput(Throughput::Bytes(size));
        // Each iteration parses tens of MB: flat sampling keeps the run short.
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(5));
        g.bench_function("meterflow", |b| {
            b.iter(|| parse_chunked(black_box(&corpus.bytes), &corpus.spec).expect("checked"))
        });
        if corpus.format == Format::Wide {
            g.bench_function("csv-f64-baseline", |b| {
                b.iter(|| baseline_wide(black_box(&corpus.bytes)).expect("valid CSV"))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
