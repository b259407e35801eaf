//! NEM12 (placeholder, being written).
use super::record::{Handler, Record};
use super::{FormatHandler, Options, Tally};
use crate::reject::{FileError, Sink};

pub struct Nem12 {
    tally: Tally,
}

impl Nem12 {
    pub(crate) fn new(opts: &Options) -> Nem12 {
        Nem12 {
            tally: Tally::new(opts.source.clone()),
        }
    }
}

impl Handler for Nem12 {
    fn record(
        &mut self,
        _rec: &Record<'_>,
        lineno: u64,
        _sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        Err(self.tally.header_error(lineno, "NEM12 not implemented yet"))
    }
}

impl FormatHandler for Nem12 {
    fn finish(&mut self, _sink: &mut dyn Sink) -> Result<(), FileError> {
        Ok(())
    }
    fn tally(&self) -> &Tally {
        &self.tally
    }
}
