//! zip archives read front to back from their local headers, as a stream (see the module
//! documentation of [`super`]).

use std::io::{self, BufRead, Read, Take};

use flate2::bufread::DeflateDecoder;
use flate2::Crc;

use super::budget::Budget;
use super::input::{decoder_error, Input};
use super::{DecompressError, Limits, ZIP_SPLIT_MARKERS};

pub(super) const SIG_LOCAL: u32 = 0x0403_4b50;
pub(super) const SIG_CENTRAL: u32 = 0x0201_4b50;
pub(super) const SIG_END: u32 = 0x0605_4b50;
pub(super) const SIG_ZIP64_END: u32 = 0x0606_4b50;
pub(super) const SIG_ZIP64_LOCATOR: u32 = 0x0706_4b50;
pub(super) const SIG_ARCHIVE_EXTRA: u32 = 0x0806_4b50;
pub(super) const SIG_DIGITAL_SIGNATURE: u32 = 0x0505_4b50;
pub(super) const SIG_DESCRIPTOR: u32 = 0x0807_4b50;

pub(super) const FLAG_ENCRYPTED: u16 = 1 << 0;
pub(super) const FLAG_DESCRIPTOR: u16 = 1 << 3;
pub(super) const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;

pub(super) const METHOD_STORED: u16 = 0;
pub(super) const METHOD_DEFLATE: u16 = 8;
pub(super) const METHOD_AES: u16 = 99;

pub(super) const LOCAL_HEADER_LEN: usize = 30;

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn method_name(method: u16) -> &'static str {
    match method {
        1 => "shrink",
        2..=5 => "reduce",
        6 => "implode",
        9 => "deflate64",
        10 => "PKWARE DCL implode",
        12 => "bzip2",
        14 => "LZMA",
        18 => "IBM TERSE",
        19 => "IBM LZ77",
        20 | 93 => "zstd",
        94 => "MP3",
        95 => "xz",
        96 => "JPEG",
        97 => "WavPack",
        98 => "PPMd",
        _ => "unknown",
    }
}

fn zip_truncated(input: &str, detail: impl Into<String>) -> io::Error {
    DecompressError::Truncated {
        input: input.to_owned(),
        format: "zip",
        detail: detail.into(),
    }
    .into()
}

fn zip_corrupt(input: &str, detail: impl Into<String>) -> io::Error {
    DecompressError::Corrupt {
        input: input.to_owned(),
        format: "zip",
        detail: detail.into(),
    }
    .into()
}

/// The parts of a local file header that reading needs.
struct LocalHeader {
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    name: String,
    /// The extra field holds a ZIP64 record: a data descriptor then has 64-bit sizes.
    zip64: bool,
}

impl LocalHeader {
    /// Reads the header whose signature `input` is at.
    fn read<R: Read>(input: &mut Input<R>, archive: &str) -> io::Result<LocalHeader> {
        let h = input.peek(LOCAL_HEADER_LEN)?;
        if h.len() < LOCAL_HEADER_LEN {
            return Err(zip_truncated(
                archive,
                "the archive ends inside an entry header",
            ));
        }
        let flags = le16(&h[6..]);
        let method = le16(&h[8..]);
        let crc = le32(&h[14..]);
        let compressed32 = le32(&h[18..]);
        let uncompressed32 = le32(&h[22..]);
        let name_len = usize::from(le16(&h[26..]));
        let extra_len = usize::from(le16(&h[28..]));
        input.consume(LOCAL_HEADER_LEN);

        // Both lengths are below 64 KiB, so each fits the look-ahead buffer.
        let raw = input.peek(name_len)?;
        if raw.len() < name_len {
            return Err(zip_truncated(
                archive,
                "the archive ends inside an entry name",
            ));
        }
        // Names are UTF-8 (flag bit 11) or, in old archives, code page 437, which agrees with
        // UTF-8 on ASCII; anything else is replaced, deterministically.
        let name = String::from_utf8_lossy(&raw[..name_len]).into_owned();
        input.consume(name_len);

        let raw = input.peek(extra_len)?;
        if raw.len() < extra_len {
            return Err(zip_truncated(
                archive,
                "the archive ends inside an entry header",
            ));
        }
        let mut header = LocalHeader {
            flags,
            method,
            crc,
            compressed: u64::from(compressed32),
            uncompressed: u64::from(uncompressed32),
            name,
            zip64: false,
        };
        header.read_extra(&raw[..extra_len], compressed32, uncompressed32);
        input.consume(extra_len);
        Ok(header)
    }

    /// Takes 64-bit sizes from a ZIP64 extra field (id 1). In a local header the record holds
    /// both sizes (uncompressed first); a shorter one holds those whose 32-bit field is full.
    fn read_extra(&mut self, mut extra: &[u8], compressed32: u32, uncompressed32: u32) {
        while extra.len() >= 4 {
            let id = le16(extra);
            let size = usize::from(le16(&extra[2..]));
            let data = extra.get(4..4 + size).unwrap_or(&extra[4..]);
            if id == 1 {
                self.zip64 = true;
                if data.len() >= 16 {
                    if uncompressed32 == u32::MAX {
                        self.uncompressed = le64(data);
                    }
                    if compressed32 == u32::MAX {
                        self.compressed = le64(&data[8..]);
                    }
                } else {
                    let mut fields = data.chunks_exact(8);
                    if uncompressed32 == u32::MAX {
                        if let Some(v) = fields.next() {
                            self.uncompressed = le64(v);
                        }
                    }
                    if compressed32 == u32::MAX {
                        if let Some(v) = fields.next() {
                            self.compressed = le64(v);
                        }
                    }
                }
            }
            extra = extra.get(4 + size..).unwrap_or(&[]);
        }
    }
}

/// Whether an entry is data to read: directories and macOS Finder metadata are not.
fn is_data(entry: &str) -> bool {
    let base = entry.rsplit('/').next().unwrap_or(entry);
    !(entry.ends_with('/')
        || entry.ends_with('\\')
        || entry.starts_with("__MACOSX/")
        || base == ".DS_Store")
}

pub(super) fn read_zip<R, F>(
    input: &mut Input<R>,
    archive: &str,
    limits: Limits,
    f: &mut F,
) -> io::Result<u64>
where
    R: Read,
    F: FnMut(&str, &mut dyn super::InputRead) -> io::Result<()>,
{
    let head = input.peek(8)?;
    if ZIP_SPLIT_MARKERS.iter().any(|m| head.starts_with(m)) {
        input.consume(4);
    }
    let mut budget = Budget::new(limits);
    let mut entries = 0u64;
    let mut delivered = 0u64;
    loop {
        let at = input.consumed;
        let head = input.peek(4)?;
        if head.len() < 4 {
            return Err(zip_truncated(
                archive,
                format!("the archive ends at byte {at} before its central directory"),
            ));
        }
        match le32(head) {
            SIG_LOCAL => {}
            SIG_CENTRAL
            | SIG_END
            | SIG_ZIP64_END
            | SIG_ZIP64_LOCATOR
            | SIG_ARCHIVE_EXTRA
            | SIG_DIGITAL_SIGNATURE => return Ok(delivered),
            other => {
                return Err(zip_corrupt(
                    archive,
                    format!("expected an entry header at byte {at}, found {other:08x}"),
                ))
            }
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(DecompressError::TooManyEntries {
                input: archive.to_owned(),
                limit: limits.max_entries,
            }
            .into());
        }
        let header = LocalHeader::read(input, archive)?;
        let entry_name = format!("{archive}!{}", header.name);
        let data = is_data(&header.name);
        match EntryReader::open(input, &header, &entry_name, &mut budget) {
            Ok(mut entry) => {
                if data {
                    delivered += 1;
                    f(&entry_name, &mut entry)?;
                }
                // Whatever the callback left unread (all of it, for a skipped entry) is read
                // here: the next header follows the data, and the data must pass its checks.
                io::copy(&mut entry, &mut io::sink())?;
            }
            // An entry that cannot be decompressed (encrypted, another method) but whose size
            // the header gives: the callback reads its error, then the entry is stepped over
            // and the rest of the archive is read.
            Err(e) if header.flags & FLAG_DESCRIPTOR == 0 => {
                if data {
                    delivered += 1;
                    f(&entry_name, &mut Failing(Some(e)))?;
                }
                let skipped = io::copy(&mut input.take(header.compressed), &mut io::sink())?;
                if skipped < header.compressed {
                    return Err(zip_truncated(
                        &entry_name,
                        "the archive ends inside the entry",
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A reader whose first read fails with the error it holds (later reads return nothing).
pub(super) struct Failing(Option<io::Error>);

impl Read for Failing {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }
}

/// What an entry's data must match, known before (local header) or after (data descriptor).
#[derive(Clone, Copy)]
enum Expect {
    Header {
        crc: u32,
        compressed: u64,
        uncompressed: u64,
    },
    Descriptor {
        zip64: bool,
    },
}

enum Body<'a, R> {
    Stored(Take<&'a mut Input<R>>),
    Deflate(DeflateDecoder<Take<&'a mut Input<R>>>),
}

impl<'a, R: Read> Body<'a, R> {
    fn input(&mut self) -> &mut Input<R> {
        match self {
            Body::Stored(take) => take.get_mut(),
            Body::Deflate(decoder) => decoder.get_mut().get_mut(),
        }
    }

    fn take(&mut self) -> &mut Take<&'a mut Input<R>> {
        match self {
            Body::Stored(take) => take,
            Body::Deflate(decoder) => decoder.get_mut(),
        }
    }
}

enum State {
    Reading,
    Done,
    /// The entry's data failed a check or a limit: every later read repeats the error.
    Failed(DecompressError),
}

/// The decompressed data of one zip entry; checks CRC-32 and sizes at its end.
pub(super) struct EntryReader<'a, R> {
    body: Body<'a, R>,
    budget: &'a mut Budget,
    name: &'a str,
    expect: Expect,
    /// `Input::consumed` where the entry's data starts.
    data_start: u64,
    crc: Crc,
    size: u64,
    state: State,
}

impl<'a, R: Read> EntryReader<'a, R> {
    fn open(
        input: &'a mut Input<R>,
        header: &LocalHeader,
        name: &'a str,
        budget: &'a mut Budget,
    ) -> io::Result<EntryReader<'a, R>> {
        let unsupported = |e: DecompressError| Err(e.into());
        if header.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0
            || header.method == METHOD_AES
        {
            return unsupported(DecompressError::Encrypted {
                input: name.to_owned(),
            });
        }
        let descriptor = header.flags & FLAG_DESCRIPTOR != 0;
        let expect = if descriptor {
            Expect::Descriptor {
                zip64: header.zip64,
            }
        } else {
            Expect::Header {
                crc: header.crc,
                compressed: header.compressed,
                uncompressed: header.uncompressed,
            }
        };
        // With a descriptor the compressed size is unknown: the deflate stream marks its end.
        let limit = if descriptor {
            u64::MAX
        } else {
            header.compressed
        };
        let data_start = input.consumed;
        let body = match header.method {
            METHOD_STORED if descriptor => {
                return unsupported(DecompressError::StoredWithDescriptor {
                    input: name.to_owned(),
                })
            }
            METHOD_STORED => Body::Stored(input.take(limit)),
            METHOD_DEFLATE => Body::Deflate(DeflateDecoder::new(input.take(limit))),
            method => {
                return unsupported(DecompressError::UnsupportedMethod {
                    input: name.to_owned(),
                    method,
                    name: method_name(method),
                })
            }
        };
        Ok(EntryReader {
            body,
            budget,
            name,
            expect,
            data_start,
            crc: Crc::new(),
            size: 0,
            state: State::Reading,
        })
    }

    fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.input().inner_failed = false;
        let read = match &mut self.body {
            Body::Stored(take) => take.read(buf),
            Body::Deflate(decoder) => decoder.read(buf),
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                let inner_failed = self.body.input().inner_failed;
                return Err(decoder_error(e, inner_failed, self.name, "zip"));
            }
        };
        if n == 0 {
            self.finish()?;
            self.state = State::Done;
            return Ok(0);
        }
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        let consumed = self.body.input().consumed;
        self.budget.add(n, consumed, self.name)?;
        Ok(n)
    }

    /// At the end of the data: reads the data descriptor if there is one, checks CRC and sizes.
    fn finish(&mut self) -> io::Result<()> {
        let (crc, size) = (self.crc.sum(), self.size);
        let stored = matches!(self.body, Body::Stored(_));
        let left = self.body.take().limit();
        let (expected_crc, expected_compressed, expected_size, compressed) = match self.expect {
            Expect::Header {
                crc,
                compressed,
                uncompressed,
            } => {
                if left > 0 {
                    if stored {
                        return Err(zip_truncated(
                            self.name,
                            "the archive ends inside the entry",
                        ));
                    }
                    // The deflate stream ended before the compressed size the header gives:
                    // other readers ignore the rest, and so do we (it is still counted).
                    let skipped = io::copy(self.body.take(), &mut io::sink())?;
                    if skipped < left {
                        return Err(zip_truncated(
                            self.name,
                            "the archive ends inside the entry",
                        ));
                    }
                }
                (crc, compressed, uncompressed, compressed)
            }
            Expect::Descriptor { zip64 } => {
                let compressed = self.body.input().consumed - self.data_start;
                let input = self.body.input();
                let (c, cs, us) =
                    read_descriptor(input, zip64, (crc, compressed, size), self.name)?;
                (c, cs, us, compressed)
            }
        };
        let mismatch = |what, expected, actual| {
            Err(DecompressError::Size {
                input: self.name.to_owned(),
                what,
                expected,
                actual,
            }
            .into())
        };
        if expected_crc != crc {
            return Err(DecompressError::Crc {
                input: self.name.to_owned(),
                expected: expected_crc,
                actual: crc,
            }
            .into());
        }
        if expected_size != size {
            return mismatch("uncompressed", expected_size, size);
        }
        if expected_compressed != compressed {
            return mismatch("compressed", expected_compressed, compressed);
        }
        Ok(())
    }
}

impl<R: Read> Read for EntryReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Done => return Ok(0),
            State::Failed(ref e) => return Err(e.clone().into()),
            State::Reading if buf.is_empty() => return Ok(0),
            State::Reading => {}
        }
        let read = self.read_data(buf);
        if let Err(e) = &read {
            // An error of the underlying reader leaves nothing half done: reading may resume.
            if let Some(e) = DecompressError::of(e) {
                self.state = State::Failed(e.clone());
            }
        }
        read
    }
}

/// Reads the data descriptor after an entry's data and returns (crc, compressed, uncompressed).
///
/// The descriptor has an optional signature and 32- or 64-bit sizes, and nothing says which:
/// the form whose values equal what was actually read wins (a 32-bit CRC and two sizes make an
/// accidental match practically impossible), in the order the local header suggests (ZIP64
/// first when it has a ZIP64 extra field; some writers use 64-bit sizes without one). When no
/// form matches, the likeliest is parsed so that the mismatch can be reported.
fn read_descriptor<R: Read>(
    input: &mut Input<R>,
    zip64: bool,
    actual: (u32, u64, u64),
    name: &str,
) -> io::Result<(u32, u64, u64)> {
    let bytes = input.peek(24)?;
    let parse = |signature: bool, width: usize| -> Option<(usize, (u32, u64, u64))> {
        let at = if signature { 4 } else { 0 };
        let len = at + 4 + 2 * width;
        if bytes.len() < len || (signature && le32(bytes) != SIG_DESCRIPTOR) {
            return None;
        }
        let size = |b: &[u8]| {
            if width == 8 {
                le64(b)
            } else {
                u64::from(le32(b))
            }
        };
        let crc = le32(&bytes[at..]);
        let compressed = size(&bytes[at + 4..]);
        let uncompressed = size(&bytes[at + 4 + width..]);
        Some((len, (crc, compressed, uncompressed)))
    };
    let forms = if zip64 {
        [(true, 8), (false, 8), (true, 4), (false, 4)]
    } else {
        [(true, 4), (false, 4), (true, 8), (false, 8)]
    };
    let exact = forms
        .iter()
        .filter_map(|&(signature, width)| parse(signature, width))
        .find(|&(_, values)| values == actual);
    let signature = bytes.len() >= 4 && le32(bytes) == SIG_DESCRIPTOR;
    let chosen = exact.or_else(|| parse(signature, if zip64 { 8 } else { 4 }));
    match chosen {
        Some((len, values)) => {
            input.consume(len);
            Ok(values)
        }
        None => Err(zip_truncated(
            name,
            "the archive ends inside the data descriptor",
        )),
    }
}
