//! AEMO NEM12 (Meter Data File Format) interval data.
//!
//! A NEM12 file is a sequence of records, each a CSV line whose first field says what it is:
//!
//! | record | fields | role here |
//! |---|---|---|
//! | `100` | `NEM12,DateTime,From,To` | file header; optional, and a 100 after a 900 starts a concatenated file |
//! | `200` | `NMI,Config,Register,Suffix,Stream,Serial,UOM,IntervalLength[,NextScheduledReadDate]` | opens a channel: series `NMI-suffix` |
//! | `300` | `IntervalDate,v1..vN,QualityMethod,ReasonCode,ReasonDescription,UpdateDateTime[,MSATSLoadDateTime]` | one day of one channel: **a row** |
//! | `400` | `StartInterval,EndInterval,QualityMethod,ReasonCode,ReasonDescription` | per-interval quality of the 300 before it |
//! | `500` | B2B details | accepted, nothing to do |
//! | `900` | — | end of a file; several in concatenated files |
//!
//! # Accounting rules
//!
//! Only 300 records are *rows*: every 300 becomes exactly one fragment (counted accepted) or
//! exactly one [`Reject`](crate::Reject) at the 300's own line (counted rejected), so
//! `rows_read == rows_accepted + rows_rejected` counts days of channel data. Everything else is
//! structure, and never counted, but nothing is dropped silently either:
//!
//! * A 300 and the 400s after it are one logical row. The 300 is held until the next record
//!   that is not a 400 (or the end of input) and only then emitted or rejected. Any fault in
//!   those 400s (a range out of bounds, overlapping or leaving intervals uncovered, a bad
//!   flag, a 400 after a 300 whose quality is not `V`, a `V` 300 without 400s) rejects the
//!   300. The reject's line is the 300's and its column is `None`, since the fault lies on
//!   another line: the reason names the faulty 400's line and column instead.
//!   The 400s of a 300 that was already rejected belong to that reject and add nothing.
//! * A 300 that cannot be interpreted because of its channel (no 200 since the start of the
//!   input or the last 100 or 900, or a 200 that was rejected) is rejected on its own line;
//!   the reason names the rejected 200's line and fault. (So input resumed mid-file must
//!   start at a 100 or 200 record: detection needs one anyway.)
//! * A record that is wrong in itself and is not part of a row — a bad 200, a 100 that does
//!   not say NEM12, a 400 with no 300 before it, an unknown record indicator — is reported as
//!   one reject of kind `record` at its own line, counted in `records_rejected` (not in the
//!   rows). So the report's lines are always `rows_rejected + records_rejected + warnings`.
//! * The file's structure is checked and warned about, never refused: a file that does not
//!   start with a 100 record, one that does not end with a 900 (a lost tail), a 900 that is
//!   not the last (files joined together). A part handed over between runs carries what the
//!   checks need in its context (the first 900; how the part before it ended).
//!
//! # Known real-world quirks accepted
//!
//! A missing 100 header, a 200 without its trailing NextScheduledReadDate field, a 300
//! without its trailing MSATSLoadDateTime, several 100…900 files concatenated, CRLF line ends.
//! A 300 whose value count disagrees with its 200's IntervalLength is rejected, never
//! truncated or padded: shifting values by one interval would put energy in the wrong slot.
//!
//! # Values, units and versions
//!
//! Wh, kWh and MWh (any case) become kWh by parsing at 3, 6 or 9 decimal places
//! ([`Unit::normalise`]), so no arithmetic can round; other units (kVArh, …) keep their name.
//! An empty value is a missing interval, not a zero. A fragment's version is its
//! UpdateDateTime: NEM12 times are market time, AEST (UTC+10, the NEM keeps no daylight
//! saving), converted to Unix epoch milliseconds; an empty UpdateDateTime falls back to
//! [`Options::version`].
//!
//! # Fast path
//!
//! A complete line without quotes or bare CRs splits on commas into exactly the fields
//! `csv-core` would produce, so [`Handler::line`] splits it itself and runs the very same
//! record logic: the two paths cannot disagree on anything but speed.

use super::record::{Handler, Record};
use super::{bytes_equal, word_at, FormatHandler, Options, Tally};
use crate::day::Day;
use crate::fragment::{slots_per_day, Fragment, Quality, Slots, Version};
use crate::reject::{FileError, Sink};
use crate::series::{SeriesId, Unit};
use crate::value::{parse_decimal, scan_plain_kwh};

/// Interval lengths the MDFF specification allows for NEM12, in minutes.
const NEM12_INTERVALS: [u16; 3] = [5, 15, 30];

/// NEM12 timestamps are NEM market time: AEST, UTC+10 all year round.
const MARKET_UTC_OFFSET_SECONDS: i64 = 10 * 3600;

/// Longest unit of measure accepted; real ones (`kVArh`, `MWh`) are a few letters.
const MAX_UOM_LEN: usize = 16;

/// 1-based column of 0-based field `i`.
fn col(i: usize) -> Option<u32> {
    u32::try_from(i + 1).ok()
}

fn lossy(field: &[u8]) -> String {
    let s = String::from_utf8_lossy(field);
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// Field access shared by the `csv-core` path ([`Record`]) and the fast line path ([`Split`]),
/// so that both run the same record logic.
trait Fields<'a> {
    fn count(&self) -> usize;
    /// Field `i`, or empty when the record is shorter.
    fn field(&self, i: usize) -> &'a [u8];

    fn is_blank(&self) -> bool {
        (0..self.count()).all(|i| self.field(i).trim_ascii().is_empty())
    }
}

impl<'a> Fields<'a> for Record<'a> {
    fn count(&self) -> usize {
        self.len()
    }
    fn field(&self, i: usize) -> &'a [u8] {
        self.get(i).unwrap_or_default()
    }
}

/// A quote-free line split on commas: `ends[i]` is the end of field `i`.
struct Split<'a> {
    line: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Fields<'a> for Split<'a> {
    fn count(&self) -> usize {
        self.ends.len()
    }
    fn field(&self, i: usize) -> &'a [u8] {
        let Some(&end) = self.ends.get(i) else {
            return &[];
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
        &self.line[start..end]
    }
}

/// What a 200 record says about the 300 records that follow it.
struct Channel {
    line: u64,
    series: SeriesId,
    unit: Unit,
    /// Decimal places of the file's unit that make one amount unit (see [`Unit::normalise`]).
    places: u32,
    interval_minutes: u16,
    slots: usize,
}

enum ChannelState {
    /// No 200 since the start of input, the last 100 or the last 900.
    Missing,
    Open(Channel),
    /// The last 200 was refused; its 300s are rejected with this reason.
    Rejected {
        line: u64,
        reason: String,
    },
}

/// What a 400 record would attach to.
enum Pending {
    /// The previous record was not a 300 or 400: a 400 here is stray.
    Nothing,
    /// The previous 300 was rejected; its 400s belong to that reject.
    Rejected,
    /// An accepted 300, in `Nem12::frag`, awaiting its 400s.
    Held(Held),
}

struct Held {
    line: u64,
    /// Column of the 300's QualityMethod.
    quality_column: Option<u32>,
    /// QualityMethod `V`: per-interval quality comes from 400s.
    variable: bool,
    /// Union of the 400s' flags so far.
    quality: Quality,
    saw_400: bool,
    /// Intervals the 400s have qualified so far (each at most once: overlaps are refused).
    covered: usize,
    /// First fault found by a 400, reported when the row is flushed.
    error: Option<String>,
}

/// The NEM12 state machine.
pub struct Nem12 {
    tally: Tally,
    default_version: Version,
    channel: ChannelState,
    pending: Pending,
    /// The held 300's fragment; reused for every row.
    frag: Fragment,
    /// Per interval of the held 300: qualified by a 400 yet.
    covered: Vec<bool>,
    /// Field ends of the fast line path, reused.
    ends: Vec<usize>,
    /// The 200 record of `channel` (open or rejected) as a line and its line number: what a
    /// resumed parse replays to be in the same channel.
    channel_record: Option<(u64, Vec<u8>)>,
    /// A record was handled, or this parse resumed a cut one (the file's start is elsewhere).
    started: bool,
    /// The last record handled was a 900.
    ended: bool,
    /// Line of the input's first 900 record.
    first_900: Option<u64>,
    /// Line of the last record handled.
    last_line: u64,
}

impl Nem12 {
    pub(crate) fn new(opts: &Options) -> Nem12 {
        Nem12 {
            tally: Tally::new(opts.source.clone()),
            default_version: opts.version,
            channel: ChannelState::Missing,
            pending: Pending::Nothing,
            frag: Fragment {
                series: SeriesId::parse(b"-").expect("valid placeholder"),
                day: Day::from_days(0).expect("1970 is in range"),
                version: opts.version,
                source: opts.source.clone(),
                line: 0,
                interval_minutes: 30,
                unit: Unit::kwh(),
                quality: Quality::default(),
                slots: Slots::new(48),
            },
            covered: Vec::new(),
            ends: Vec::new(),
            channel_record: None,
            started: false,
            ended: false,
            first_900: None,
            last_line: 0,
        }
    }

    /// Reports a faulty record that is not a row: counted as a refused record, not a row.
    fn reject_record(
        &mut self,
        sink: &mut dyn Sink,
        line: u64,
        column: Option<u32>,
        reason: impl Into<String>,
    ) {
        self.tally.reject_record(sink, line, column, reason);
    }

    /// The file-level checks of the record about to be handled: a missing 100 header, a 900
    /// end record that is not the last one.
    fn check_structure(&mut self, kind: &[u8], lineno: u64, sink: &mut dyn Sink) {
        if !self.started {
            self.started = true;
            if kind != b"100" {
                self.tally.warn(
                    sink,
                    lineno,
                    "the file does not start with a 100 header record: it may have lost its beginning; the records read are counted, check that the file is complete",
                );
            }
        }
        self.last_line = lineno;
        self.ended = kind == b"900";
        if self.ended {
            if let Some(first) = self.first_900 {
                self.tally.warn(
                    sink,
                    lineno,
                    format!("another 900 end record (the first is at line {first}): this input holds several NEM12 files joined together, or repeats its end record; every part was read"),
                );
            } else {
                self.first_900 = Some(lineno);
            }
        }
    }

    fn handle<'a, F: Fields<'a>>(&mut self, f: &F, lineno: u64, sink: &mut dyn Sink) {
        let kind = f.field(0).trim_ascii();
        if kind == b"400" {
            self.check_structure(kind, lineno, sink);
            self.on_400(f, lineno, sink);
            return;
        }
        // The 300 held for its 400s is done: its rows and rejects come before anything this
        // record reports, as they do when a hand-over cut flushes it (found by the
        // chunk-boundary property test: a repeated 900's warning came first in one run).
        self.flush(sink);
        self.check_structure(kind, lineno, sink);
        match kind {
            b"300" => self.on_300(f, lineno, sink),
            b"200" => self.on_200(f, lineno, sink),
            b"100" => {
                self.channel = ChannelState::Missing;
                let version = f.field(1).trim_ascii();
                if !version.eq_ignore_ascii_case(b"NEM12") {
                    self.reject_record(
                        sink,
                        lineno,
                        col(1),
                        format!(
                            "this 100 header says `{}`, not NEM12; meterflow reads NEM12 interval data only, so the records up to the next 100 header may be rejected",
                            lossy(version)
                        ),
                    );
                }
            }
            b"500" => {}
            b"900" => self.channel = ChannelState::Missing,
            other => self.reject_record(
                sink,
                lineno,
                col(0),
                format!(
                    "`{}` is not a NEM12 record indicator (expected 100, 200, 300, 400, 500 or 900); the line is skipped",
                    lossy(other)
                ),
            ),
        }
    }

    fn on_200<'a, F: Fields<'a>>(&mut self, f: &F, lineno: u64, sink: &mut dyn Sink) {
        let fields = (0..f.count()).map(|i| f.field(i));
        self.channel_record = Some((lineno, super::record::csv_line(fields)));
        match parse_200(f, lineno) {
            Ok(ch) => self.channel = ChannelState::Open(ch),
            Err((column, reason)) => {
                self.reject_record(
                    sink,
                    lineno,
                    column,
                    format!("{reason}; the 300 records of this channel will be rejected"),
                );
                self.channel = ChannelState::Rejected {
                    line: lineno,
                    reason,
                };
            }
        }
    }

    fn on_300<'a, F: Fields<'a>>(&mut self, f: &F, lineno: u64, sink: &mut dyn Sink) {
        let parsed = match &self.channel {
            ChannelState::Missing => Err((
                None,
                "this 300 record has no 200 channel record before it (since the start of the file or the last 100 or 900 record), so its meter, unit and interval length are unknown; put the channel's 200 record first".to_string(),
            )),
            ChannelState::Rejected { line, reason } => Err((
                None,
                format!("channel at line {line} was rejected: {reason}"),
            )),
            ChannelState::Open(ch) => {
                parse_300(ch, &mut self.frag, self.default_version, f, lineno)
            }
        };
        match parsed {
            Ok(held) => self.hold(held),
            Err((column, reason)) => {
                self.tally.reject(sink, lineno, column, reason);
                self.pending = Pending::Rejected;
            }
        }
    }

    /// Holds an accepted 300 (in `frag`) for the 400s that may follow it.
    fn hold(&mut self, held: Held) {
        self.covered.clear();
        self.covered.resize(self.frag.slots.len(), false);
        self.pending = Pending::Held(held);
    }

    /// A plain 300 of an open channel through [`fast_300`]; false (nothing reported) when the
    /// general path must read it.
    fn line_300(&mut self, line: &[u8], lineno: u64, sink: &mut dyn Sink) -> bool {
        // What `handle` does first for any record but a 400; done again (a no-op) if the
        // general path takes the line after all. `frag` is free from here on.
        self.flush(sink);
        let ChannelState::Open(ch) = &self.channel else {
            return false;
        };
        let fast = fast_300(
            ch,
            &mut self.frag,
            self.default_version,
            line,
            &mut self.ends,
            lineno,
        );
        let Some(held) = fast else {
            return false;
        };
        self.check_structure(b"300", lineno, sink);
        self.hold(held);
        true
    }

    fn on_400<'a, F: Fields<'a>>(&mut self, f: &F, lineno: u64, sink: &mut dyn Sink) {
        match &mut self.pending {
            Pending::Nothing => self.reject_record(
                sink,
                lineno,
                None,
                "a 400 record gives the quality of intervals of the 300 record right before it (or before its sibling 400s), but this one does not follow a 300 record; it is skipped",
            ),
            Pending::Rejected => {}
            Pending::Held(held) => {
                if held.error.is_none() {
                    if let Err((column, why)) = apply_400(held, &mut self.covered, f) {
                        let at = column.map(|c| format!(", column {c}")).unwrap_or_default();
                        held.error = Some(format!("400 record at line {lineno}{at}: {why}"));
                    }
                }
            }
        }
    }

    /// Emits or rejects the held 300 row, now that no more 400s can follow it.
    fn flush(&mut self, sink: &mut dyn Sink) {
        // Whatever was pending, a 400 after the record being handled now would be stray.
        let Pending::Held(held) = std::mem::replace(&mut self.pending, Pending::Nothing) else {
            return;
        };
        let n = self.covered.len();
        let fault = if let Some(e) = held.error {
            Some((None, e))
        } else if held.variable && !held.saw_400 {
            Some((
                held.quality_column,
                "QualityMethod V (variable) says per-interval quality follows in 400 records, but no 400 record follows this 300".to_string(),
            ))
        } else if held.variable && held.covered < n {
            let first = self.covered.iter().position(|&c| !c).map_or(0, |i| i + 1);
            Some((
                None,
                format!(
                    "the 400 records after this 300 qualify {} of its {n} intervals; every interval needs exactly one 400 range (interval {first} has none)",
                    held.covered
                ),
            ))
        } else {
            None
        };
        match fault {
            Some((column, reason)) => self.tally.reject(sink, held.line, column, reason),
            None => {
                if held.variable {
                    self.frag.quality = held.quality;
                }
                self.tally.accept_rows(1);
                self.tally.emit(sink, &self.frag);
            }
        }
    }
}

/// Reads a 200 record into a channel, or says which field is wrong and why.
fn parse_200<'a, F: Fields<'a>>(f: &F, lineno: u64) -> Result<Channel, (Option<u32>, String)> {
    let len = f.count();
    if len < 9 {
        return Err((
            None,
            format!(
                "the 200 record has {len} fields; expected 10 (200,NMI,NMIConfiguration,RegisterID,NMISuffix,MDMDataStreamIdentifier,MeterSerialNumber,UOM,IntervalLength,NextScheduledReadDate), or 9 without NextScheduledReadDate"
            ),
        ));
    }
    if let Some(extra) = (10..len).find(|&i| !f.field(i).trim_ascii().is_empty()) {
        return Err((
            col(extra),
            format!(
                "the 200 record has {len} fields; expected 10, or 9 without NextScheduledReadDate"
            ),
        ));
    }
    let nmi = f.field(1).trim_ascii();
    SeriesId::check(nmi).map_err(|e| (col(1), format!("NMI: {e}")))?;
    let suffix = f.field(4).trim_ascii();
    if suffix.is_empty() {
        return Err((
            col(4),
            "the NMISuffix is empty; it names the channel (E1, B1, Q1…) and is part of the series id NMI-suffix".into(),
        ));
    }
    SeriesId::check(suffix).map_err(|e| (col(4), format!("NMISuffix: {e}")))?;
    let mut id = Vec::with_capacity(nmi.len() + 1 + suffix.len());
    id.extend_from_slice(nmi);
    id.push(b'-');
    id.extend_from_slice(suffix);
    let series = SeriesId::parse(&id).map_err(|e| (col(1), format!("series id: {e}")))?;
    let uom = f.field(7).trim_ascii();
    let uom = std::str::from_utf8(uom)
        .ok()
        .filter(|u| {
            !u.is_empty() && u.len() <= MAX_UOM_LEN && u.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            (
                col(7),
                format!(
                    "UOM `{}` is not a unit of measure; expected a short unit such as kWh, Wh, MWh or kVArh",
                    lossy(uom)
                ),
            )
        })?;
    let (unit, places) = Unit::normalise(uom);
    let raw_len = f.field(8).trim_ascii();
    let interval_minutes = parse_small(raw_len)
        .and_then(|m| u16::try_from(m).ok())
        .filter(|m| NEM12_INTERVALS.contains(m));
    let (interval_minutes, slots) = interval_minutes
        .and_then(|m| slots_per_day(m).map(|s| (m, s)))
        .ok_or_else(|| {
            (
                col(8),
                format!(
                    "IntervalLength `{}` is not one of NEM12's interval lengths 5, 15 or 30 (minutes)",
                    lossy(raw_len)
                ),
            )
        })?;
    Ok(Channel {
        line: lineno,
        series,
        unit,
        places,
        interval_minutes,
        slots,
    })
}

/// Reads a 300 record into `frag`, or says which field is wrong and why. On error `frag` holds
/// garbage, which is never emitted.
fn parse_300<'a, F: Fields<'a>>(
    ch: &Channel,
    frag: &mut Fragment,
    default_version: Version,
    f: &F,
    lineno: u64,
) -> Result<Held, (Option<u32>, String)> {
    let n = ch.slots;
    let len = f.count();
    // The field count alone cannot tell a short record with MSATSLoadDateTime from a full one
    // without (47 values + 7 fields = 48 values + 6), so the QualityMethod must also sit right
    // after the N values: a value never starts with a letter, a QualityMethod always does. An
    // empty QualityMethod is taken as in place unless a letter one or two fields away says
    // the values are shifted; the field check below then reports it.
    let count_ok = len == n + 6 || len == n + 7;
    let method = f.field(n + 2).trim_ascii();
    let aligned = count_ok
        && !starts_with_letter(f.field(n + 1))
        && (starts_with_letter(method)
            || (method.is_empty() && !starts_with_letter(f.field(n + 3))));
    if !aligned {
        return Err((None, count_mismatch(ch, f)));
    }
    let day = Day::parse(f.field(1)).map_err(|e| (col(1), format!("IntervalDate: {e}")))?;
    frag.slots.reset(n);
    let mut present = 0usize;
    for k in 0..n {
        let raw = f.field(2 + k);
        // The fused scanner takes plain `d.ddd` cells at 6 places; it agrees with
        // `parse_decimal` (property-tested in `value`), which handles everything else.
        let fast = if ch.places == 6 {
            scan_plain_kwh(raw, 0).filter(|&(_, end)| end == raw.len())
        } else {
            None
        };
        let value = match fast {
            Some((v, _)) => v,
            None => parse_decimal(raw, ch.places)
                .map_err(|e| (col(2 + k), format!("interval {}: {e}", k + 1)))?,
        };
        if let Some(v) = value {
            frag.slots.set(k, v);
            present += 1;
        }
    }
    if present == 0 {
        return Err((
            None,
            format!("all {n} interval values are empty: the 300 record holds no data"),
        ));
    }
    let qcol = n + 2;
    let (variable, quality) = quality_method(method).map_err(|e| (col(qcol), e))?;
    let ucol = n + 5;
    let version = parse_market_time(f.field(ucol))
        .map_err(|e| (col(ucol), format!("UpdateDateTime: {e}")))?
        .unwrap_or(default_version);
    Ok(held_300(
        ch,
        frag,
        day,
        version,
        (variable, quality),
        lineno,
    ))
}

/// A 300's QualityMethod: variable (`V`, quality from 400s) or the quality of every value.
fn quality_method(method: &[u8]) -> Result<(bool, Quality), String> {
    match method.first() {
        Some(b'V') => Ok((true, Quality::default())),
        Some(&flag) => match Quality::from_nem12_flag(flag) {
            Some(q) => Ok((false, q)),
            None => Err(bad_method(method, true)),
        },
        None => Err(bad_method(method, true)),
    }
}

/// Completes `frag` (its slots already filled) with the keys and fields of an accepted 300.
fn held_300(
    ch: &Channel,
    frag: &mut Fragment,
    day: Day,
    version: Version,
    (variable, quality): (bool, Quality),
    lineno: u64,
) -> Held {
    if frag.series != ch.series {
        frag.series = ch.series.clone();
    }
    frag.unit = ch.unit.clone();
    frag.interval_minutes = ch.interval_minutes;
    frag.day = day;
    frag.version = version;
    frag.line = lineno;
    frag.quality = quality;
    Held {
        line: lineno,
        quality_column: col(ch.slots + 2),
        variable,
        quality: Quality::default(),
        saw_400: false,
        covered: 0,
        error: None,
    }
}

/// The fused path of the common 300 record: `300,YYYYMMDD,` then plain kWh values read in
/// place (no field split), then the four or five closing fields, the QualityMethod a valid
/// letter. `None`, having changed nothing the general path depends on, for anything else
/// (its errors, blanks inside fields, other units, short or long records): the general
/// path then reads the line and says what is wrong. Same output, property-tested.
fn fast_300(
    ch: &Channel,
    frag: &mut Fragment,
    default_version: Version,
    line: &[u8],
    ends: &mut Vec<usize>,
    lineno: u64,
) -> Option<Held> {
    let n = ch.slots;
    if ch.places != 6 || line.get(12) != Some(&b',') {
        return None;
    }
    let day = Day::parse(&line[4..12]).ok()?;
    // Written in place, summed as read (as the wide fast path does); left half written on a
    // `None`, which the general path's reset clears.
    let (mut sum, mut present) = (0i64, 0usize);
    let mut pos = 13;
    for cell in frag.slots.raw_mut(n) {
        // The cell ends at a comma: the last value is followed by the QualityMethod.
        let (value, end) = scan_plain_kwh(line, pos).filter(|&(_, end)| end < line.len())?;
        *cell = value.unwrap_or(Slots::missing());
        sum += value.unwrap_or(0);
        present += usize::from(value.is_some());
        pos = end + 1;
    }
    if present == 0 {
        return None;
    }
    frag.slots.commit_raw(sum, present);
    let tail = &line[pos..];
    ends.clear();
    push_commas(tail, ends);
    ends.push(tail.len());
    // QualityMethod, ReasonCode, ReasonDescription, UpdateDateTime[, MSATSLoadDateTime].
    if !matches!(ends.len(), 4 | 5) {
        return None;
    }
    let method = tail[..ends[0]].trim_ascii();
    if !starts_with_letter(method) {
        return None;
    }
    let quality = quality_method(method).ok()?;
    let version = parse_market_time(&tail[ends[2] + 1..ends[3]]).ok()?;
    Some(held_300(
        ch,
        frag,
        day,
        version.unwrap_or(default_version),
        quality,
        lineno,
    ))
}

fn bad_method(method: &[u8], allow_v: bool) -> String {
    let what = if method.is_empty() {
        "QualityMethod is empty".to_string()
    } else {
        format!("QualityMethod `{}` is not valid", lossy(method))
    };
    if allow_v {
        format!("{what}; it must start with A (actual), E (estimated), S (substituted), F (final substituted), N (null) or V (variable, with 400 records)")
    } else {
        format!("{what}; it must start with A (actual), E (estimated), S (substituted), F (final substituted) or N (null); V is allowed only in a 300 record")
    }
}

fn starts_with_letter(field: &[u8]) -> bool {
    field
        .trim_ascii()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
}

/// Explains a 300 whose values do not fit its channel: how many values it has (the fields
/// before the first one that starts with a letter, taken for the QualityMethod) and how many
/// the 200 requires.
fn count_mismatch<'a, F: Fields<'a>>(ch: &Channel, f: &F) -> String {
    let len = f.count();
    let n = ch.slots;
    let need = format!(
        "the 200 channel record at line {} has IntervalLength {}, which requires {n} interval values ({} fields with MSATSLoadDateTime, {} without); the row is rejected, not truncated or padded",
        ch.line,
        ch.interval_minutes,
        n + 7,
        n + 6
    );
    match (2..len).find(|&i| starts_with_letter(f.field(i))) {
        Some(q) => format!(
            "the 300 record has {} interval values in {len} fields (counting up to `{}` in column {}, the first field that starts with a letter, taken for its QualityMethod), but {need}",
            q - 2,
            lossy(f.field(q).trim_ascii()),
            q + 1
        ),
        None => format!(
            "the 300 record has {len} fields and none after the IntervalDate starts with a letter, so its QualityMethod is missing; {need}"
        ),
    }
}

/// Parses a short run of ASCII digits.
fn parse_small(t: &[u8]) -> Option<u32> {
    if t.is_empty() || t.len() > 9 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(t.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0')))
}

/// Converts a NEM12 `YYYYMMDDhhmmss` market-time stamp (AEST, UTC+10) to Unix epoch
/// milliseconds. `Ok(None)` for an empty field. Twelve digits (`YYYYMMDDhhmm`, seconds 00) are
/// accepted too: the standard's 100 header uses that form, and some distributors write their
/// 300 records' UpdateDateTime that way; refusing it lost every reading of such a file.
fn parse_market_time(raw: &[u8]) -> Result<Option<Version>, String> {
    let t = raw.trim_ascii();
    if t.is_empty() {
        return Ok(None);
    }
    let err = |why: &str| {
        format!(
            "`{}` {why}; expected YYYYMMDDhhmmss in market time (AEST), like 20040202120025",
            lossy(raw)
        )
    };
    if !matches!(t.len(), 12 | 14) || !t.iter().all(u8::is_ascii_digit) {
        return Err(err("is not 14 digits (or 12, without seconds)"));
    }
    let num = |r: std::ops::Range<usize>| parse_small(&t[r]).unwrap_or(u32::MAX);
    let (y, mo, d) = (num(0..4), num(4..6), num(6..8));
    let (h, mi) = (num(8..10), num(10..12));
    let s = if t.len() == 14 { num(12..14) } else { 0 };
    let day = i32::try_from(y)
        .ok()
        .and_then(|y| Day::from_ymd(y, mo, d))
        .ok_or_else(|| err("has no such date"))?;
    if h > 23 || mi > 59 || s > 59 {
        return Err(err("has no such time of day"));
    }
    let secs = i64::from(day.days()) * 86_400 + i64::from(h * 3600 + mi * 60 + s)
        - MARKET_UTC_OFFSET_SECONDS;
    Ok(Some(secs * 1000))
}

/// Applies one 400 record to the held 300, or says what is wrong with it.
fn apply_400<'a, F: Fields<'a>>(
    held: &mut Held,
    covered: &mut [bool],
    f: &F,
) -> Result<(), (Option<u32>, String)> {
    if !held.variable {
        return Err((
            None,
            "400 records may only follow a 300 record whose QualityMethod is V (variable), and this 300's is not; fix the 300's QualityMethod or remove the 400s".into(),
        ));
    }
    held.saw_400 = true;
    let len = f.count();
    if len < 4 {
        return Err((
            None,
            format!("the 400 record has {len} fields; expected 6 (400,StartInterval,EndInterval,QualityMethod,ReasonCode,ReasonDescription)"),
        ));
    }
    if let Some(extra) = (6..len).find(|&i| !f.field(i).trim_ascii().is_empty()) {
        return Err((
            col(extra),
            format!("the 400 record has {len} fields; expected 6"),
        ));
    }
    let n = covered.len();
    let interval = |i: usize, name: &str| {
        let raw = f.field(i).trim_ascii();
        parse_small(raw)
            .map(|v| v as usize)
            .filter(|v| (1..=n).contains(v))
            .ok_or_else(|| {
                (
                    col(i),
                    format!(
                        "{name} `{}` is not an interval number from 1 to {n}",
                        lossy(raw)
                    ),
                )
            })
    };
    let start = interval(1, "StartInterval")?;
    let end = interval(2, "EndInterval")?;
    if start > end {
        return Err((
            col(2),
            format!("EndInterval {end} comes before StartInterval {start}"),
        ));
    }
    let method = f.field(3).trim_ascii();
    let quality = method
        .first()
        .and_then(|&flag| Quality::from_nem12_flag(flag))
        .ok_or_else(|| (col(3), bad_method(method, false)))?;
    let range = &mut covered[start - 1..end];
    if let Some(k) = range.iter().position(|&c| c) {
        return Err((
            None,
            format!(
                "intervals {start} to {end} overlap an earlier 400 record's range (interval {} is qualified twice)",
                start + k
            ),
        ));
    }
    range.fill(true);
    held.covered += end - start + 1;
    held.quality = held.quality.union(quality);
    Ok(())
}

/// Appends the index of every `,` in `line` to `ends`, eight bytes at a time. A 300 record
/// has a comma every ~6 bytes: a byte loop (which beat `memchr_iter` at that density) was
/// 40 % of NEM12 parsing (`perf annotate`), most of it the branch per byte.
fn push_commas(line: &[u8], ends: &mut Vec<usize>) {
    for at in (0..line.len()).step_by(8) {
        let mut commas = bytes_equal(word_at(line, at), b',');
        while commas != 0 {
            ends.push(at + (commas.trailing_zeros() / 8) as usize);
            commas &= commas - 1;
        }
    }
}

impl Handler for Nem12 {
    fn line(&mut self, line: &[u8], lineno: u64, sink: &mut dyn Sink) -> bool {
        // Without quotes or bare CRs, `csv-core` would split exactly on commas.
        if memchr::memchr2(b'"', b'\r', line).is_some() {
            return false;
        }
        if line.starts_with(b"300,") && self.line_300(line, lineno, sink) {
            return true;
        }
        let mut ends = std::mem::take(&mut self.ends);
        ends.clear();
        push_commas(line, &mut ends);
        ends.push(line.len());
        let fields = Split { line, ends: &ends };
        // `Records` skips blank records (`,,,`) the same way.
        if !fields.is_blank() {
            self.handle(&fields, lineno, sink);
        }
        self.ends = ends;
        true
    }

    fn record(
        &mut self,
        rec: &Record<'_>,
        lineno: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), FileError> {
        self.handle(rec, lineno, sink);
        Ok(())
    }
}

impl FormatHandler for Nem12 {
    fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), FileError> {
        self.flush(sink);
        Ok(())
    }

    /// What a part after a cut here replays, in line order:
    /// - the first 900 record, if one was read, so that a later one is still seen as a repeat;
    /// - the open channel's 200 record (open or refused), which the rows after the cut need (an
    ///   open channel's 200 always follows the last 900);
    /// - how the last record read ends the part: the last 900 again when it was one, else a
    ///   `500` (a record NEM12 readers pass over) on the last record's line, so that a final
    ///   part with no record of its own still knows whether the file ended with its 900.
    ///
    /// A 100 needs no replay (it only closes the channel), and the file's first record is no
    /// header here.
    fn context(&self, _header: &(u64, Vec<u8>)) -> Vec<(u64, Vec<u8>)> {
        let mut context = Vec::with_capacity(3);
        context.extend(self.first_900.map(|line| (line, b"900".to_vec())));
        if !matches!(self.channel, ChannelState::Missing) {
            context.extend(self.channel_record.clone());
        }
        if self.ended {
            if self.first_900 != Some(self.last_line) {
                context.push((self.last_line, b"900".to_vec()));
            }
        } else if self.last_line > 0 {
            context.push((self.last_line, b"500".to_vec()));
        }
        context
    }

    /// Not between a 300 and its 400s (they are one row).
    fn can_cut_before(&self, next: Option<&[u8]>) -> bool {
        match self.pending {
            Pending::Nothing => true,
            Pending::Rejected | Pending::Held(_) => next.is_some_and(|f| f != b"400"),
        }
    }

    fn end_of_input(&mut self, sink: &mut dyn Sink) {
        // A resumed part that read no record of its own knows from its context how the part
        // before it ended.
        if self.last_line > 0 && !self.ended {
            let line = self.last_line;
            self.tally.warn(
                sink,
                line,
                "the file ends without a 900 end record: it may be truncated (a lost tail is the usual cause); the rows read are counted, and ingesting the complete file later adds the rest without counting anything twice",
            );
        }
    }

    fn resumed(&mut self, _at_line: u64) {
        self.started = true;
        self.tally.stats.records_rejected = 0;
        self.tally.stats.warnings = 0;
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{parse_all, Parser};
    use crate::reject::{Collect, Reject, RejectKind, Stats};
    use crate::value::ONE;
    use proptest::prelude::*;

    const ACTUAL_INTERVAL: &[u8] =
        include_bytes!("../../tests/fixtures/nem12/nemreader_Example_NEM12_actual_interval.csv");
    const MULTIPLE_QUALITY: &[u8] =
        include_bytes!("../../tests/fixtures/nem12/nemreader_Example_NEM12_multiple_quality.csv");

    /// Version given to data without an UpdateDateTime.
    const OPTS_VERSION: Version = 1_000;

    fn opts() -> Options {
        Options::new("test.nem12", OPTS_VERSION)
    }

    fn parse(input: &[u8]) -> (Collect, Stats) {
        let mut sink = Collect::default();
        let stats = parse_all(input, opts(), &mut sink).expect("NEM12 never fails a whole file");
        assert_eq!(
            stats.rows_read,
            stats.rows_accepted + stats.rows_rejected,
            "accounting"
        );
        assert_eq!(stats.fragments, stats.rows_accepted);
        (sink, stats)
    }

    /// Feeds `input` split at `cuts` (positions taken modulo its length).
    fn parse_chunked(input: &[u8], cuts: &[usize]) -> (Collect, Stats) {
        let mut p = Parser::new(opts());
        let mut sink = Collect::default();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut prev = 0;
        for c in cuts {
            p.feed(&input[prev..c], &mut sink).unwrap();
            prev = c;
        }
        p.feed(&input[prev..], &mut sink).unwrap();
        let stats = p.finish(&mut sink).unwrap();
        (sink, stats)
    }

    /// One byte at a time: no line is ever whole in a chunk, so every record goes through
    /// `csv-core` instead of the fast line path.
    fn parse_bytewise(input: &[u8]) -> (Collect, Stats) {
        let cuts: Vec<usize> = (1..input.len()).collect();
        parse_chunked(input, &cuts)
    }

    fn c200(nmi: &str, suffix: &str, uom: &str, minutes: u16) -> String {
        format!("200,{nmi},E1Q1,1,{suffix},N1,METSER123,{uom},{minutes},")
    }

    fn c300(date: &str, values: &[&str], quality: &str, update: &str) -> String {
        format!("300,{date},{},{quality},,,{update},", values.join(","))
    }

    fn totals(sink: &Collect) -> Vec<(String, String, i64, String, u16)> {
        sink.fragments
            .iter()
            .map(|f| {
                (
                    f.series.to_string(),
                    f.day.to_string(),
                    f.total(),
                    f.unit.to_string(),
                    f.interval_minutes,
                )
            })
            .collect()
    }

    fn lines(parts: &[String]) -> String {
        parts.join("\n") + "\n"
    }

    #[test]
    fn fixture_actual_interval() {
        for (sink, stats) in [parse(ACTUAL_INTERVAL), parse_bytewise(ACTUAL_INTERVAL)] {
            assert!(sink.rejects.is_empty(), "{:?}", sink.rejects);
            assert_eq!(
                totals(&sink),
                vec![
                    (
                        "VABD000163-E1".into(),
                        "2004-02-01".into(),
                        53_328_000,
                        "kWh".into(),
                        30
                    ),
                    (
                        "VABD000163-Q1".into(),
                        "2004-02-01".into(),
                        106_656_000,
                        "kVArh".into(),
                        30
                    ),
                ]
            );
            let f = &sink.fragments[0];
            assert_eq!(
                (f.line, f.quality, f.slots.present()),
                (3, Quality::ACTUAL, 48)
            );
            // 20040202120025 AEST = 2004-02-02T02:00:25Z.
            assert_eq!(f.version, 1_075_687_225_000);
            assert_eq!(&*f.source, "test.nem12");
            assert_eq!(sink.fragments[1].line, 5);
            assert_eq!(
                (stats.rows_read, stats.rows_accepted, stats.rows_rejected),
                (2, 2, 0)
            );
        }
    }

    #[test]
    fn fixture_multiple_quality() {
        for (sink, stats) in [parse(MULTIPLE_QUALITY), parse_bytewise(MULTIPLE_QUALITY)] {
            assert!(sink.rejects.is_empty(), "{:?}", sink.rejects);
            assert_eq!(
                totals(&sink),
                vec![(
                    "CCCC123456-E1".into(),
                    "2004-04-17".into(),
                    896_990_000,
                    "kWh".into(),
                    30
                )]
            );
            let q = sink.fragments[0].quality;
            assert_eq!(
                q,
                Quality::FINAL_SUBSTITUTED
                    .union(Quality::ACTUAL)
                    .union(Quality::SUBSTITUTED)
            );
            assert_eq!(q.label(), "mixed");
            // 20040418203500 AEST.
            assert_eq!(sink.fragments[0].version, 1_082_284_500_000);
            assert_eq!((stats.rows_read, stats.rows_accepted), (1, 1));
        }
    }

    #[test]
    fn quirks_and_variants_are_read() {
        let ones = vec!["1"; 48];
        let e1 = c200("NMI0000001", "E1", "kWh", 30);
        let day1 = c300("20200101", &ones, "A", "20200102120000");
        let day2 = c300("20200102", &ones, "A", "20200103120000");
        let kwh48 = |d: &'static str| ("NMI0000001-E1", d, 48 * ONE, "kWh", 30u16);
        struct Case {
            name: &'static str,
            input: String,
            want: Vec<(&'static str, &'static str, i64, &'static str, u16)>,
            /// Lines of the warnings: a missing 100 or 900, a repeated 900.
            warned: Vec<u64>,
        }
        let cases = vec![
            Case {
                name: "with 100 and 900",
                input: lines(&[
                    "100,NEM12,200405011135,MDA1,Ret1".into(),
                    e1.clone(),
                    day1.clone(),
                    "900".into(),
                ]),
                want: vec![kwh48("2020-01-01")],
                warned: vec![],
            },
            Case {
                name: "missing 100 header",
                input: lines(&[e1.clone(), day1.clone(), "900".into()]),
                want: vec![kwh48("2020-01-01")],
                warned: vec![1],
            },
            Case {
                name: "missing 900 and final newline",
                input: [e1.clone(), day1.clone()].join("\n"),
                want: vec![kwh48("2020-01-01")],
                warned: vec![1, 2],
            },
            Case {
                name: "200 without NextScheduledReadDate",
                input: lines(&["200,NMI0000001,E1,1,E1,N1,MS1,kWh,30".into(), day1.clone()]),
                want: vec![kwh48("2020-01-01")],
                warned: vec![1, 2],
            },
            Case {
                name: "300 without MSATSLoadDateTime",
                input: lines(&[e1.clone(), day1.strip_suffix(',').unwrap().to_string()]),
                want: vec![kwh48("2020-01-01")],
                warned: vec![1, 2],
            },
            Case {
                name: "concatenated files and several 900s",
                input: lines(&[
                    "100,NEM12,200405011135,MDA1,Ret1".into(),
                    e1.clone(),
                    day1.clone(),
                    "900".into(),
                    "100,NEM12,200405011135,MDA1,Ret1".into(),
                    e1.clone(),
                    day2.clone(),
                    "900".into(),
                    "900".into(),
                    // A third file that also lost its 100 header.
                    c200("NMI0000002", "B1", "kWh", 30),
                    day1.clone(),
                    "900".into(),
                ]),
                want: vec![
                    kwh48("2020-01-01"),
                    kwh48("2020-01-02"),
                    ("NMI0000002-B1", "2020-01-01", 48 * ONE, "kWh", 30),
                ],
                warned: vec![8, 9, 12],
            },
            Case {
                name: "CRLF, quoted fields, 500 records",
                input: [
                    "\"100\",\"NEM12\",\"200405011135\",\"MDA1\",\"Ret1\"".to_string(),
                    e1.replace("kWh", "\"kWh\""),
                    day1.replace("20200101", "\"20200101\""),
                    "500,O,S01009,20200102120000,".into(),
                    day2.clone(),
                    "500,O,S01009,20200103120000,".into(),
                    "900".into(),
                ]
                .join("\r\n")
                    + "\r\n",
                want: vec![kwh48("2020-01-01"), kwh48("2020-01-02")],
                warned: vec![],
            },
            Case {
                name: "Wh normalised to kWh",
                input: lines(&[
                    c200("NMI0000003", "E1", "Wh", 30),
                    c300("20200101", &vec!["1500"; 48], "A", ""),
                ]),
                want: vec![("NMI0000003-E1", "2020-01-01", 72 * ONE, "kWh", 30)],
                warned: vec![1, 2],
            },
            Case {
                name: "MWh normalised to kWh",
                input: lines(&[
                    c200("NMI0000003", "E1", "MWh", 30),
                    c300("20200101", &vec!["0.000001"; 48], "A", ""),
                ]),
                want: vec![("NMI0000003-E1", "2020-01-01", 48_000, "kWh", 30)],
                warned: vec![1, 2],
            },
            Case {
                name: "upper-case KWH",
                input: lines(&[
                    c200("NMI0000003", "E1", "KWH", 30),
                    c300("20200101", &vec!["0.5"; 48], "E", ""),
                ]),
                want: vec![("NMI0000003-E1", "2020-01-01", 24 * ONE, "kWh", 30)],
                warned: vec![1, 2],
            },
            Case {
                name: "5-minute channel",
                input: lines(&[
                    c200("NMI0000004", "E1", "kWh", 5),
                    c300("20200101", &vec!["0.001"; 288], "A", ""),
                ]),
                want: vec![("NMI0000004-E1", "2020-01-01", 288_000, "kWh", 5)],
                warned: vec![1, 2],
            },
            Case {
                name: "15-minute channel",
                input: lines(&[
                    c200("NMI0000004", "E1", "kWh", 15),
                    c300("20200101", &vec!["0.25"; 96], "A", ""),
                ]),
                want: vec![("NMI0000004-E1", "2020-01-01", 24 * ONE, "kWh", 15)],
                warned: vec![1, 2],
            },
            Case {
                name: "400s in any order",
                input: lines(&[
                    e1.clone(),
                    c300("20200101", &ones, "V", ""),
                    "400,25,48,E52,,".into(),
                    "400,1,24,A,,".into(),
                ]),
                want: vec![kwh48("2020-01-01")],
                warned: vec![1, 4],
            },
        ];
        for c in cases {
            for (sink, stats) in [
                parse(c.input.as_bytes()),
                parse_bytewise(c.input.as_bytes()),
            ] {
                let (warnings, refused): (Vec<_>, Vec<_>) = sink
                    .rejects
                    .iter()
                    .partition(|r| r.kind == RejectKind::Warning);
                assert!(refused.is_empty(), "{}: {refused:?}", c.name);
                let warned: Vec<u64> = warnings.iter().map(|r| r.line).collect();
                assert_eq!(warned, c.warned, "{}: {warnings:?}", c.name);
                assert_eq!(stats.warnings, warned.len() as u64, "{}", c.name);
                let want: Vec<_> = c
                    .want
                    .iter()
                    .map(|(s, d, t, u, m)| (s.to_string(), d.to_string(), *t, u.to_string(), *m))
                    .collect();
                assert_eq!(totals(&sink), want, "{}", c.name);
                assert_eq!(stats.rows_read, want.len() as u64, "{}", c.name);
            }
        }
    }

    #[test]
    fn empty_values_are_missing_slots() {
        let mut vals = vec!["1.5"; 48];
        vals[0] = "";
        vals[47] = " ";
        vals[10] = "0";
        let input = lines(&[
            c200("NMI0000001", "E1", "kWh", 30),
            c300("20200101", &vals, "A", ""),
        ]);
        let (sink, _) = parse(input.as_bytes());
        let f = &sink.fragments[0];
        assert_eq!(
            (
                f.slots.present(),
                f.slots.get(0),
                f.slots.get(10),
                f.total()
            ),
            (46, None, Some(0), 45 * 1_500_000)
        );
    }

    #[test]
    fn update_datetime_is_the_version() {
        assert_eq!(
            parse_market_time(b"20040202120025"),
            Ok(Some(1_075_687_225_000))
        );
        // Midnight AEST on 1 January is 14:00 UTC the day before.
        assert_eq!(
            parse_market_time(b"19700101100000"),
            Ok(Some(0)),
            "10:00 AEST is the epoch"
        );
        assert_eq!(parse_market_time(b" "), Ok(None));
        // Twelve digits, as a real distributor writes them: seconds 00.
        assert_eq!(
            parse_market_time(b"202311302114"),
            parse_market_time(b"20231130211400")
        );
        assert!(parse_market_time(b"202311302114").unwrap().is_some());
        for bad in [
            "2004020212002",
            "20040202120",
            "200402021200250",
            "200402021260",
            "200402302100",
            "20041302120025",
            "20040230120025",
            "20040202240000",
            "20040202126000",
            "2004-02-02 12:00",
        ] {
            let e = parse_market_time(bad.as_bytes()).unwrap_err();
            assert!(e.contains("YYYYMMDDhhmmss"), "{bad}: {e}");
        }
        let ones = vec!["1"; 48];
        let input = lines(&[
            c200("NMI0000001", "E1", "kWh", 30),
            c300("20200101", &ones, "A", "20040202120025"),
            c300("20200102", &ones, "A", ""),
            c300("20200103", &ones, "A", "200402021200"),
        ]);
        let (sink, stats) = parse(input.as_bytes());
        assert_eq!(stats.rows_accepted, 3, "{:?}", sink.rejects);
        let versions: Vec<_> = sink.fragments.iter().map(|f| f.version).collect();
        assert_eq!(
            versions,
            vec![1_075_687_225_000, OPTS_VERSION, 1_075_687_200_000]
        );
    }

    #[test]
    fn faults_are_rejected_with_line_column_and_reason() {
        let ones = vec!["1"; 48];
        let hdr = "100,NEM12,200405011135,MDA1,Ret1".to_string();
        let e1 = c200("NMI0000001", "E1", "kWh", 30);
        let a = c300("20200101", &ones, "A", "");
        let v = c300("20200101", &ones, "V", "");
        let mut bad_value = ones.clone();
        bad_value[4] = "1.2x";
        struct Case {
            name: &'static str,
            input: String,
            /// `(line, column, words the reason must contain)`.
            rejects: Vec<(u64, Option<u32>, Vec<&'static str>)>,
            /// Lines of the accepted 300s.
            accepted: Vec<u64>,
            /// `(rows_read, rows_rejected)`.
            rows: (u64, u64),
        }
        let case = |name, parts: &[String], rejects, accepted, rows| Case {
            name,
            input: lines(parts),
            rejects,
            accepted,
            rows,
        };
        let cases = vec![
            case(
                "47 values and MSATSLoadDateTime: as many fields as 48 without",
                &[
                    hdr.clone(),
                    e1.clone(),
                    c300("20200101", &ones[..47], "A", ""),
                ],
                vec![(
                    3,
                    None,
                    vec![
                        "has 47 interval values in 54 fields",
                        "`A` in column 50",
                        "line 2",
                        "IntervalLength 30",
                        "requires 48",
                        "not truncated",
                    ],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "47 values without MSATSLoadDateTime",
                &[
                    e1.clone(),
                    c300("20200101", &ones[..47], "A", "")
                        .strip_suffix(',')
                        .unwrap()
                        .to_string(),
                ],
                vec![(
                    2,
                    None,
                    vec!["has 47 interval values in 53 fields", "requires 48"],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "49 values: rejected, not truncated",
                &[
                    hdr.clone(),
                    e1.clone(),
                    c300("20200101", &vec!["1"; 49], "A", ""),
                    a.replace("20200101", "20200102"),
                ],
                vec![(
                    3,
                    None,
                    vec![
                        "has 49 interval values in 56 fields",
                        "line 2",
                        "requires 48",
                    ],
                )],
                vec![4],
                (2, 1),
            ),
            case(
                "49 values without MSATSLoadDateTime: as many fields as 48 with",
                &[
                    e1.clone(),
                    c300("20200101", &vec!["1"; 49], "A", "")
                        .strip_suffix(',')
                        .unwrap()
                        .to_string(),
                ],
                vec![(
                    2,
                    None,
                    vec!["has 49 interval values in 55 fields", "requires 48"],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "49 values, the last empty, without MSATSLoadDateTime",
                &[
                    e1.clone(),
                    c300("20200101", &[&ones[..], &[""]].concat(), "A", "")
                        .strip_suffix(',')
                        .unwrap()
                        .to_string(),
                ],
                vec![(2, None, vec!["has 49 interval values", "requires 48"])],
                vec![],
                (1, 1),
            ),
            case(
                "empty QualityMethod in place",
                &[e1.clone(), c300("20200101", &ones, "", "")],
                vec![(2, Some(51), vec!["QualityMethod is empty"])],
                vec![],
                (1, 1),
            ),
            case(
                "no QualityMethod at all",
                &[
                    e1.clone(),
                    format!("300,20200101,{}", vec!["1"; 54].join(",")),
                ],
                vec![(2, None, vec!["QualityMethod is missing", "line 1"])],
                vec![],
                (1, 1),
            ),
            case(
                "too many trailing fields",
                &[e1.clone(), a.clone() + "x,y"],
                vec![(2, None, vec!["has 48 interval values in 56 fields"])],
                vec![],
                (1, 1),
            ),
            case(
                "300 before any 200",
                &[hdr.clone(), a.clone(), e1.clone(), a.clone()],
                vec![(2, None, vec!["no 200 channel record before it"])],
                vec![4],
                (2, 1),
            ),
            case(
                "300 after a 900 without its own 200",
                &[e1.clone(), a.clone(), "900".into(), a.clone()],
                vec![(4, None, vec!["no 200 channel record"])],
                vec![2],
                (2, 1),
            ),
            case(
                "bad NMI: the 200 is reported, its 300s rejected",
                &[
                    hdr.clone(),
                    c200("NMI 1", "E1", "kWh", 30),
                    a.clone(),
                    a.clone(),
                    e1.clone(),
                    a.clone(),
                ],
                vec![
                    (
                        2,
                        Some(2),
                        vec!["NMI", "' '", "300 records of this channel will be rejected"],
                    ),
                    (3, None, vec!["channel at line 2 was rejected", "NMI"]),
                    (4, None, vec!["channel at line 2 was rejected"]),
                ],
                vec![6],
                (3, 2),
            ),
            case(
                "empty suffix",
                &[c200("NMI0000001", "", "kWh", 30), a.clone()],
                vec![
                    (1, Some(5), vec!["NMISuffix is empty"]),
                    (2, None, vec!["channel at line 1"]),
                ],
                vec![],
                (1, 1),
            ),
            case(
                "interval length 10 is not NEM12",
                &[
                    c200("NMI0000001", "E1", "kWh", 10),
                    c300("20200101", &vec!["1"; 144], "A", ""),
                ],
                vec![
                    (1, Some(9), vec!["IntervalLength `10`", "5, 15 or 30"]),
                    (
                        2,
                        None,
                        vec!["channel at line 1 was rejected: IntervalLength"],
                    ),
                ],
                vec![],
                (1, 1),
            ),
            case(
                "empty UOM",
                &[c200("NMI0000001", "E1", "", 30), a.clone()],
                vec![
                    (1, Some(8), vec!["UOM", "kWh"]),
                    (2, None, vec!["channel at line 1"]),
                ],
                vec![],
                (1, 1),
            ),
            case(
                "short 200",
                &["200,NMI0000001,E1,1,E1,N1,MS1,kWh".into(), a.clone()],
                vec![
                    (1, None, vec!["has 8 fields", "expected 10"]),
                    (2, None, vec!["channel at line 1"]),
                ],
                vec![],
                (1, 1),
            ),
            case(
                "bad IntervalDate",
                &[e1.clone(), a.replace("20200101", "20200230")],
                vec![(2, Some(2), vec!["IntervalDate", "20200230"])],
                vec![],
                (1, 1),
            ),
            case(
                "bad value",
                &[e1.clone(), c300("20200101", &bad_value, "A", "")],
                vec![(2, Some(7), vec!["interval 5", "1.2x"])],
                vec![],
                (1, 1),
            ),
            case(
                "Wh value finer than 1 mWh",
                &[
                    c200("NMI0000001", "E1", "Wh", 30),
                    c300("20200101", &vec!["1.0005"; 48], "A", ""),
                ],
                vec![(2, Some(3), vec!["decimal places"])],
                vec![],
                (1, 1),
            ),
            case(
                "all values empty",
                &[e1.clone(), c300("20200101", &[""; 48], "A", "")],
                vec![(2, None, vec!["all 48 interval values are empty"])],
                vec![],
                (1, 1),
            ),
            case(
                "unknown QualityMethod",
                &[e1.clone(), c300("20200101", &ones, "X", "")],
                vec![(2, Some(51), vec!["QualityMethod `X`"])],
                vec![],
                (1, 1),
            ),
            case(
                "bad UpdateDateTime",
                &[e1.clone(), c300("20200101", &ones, "A", "2020010112")],
                vec![(
                    2,
                    Some(54),
                    vec!["UpdateDateTime", "2020010112", "14 digits"],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "V without 400s",
                &[e1.clone(), v.clone(), a.replace("20200101", "20200102")],
                vec![(2, Some(51), vec!["no 400 record follows"])],
                vec![3],
                (2, 1),
            ),
            case(
                "V with a gap in the 400s",
                &[
                    e1.clone(),
                    v.clone(),
                    "400,1,20,A,,".into(),
                    "400,22,48,A,,".into(),
                ],
                vec![(2, None, vec!["qualify 47 of its 48", "interval 21"])],
                vec![],
                (1, 1),
            ),
            case(
                "overlapping 400s",
                &[
                    e1.clone(),
                    v.clone(),
                    "400,1,24,A,,".into(),
                    "400,20,48,E,,".into(),
                ],
                vec![(
                    2,
                    None,
                    vec!["400 record at line 4", "overlap", "interval 20"],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "400 beyond the last interval",
                &[e1.clone(), v.clone(), "400,1,49,A,,".into()],
                vec![(
                    2,
                    None,
                    vec![
                        "400 record at line 3, column 3",
                        "EndInterval `49`",
                        "1 to 48",
                    ],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "400 starting at 0",
                &[e1.clone(), v.clone(), "400,0,48,A,,".into()],
                vec![(2, None, vec!["line 3, column 2", "StartInterval `0`"])],
                vec![],
                (1, 1),
            ),
            case(
                "400 with its range reversed",
                &[e1.clone(), v.clone(), "400,48,1,A,,".into()],
                vec![(2, None, vec!["line 3, column 3", "comes before"])],
                vec![],
                (1, 1),
            ),
            case(
                "400 with flag V",
                &[e1.clone(), v.clone(), "400,1,48,V,,".into()],
                vec![(
                    2,
                    None,
                    vec!["line 3, column 4", "V is allowed only in a 300"],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "400 after a 300 that is not V",
                &[e1.clone(), a.clone(), "400,1,48,E,,".into()],
                vec![(
                    2,
                    None,
                    vec![
                        "400 record at line 3",
                        "only follow a 300 record whose QualityMethod is V",
                    ],
                )],
                vec![],
                (1, 1),
            ),
            case(
                "400s of a rejected 300 add nothing",
                &[
                    e1.clone(),
                    c300("20200101", &ones[..47], "V", ""),
                    "400,1,20,A,,".into(),
                    "400,21,48,E,,".into(),
                ],
                vec![(2, None, vec!["47 interval values"])],
                vec![],
                (1, 1),
            ),
            case(
                "stray 400 after a 200: reported, not a row",
                &[hdr.clone(), e1.clone(), "400,1,48,A,,".into(), a.clone()],
                vec![(3, None, vec!["does not follow a 300 record"])],
                vec![4],
                (1, 0),
            ),
            case(
                "400 after a 500 is stray; the 300 before stands",
                &[
                    e1.clone(),
                    a.clone(),
                    "500,O,S01009,20200102120000,".into(),
                    "400,1,48,A,,".into(),
                ],
                vec![(4, None, vec!["does not follow a 300 record"])],
                vec![2],
                (1, 0),
            ),
            case(
                "unknown record indicator",
                &[
                    hdr.clone(),
                    "250,NMI0000001,11,1,11,11,MS1,E,kWh".into(),
                    e1.clone(),
                    a.clone(),
                ],
                vec![(2, Some(1), vec!["`250` is not a NEM12 record indicator"])],
                vec![4],
                (1, 0),
            ),
            case(
                "a concatenated NEM13 header",
                &[
                    e1.clone(),
                    a.clone(),
                    "900".into(),
                    "100,NEM13,200405011135,MDA1,Ret1".into(),
                ],
                vec![(4, Some(2), vec!["`NEM13`, not NEM12"])],
                vec![2],
                (1, 0),
            ),
        ];
        for c in cases {
            for (sink, stats) in [
                parse(c.input.as_bytes()),
                parse_bytewise(c.input.as_bytes()),
            ] {
                // Warnings (a missing 100 or 900) have their own test.
                let refused: Vec<&Reject> = sink
                    .rejects
                    .iter()
                    .filter(|r| r.kind != RejectKind::Warning)
                    .collect();
                let got: Vec<(u64, Option<u32>)> =
                    refused.iter().map(|r| (r.line, r.column)).collect();
                let want: Vec<(u64, Option<u32>)> =
                    c.rejects.iter().map(|(l, col, _)| (*l, *col)).collect();
                assert_eq!(got, want, "{}: {:#?}", c.name, sink.rejects);
                // Every report line is counted, by its kind: the report and the counts agree.
                let rows = refused.iter().filter(|r| r.kind == RejectKind::Row).count();
                assert_eq!(stats.rows_rejected, rows as u64, "{}", c.name);
                assert_eq!(stats.reported(), sink.rejects.len() as u64, "{}", c.name);
                for (r, (_, _, needles)) in refused.iter().zip(&c.rejects) {
                    assert_eq!(&*r.source, "test.nem12");
                    for needle in needles {
                        assert!(
                            r.reason.contains(needle),
                            "{}: `{needle}` not in `{}`",
                            c.name,
                            r.reason
                        );
                    }
                }
                let accepted: Vec<u64> = sink.fragments.iter().map(|f| f.line).collect();
                assert_eq!(accepted, c.accepted, "{}", c.name);
                assert_eq!((stats.rows_read, stats.rows_rejected), c.rows, "{}", c.name);
            }
        }
    }

    #[test]
    fn line_numbers_count_blank_lines_crlf_and_resume_offset() {
        let ones = vec!["1"; 48];
        let input = [
            "100,NEM12,200405011135,MDA1,Ret1".to_string(),
            String::new(),
            c200("NMI0000001", "E1", "kWh", 30),
            ",,,".into(),
            c300("20200101", &ones[..40], "A", ""),
            String::new(),
            c300("20200102", &ones, "A", ""),
        ]
        .join("\r\n");
        let (sink, _) = parse(input.as_bytes());
        assert_eq!(sink.rejects[0].line, 5);
        assert!(
            sink.rejects[0].reason.contains("line 3"),
            "{}",
            sink.rejects[0].reason
        );
        assert_eq!(sink.fragments[0].line, 7);
        // A resumed input numbers its lines from where it starts.
        let mut o = opts();
        o.first_line = 101;
        let mut sink = Collect::default();
        parse_all(input.as_bytes(), o, &mut sink).unwrap();
        assert_eq!(sink.rejects[0].line, 105);
        assert!(
            sink.rejects[0].reason.contains("line 103"),
            "{}",
            sink.rejects[0].reason
        );
        assert_eq!(sink.fragments[0].line, 107);
    }

    /// One generated NEM12 record (or, for `Day`, a 300 and its 400s).
    #[derive(Debug, Clone)]
    enum Op {
        /// A 100 header, usually followed by a 200 for the current channel again.
        Header {
            reopen: bool,
        },
        Channel {
            nmi: u8,
            minutes: u16,
            uom: &'static str,
            broken: bool,
        },
        Day {
            day: u32,
            seed: u64,
            /// 0–2 a plain flag, 3–4 `V` with 400s, 5 an invalid flag.
            quality: u8,
            /// 0 empty, 7 invalid, otherwise a valid UpdateDateTime.
            update: u8,
            /// Values more or fewer than the channel needs.
            skew: i8,
            msats: bool,
            /// Where the 400 ranges split the day; `gap` leaves one interval out.
            splits: Vec<usize>,
            gap: bool,
            quoted: bool,
        },
        Stray400,
        B2B,
        /// A 900, usually followed by a concatenated file's 100 and 200.
        End {
            reopen: bool,
        },
        Junk,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => prop::bool::weighted(0.8).prop_map(|reopen| Op::Header { reopen }),
            2 => (0u8..3, prop_oneof![Just(5u16), Just(15), Just(30), Just(30)], prop_oneof![Just("kWh"), Just("Wh"), Just("MWH"), Just("kVArh")], prop::bool::weighted(0.1))
                .prop_map(|(nmi, minutes, uom, broken)| Op::Channel { nmi, minutes, uom, broken }),
            8 => (
                1u32..28,
                any::<u64>(),
                0u8..6,
                0u8..8,
                prop_oneof![8 => Just(0i8), 1 => Just(-1), 1 => Just(1)],
                any::<bool>(),
                proptest::collection::vec(1usize..288, 0..4),
                prop::bool::weighted(0.1),
                prop::bool::weighted(0.2),
            )
                .prop_map(|(day, seed, quality, update, skew, msats, splits, gap, quoted)| Op::Day {
                    day, seed, quality, update, skew, msats, splits, gap, quoted,
                }),
            1 => Just(Op::Stray400),
            1 => Just(Op::B2B),
            1 => prop::bool::weighted(0.8).prop_map(|reopen| Op::End { reopen }),
            1 => Just(Op::Junk),
        ]
    }

    /// A cell for interval `k` of a day: mostly plain decimals, sometimes empty, quoted,
    /// signed or invalid. Deterministic in `seed`, so a failing case shrinks.
    fn cell(seed: u64, k: usize) -> String {
        let x = seed
            .wrapping_add(k as u64)
            .wrapping_mul(6_364_136_223_846_793_005)
            .rotate_left(29);
        match x % 2000 {
            0..=19 => String::new(),
            20..=29 => "\"1.5\"".into(),
            30..=39 => " 2".into(),
            40..=49 => "-0.25".into(),
            50 => "x".into(),
            51 => "0.1234567".into(),
            n => format!("{}.{:03}", n / 100, x % 1000),
        }
    }

    /// Renders ops as a NEM12 file, returning it and the number of 300 records in it.
    fn render(ops: &[Op], eol: &str) -> (String, u64) {
        let mut out = String::new();
        let mut slots = 48usize;
        let mut channel = c200("NMI0000000", "E1", "kWh", 30);
        let mut rows = 0;
        for op in ops {
            let mut recs: Vec<String> = Vec::new();
            match op {
                Op::Header { reopen } => {
                    recs.push("100,NEM12,200405011135,MDA1,Ret1".into());
                    if *reopen {
                        recs.push(channel.clone());
                    }
                }
                Op::Channel {
                    nmi,
                    minutes,
                    uom,
                    broken,
                } => {
                    slots = 1440 / usize::from(*minutes);
                    let minutes = if *broken { 7 } else { *minutes };
                    channel = c200(&format!("NMI000000{nmi}"), "E1", uom, minutes);
                    recs.push(channel.clone());
                }
                Op::Day {
                    day,
                    seed,
                    quality,
                    update,
                    skew,
                    msats,
                    splits,
                    gap,
                    quoted,
                } => {
                    rows += 1;
                    let n = (slots as i64 + i64::from(*skew)) as usize;
                    let cells: Vec<String> = (0..n).map(|k| cell(*seed, k)).collect();
                    let flag = match quality {
                        0 => "A",
                        1 => "E52",
                        2 => "S14",
                        3 | 4 => "V",
                        _ => "Q",
                    };
                    let update = match update {
                        0 => String::new(),
                        7 => "2020".into(),
                        _ => format!("202001{day:02}1{}3000", seed % 10),
                    };
                    let date = if *quoted {
                        format!("\"202002{day:02}\"")
                    } else {
                        format!("202002{day:02}")
                    };
                    let mut rec = format!("300,{date},{},{flag},,,{update}", cells.join(","));
                    if *msats {
                        rec += ",20200301000000";
                    }
                    recs.push(rec);
                    if flag == "V" {
                        let mut cuts: Vec<usize> = splits
                            .iter()
                            .map(|s| s % slots)
                            .filter(|&s| s > 0)
                            .collect();
                        cuts.sort_unstable();
                        cuts.dedup();
                        let mut start = 1;
                        for (i, end) in cuts.iter().copied().chain([slots]).enumerate() {
                            let s = if *gap && i == 0 { start + 1 } else { start };
                            let q = ["A", "E52", "S14", "F14", "N"]
                                [(seed.rotate_left(i as u32 * 3) % 5) as usize];
                            recs.push(format!("400,{s},{end},{q},,"));
                            start = end + 1;
                        }
                    }
                }
                Op::Stray400 => recs.push("400,1,48,A,,".into()),
                Op::B2B => recs.push("500,O,S01009,20200102120000,".into()),
                Op::End { reopen } => {
                    recs.push("900".into());
                    if *reopen {
                        recs.push("100,NEM12,200405011135,MDA1,Ret1".into());
                        recs.push(channel.clone());
                    }
                }
                Op::Junk => recs.push("250,junk".into()),
            }
            for r in recs {
                out += &r;
                out += eol;
            }
        }
        (out, rows)
    }

    proptest! {
        #[test]
        fn commas_are_found_word_by_word_exactly_as_byte_by_byte(
            line in proptest::collection::vec(prop_oneof![Just(b','), any::<u8>()], 0..100),
        ) {
            let mut ends = vec![usize::MAX];
            push_commas(&line, &mut ends);
            let mut want = vec![usize::MAX];
            want.extend(line.iter().enumerate().filter_map(|(i, &b)| (b == b',').then_some(i)));
            prop_assert_eq!(ends, want);
        }

        #[test]
        fn chunk_boundaries_never_change_the_output(
            ops in proptest::collection::vec(arb_op(), 1..14),
            cuts in proptest::collection::vec(0usize..40_000, 0..10),
            crlf in any::<bool>(),
            first_channel in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut ops = ops;
            // Detection needs a 100 or 200 first; the 100 is optional after that.
            ops.insert(0, if first_channel {
                Op::Channel { nmi: 0, minutes: 30, uom: "kWh", broken: false }
            } else {
                Op::Header { reopen: true }
            });
            let (input, rows) = render(&ops, eol);
            let whole = parse(input.as_bytes());
            let chunked = parse_chunked(input.as_bytes(), &cuts);
            prop_assert_eq!(&chunked.0.fragments, &whole.0.fragments);
            prop_assert_eq!(&chunked.0.rejects, &whole.0.rejects);
            prop_assert_eq!(chunked.1, whole.1);
            let bytewise = parse_bytewise(input.as_bytes());
            prop_assert_eq!(&bytewise.0.fragments, &whole.0.fragments);
            prop_assert_eq!(&bytewise.0.rejects, &whole.0.rejects);
            prop_assert_eq!(whole.1.rows_read, rows);
            prop_assert_eq!(whole.1.rows_read, whole.1.rows_accepted + whole.1.rows_rejected);
            prop_assert!(whole.0.rejects.iter().all(|r| r.line >= 1));
            // The report and the counts agree: one count per report line, by its kind.
            prop_assert_eq!(whole.1.reported(), whole.0.rejects.len() as u64);
            // Handed over between runs: never between a 300 and its 400s, so the same rows.
            let (parts, part_stats, _) = crate::format::parse_in_parts(input.as_bytes(), &cuts, opts());
            prop_assert_eq!(&parts.fragments, &whole.0.fragments);
            prop_assert_eq!(&parts.rejects, &whole.0.rejects);
            prop_assert_eq!(part_stats, whole.1);
        }
    }
}
