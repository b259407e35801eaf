//! Raw deflate, stopping at every block boundary: what a resumable gzip reader needs and
//! `flate2` does not expose (zlib's `Z_BLOCK` flush, the unused-bit count it reports in
//! `data_type`, `inflatePrime`, `inflateSetDictionary`, `inflateGetDictionary`).
//!
//! It is the only `unsafe` of the core: calls into `libz-rs-sys`, the C API of the same
//! pure-Rust `zlib-rs` that `flate2` runs on (one inflater in the build, no C toolchain).
//! The stream lives in a `Box` so that its address, which zlib's state records, never moves;
//! every call passes it slices that outlive the call, and nothing keeps their pointers after.

use std::ffi::{c_int, c_uint};

use libz_rs_sys as z;

/// The most history a deflate stream may refer back to: what an access point must carry.
pub const WINDOW: usize = 32 * 1024;

/// What one [`RawInflate::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Step {
    /// Compressed bytes taken from the input.
    pub consumed: usize,
    /// Decompressed bytes written to the output.
    pub produced: usize,
    /// The stream stands at the end of a block that is not its last: it can be entered here.
    /// The value is how many bits of the last byte consumed are still unused (0 to 7).
    pub boundary: Option<u8>,
    /// The deflate stream ended (its last block is done).
    pub end: bool,
}

/// A raw deflate decoder (no zlib or gzip framing).
pub(super) struct RawInflate {
    strm: Box<z::z_stream>,
}

// SAFETY: the stream owns its state exclusively (allocated by the Rust allocator) and holds no
// pointer to caller memory between calls (`next_in`/`next_out` are reset on each call).
unsafe impl Send for RawInflate {}

impl RawInflate {
    pub(super) fn new() -> RawInflate {
        let mut strm = Box::<z::z_stream>::default();
        // SAFETY: a default stream has valid allocator fields; the version and size are this
        // library's own, so the call cannot fail but for memory (which aborts in Rust).
        let ret = unsafe {
            z::inflateInit2_(
                &mut *strm,
                -15, // raw deflate, 32 KiB window
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        assert_eq!(ret, z::Z_OK, "inflateInit2 of a raw deflate stream");
        RawInflate { strm }
    }

    /// Starts a new deflate stream (the next gzip member).
    pub(super) fn reset(&mut self) {
        // SAFETY: the stream was initialised by `new`.
        let ret = unsafe { z::inflateReset(&mut *self.strm) };
        debug_assert_eq!(ret, z::Z_OK);
    }

    /// Enters a stream at an access point: `bits` (0 to 7) high bits of `byte` come before
    /// the next input byte, and `window` (at most [`WINDOW`] bytes) is the output before it.
    /// Call before the first [`RawInflate::step`] after `new` or `reset`.
    pub(super) fn enter(&mut self, bits: u8, byte: u8, window: &[u8]) -> Result<(), &'static str> {
        if bits > 7 || window.len() > WINDOW {
            return Err("access point out of range");
        }
        if bits > 0 {
            // SAFETY: the stream was initialised; at most 7 bits are primed into an empty
            // bit buffer.
            let ret = unsafe {
                z::inflatePrime(
                    &mut *self.strm,
                    c_int::from(bits),
                    c_int::from(byte >> (8 - bits)),
                )
            };
            if ret != z::Z_OK {
                return Err("inflatePrime refused the access point's bits");
            }
        }
        if !window.is_empty() {
            // SAFETY: `window` is a live slice of at most 32 KiB for the whole call.
            let ret = unsafe {
                z::inflateSetDictionary(&mut *self.strm, window.as_ptr(), window.len() as c_uint)
            };
            if ret != z::Z_OK {
                return Err("inflateSetDictionary refused the access point's window");
            }
        }
        Ok(())
    }

    /// Inflates from `input` into `output`, stopping early at the end of a block.
    pub(super) fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<Step, String> {
        let strm = &mut *self.strm;
        let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
        let avail_out = output.len().min(c_uint::MAX as usize) as c_uint;
        strm.next_in = input.as_ptr().cast_mut();
        strm.avail_in = avail_in;
        strm.next_out = output.as_mut_ptr();
        strm.avail_out = avail_out;
        // SAFETY: `next_in`/`avail_in` describe `input` and `next_out`/`avail_out` describe
        // `output`, both borrowed for the whole call; inflate never writes to `next_in`.
        let ret = unsafe { z::inflate(strm, z::Z_BLOCK) };
        let consumed = (avail_in - strm.avail_in) as usize;
        let produced = (avail_out - strm.avail_out) as usize;
        strm.next_in = std::ptr::null_mut();
        strm.next_out = std::ptr::null_mut();
        strm.avail_in = 0;
        strm.avail_out = 0;
        let data_type = strm.data_type;
        match ret {
            z::Z_OK | z::Z_BUF_ERROR => {
                // zlib: 128 = just after an end-of-block code (or before the first block),
                // 64 = in the last block; the low 3 bits: unused bits of the last byte.
                let at_end_of_block = data_type & 128 != 0 && data_type & 64 == 0;
                Ok(Step {
                    consumed,
                    produced,
                    boundary: at_end_of_block.then_some((data_type & 7) as u8),
                    end: false,
                })
            }
            z::Z_STREAM_END => Ok(Step {
                consumed,
                produced,
                boundary: None,
                end: true,
            }),
            _ => Err(self.message(ret)),
        }
    }

    /// The last (up to) 32 KiB of output: an access point's window.
    pub(super) fn window(&self, into: &mut Vec<u8>) {
        into.clear();
        into.resize(WINDOW, 0);
        let mut len: c_uint = 0;
        // SAFETY: `into` has room for the largest window (32 KiB) and `len` is a live local.
        let ret = unsafe { z::inflateGetDictionary(&*self.strm, into.as_mut_ptr(), &mut len) };
        let len = if ret == z::Z_OK { len as usize } else { 0 };
        into.truncate(len.min(WINDOW));
    }

    fn message(&self, ret: c_int) -> String {
        if self.strm.msg.is_null() {
            return format!("inflate error {ret}");
        }
        // SAFETY: zlib's messages are static NUL-terminated strings.
        unsafe { std::ffi::CStr::from_ptr(self.strm.msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for RawInflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by `new` and is ended once.
        unsafe { z::inflateEnd(&mut *self.strm) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                format!(
                    "M{},2019-01-{:02},{}.{:03}\n",
                    i % 97,
                    i % 28 + 1,
                    i % 13,
                    i * 7 % 1000
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    /// Every block boundary found while inflating is a place the stream can be entered from
    /// with its bits and window, and the rest inflates to the rest of the data.
    #[test]
    fn a_stream_entered_at_any_block_boundary_inflates_the_rest() {
        let data = text(60_000);
        for level in [1, 6, 9] {
            let packed = deflate(&data, level);
            let (mut inf, mut out) = (RawInflate::new(), vec![0u8; data.len() + 1]);
            let (mut pos_in, mut pos_out, mut points) = (0, 0, Vec::new());
            let mut window = Vec::new();
            loop {
                let s = inf.step(&packed[pos_in..], &mut out[pos_out..]).unwrap();
                pos_in += s.consumed;
                pos_out += s.produced;
                if let Some(bits) = s.boundary {
                    inf.window(&mut window);
                    let want = &data[pos_out.saturating_sub(WINDOW)..pos_out];
                    assert_eq!(window, want);
                    points.push((pos_in, bits, pos_out, window.clone()));
                }
                if s.end {
                    break;
                }
            }
            assert_eq!(&out[..pos_out], &data[..]);
            // zlib-rs's level 1 (deflate_quick) writes blocks of about a MiB of output.
            let least = if level == 1 { 1 } else { 8 };
            assert!(
                points.len() >= least,
                "level {level}: {} boundaries",
                points.len()
            );
            for (at_in, bits, at_out, window) in points {
                let mut inf = RawInflate::new();
                let (from, byte) = if bits > 0 {
                    (at_in - 1, packed[at_in - 1])
                } else {
                    (at_in, 0)
                };
                inf.enter(bits, byte, &window).unwrap();
                let skip = usize::from(bits > 0);
                let mut rest = vec![0u8; data.len() - at_out + 1];
                let mut got = 0;
                let mut pos = from + skip;
                loop {
                    let s = inf.step(&packed[pos..], &mut rest[got..]).unwrap();
                    pos += s.consumed;
                    got += s.produced;
                    if s.end {
                        break;
                    }
                }
                assert_eq!(
                    &rest[..got],
                    &data[at_out..],
                    "level {level}, entered at {at_in}"
                );
            }
        }
    }

    #[test]
    fn corrupt_data_is_an_error_with_zlibs_message() {
        let mut inf = RawInflate::new();
        let e = inf.step(&[0xff; 16], &mut [0u8; 64]).unwrap_err();
        assert!(e.contains("invalid"), "{e}");
        assert!(RawInflate::new().enter(8, 0, &[]).is_err());
    }
}
