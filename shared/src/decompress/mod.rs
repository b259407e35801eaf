//! Streaming decompression of uploads: `.gz` and `.zip`, recognised from their first bytes,
//! never from the file name.
//!
//! [`for_each_input`] takes any [`Read`] (a local file, an S3 body bridged to a blocking
//! reader) and hands the caller one plain byte stream per input it contains: the file itself
//! when it is not compressed, the decompressed data of a gzip file (every member of a
//! multi-member file, as `cat a.gz b.gz` makes), or each file entry of a zip archive, named
//! `archive.zip!dir/entry.csv`. Nothing is ever held whole in memory: a 64 KiB read buffer,
//! the inflater's state (a 32 KiB window and its tables) and, for gzip, the access points of
//! about the last MiB of output (at most ~33 windows of 32 KiB: see [`AccessPoint`]) are all
//! it keeps, whatever the size of the file.
//!
//! Zip archives are read front to back from their local headers, as a stream: the central
//! directory at the end of the file is never needed (an S3 body cannot seek). Entries may be
//! stored or deflated; deflated entries may use a data descriptor (general purpose flag bit 3,
//! the output of streaming writers such as Java's `ZipOutputStream` or Python's `zipfile` on a
//! pipe), in its 32-bit or ZIP64 form, with or without its optional signature. The CRC-32 and
//! the sizes of every entry are checked. What cannot be read as a stream is a clear error that
//! names the entry: other compression methods (bzip2, LZMA, zstd, deflate64, ...), encrypted
//! entries, and stored entries with a data descriptor (nothing marks where their data ends).
//! Directory entries and macOS Finder metadata (`__MACOSX/`, `.DS_Store`) are not data and
//! are skipped.
//!
//! Decompression bombs are an error, not an outage: [`Limits`] bounds the decompressed bytes
//! of a file, the ratio of decompressed bytes to compressed bytes read, and the number of zip
//! entries. Errors are [`io::Error`]s that wrap a [`DecompressError`] (find it with
//! [`DecompressError::of`]); errors of the underlying reader (a dropped connection) pass
//! through unchanged, so the caller can tell a bad file from a failed transport.

use std::io::{self, Read};

mod budget;
mod gzip;
mod inflate;
mod input;
mod zip;

pub use gzip::AccessPoint;
use gzip::GzipReader;
/// The most history an [`AccessPoint`]'s window holds (deflate's 32 KiB).
pub use inflate::WINDOW as ACCESS_WINDOW;
use input::Input;
use zip::read_zip;

/// One input of a file, as [`for_each_input`] gives it: its bytes and, for a gzip stream,
/// the places where a later reader can enter it ([`resume_gzip`]).
pub trait InputRead: Read {
    /// The last access point this reader kept at or before output offset `out` (it keeps the
    /// points of roughly the last MiB it produced); `None` for inputs that are not gzip.
    fn access_point(&self, out: u64) -> Option<AccessPoint> {
        let _ = out;
        None
    }
}

impl<R: Read> InputRead for Input<R> {}
impl InputRead for zip::Failing {}
impl<R: Read> InputRead for zip::EntryReader<'_, R> {}

impl<R: Read> InputRead for GzipReader<'_, R> {
    fn access_point(&self, out: u64) -> Option<AccessPoint> {
        GzipReader::access_point(self, out)
    }
}

/// How a file is compressed, as its first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not a compressed format meterflow knows: passed through unchanged.
    None,
    /// gzip (`1f 8b`), possibly several members one after the other.
    Gzip,
    /// zip archive (a local file header `PK\x03\x04`, or an empty archive).
    Zip,
    /// A compression or archive format that is recognised but not supported (its name).
    Unsupported(&'static str),
}

/// How many leading bytes [`sniff`] looks at; fewer are fine at the end of a short file.
pub const SNIFF_LEN: usize = 10;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_LOCAL: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY: &[u8] = b"PK\x05\x06";
/// Marker some tools put before the first local header of a (single-segment) split archive.
const ZIP_SPLIT_MARKERS: [&[u8]; 2] = [b"PK\x07\x08PK\x03\x04", b"PK00PK\x03\x04"];

/// Tells the compression of a file from its first bytes (up to [`SNIFF_LEN`] of them).
pub fn sniff(first: &[u8]) -> Compression {
    if first.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if first.starts_with(ZIP_LOCAL)
        || first.starts_with(ZIP_EMPTY)
        || ZIP_SPLIT_MARKERS.iter().any(|m| first.starts_with(m))
    {
        Compression::Zip
    } else if first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Unsupported("zstd")
    } else if first.starts_with(b"\xfd7zXZ\x00") {
        Compression::Unsupported("xz")
    } else if first.starts_with(b"7z\xbc\xaf\x27\x1c") {
        Compression::Unsupported("7z")
    } else if first.starts_with(b"Rar!\x1a\x07") {
        Compression::Unsupported("rar")
    } else if first.len() >= 10
        && first.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&first[3])
        && (first[4..10] == *b"1AY&SY" || first[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
    {
        Compression::Unsupported("bzip2")
    } else {
        Compression::None
    }
}

/// Bounds on what decompressing one file may produce. Exceeding one is an error that says
/// which limit to raise if the file is genuine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most decompressed bytes one file (all entries of an archive together) may produce.
    pub max_bytes: u64,
    /// Most decompressed bytes per compressed byte read. `u64::MAX` disables the check.
    pub max_ratio: u64,
    /// The ratio is only checked once this many bytes have been decompressed, so that small
    /// files of repetitive content are not flagged.
    pub ratio_after: u64,
    /// Most entries (files and directories) a zip archive may hold.
    pub max_entries: u64,
}

impl Default for Limits {
    /// 64 GiB, 500:1 after the first 4 MiB, 65,535 zip entries.
    ///
    /// Why 500:1: the most compressible genuine meter data measured (a year of all-zero wide
    /// CSV rows or NEM12 300 records, `gzip -9`) compresses about 50:1, while deflate cannot
    /// exceed about 1032:1, the ratio a bomb made of one repeated byte reaches. 500:1 leaves
    /// genuine files a tenfold margin and still stops every maximally compressed bomb.
    fn default() -> Limits {
        Limits {
            max_bytes: 64 << 30,
            max_ratio: 500,
            ratio_after: 4 << 20,
            max_entries: 65_535,
        }
    }
}

/// Why a file could not be decompressed. Carried inside the [`io::Error`]s of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    /// The decompressed output passed [`Limits::max_bytes`].
    #[error("{input}: decompressed size exceeds the limit of {limit} bytes (ratio so far {ratio}:1); if this file is genuine, raise --max-decompressed")]
    TooLarge {
        /// The input being read when the limit was passed (for an archive, the entry: the limit
        /// covers all entries together).
        input: String,
        /// The [`Limits::max_bytes`] in force, in bytes.
        limit: u64,
        /// Decompressed bytes per compressed byte read so far (rounded down): helps tell a bomb
        /// from a large genuine file.
        ratio: u64,
    },
    /// The decompressed output outgrew [`Limits::max_ratio`] times the compressed bytes read:
    /// most likely a decompression bomb.
    #[error("{input}: {out} bytes decompressed from {consumed} compressed bytes, a ratio above the limit of {max_ratio}:1: this looks like a decompression bomb; if this file is genuine, raise --max-ratio")]
    RatioTooHigh {
        /// The input being read (for an archive, the entry).
        input: String,
        /// Bytes decompressed so far.
        out: u64,
        /// Compressed bytes read so far.
        consumed: u64,
        /// The [`Limits::max_ratio`] in force.
        max_ratio: u64,
    },
    /// The zip archive holds more entries than [`Limits::max_entries`].
    #[error("{input}: the archive holds more than {limit} entries; split it into several archives, or raise --max-zip-entries")]
    TooManyEntries {
        /// The archive's name.
        input: String,
        /// The [`Limits::max_entries`] in force.
        limit: u64,
    },
    /// The file is compressed or archived in a format meterflow does not open (see
    /// [`Compression::Unsupported`]).
    #[error("{input}: {format} files are not supported; upload the file uncompressed, gzip-compressed (.gz) or in a zip archive")]
    UnsupportedFormat {
        /// The file's name.
        input: String,
        /// The format's name: `zstd`, `xz`, `7z`, `rar` or `bzip2`.
        format: &'static str,
    },
    /// A zip entry uses a compression method other than stored or deflate; the other entries
    /// are still read.
    #[error("{input}: compression method {name} ({method}) is not supported; re-create the archive with deflate (the default of zip tools) or upload the file gzip-compressed")]
    UnsupportedMethod {
        /// The entry, named `archive.zip!entry`.
        input: String,
        /// The method number from the entry's local header.
        method: u16,
        /// The method's usual name (`bzip2`, `LZMA`, `zstd`, ...), or `unknown`.
        name: &'static str,
    },
    /// A zip entry is encrypted; the other entries are still read.
    #[error("{input}: the entry is encrypted; upload the file unencrypted")]
    Encrypted {
        /// The entry, named `archive.zip!entry`.
        input: String,
    },
    /// A stored zip entry gives its size only in a data descriptor after its data, so a stream
    /// cannot tell where the data ends.
    #[error("{input}: a stored (uncompressed) entry written with a data descriptor cannot be read as a stream; re-create the archive with compression (deflate) or with a tool that writes sizes in the local header")]
    StoredWithDescriptor {
        /// The entry, named `archive.zip!entry`.
        input: String,
    },
    /// A zip entry's data does not match its CRC-32: the archive is corrupt.
    #[error("{input}: CRC-32 mismatch (the archive says {expected:08x}, the data gives {actual:08x}): the file is corrupt; upload it again")]
    Crc {
        /// The entry, named `archive.zip!entry`.
        input: String,
        /// The CRC-32 the archive records for the entry.
        expected: u32,
        /// The CRC-32 of the data as read.
        actual: u32,
    },
    /// A zip entry's compressed or uncompressed size differs from what the archive records.
    #[error("{input}: the {what} size is {actual} bytes but the archive says {expected}: the file is corrupt; upload it again")]
    Size {
        /// The entry, named `archive.zip!entry`.
        input: String,
        /// Which size disagrees: `compressed` or `uncompressed`.
        what: &'static str,
        /// The size the archive records, in bytes.
        expected: u64,
        /// The size of the data as read, in bytes.
        actual: u64,
    },
    /// The compressed data ends before its format says it should: usually an incomplete upload.
    #[error("{input}: the {format} data ends unexpectedly ({detail}): the file is truncated, probably an incomplete upload; upload it again")]
    Truncated {
        /// The input: the file's name, or `archive.zip!entry` inside a zip archive.
        input: String,
        /// The layer that ended early: `gzip` or `zip`.
        format: &'static str,
        /// Where the data ended, as the decoder or archive reader describes it.
        detail: String,
    },
    /// The compressed data cannot be decoded: the file is damaged, or is not what its first
    /// bytes claim.
    #[error("{input}: the {format} data is corrupt ({detail}); upload the file again, or check how it was compressed")]
    Corrupt {
        /// The input: the file's name, or `archive.zip!entry` inside a zip archive.
        input: String,
        /// The layer that is corrupt: `gzip` or `zip`.
        format: &'static str,
        /// What is wrong, as the decoder or archive reader describes it.
        detail: String,
    },
}

impl DecompressError {
    /// The `DecompressError` inside an error returned by this module, if it is one (it is
    /// not when the underlying reader failed, or the caller's callback did).
    pub fn of(e: &io::Error) -> Option<&DecompressError> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }

    /// Whether the error concerns one entry of a zip archive only, which the reader steps
    /// over to read the others (an encrypted entry, one compressed with another method).
    pub fn is_entry_only(&self) -> bool {
        matches!(
            self,
            DecompressError::Encrypted { .. } | DecompressError::UnsupportedMethod { .. }
        )
    }

    fn kind(&self) -> io::ErrorKind {
        use DecompressError::*;
        match self {
            UnsupportedFormat { .. }
            | UnsupportedMethod { .. }
            | Encrypted { .. }
            | StoredWithDescriptor { .. } => io::ErrorKind::Unsupported,
            Truncated { .. } => io::ErrorKind::UnexpectedEof,
            TooLarge { .. }
            | RatioTooHigh { .. }
            | TooManyEntries { .. }
            | Crc { .. }
            | Size { .. }
            | Corrupt { .. } => io::ErrorKind::InvalidData,
        }
    }
}

impl From<DecompressError> for io::Error {
    fn from(e: DecompressError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// Calls `f` once for each input inside `reader`: once for a plain or gzip file (named
/// `name`), once per file entry of a zip archive (named `name!entry/path`). Returns how many
/// inputs were given to `f` (0 for an archive with no files).
///
/// `f` should read its input to the end: integrity checks (CRC-32, sizes) happen there, and
/// their failure is a read error. For a zip entry, what `f` leaves unread is read and checked
/// before the next entry; an error of `f` stops everything and is returned unchanged (so an `f`
/// that returns `Ok` after an entry's failure lets the rest of the archive be read). An entry
/// that cannot be decompressed but can be stepped over (see [`DecompressError::is_entry_only`])
/// is given to `f` as a reader that fails with that error. A zip
/// archive is read up to its central directory: a file that ends before it is an error (but
/// the entries before the cut have been given to `f` by then: the caller must treat the whole
/// file as failed).
///
/// The `limits` apply to decompressed data; a plain file passes through unchecked.
pub fn for_each_input<R, F>(reader: R, name: &str, limits: Limits, mut f: F) -> io::Result<u64>
where
    R: Read,
    F: FnMut(&str, &mut dyn InputRead) -> io::Result<()>,
{
    let mut input = Input::new(reader);
    match sniff(input.peek(SNIFF_LEN)?) {
        Compression::None => {
            f(name, &mut input)?;
            Ok(1)
        }
        Compression::Gzip => {
            f(name, &mut GzipReader::new(input, limits, name))?;
            Ok(1)
        }
        Compression::Zip => read_zip(&mut input, name, limits, &mut f),
        Compression::Unsupported(format) => Err(DecompressError::UnsupportedFormat {
            input: name.to_owned(),
            format,
        }
        .into()),
    }
}

/// Calls `f` once with the gzip file `name` entered at `at` (an [`InputRead::access_point`] of
/// an earlier read of the same file): `reader` yields the file's bytes from `at.compressed`
/// on, and what `f` reads is the decompressed file from offset `at.out` on. The limits count
/// from there as if the file had been read from its start.
pub fn resume_gzip<R, F>(
    reader: R,
    name: &str,
    limits: Limits,
    at: &AccessPoint,
    mut f: F,
) -> io::Result<()>
where
    R: Read,
    F: FnMut(&str, &mut dyn InputRead) -> io::Result<()>,
{
    f(
        name,
        &mut GzipReader::resume(Input::new(reader), limits, name, at)?,
    )
}

#[cfg(test)]
mod tests {
    use super::zip::*;
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder};
    use flate2::Crc;
    use proptest::prelude::*;
    use std::io::Write;

    type Inputs = Vec<(String, Vec<u8>)>;

    fn read_all_from(reader: impl Read, limits: Limits) -> io::Result<Inputs> {
        let mut out = Vec::new();
        let n = for_each_input(reader, "up.bin", limits, |name, r| {
            let mut data = Vec::new();
            r.read_to_end(&mut data)?;
            out.push((name.to_owned(), data));
            Ok(())
        })?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    fn read_all_with(bytes: &[u8], limits: Limits) -> io::Result<Inputs> {
        read_all_from(bytes, limits)
    }

    fn read_all(bytes: &[u8]) -> io::Result<Inputs> {
        read_all_with(bytes, Limits::default())
    }

    fn err_of(e: &io::Error) -> &DecompressError {
        DecompressError::of(e).unwrap_or_else(|| panic!("not a DecompressError: {e:?}"))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = Crc::new();
        crc.update(data);
        crc.sum()
    }

    fn csv(rows: usize) -> Vec<u8> {
        let mut s = String::from("Meter,Date,v\n");
        for i in 0..rows {
            s.push_str(&format!("M{},2019-01-{:02},{}.5\n", i % 7, i % 28 + 1, i));
        }
        s.into_bytes()
    }

    /// Reads at most `chunk` bytes per call, to exercise every buffer boundary.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Fails like a dropped connection after `ok` bytes.
    struct Dropped<'a> {
        data: &'a [u8],
        ok: usize,
    }

    impl Read for Dropped<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "reset by peer",
                ));
            }
            let n = self.ok.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.ok -= n;
            Ok(n)
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Desc {
        None,
        Sig,
        NoSig,
        /// ZIP64 extra field in the local header, 64-bit sizes in the descriptor.
        Zip64,
        /// 64-bit sizes in the descriptor without a ZIP64 extra field (Java does this).
        Zip64NoExtra,
    }

    struct E<'a> {
        name: &'a str,
        data: &'a [u8],
        method: u16,
        desc: Desc,
        flags: u16,
        crc: Option<u32>,
    }

    fn ent<'a>(name: &'a str, data: &'a [u8], method: u16) -> E<'a> {
        E {
            name,
            data,
            method,
            desc: Desc::None,
            flags: 0,
            crc: None,
        }
    }

    impl E<'_> {
        fn desc(mut self, desc: Desc) -> Self {
            self.desc = desc;
            self
        }
        fn flags(mut self, flags: u16) -> Self {
            self.flags = flags;
            self
        }
        fn crc(mut self, crc: u32) -> Self {
            self.crc = Some(crc);
            self
        }
    }

    /// Builds zip archives byte by byte, central directory included.
    #[derive(Default)]
    struct Zip {
        out: Vec<u8>,
        central: Vec<u8>,
        entries: u16,
    }

    impl Zip {
        fn add(mut self, e: E) -> Zip {
            let body = if e.method == METHOD_STORED {
                e.data.to_vec()
            } else {
                deflate(e.data)
            };
            let crc = e.crc.unwrap_or_else(|| crc32(e.data));
            let (csize, usize) = (body.len() as u64, e.data.len() as u64);
            let described = e.desc != Desc::None;
            let flags = e.flags | 0x0800 | if described { FLAG_DESCRIPTOR } else { 0 };
            let (mut hcrc, mut hc, mut hu) = (crc, csize as u32, usize as u32);
            if described {
                (hcrc, hc, hu) = (0, 0, 0);
            }
            let mut extra = Vec::new();
            if e.desc == Desc::Zip64 {
                (hc, hu) = (u32::MAX, u32::MAX);
                extra.extend(1u16.to_le_bytes());
                extra.extend(16u16.to_le_bytes());
                extra.extend([0; 16]);
            }
            let offset = self.out.len() as u32;
            let o = &mut self.out;
            o.extend(SIG_LOCAL.to_le_bytes());
            o.extend(20u16.to_le_bytes());
            o.extend(flags.to_le_bytes());
            o.extend(e.method.to_le_bytes());
            o.extend([0, 0, 0x21, 0]); // 00:00, 1980-01-01
            o.extend(hcrc.to_le_bytes());
            o.extend(hc.to_le_bytes());
            o.extend(hu.to_le_bytes());
            o.extend((e.name.len() as u16).to_le_bytes());
            o.extend((extra.len() as u16).to_le_bytes());
            o.extend(e.name.as_bytes());
            o.extend(&extra);
            o.extend(&body);
            match e.desc {
                Desc::None => {}
                Desc::Sig | Desc::NoSig => {
                    if e.desc == Desc::Sig {
                        o.extend(SIG_DESCRIPTOR.to_le_bytes());
                    }
                    o.extend(crc.to_le_bytes());
                    o.extend((csize as u32).to_le_bytes());
                    o.extend((usize as u32).to_le_bytes());
                }
                Desc::Zip64 | Desc::Zip64NoExtra => {
                    o.extend(SIG_DESCRIPTOR.to_le_bytes());
                    o.extend(crc.to_le_bytes());
                    o.extend(csize.to_le_bytes());
                    o.extend(usize.to_le_bytes());
                }
            }
            let c = &mut self.central;
            c.extend(SIG_CENTRAL.to_le_bytes());
            c.extend(20u16.to_le_bytes());
            c.extend(20u16.to_le_bytes());
            c.extend(flags.to_le_bytes());
            c.extend(e.method.to_le_bytes());
            c.extend([0, 0, 0x21, 0]);
            c.extend(crc.to_le_bytes());
            c.extend((csize as u32).to_le_bytes());
            c.extend((usize as u32).to_le_bytes());
            c.extend((e.name.len() as u16).to_le_bytes());
            c.extend([0; 12]); // extra, comment, disk, attributes
            c.extend(offset.to_le_bytes());
            c.extend(e.name.as_bytes());
            self.entries += 1;
            self
        }

        fn finish(mut self) -> Vec<u8> {
            let (at, len) = (self.out.len() as u32, self.central.len() as u32);
            self.out.append(&mut self.central);
            self.out.extend(SIG_END.to_le_bytes());
            self.out.extend([0; 4]);
            self.out.extend(self.entries.to_le_bytes());
            self.out.extend(self.entries.to_le_bytes());
            self.out.extend(len.to_le_bytes());
            self.out.extend(at.to_le_bytes());
            self.out.extend([0; 2]);
            self.out
        }
    }

    fn zip(entries: Vec<E>) -> Vec<u8> {
        entries.into_iter().fold(Zip::default(), Zip::add).finish()
    }

    fn names(inputs: &Inputs) -> Vec<&str> {
        inputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    const MAC_METADATA: &[u8] = b"\0\x05\x16\x07";

    /// An archive with every feature the reader supports.
    fn kitchen_sink() -> (Vec<u8>, Inputs) {
        let (a, b, c, d) = (csv(30), csv(200), csv(3), csv(50));
        let bytes = zip(vec![
            ent("data/", b"", METHOD_STORED),
            ent("data/a.csv", &a, METHOD_STORED),
            ent("data/b.csv", &b, METHOD_DEFLATE),
            ent("c.csv", &c, METHOD_DEFLATE).desc(Desc::Sig),
            ent("__MACOSX/data/._b.csv", MAC_METADATA, METHOD_STORED),
            ent("d.csv", &d, METHOD_DEFLATE).desc(Desc::NoSig),
            ent("empty.csv", b"", METHOD_DEFLATE).desc(Desc::Zip64),
            ent("b64.csv", &b, METHOD_DEFLATE).desc(Desc::Zip64NoExtra),
        ]);
        let want = vec![
            ("up.bin!data/a.csv".to_owned(), a),
            ("up.bin!data/b.csv".to_owned(), b.clone()),
            ("up.bin!c.csv".to_owned(), c),
            ("up.bin!d.csv".to_owned(), d),
            ("up.bin!empty.csv".to_owned(), Vec::new()),
            ("up.bin!b64.csv".to_owned(), b),
        ];
        (bytes, want)
    }

    fn multi_member_gzip() -> (Vec<u8>, Vec<u8>, usize) {
        let (first, second) = (csv(100), csv(40));
        let mut bytes = gzip(&first);
        let boundary = bytes.len();
        bytes.extend(gzip(&second));
        ([first, second].concat(), bytes, boundary)
    }

    #[test]
    fn sniffs_from_content() {
        assert_eq!(sniff(&gzip(b"x")), Compression::Gzip);
        assert_eq!(sniff(&zip(vec![ent("a", b"x", 0)])), Compression::Zip);
        assert_eq!(sniff(&zip(vec![])), Compression::Zip);
        assert_eq!(sniff(b"PK\x07\x08PK\x03\x04"), Compression::Zip);
        assert_eq!(sniff(b"Meter,Date,0:00"), Compression::None);
        assert_eq!(sniff(b"100,NEM12,2005"), Compression::None);
        assert_eq!(sniff(b""), Compression::None);
        assert_eq!(sniff(b"\x1f"), Compression::None);
        assert_eq!(sniff(b"PK"), Compression::None);
        assert_eq!(sniff(b"BZh91AY&SY..."), Compression::Unsupported("bzip2"));
        assert_eq!(sniff(b"BZh is not"), Compression::None);
        assert_eq!(
            sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Unsupported("zstd")
        );
        assert_eq!(sniff(b"\xfd7zXZ\x00\x00"), Compression::Unsupported("xz"));
    }

    #[test]
    fn plain_input_passes_through_unchanged() {
        for data in [csv(5000), Vec::new(), b"M".to_vec(), b"\x1f".to_vec()] {
            let got = read_all(&data).unwrap();
            assert_eq!(got, vec![("up.bin".to_owned(), data.clone())]);
            let got = read_all_from(
                Trickle {
                    data: &data,
                    chunk: 7,
                },
                Limits::default(),
            );
            assert_eq!(got.unwrap(), vec![("up.bin".to_owned(), data)]);
        }
    }

    #[test]
    fn plain_input_large_reads_bypass_the_buffer() {
        let data = csv(20_000);
        for chunk in [7, usize::MAX] {
            let mut got = Vec::new();
            let reader = Trickle { data: &data, chunk };
            for_each_input(reader, "p", Limits::default(), |_, r| {
                let mut buf = vec![0; 1 << 20];
                // The first read is served from the sniffing buffer, later ones directly.
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            })
            .unwrap();
            assert_eq!(got, data);
        }
    }

    #[test]
    fn plain_input_is_not_limited() {
        let data = vec![b'0'; 3 << 20];
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        assert_eq!(read_all_with(&data, limits).unwrap()[0].1.len(), 3 << 20);
    }

    #[test]
    fn unsupported_formats_are_named() {
        let e = read_all(b"\xfd7zXZ\x00\x00\x04\xe6\xd6\xb4\x46").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(matches!(
            err_of(&e),
            DecompressError::UnsupportedFormat { format: "xz", .. }
        ));
        assert!(e.to_string().contains("up.bin: xz files are not supported"));
    }

    #[test]
    fn gzip_is_decompressed() {
        let data = csv(10_000);
        let got = read_all(&gzip(&data)).unwrap();
        assert_eq!(got, vec![("up.bin".to_owned(), data)]);
        assert_eq!(read_all(&gzip(b"")).unwrap()[0].1, b"");
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let (want, bytes, _) = multi_member_gzip();
        assert_eq!(read_all(&bytes).unwrap()[0].1, want);
        let trickled = read_all_from(
            Trickle {
                data: &bytes,
                chunk: 3,
            },
            Limits::default(),
        );
        assert_eq!(trickled.unwrap()[0].1, want);
    }

    /// Reads `bytes` (a gzip file) in 256 KiB reads as the splitter does, asking after each
    /// read for the access point at or before that read's start (where a cut in it could be).
    fn points_of(bytes: &[u8]) -> Vec<AccessPoint> {
        let mut points: Vec<AccessPoint> = Vec::new();
        for_each_input(bytes, "up.gz", Limits::default(), |_, r| {
            let (mut buf, mut at) = (vec![0; 256 << 10], 0u64);
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if let Some(p) = r.access_point(at) {
                    // Kept close behind: a part entering there inflates little it throws away.
                    assert!(p.out <= at && at - p.out < 512 << 10, "{} for {at}", p.out);
                    if points.last() != Some(&p) {
                        points.push(p);
                    }
                }
                at += n as u64;
            }
        })
        .unwrap();
        points
    }

    #[test]
    fn a_gzip_file_entered_at_an_access_point_reads_on_exactly() {
        let (first, second) = (csv(80_000), csv(30_000));
        let mut bytes = gzip(&first);
        bytes.extend(gzip(&second));
        let all = [first, second].concat();
        let points = points_of(&bytes);
        assert!(points.len() >= 5, "{} points", points.len());
        assert!(points.iter().any(|p| p.bits > 0) && points.iter().any(|p| p.out > 2_000_000));
        for p in &points {
            let mut got = Vec::new();
            let rest = Trickle {
                data: &bytes[p.compressed as usize..],
                chunk: 999,
            };
            resume_gzip(rest, "up.gz", Limits::default(), p, |name, r| {
                assert_eq!(name, "up.gz");
                r.read_to_end(&mut got).map(drop)
            })
            .unwrap();
            assert_eq!(got, &all[p.out as usize..], "entered at {}", p.out);
        }
    }

    /// A point that does not belong to the file is caught by the member's CRC, never read as
    /// data silently; the limits count from the file's start.
    #[test]
    fn a_wrong_access_point_or_a_bomb_is_an_error_when_resumed() {
        let data = csv(80_000);
        let bytes = gzip(&data);
        let p = points_of(&bytes).pop().unwrap();
        let resume = |p: &AccessPoint, limits| {
            let rest = &bytes[p.compressed as usize..];
            resume_gzip(rest, "up.gz", limits, p, |_, r| {
                io::copy(r, &mut io::sink()).map(drop)
            })
        };
        let mut bad = p.clone();
        bad.crc ^= 1;
        let e = resume(&bad, Limits::default()).unwrap_err();
        assert!(e.to_string().contains("CRC-32 mismatch"), "{e}");
        let mut bad = p.clone();
        bad.window.iter_mut().for_each(|b| *b ^= 0x20);
        let e = resume(&bad, Limits::default()).unwrap_err();
        assert!(e.to_string().contains("CRC-32 mismatch"), "{e}");
        let mut bad = p.clone();
        bad.member_out += 1;
        let e = resume(&bad, Limits::default()).unwrap_err();
        assert!(e.to_string().contains("the trailer gives the size"), "{e}");
        let limits = Limits {
            max_bytes: p.out + 10,
            ..Limits::default()
        };
        let e = resume(&p, limits).unwrap_err();
        assert!(
            matches!(err_of(&e), DecompressError::TooLarge { .. }),
            "{e}"
        );
        assert!(resume(&p, Limits::default()).is_ok());
    }

    #[test]
    fn gzip_crc_mismatch_is_an_error() {
        let mut bytes = gzip(&csv(100));
        let at = bytes.len() - 8;
        bytes[at] ^= 1;
        let e = read_all(&bytes).unwrap_err();
        assert!(matches!(err_of(&e), DecompressError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn zip_entries_are_each_an_input() {
        let (a, b) = (csv(10), csv(300));
        let bytes = zip(vec![
            ent("a.csv", &a, METHOD_STORED),
            ent("dir/b.csv", &b, METHOD_DEFLATE),
        ]);
        let got = read_all(&bytes).unwrap();
        assert_eq!(
            got,
            vec![
                ("up.bin!a.csv".to_owned(), a),
                ("up.bin!dir/b.csv".to_owned(), b)
            ]
        );
    }

    #[test]
    fn zip_descriptors_directories_and_metadata() {
        let (bytes, want) = kitchen_sink();
        assert_eq!(read_all(&bytes).unwrap(), want);
        for chunk in [1, 2, 5, 4096] {
            let got = read_all_from(
                Trickle {
                    data: &bytes,
                    chunk,
                },
                Limits::default(),
            );
            assert_eq!(got.unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn empty_zip_has_no_inputs() {
        assert_eq!(read_all(&zip(vec![])).unwrap(), vec![]);
        let dirs_only = zip(vec![ent("a/", b"", 0), ent("a/b/", b"", 0)]);
        assert_eq!(read_all(&dirs_only).unwrap(), vec![]);
    }

    #[test]
    fn split_marker_before_the_first_entry_is_skipped() {
        let bytes = [b"PK\x07\x08".as_slice(), &zip(vec![ent("a.csv", b"1", 8)])].concat();
        assert_eq!(names(&read_all(&bytes).unwrap()), ["up.bin!a.csv"]);
    }

    #[test]
    fn unread_entry_data_is_skipped_and_checked() {
        let (bytes, want) = kitchen_sink();
        let mut seen = Vec::new();
        let n = for_each_input(&bytes[..], "up.bin", Limits::default(), |name, r| {
            let mut head = [0; 5];
            let n = r.read(&mut head)?;
            seen.push((name.to_owned(), head[..n].to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, want.len() as u64);
        assert_eq!(seen.len(), want.len());
        for ((name, head), (want_name, data)) in seen.iter().zip(&want) {
            assert_eq!(name, want_name);
            assert!(data.starts_with(head));
        }

        // A corrupt entry that nobody read is still an error.
        let bytes = zip(vec![
            ent("a.csv", b"a,b\n", METHOD_DEFLATE).crc(7),
            ent("b.csv", b"a,b\n", METHOD_DEFLATE),
        ]);
        let e = for_each_input(&bytes[..], "up.bin", Limits::default(), |_, _| Ok(()));
        let e = e.unwrap_err();
        assert!(matches!(err_of(&e), DecompressError::Crc { .. }));
    }

    #[test]
    fn swallowed_entry_errors_are_not_lost() {
        let bytes = zip(vec![ent("a.csv", b"a,b\n", METHOD_DEFLATE).crc(7)]);
        let e = for_each_input(&bytes[..], "up.bin", Limits::default(), |_, r| {
            let _ = r.read_to_end(&mut Vec::new()).unwrap_err();
            let again = r.read(&mut [0; 10]).unwrap_err();
            assert!(matches!(err_of(&again), DecompressError::Crc { .. }));
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err_of(&e), DecompressError::Crc { .. }), "{e}");
    }

    #[test]
    fn callback_errors_stop_and_pass_through() {
        let (bytes, _) = kitchen_sink();
        let mut calls = 0;
        let e = for_each_input(&bytes[..], "up.bin", Limits::default(), |_, _| {
            calls += 1;
            Err(io::Error::other("parser gave up"))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(e.to_string(), "parser gave up");
        assert!(DecompressError::of(&e).is_none());
    }

    #[test]
    fn reader_errors_pass_through() {
        let (zipped, _) = kitchen_sink();
        let (_, gzipped, _) = multi_member_gzip();
        for bytes in [&zipped, &gzipped] {
            for ok in [0, 3, 40, 100, bytes.len() / 2] {
                let e = read_all_from(Dropped { data: bytes, ok }, Limits::default());
                let e = e.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
                assert!(DecompressError::of(&e).is_none());
            }
        }
    }

    #[test]
    fn unsupported_method_names_entry_and_method() {
        let bytes = zip(vec![
            ent("a.csv", b"1", METHOD_STORED),
            ent("dir/b.csv", b"2", 12),
        ]);
        let e = read_all(&bytes).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(matches!(
            err_of(&e),
            DecompressError::UnsupportedMethod {
                method: 12,
                name: "bzip2",
                ..
            }
        ));
        let msg = e.to_string();
        assert!(
            msg.starts_with("up.bin!dir/b.csv: compression method bzip2 (12)"),
            "{msg}"
        );
        for method in [93, 14, 9] {
            let bytes = zip(vec![ent("z.csv", b"1", method)]);
            let e = read_all(&bytes).unwrap_err();
            assert!(matches!(
                err_of(&e),
                DecompressError::UnsupportedMethod { .. }
            ));
        }
    }

    /// An entry that cannot be decompressed but whose size is known fails alone: a caller
    /// that notes the failure and carries on gets every other entry.
    #[test]
    fn an_unreadable_entry_is_stepped_over_when_the_caller_carries_on() {
        let (a, c) = (csv(20), csv(30));
        let bytes = zip(vec![
            ent("a.csv", &a, METHOD_DEFLATE),
            ent("b.csv", b"1,2\n", 12),
            ent("secret.csv", b"3,4\n", METHOD_DEFLATE).flags(FLAG_ENCRYPTED),
            ent("c.csv", &c, METHOD_STORED),
        ]);
        let (mut read, mut failed) = (Vec::new(), Vec::new());
        let n = for_each_input(&bytes[..], "up.zip", Limits::default(), |name, r| {
            let mut data = Vec::new();
            match r.read_to_end(&mut data) {
                Ok(_) => read.push((name.to_owned(), data)),
                Err(e) => {
                    assert!(err_of(&e).is_entry_only(), "{e}");
                    failed.push(e.to_string());
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 4);
        assert_eq!(
            read,
            vec![
                ("up.zip!a.csv".to_owned(), a),
                ("up.zip!c.csv".to_owned(), c)
            ]
        );
        assert!(failed[0].starts_with("up.zip!b.csv: compression method bzip2"));
        assert!(failed[1].starts_with("up.zip!secret.csv: the entry is encrypted"));
    }

    #[test]
    fn encrypted_entries_are_refused() {
        for entry in [
            ent("s.csv", b"1", METHOD_DEFLATE).flags(FLAG_ENCRYPTED),
            ent("s.csv", b"1", METHOD_AES),
        ] {
            let e = read_all(&zip(vec![entry])).unwrap_err();
            assert!(matches!(err_of(&e), DecompressError::Encrypted { .. }));
            assert!(e
                .to_string()
                .starts_with("up.bin!s.csv: the entry is encrypted"));
        }
    }

    #[test]
    fn stored_entry_with_descriptor_is_refused() {
        let bytes = zip(vec![ent("s.csv", b"1,2\n", METHOD_STORED).desc(Desc::Sig)]);
        let e = read_all(&bytes).unwrap_err();
        assert!(matches!(
            err_of(&e),
            DecompressError::StoredWithDescriptor { .. }
        ));
        assert!(e.to_string().contains("up.bin!s.csv"));
    }

    #[test]
    fn crc_mismatch_is_an_error() {
        for (method, desc) in [
            (METHOD_STORED, Desc::None),
            (METHOD_DEFLATE, Desc::None),
            (METHOD_DEFLATE, Desc::Sig),
            (METHOD_DEFLATE, Desc::NoSig),
            (METHOD_DEFLATE, Desc::Zip64),
        ] {
            let data = csv(20);
            let bytes = zip(vec![ent("x.csv", &data, method)
                .desc(desc)
                .crc(0xdead_beef)]);
            let e = read_all(&bytes).unwrap_err();
            assert_eq!(
                err_of(&e),
                &DecompressError::Crc {
                    input: "up.bin!x.csv".to_owned(),
                    expected: 0xdead_beef,
                    actual: crc32(&data),
                },
                "{method} {desc:?}"
            );
        }
    }

    #[test]
    fn size_mismatch_is_an_error() {
        let mut bytes = zip(vec![ent("x.csv", b"a,b\n1,2\n", METHOD_DEFLATE)]);
        bytes[22] += 1; // uncompressed size in the local header
        let e = read_all(&bytes).unwrap_err();
        assert!(matches!(
            err_of(&e),
            DecompressError::Size {
                what: "uncompressed",
                ..
            }
        ));
    }

    #[test]
    fn truncated_inputs_are_errors() {
        let (zipped, want) = kitchen_sink();
        let central = zipped
            .windows(4)
            .position(|w| w == SIG_CENTRAL.to_le_bytes())
            .unwrap();
        for cut in 0..zipped.len() {
            let got = read_all(&zipped[..cut]);
            if cut < 4 {
                continue; // too short to be recognised: plain
            }
            if cut < central + 4 {
                let e = got.expect_err(&format!("cut at {cut}"));
                assert!(DecompressError::of(&e).is_some(), "{e}");
            } else {
                assert_eq!(got.unwrap(), want);
            }
        }
        let (all, gzipped, boundary) = multi_member_gzip();
        for cut in 2..gzipped.len() {
            match read_all(&gzipped[..cut]) {
                Ok(got) => {
                    assert_eq!(cut, boundary, "only a member boundary may end a gzip file");
                    assert!(all.starts_with(&got[0].1));
                }
                Err(e) => assert!(DecompressError::of(&e).is_some(), "{e}"),
            }
        }
    }

    #[test]
    fn gzip_bomb_is_stopped() {
        let bomb = gzip(&vec![0; 32 << 20]);
        // Stopped by the default ratio soon after the first 4 MiB.
        let mut delivered = 0;
        let e = for_each_input(&bomb[..], "bomb.gz", Limits::default(), |_, r| {
            delivered = io::copy(r, &mut io::sink())?;
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(err_of(&e), DecompressError::RatioTooHigh { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("raise --max-ratio"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);

        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let e = read_all_with(&bomb, limits).unwrap_err();
        assert!(
            matches!(err_of(&e), DecompressError::TooLarge { limit, .. } if *limit == 1 << 20),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "up.bin: decompressed size exceeds the limit of 1048576 bytes (ratio so far "
            ),
            "{msg}"
        );
        assert!(msg.ends_with("raise --max-decompressed"), "{msg}");
    }

    #[test]
    fn zip_bomb_is_stopped_and_names_the_entry() {
        let zeros = vec![0; 16 << 20];
        let bytes = zip(vec![
            ent("ok.csv", b"a\n", METHOD_DEFLATE),
            ent("zeros.csv", &zeros, METHOD_DEFLATE).desc(Desc::Sig),
        ]);
        let e = read_all(&bytes).unwrap_err();
        assert!(matches!(err_of(&e), DecompressError::RatioTooHigh { .. }));
        assert!(e.to_string().starts_with("up.bin!zeros.csv: "), "{e}");
    }

    #[test]
    fn limits_count_the_whole_archive() {
        let part = csv(1000);
        let bytes = zip(vec![
            ent("a.csv", &part, METHOD_DEFLATE),
            ent("b.csv", &part, METHOD_STORED),
        ]);
        let limits = Limits {
            max_bytes: part.len() as u64 * 3 / 2,
            ..Limits::default()
        };
        let e = read_all_with(&bytes, limits).unwrap_err();
        assert!(
            e.to_string().starts_with("up.bin!b.csv: decompressed size"),
            "{e}"
        );
    }

    #[test]
    fn genuine_repetitive_data_is_not_a_bomb() {
        // A day of zeros per meter, the most compressible real file (~50:1).
        let mut s = String::new();
        for meter in 0..250 {
            for day in 1..=365 {
                s.push_str(&format!("NMI{meter:07},2019-{:03},", day));
                s.push_str(&"0,".repeat(47));
                s.push_str("0\n");
            }
        }
        let data = s.into_bytes();
        assert!(data.len() > 2 * Limits::default().ratio_after as usize);
        assert_eq!(read_all(&gzip(&data)).unwrap()[0].1, data);
    }

    #[test]
    fn too_many_entries_is_an_error() {
        let bytes = zip(vec![
            ent("a", b"1", 0),
            ent("b/", b"", 0),
            ent("c", b"3", 0),
        ]);
        let limits = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        let e = read_all_with(&bytes, limits).unwrap_err();
        assert!(matches!(
            err_of(&e),
            DecompressError::TooManyEntries { limit: 2, .. }
        ));
        assert!(e.to_string().contains("raise --max-zip-entries"));
        assert_eq!(read_all(&bytes).unwrap().len(), 2);
    }

    #[test]
    fn garbage_after_an_entry_is_an_error() {
        let mut bytes = zip(vec![ent("a.csv", b"1", 0)]);
        let central = bytes.len() - 22 - 46 - 5;
        bytes[central] = b'X';
        let e = read_all(&bytes).unwrap_err();
        assert!(matches!(err_of(&e), DecompressError::Corrupt { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("expected an entry header at byte 36"),
            "{e}"
        );
    }

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zip/");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap()
    }

    fn seq_csv() -> Vec<u8> {
        (1..=500)
            .map(|i| format!("M1,2019-01-01,{i}\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn archives_of_real_tools() {
        let a = b"Meter,Date,v\nM1,2019-01-01,1.5\n".to_vec();
        let cases: [(&str, Inputs); 4] = [
            (
                "python_stream.zip",
                vec![
                    ("up.bin!data/a.csv".into(), a.repeat(20)),
                    (
                        "up.bin!data/b.csv".into(),
                        b"meter,timestamp,kwh\nM2,2019-01-01T00:30:00Z,0.25\n".repeat(10),
                    ),
                ],
            ),
            ("jar.zip", vec![("up.bin!d/a.csv".into(), a.clone())]),
            (
                "infozip_stream.zip",
                vec![
                    ("up.bin!a.csv".into(), a.clone()),
                    ("up.bin!b.csv".into(), seq_csv()),
                ],
            ),
            (
                "infozip_stdin_zip64.zip",
                vec![("up.bin!-".into(), seq_csv())],
            ),
        ];
        for (file, want) in cases {
            let bytes = fixture(file);
            assert_eq!(read_all(&bytes).unwrap(), want, "{file}");
            let trickled = read_all_from(
                Trickle {
                    data: &bytes,
                    chunk: 1,
                },
                Limits::default(),
            );
            assert_eq!(trickled.unwrap(), want, "{file}");
        }
    }

    fn outcome(bytes: &[u8]) -> io::Result<Inputs> {
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        read_all_with(bytes, limits)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            prefix in prop_oneof![
                Just(Vec::new()),
                Just(vec![0x1f, 0x8b, 8, 0]),
                Just(b"PK\x03\x04".to_vec()),
                Just(b"PK\x03\x04\x14\x00\x08\x00\x08\x00".to_vec()),
            ],
            rest in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let bytes = [prefix, rest].concat();
            let _ = outcome(&bytes);
        }

        #[test]
        fn corruption_is_detected_or_harmless(
            which in 0..2usize,
            at in any::<prop::sample::Index>(),
            flip in 1..=255u8,
            chunk in 1..64usize,
        ) {
            let (bytes, want) = if which == 0 {
                kitchen_sink()
            } else {
                let (all, bytes, _) = multi_member_gzip();
                (bytes, vec![("up.bin".to_owned(), all)])
            };
            let mut bytes = bytes;
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            let got = read_all_from(Trickle { data: &bytes, chunk }, Limits { max_bytes: 1 << 20, ..Limits::default() });
            if let Ok(got) = got {
                // Every content delivered passed its CRC: it is one of the originals.
                for (_, data) in &got {
                    prop_assert!(
                        want.iter().any(|(_, w)| w == data)
                            || data == MAC_METADATA
                            || sniff(&bytes) == Compression::None,
                        "corrupt data delivered after flipping byte {}: {:?}", i, got
                    );
                }
            }
        }

        #[test]
        fn chunking_does_not_change_the_result(chunk in 1..300usize) {
            let (bytes, want) = kitchen_sink();
            let got = read_all_from(Trickle { data: &bytes, chunk }, Limits::default());
            prop_assert_eq!(got.unwrap(), want);
        }
    }
}
