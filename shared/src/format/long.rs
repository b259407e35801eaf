//! Long CSV: one reading per row (placeholder, being written).
use super::record::{Handler, Record};
use super::{FormatHandler, Options, Tally};
use crate::reject::{FileError, Sink};

pub(crate) fn looks_like_header(_fields: &[Vec<u8>]) -> bool {
    false
}

pub struct Long {
    tally: Tally,
}

impl Long {
    pub(crate) fn new(opts: &Options) -> Long {
        Long {
            tally: Tally::new(opts.source.clone()),
        }
    }
}

impl Handler for Long {
    fn record(
        &mut self,
        _rec: &Record<'_>,
        lineno: u64,
        _sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        Err(self
            .tally
            .header_error(lineno, "long format not implemented yet"))
    }
}

impl FormatHandler for Long {
    fn finish(&mut self, _sink: &mut dyn Sink) -> Result<(), FileError> {
        Ok(())
    }
    fn tally(&self) -> &Tally {
        &self.tally
    }
}
