//! A record checked once, for a consumer that reads it again: the aggregator validates each
//! record before handing it to the store, and the SQLite store then regroups the same
//! fragments into packs. Walking a record's fragment heads twice was ~5 % of a local ingest's
//! CPU; a [`ValidRecord`] keeps where each fragment sits, so the second reader only looks
//! them up.

use super::decode::Spot;
use super::{DecodeError, Envelope, RawFragment};

/// An envelope record whose every fragment decoded, with where each one sits in it.
#[derive(Debug)]
pub struct ValidRecord {
    bytes: Vec<u8>,
    spots: Vec<Spot>,
}

impl ValidRecord {
    /// Checks every fragment of `bytes` as [`Envelope::all_raw_fragments`] does, then shows
    /// each to `observe`: nothing is observed from a record that turns out to be corrupt,
    /// which is given back with the reason.
    pub fn check(
        bytes: Vec<u8>,
        mut observe: impl FnMut(&RawFragment<'_>),
    ) -> Result<ValidRecord, (Vec<u8>, DecodeError)> {
        let walked = Envelope::parse(&bytes).and_then(|env| {
            let spots = env.spots()?;
            spots.iter().for_each(|s| observe(&env.raw_at(s)));
            Ok(spots)
        });
        match walked {
            Ok(spots) => Ok(ValidRecord { bytes, spots }),
            Err(e) => Err((bytes, e)),
        }
    }

    /// The fragments, in record order, without walking the record again (only its header and
    /// dictionaries are read again, which cannot fail for bytes that parsed once; the error
    /// is `parse`'s all the same).
    pub fn with_fragments<T>(
        &self,
        f: impl FnOnce(&[RawFragment<'_>]) -> T,
    ) -> Result<T, DecodeError> {
        let env = Envelope::parse(&self.bytes)?;
        let raw: Vec<RawFragment<'_>> = self.spots.iter().map(|s| env.raw_at(s)).collect();
        Ok(f(&raw))
    }

    /// Fragments in the record.
    pub fn len(&self) -> usize {
        self.spots.len()
    }

    /// True for a record of no fragments.
    pub fn is_empty(&self) -> bool {
        self.spots.is_empty()
    }

    /// The record's bytes, for a consumer that reads them its own way.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
