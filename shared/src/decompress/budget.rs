//! The decompression [`Limits`] applied as output is produced: a bomb is an error, not an
//! outage.

use std::io;

use super::{DecompressError, Limits};

/// Counts decompressed output against [`Limits`].
pub(super) struct Budget {
    limits: Limits,
    out: u64,
}

impl Budget {
    pub(super) fn new(limits: Limits) -> Budget {
        Budget { limits, out: 0 }
    }

    /// A budget of which `out` bytes were spent by earlier readers of the same file.
    pub(super) fn resumed(limits: Limits, out: u64) -> Budget {
        Budget { limits, out }
    }

    /// Records `n` more output bytes; `consumed` is the compressed input read so far.
    pub(super) fn add(&mut self, n: usize, consumed: u64, input: &str) -> io::Result<()> {
        self.out = self.out.saturating_add(n as u64);
        let l = &self.limits;
        if self.out > l.max_bytes {
            return Err(DecompressError::TooLarge {
                input: input.to_owned(),
                limit: l.max_bytes,
                ratio: self.out / consumed.max(1),
            }
            .into());
        }
        if self.out > l.ratio_after && self.out > consumed.saturating_mul(l.max_ratio) {
            return Err(DecompressError::RatioTooHigh {
                input: input.to_owned(),
                out: self.out,
                consumed,
                max_ratio: l.max_ratio,
            }
            .into());
        }
        Ok(())
    }
}
