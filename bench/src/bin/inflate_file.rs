//! Decompresses one `.gz`/`.zip` file with meterflow's streaming decompressor and throws the
//! output away, printing `plain_bytes seconds MB/s` (MB of decompressed output per second):
//! the ceiling on ingesting compressed files on one core (`bench/compressed.sh`). Reads are
//! of 256 KiB, as the splitter's.
//!
//! `inflate_file FILE.gz PARTS` instead reads a gzip file as a handed-over object is read in
//! PARTS parts: each part opens the file afresh at the access point the previous part kept
//! before its cut (`resume_gzip`), skips to the cut and reads its share. It prints
//! `parts inflated_bytes seconds skipped_bytes`: what the parts inflated in all, against the
//! file's size (one read) and against restarting each part from the start (the old way,
//! whose cost is the sum of the cuts' offsets, printed as `restart_bytes`).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::time::Instant;

use meterflow_core::decompress::{for_each_input, resume_gzip, AccessPoint, InputRead, Limits};

const BUF: usize = 256 * 1024;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| io::Error::other("usage: inflate_file FILE [PARTS]"))?;
    let parts: Option<u64> = args.next().and_then(|p| p.parse().ok());
    let started = Instant::now();
    let mut bytes = 0u64;
    for_each_input(open(&path, 0)?, &path, Limits::default(), |_, input| {
        bytes += read_to(input, 0, u64::MAX)?.0;
        Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    println!("{bytes} {secs:.3} {:.0}", bytes as f64 / 1e6 / secs);
    if let Some(parts) = parts.filter(|&p| p > 1) {
        in_parts(&path, bytes, parts)?;
    }
    Ok(())
}

fn open(path: &str, at: u64) -> io::Result<BufReader<File>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(at))?;
    Ok(BufReader::with_capacity(BUF, file))
}

/// Reads `r` up to output offset `cut` (from `at`), returning the bytes read and the access
/// point kept at or before the cut.
fn read_to(r: &mut dyn InputRead, mut at: u64, cut: u64) -> io::Result<(u64, Option<AccessPoint>)> {
    let mut buf = vec![0u8; BUF];
    let start = at;
    while at < cut {
        let want = BUF.min((cut - at) as usize);
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        at += n as u64;
    }
    Ok((at - start, r.access_point(cut)))
}

fn in_parts(path: &str, size: u64, parts: u64) -> io::Result<()> {
    let cuts: Vec<u64> = (1..=parts).map(|k| size * k / parts).collect();
    let started = Instant::now();
    let (mut inflated, mut skipped) = (0u64, 0u64);
    let mut from: Option<(AccessPoint, u64)> = None;
    for &cut in &cuts {
        let mut next = None;
        let mut part = |_: &str, r: &mut dyn InputRead| -> io::Result<()> {
            let start = match &from {
                None => 0,
                Some((at, offset)) => {
                    let skip = io::copy(&mut r.take(offset - at.out), &mut io::sink())?;
                    skipped += skip;
                    inflated += skip;
                    *offset
                }
            };
            let (read, point) = read_to(r, start, cut)?;
            inflated += read;
            next = point.map(|p| (p, cut));
            Ok(())
        };
        match &from {
            None => for_each_input(open(path, 0)?, path, Limits::default(), &mut part).map(drop)?,
            Some((at, _)) => resume_gzip(
                open(path, at.compressed)?,
                path,
                Limits::default(),
                at,
                &mut part,
            )?,
        }
        if cut < size {
            from = Some(next.ok_or_else(|| io::Error::other("no access point before a cut"))?);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let restart: u64 = cuts[..cuts.len() - 1].iter().sum::<u64>() + size;
    println!("{parts} {inflated} {secs:.3} {skipped} restart_bytes={restart}");
    Ok(())
}
