//! gzip: every member of a multi-member file, as `cat a.gz b.gz` makes, within the limits,
//! with access points to re-enter the stream part way (zran-style).
//!
//! A part of a large `.gz` that a Lambda hands over must not inflate the file from its start
//! again (that is O(N × file) for N parts). So while it inflates, the reader notes the deflate
//! block boundaries it passes ([`AccessPoint`]: the compressed byte and bit there, the output
//! offset, the member's CRC so far and the 32 KiB window before it), keeps the recent ones,
//! and [`GzipReader::resume`] enters the stream at one: the next part reads the object from
//! that byte on and inflates at most a block and a read buffer more than its share.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

use super::budget::Budget;
use super::inflate::{RawInflate, WINDOW};
use super::input::Input;
use super::{DecompressError, Limits};

/// Where a gzip stream can be entered: the end of a deflate block (not the last of its
/// member), with what inflating on from there needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPoint {
    /// Offset in the file of the first compressed byte to read from: the byte holding the
    /// point's first bits when `bits` > 0.
    pub compressed: u64,
    /// How many high bits of the byte at `compressed` belong to the stream after the point
    /// (0 to 7; 0: the point falls between bytes and reading starts at `compressed`).
    pub bits: u8,
    /// Decompressed bytes of the file (all members) before the point.
    pub out: u64,
    /// Decompressed bytes of the point's member before it (checked against its trailer).
    pub member_out: u64,
    /// CRC-32 of those bytes (checked against the member's trailer).
    pub crc: u32,
    /// The last (up to) 32 KiB of the member's output before the point: what later matches
    /// may refer back to.
    pub window: Vec<u8>,
}

/// Output kept behind the reader's position to find a point at or before a cut: a parser
/// cuts at most one read buffer (256 KiB) behind what it has been given.
const KEEP_BEHIND: u64 = 1 << 20;
/// Points closer than this to the previous one replace it: bounds the points kept (and their
/// 32 KiB windows) to about `KEEP_BEHIND / MIN_SPACING`, whatever the block size.
const MIN_SPACING: u64 = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Body,
    Trailer,
    Done,
}

pub(super) struct GzipReader<'a, R> {
    input: Input<R>,
    /// File offset of the input's first byte (0, or a resumed part's access point).
    start: u64,
    inflate: RawInflate,
    stage: Stage,
    crc: crc32fast::Hasher,
    member_out: u64,
    out: u64,
    /// A member has begun (a file that ends before one does is truncated).
    begun: bool,
    budget: Budget,
    name: &'a str,
    points: VecDeque<AccessPoint>,
    window: Vec<u8>,
}

impl<'a, R: Read> GzipReader<'a, R> {
    /// A reader of the gzip file `input` (from its first byte).
    pub(super) fn new(input: Input<R>, limits: Limits, name: &'a str) -> Self {
        GzipReader::with(input, limits, name, RawInflate::new())
    }

    fn with(input: Input<R>, limits: Limits, name: &'a str, inflate: RawInflate) -> Self {
        GzipReader {
            input,
            start: 0,
            inflate,
            stage: Stage::Header,
            crc: crc32fast::Hasher::new(),
            member_out: 0,
            out: 0,
            begun: false,
            budget: Budget::new(limits),
            name,
            points: VecDeque::new(),
            window: Vec::with_capacity(WINDOW),
        }
    }

    /// A reader entering the file at `at`: `input` yields the file's bytes from
    /// `at.compressed` on, and the reader's output starts at `at.out`.
    pub(super) fn resume(
        mut input: Input<R>,
        limits: Limits,
        name: &'a str,
        at: &AccessPoint,
    ) -> io::Result<Self> {
        let mut inflate = RawInflate::new();
        let byte = if at.bits > 0 {
            let first = *input.fill_buf()?.first().ok_or_else(|| {
                truncated(
                    name,
                    "the file ends at the hand-over's access point".to_owned(),
                )
            })?;
            input.consume(1);
            first
        } else {
            0
        };
        inflate
            .enter(at.bits, byte, &at.window)
            .map_err(|detail| corrupt(name, detail.to_owned()))?;
        let mut reader = GzipReader {
            start: at.compressed,
            stage: Stage::Body,
            crc: crc32fast::Hasher::new_with_initial_len(at.crc, at.member_out),
            member_out: at.member_out,
            out: at.out,
            begun: true,
            budget: Budget::resumed(limits, at.out),
            ..GzipReader::with(input, limits, name, inflate)
        };
        // The point entered is one for this reader too (a cut before the next block's end).
        reader.points.push_back(at.clone());
        Ok(reader)
    }

    /// The last kept access point at or before output offset `out`.
    pub(super) fn access_point(&self, out: u64) -> Option<AccessPoint> {
        self.points.iter().rev().find(|p| p.out <= out).cloned()
    }

    fn consumed(&self) -> u64 {
        self.start + self.input.consumed
    }

    /// Notes the block boundary the inflater stands at, `bits` unused in its last byte
    /// (`None`: the start of a member's stream, before any block).
    fn mark(&mut self, bits: Option<u8>) {
        match bits {
            Some(_) => self.inflate.window(&mut self.window),
            None => self.window.clear(),
        }
        let bits = bits.unwrap_or(0);
        let point = AccessPoint {
            compressed: self.consumed() - u64::from(bits > 0),
            bits,
            out: self.out,
            member_out: self.member_out,
            crc: self.crc.clone().finalize(),
            window: std::mem::take(&mut self.window),
        };
        if let Some(last) = self.points.back_mut() {
            if last.out + MIN_SPACING > point.out {
                self.window = std::mem::replace(last, point).window;
                return;
            }
        }
        self.points.push_back(point);
        // Keep the newest point at least KEEP_BEHIND back, and those after it.
        while self.points.len() > 1 && self.points[1].out + KEEP_BEHIND <= self.out {
            self.window = self
                .points
                .pop_front()
                .map(|p| p.window)
                .unwrap_or_default();
        }
    }

    /// Reads `N` bytes of a header or trailer; fewer is a truncated file.
    fn exact<const N: usize>(&mut self, what: &str) -> io::Result<[u8; N]> {
        let got = self.input.peek(N)?;
        let mut bytes = [0u8; N];
        if got.len() < N {
            let detail = format!("the {what} ends after {} of its {N} bytes", got.len());
            return Err(truncated(self.name, detail));
        }
        bytes.copy_from_slice(&got[..N]);
        self.input.consume(N);
        Ok(bytes)
    }

    /// Reads a member's header (RFC 1952), checking its CRC-16 when it has one.
    fn header(&mut self) -> io::Result<()> {
        let fixed: [u8; 10] = self.exact("gzip header")?;
        if fixed[..2] != [0x1f, 0x8b] {
            let detail = format!(
                "bytes {:02x} {:02x} where a gzip member should start (data after the last member?)",
                fixed[0], fixed[1]
            );
            return Err(corrupt(self.name, detail));
        }
        if fixed[2] != 8 {
            let detail = format!(
                "compression method {} (gzip only defines 8, deflate)",
                fixed[2]
            );
            return Err(corrupt(self.name, detail));
        }
        let flags = fixed[3];
        if flags & 0xe0 != 0 {
            return Err(corrupt(
                self.name,
                format!("reserved header flags {flags:#04x}"),
            ));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&fixed);
        if flags & 0x04 != 0 {
            let len: [u8; 2] = self.exact("gzip extra field length")?;
            crc.update(&len);
            self.skip(u64::from(u16::from_le_bytes(len)), None, &mut crc)?;
        }
        for flag in [0x08, 0x10] {
            if flags & flag != 0 {
                self.skip(u64::MAX, Some(0), &mut crc)?;
            }
        }
        if flags & 0x02 != 0 {
            let want: [u8; 2] = self.exact("gzip header CRC")?;
            let got = crc.finalize() as u16;
            if u16::from_le_bytes(want) != got {
                let detail = format!(
                    "header CRC {:04x}, the header gives {got:04x}",
                    u16::from_le_bytes(want)
                );
                return Err(corrupt(self.name, detail));
            }
        }
        Ok(())
    }

    /// Consumes `len` header bytes, or up to and including `until`, into `crc`.
    fn skip(
        &mut self,
        mut len: u64,
        until: Option<u8>,
        crc: &mut crc32fast::Hasher,
    ) -> io::Result<()> {
        while len > 0 {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Err(truncated(
                    self.name,
                    "the gzip header ends in a field".to_owned(),
                ));
            }
            let mut n = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            if let Some(end) = until.and_then(|b| memchr::memchr(b, &buf[..n])) {
                n = end + 1;
                len = n as u64;
            }
            crc.update(&buf[..n]);
            self.input.consume(n);
            len -= n as u64;
        }
        Ok(())
    }

    fn trailer(&mut self) -> io::Result<()> {
        let t: [u8; 8] = self.exact("gzip trailer")?;
        let want = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        let got = std::mem::take(&mut self.crc).finalize();
        if want != got {
            let detail =
                format!("CRC-32 mismatch: the trailer says {want:08x}, the data gives {got:08x}");
            return Err(corrupt(self.name, detail));
        }
        if size != self.member_out as u32 {
            let detail = format!(
                "the trailer gives the size as {size} (mod 2^32), the data is {} bytes",
                self.member_out
            );
            return Err(corrupt(self.name, detail));
        }
        Ok(())
    }

    /// Inflates into `buf`: the bytes produced (0 only when the member's stream ended).
    fn body(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut stalls = 0;
        loop {
            let avail = self.input.fill_buf()?;
            let eof = avail.is_empty();
            let step = self
                .inflate
                .step(avail, buf)
                .map_err(|detail| corrupt(self.name, detail))?;
            self.input.consume(step.consumed);
            let n = step.produced;
            self.crc.update(&buf[..n]);
            self.member_out += n as u64;
            self.out += n as u64;
            if step.boundary.is_some() {
                self.mark(step.boundary);
            }
            if step.end {
                self.stage = Stage::Trailer;
            }
            if n > 0 || step.end {
                return Ok(n);
            }
            if step.consumed == 0 {
                stalls += 1;
                if eof || stalls > 2 {
                    let detail = "the deflate stream ends before its last block".to_owned();
                    return Err(truncated(self.name, detail));
                }
            }
        }
    }
}

impl<R: Read> Read for GzipReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.stage {
                Stage::Done => return Ok(0),
                Stage::Header => {
                    if self.begun && self.input.fill_buf()?.is_empty() {
                        self.stage = Stage::Done;
                        continue;
                    }
                    self.header()?;
                    self.begun = true;
                    self.inflate.reset();
                    self.member_out = 0;
                    self.stage = Stage::Body;
                    // The start of a member's deflate stream is a point too (no window).
                    self.mark(None);
                }
                Stage::Body => {
                    let n = self.body(buf)?;
                    if n > 0 {
                        self.budget.add(n, self.consumed(), self.name)?;
                        return Ok(n);
                    }
                }
                Stage::Trailer => {
                    self.trailer()?;
                    self.stage = Stage::Header;
                }
            }
        }
    }
}

fn truncated(input: &str, detail: String) -> io::Error {
    DecompressError::Truncated {
        input: input.to_owned(),
        format: "gzip",
        detail,
    }
    .into()
}

fn corrupt(input: &str, detail: String) -> io::Error {
    DecompressError::Corrupt {
        input: input.to_owned(),
        format: "gzip",
        detail,
    }
    .into()
}
