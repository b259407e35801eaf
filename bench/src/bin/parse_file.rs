//! Parses one file from disk with meterflow's parser alone (no packing, no store) and prints
//! `bytes seconds MB/s fragments rejects`: the "parser alone" line of `bench/ingest.sh`.

use std::io::Read;
use std::time::Instant;

use meterflow_bench::Counting;
use meterflow_core::{Options, Parser};

fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| std::io::Error::other("usage: parse_file FILE"))?;
    let mut file = std::fs::File::open(&path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let mut parser = Parser::new(Options::new(path.as_str(), 0));
    let mut sink = Counting::default();
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        parser
            .feed(&buf[..n], &mut sink)
            .map_err(std::io::Error::other)?;
    }
    parser.finish(&mut sink).map_err(std::io::Error::other)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{bytes} {secs:.3} {:.0} {} {}",
        bytes as f64 / 1e6 / secs,
        sink.fragments,
        sink.rejects
    );
    Ok(())
}
