//! Buffered input that counts what it consumed (the compressed side of the ratio limit) and
//! can look a few bytes ahead (zip headers, data descriptors).

use std::io::{self, BufRead, Read};

use super::DecompressError;

const BUF_LEN: usize = 64 * 1024;

/// A `BufRead` over the caller's reader that counts consumed bytes (the compressed input of
/// the ratio limit), can peek a few bytes ahead without consuming them (headers, data
/// descriptors), and remembers whether the last error came from the underlying reader.
pub(super) struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    pub(super) consumed: u64,
    pub(super) inner_failed: bool,
}

impl<R: Read> Input<R> {
    pub(super) fn new(inner: R) -> Input<R> {
        Input {
            inner,
            buf: vec![0; BUF_LEN].into_boxed_slice(),
            pos: 0,
            end: 0,
            consumed: 0,
            inner_failed: false,
        }
    }

    /// Reads more into `buf[end..]`; 0 at the end of the input.
    fn read_more(&mut self) -> io::Result<usize> {
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    // A misbehaving reader may claim more than it was given room for.
                    let n = n.min(self.buf.len() - self.end);
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.inner_failed = true;
                    return Err(e);
                }
            }
        }
    }

    /// At least `n` (at most `BUF_LEN`) unconsumed bytes, fewer only at the end of the input.
    pub(super) fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.end - self.pos < n {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            while self.end < n {
                if self.read_more()? == 0 {
                    break;
                }
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }
}

impl<R: Read> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            self.read_more()?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.end - self.pos);
        self.pos += amt;
        self.consumed += amt as u64;
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end && out.len() >= self.buf.len() {
            // Nothing buffered and a large read (a plain file): skip the copy.
            loop {
                match self.inner.read(out) {
                    Ok(n) => {
                        let n = n.min(out.len());
                        self.consumed += n as u64;
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.inner_failed = true;
                        return Err(e);
                    }
                }
            }
        }
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Wraps an error of a decoder: errors of the underlying reader pass through unchanged,
/// the decoder's own (corrupt or truncated data) become a [`DecompressError`].
pub(super) fn decoder_error(
    e: io::Error,
    inner_failed: bool,
    input: &str,
    format: &'static str,
) -> io::Error {
    if inner_failed || DecompressError::of(&e).is_some() {
        return e;
    }
    let detail = e.to_string();
    let input = input.to_owned();
    if e.kind() == io::ErrorKind::UnexpectedEof {
        DecompressError::Truncated {
            input,
            format,
            detail,
        }
    } else {
        DecompressError::Corrupt {
            input,
            format,
            detail,
        }
    }
    .into()
}
