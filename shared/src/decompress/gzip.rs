//! gzip: every member of a multi-member file, as `cat a.gz b.gz` makes, within the limits.

use std::io::{self, Read};

use flate2::bufread::MultiGzDecoder;

use super::budget::Budget;
use super::input::{decoder_error, Input};

pub(super) struct GzipReader<'a, R> {
    pub(super) decoder: MultiGzDecoder<Input<R>>,
    pub(super) budget: Budget,
    pub(super) name: &'a str,
}

impl<R: Read> Read for GzipReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.decoder.get_mut().inner_failed = false;
        match self.decoder.read(buf) {
            Ok(n) => {
                let consumed = self.decoder.get_ref().consumed;
                self.budget.add(n, consumed, self.name)?;
                Ok(n)
            }
            Err(e) => {
                let inner_failed = self.decoder.get_ref().inner_failed;
                Err(decoder_error(e, inner_failed, self.name, "gzip"))
            }
        }
    }
}
