//! Decompresses one `.gz`/`.zip` file with meterflow's streaming decompressor and throws the
//! output away, printing `plain_bytes seconds MB/s` (MB of decompressed output per second):
//! what a later part of a handed-over compressed object spends skipping to its offset, and
//! the ceiling on ingesting compressed files on one core (`bench/compressed.sh`).

use std::time::Instant;

use meterflow_core::decompress::{for_each_input, Limits};

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| std::io::Error::other("usage: inflate_file FILE"))?;
    let file = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(&path)?);
    let started = Instant::now();
    let mut bytes = 0u64;
    for_each_input(file, &path, Limits::default(), |_, input| {
        bytes += std::io::copy(input, &mut std::io::sink())?;
        Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!("{bytes} {secs:.3} {:.0}", bytes as f64 / 1e6 / secs);
    Ok(())
}
