//! Envelope encoding alone: the parsed fragments of the wide corpora (complete days, and days
//! with 5 % of readings blank) pushed into 1 MiB envelopes, as the splitter packs records.
//! The fragments are parsed once, untimed; the figure is fragments per second.
//!
//! `cargo bench -p meterflow-bench --bench encode`; `METERFLOW_BENCH_SCALE` as for `parse`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use meterflow_bench::{corpora, scale};
use meterflow_core::envelope::{EnvelopeBuilder, PushError, MAX_ENVELOPE_BYTES};
use meterflow_core::{Fragment, Parser, Reject, Sink};

#[derive(Default)]
struct Keep(Vec<Fragment>);

impl Sink for Keep {
    fn fragment(&mut self, f: &Fragment) {
        self.0.push(f.clone());
    }
    fn reject(&mut self, r: Reject) {
        panic!("the corpus has a bad row: {r:?}");
    }
}

/// Bytes of every envelope the fragments pack into.
fn encode(fragments: &[Fragment], builder: &mut EnvelopeBuilder) -> usize {
    let mut bytes = 0;
    for f in fragments {
        if let Err(PushError::Full) = builder.try_push(f) {
            bytes += builder.take().len();
            builder
                .try_push(f)
                .expect("a fragment that was Full fits alone");
        }
    }
    bytes + builder.take().len()
}

fn bench(c: &mut Criterion) {
    for corpus in corpora(scale()) {
        if !corpus.name.starts_with("wide") {
            continue;
        }
        let mut keep = Keep::default();
        let mut parser = Parser::new(corpus.spec.options("bench"));
        parser
            .feed(&corpus.bytes, &mut keep)
            .expect("the corpus parses");
        parser.finish(&mut keep).expect("the corpus parses");
        let fragments = keep.0;
        let mut builder = EnvelopeBuilder::new(MAX_ENVELOPE_BYTES);
        eprintln!(
            "encode {}: {} fragments into {} bytes of envelopes",
            corpus.name,
            fragments.len(),
            encode(&fragments, &mut builder)
        );
        let mut g = c.benchmark_group(format!("encode-{}", corpus.name));
        g.throughput(Throughput::Elements(fragments.len() as u64));
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(20);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(4));
        g.bench_function("envelope", |b| {
            b.iter(|| encode(black_box(&fragments), &mut builder))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
