//! The fuzz targets on stable, for CI: every seed and every regression input (inputs that once
//! crashed a target), then a bounded number of deterministic mutations of each seed (bit
//! flips, byte insertions and deletions, splices of two seeds). A smoke, not a fuzzing run:
//! the long runs use `cargo fuzz run` (docs/RELIABILITY.md).

use std::path::{Path, PathBuf};

/// Mutations per target (a few seconds in a debug build).
const MUTATIONS: usize = 3_000;

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.expect("a directory entry").path())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read an input");
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = a.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                let byte = b",\n\r\"0.9:-\x00\xff"[rng.below(11)];
                v.insert(i, byte);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i).min(64);
                v.drain(i..i + n);
            }
            3 => {
                let cut = rng.below(v.len() + 1);
                let from = rng.below(b.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&b[from..]);
            }
            _ if !v.is_empty() => {
                let i = rng.below(v.len());
                let j = rng.below(v.len());
                v.swap(i, j);
            }
            _ => {}
        }
    }
    v
}

#[test]
fn every_target_survives_its_seeds_regressions_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, target) in meterflow_fuzz::TARGETS {
        let seeds = inputs(&root.join("seeds").join(name));
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for (path, bytes) in seeds
            .iter()
            .chain(&inputs(&root.join("regressions").join(name)))
        {
            eprintln!("{name}: {}", path.display());
            target(bytes);
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for _ in 0..MUTATIONS {
            let a = &seeds[rng.below(seeds.len())].1;
            let b = &seeds[rng.below(seeds.len())].1;
            let input = mutate(&mut rng, a, b);
            let run = std::panic::catch_unwind(|| target(&input));
            if run.is_err() {
                let keep = std::env::temp_dir().join(format!("meterflow-fuzz-{name}-crash"));
                std::fs::write(&keep, &input).expect("keep the crashing input");
                panic!(
                    "{name} failed on a mutated seed, kept at {}",
                    keep.display()
                );
            }
        }
    }
}
