//! Series identifiers and units.

use std::fmt;
use std::sync::Arc;

/// Longest accepted series id. NEM12 ids (`NMI-suffix`) are 13 characters; 64 leaves room for
/// head-end meter serials while keeping keys and URLs sane.
pub const MAX_SERIES_LEN: usize = 64;

/// A validated series id: a meter (`EE00027`) or a NEM12 channel (`VABD000163-E1`).
///
/// Ids travel in URLs, CQL keys and CSV reports, so only ASCII letters, digits and `-_.:` are
/// accepted; anything else is refused with the offending character named.
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct SeriesId(Arc<str>);

/// Equal ids are usually the same allocation (a parser hands every day of a meter the same
/// id): compare pointers before bytes. std's `Arc<str>` compares bytes only.
impl PartialEq for SeriesId {
    fn eq(&self, other: &SeriesId) -> bool {
        same_str(&self.0, &other.0)
    }
}

/// Hashes the text, as equality compares it.
impl std::hash::Hash for SeriesId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// `a == b`, answered from the pointers when both name one allocation.
pub fn same_str(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Why bytes are not a valid [`SeriesId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesIdError {
    /// The id is empty, or only blanks.
    #[error("the meter id is empty")]
    Empty,
    /// The id is longer than [`MAX_SERIES_LEN`].
    #[error("meter id `{id}…` is longer than {MAX_SERIES_LEN} characters")]
    TooLong {
        /// Its first [`MAX_SERIES_LEN`] bytes, shown lossily.
        id: String,
    },
    /// The id holds a character other than ASCII letters, digits and `-_.:`.
    #[error(
        "meter id `{id}` contains {ch:?}; ids may hold only ASCII letters, digits and - _ . :"
    )]
    BadChar {
        /// The whole id, shown lossily.
        id: String,
        /// The first character not allowed (U+FFFD for bytes that are not UTF-8).
        ch: char,
    },
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
}

impl SeriesId {
    /// Validates an id read from input, trimming blanks around it.
    pub fn parse(raw: &[u8]) -> Result<SeriesId, SeriesIdError> {
        let t = raw.trim_ascii();
        Self::check(t)?;
        // Checked ASCII above, so this cannot fail.
        let s = std::str::from_utf8(t).map_err(|_| SeriesIdError::Empty)?;
        Ok(SeriesId(Arc::from(s)))
    }

    /// Whether some valid id could start with `prefix` (the empty prefix included): a
    /// listing by any other prefix is empty, and a store need not ask.
    pub fn could_start(prefix: &str) -> bool {
        prefix.is_empty() || Self::check(prefix.as_bytes()).is_ok()
    }

    /// The exclusive end of the ids starting with `prefix`, in byte order: `~` sorts after
    /// every character an id may hold. With `prefix` itself as the start, a range read.
    pub fn prefix_end(prefix: &str) -> String {
        format!("{prefix}~")
    }

    /// Validates without allocating; the hot path compares with the previous row's id first.
    pub fn check(t: &[u8]) -> Result<(), SeriesIdError> {
        if t.is_empty() {
            return Err(SeriesIdError::Empty);
        }
        if t.len() > MAX_SERIES_LEN {
            let id = String::from_utf8_lossy(&t[..MAX_SERIES_LEN]).into_owned();
            return Err(SeriesIdError::TooLong { id });
        }
        if let Some(pos) = t.iter().position(|&b| !allowed(b)) {
            let id = String::from_utf8_lossy(t).into_owned();
            let ch = String::from_utf8_lossy(&t[pos..])
                .chars()
                .next()
                .unwrap_or('?');
            return Err(SeriesIdError::BadChar { id, ch });
        }
        Ok(())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SeriesId {
    type Err = SeriesIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SeriesId::parse(s.as_bytes())
    }
}

/// The unit a series' amounts are millionths of.
///
/// Energy in Wh, kWh or MWh (any case) is normalised to kWh at parse time; any other unit
/// (kVArh, kVA, …) is kept as written so reactive channels are never mixed with energy.
#[derive(Debug, Clone, Eq)]
pub struct Unit(Arc<str>);

impl PartialEq for Unit {
    fn eq(&self, other: &Unit) -> bool {
        same_str(&self.0, &other.0)
    }
}

impl std::hash::Hash for Unit {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Unit {
    /// Kilowatt-hours (`kWh`): the unit that energy in Wh, kWh or MWh is normalised to.
    pub fn kwh() -> Unit {
        Unit(Arc::from(KWH))
    }

    /// Returns the unit to store and the number of decimal places of the *input* unit that
    /// one amount unit represents (6 for kWh, 3 for Wh, 9 for MWh, 6 otherwise).
    pub fn normalise(raw: &str) -> (Unit, u32) {
        let t = raw.trim();
        if t.eq_ignore_ascii_case("kwh") {
            (Unit::kwh(), 6)
        } else if t.eq_ignore_ascii_case("wh") {
            (Unit::kwh(), 3)
        } else if t.eq_ignore_ascii_case("mwh") {
            (Unit::kwh(), 9)
        } else {
            (Unit(Arc::from(t)), 6)
        }
    }

    /// A unit as stored or decoded, already normalised: taken as written, never converted
    /// again.
    pub fn from_stored(s: &str) -> Unit {
        if s == KWH {
            Unit::kwh()
        } else {
            Unit(Arc::from(s))
        }
    }

    /// The unit's text: `kWh`, or another unit as written in the input.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `kWh`; false for any other unit, such as kVArh.
    pub fn is_kwh(&self) -> bool {
        &*self.0 == KWH
    }
}

const KWH: &str = "kWh";

impl Default for Unit {
    fn default() -> Self {
        Unit::kwh()
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ids() {
        assert_eq!(SeriesId::parse(b" EE00027 ").unwrap().as_str(), "EE00027");
        assert_eq!(
            SeriesId::parse(b"VABD000163-E1").unwrap().as_str(),
            "VABD000163-E1"
        );
        assert_eq!(SeriesId::parse(b""), Err(SeriesIdError::Empty));
        assert!(matches!(
            SeriesId::parse(b"EE 1"),
            Err(SeriesIdError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            SeriesId::parse(b"a/b"),
            Err(SeriesIdError::BadChar { ch: '/', .. })
        ));
        assert!(matches!(
            SeriesId::parse(&[b'x'; 65]),
            Err(SeriesIdError::TooLong { .. })
        ));
        let msg = SeriesId::parse("m\u{e9}ter".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains('é'), "{msg}");
    }

    #[test]
    fn normalises_energy_units() {
        assert_eq!(Unit::normalise("KWH"), (Unit::kwh(), 6));
        assert_eq!(Unit::normalise("Wh"), (Unit::kwh(), 3));
        assert_eq!(Unit::normalise("mwh"), (Unit::kwh(), 9));
        let (u, p) = Unit::normalise("kVArh");
        assert_eq!((u.as_str(), p), ("kVArh", 6));
        assert!(!u.is_kwh());
    }
}
