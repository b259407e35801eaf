//! Hand-over notes: how an object too large for one invocation is split over several.
//!
//! When an invocation nears its deadline (or has read `METERFLOW_MAX_BYTES_PER_INVOCATION`),
//! the pipeline cuts the input at a row boundary ([`crate::object::Handover`]) and
//! the splitter writes a note: a small JSON object in S3 holding where the next part starts,
//! the parser context it needs (a header, a NEM12 channel), and the accounting and rejects of
//! the parts so far. Writing it raises an `ObjectCreated` event like any upload, which invokes
//! the splitter again with the note's key: the next part runs in a fresh invocation, with a
//! full time budget, and the chain ends with one rejects report for the whole object.
//!
//! A note rather than an asynchronous self-invoke: the note is durable (a failed part is
//! retried from it by S3's asynchronous invocation, like an upload), visible (an operator sees
//! how far a large file got), and needs no `lambda:InvokeFunction` permission or client. The
//! bucket notification must therefore deliver the notes' keys (`*.handover.json`) to the
//! splitter; a note whose event is lost leaves the rest of its object unsplit, in plain sight.
//!
//! Notes live next to the input as `<key>.part-00002.handover.json`, or under
//! `METERFLOW_HANDOVER_PREFIX` as `<prefix><bucket>/<key>.part-00002.handover.json`. A part
//! removes its own note once the next one is written (or the object is done).
//!
//! S3 may deliver an event twice, and Lambda may run an asynchronous event twice. Without a
//! guard both runs would write the next note, and two chains would split the rest of the file
//! side by side: the totals stay exact (every write is idempotent), but all the work from
//! there on is done twice. So a note is written with `If-None-Match: *`; when a note is
//! already there, it is read, and if it carries the same chain (the upload event's
//! `sequencer`, [`Note::chain`]) this run stops as a `duplicate`: only the one part is split
//! twice. A note of another chain (left by an earlier upload whose chain broke) is replaced.

use crate::object::Handover;
use meterflow_aws::event::ObjectRef;
use meterflow_core::decompress::{AccessPoint, ACCESS_WINDOW};
use meterflow_core::format::Resume;
use meterflow_core::{Format, Reject, RejectKind, Stats};
use serde::{Deserialize, Serialize};

use meterflow_aws::env::S3Location;

/// What a note's key ends with.
pub const NOTE_SUFFIX: &str = ".handover.json";
/// Largest note read: context is at most 64 KiB, and rejects are capped by
/// `METERFLOW_MAX_REJECTS` (1,000,000 at most, of a few hundred bytes each).
pub const MAX_NOTE_BYTES: u64 = 512 << 20;
/// The note format's version: a note of another version is refused, never misread.
const VERSION: u32 = 1;

/// Accounting of the parts split so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub parts: u32,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// Records that are not rows refused, and warnings (notes of older splitters lack them).
    #[serde(default)]
    pub records_rejected: u64,
    #[serde(default)]
    pub warnings: u64,
    /// Archive entries that failed alone (the others were split).
    #[serde(default)]
    pub inputs_failed: u64,
    pub fragments: u64,
    pub records: u64,
    pub put_calls: u64,
    pub bytes: u64,
    /// Decompressed bytes later parts inflated only to reach their start (see
    /// [`crate::object::ObjectReport::skipped`]): small when each enters at an access point.
    #[serde(default)]
    pub skipped_bytes: u64,
}

impl Done {
    /// Adds one part's figures.
    pub fn add(&mut self, stats: &Stats, records: u64, put_calls: u64) {
        self.parts += 1;
        self.rows_read += stats.rows_read;
        self.rows_accepted += stats.rows_accepted;
        self.rows_rejected += stats.rows_rejected;
        self.records_rejected += stats.records_rejected;
        self.warnings += stats.warnings;
        self.fragments += stats.fragments;
        self.records += records;
        self.put_calls += put_calls;
        self.bytes += stats.bytes;
    }
}

/// One record replayed before the cut: its line and its bytes in hex (a header need not be
/// UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ContextRecord {
    line: u64,
    hex: String,
}

/// Where the next part enters a gzip object ([`AccessPoint`]): it reads the object from
/// `compressed` on instead of inflating it from its start. Notes of older splitters lack it
/// and older splitters ignore it: either way the part is still exact, only slower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AccessRecord {
    compressed: u64,
    bits: u8,
    out: u64,
    member_out: u64,
    crc: u32,
    /// Up to 32 KiB in hex.
    window: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RejectRow {
    source: String,
    line: u64,
    column: Option<u32>,
    /// [`RejectKind::as_str`]; a row when absent (notes of older splitters).
    #[serde(default)]
    kind: Option<String>,
    reason: String,
}

/// A hand-over note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    meterflow_handover: u32,
    /// The input being split.
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// The part this note starts (2 for the first hand-over).
    pub part: u32,
    /// Which run of the input this note belongs to: the `sequencer` of the upload event that
    /// started it (unset when an invocation named no sequencer). Two deliveries of one event
    /// share it; a new upload of the key, even of the same bytes, has another.
    #[serde(default)]
    pub chain: Option<String>,
    etag: Option<String>,
    input: u64,
    plain: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access: Option<AccessRecord>,
    format: String,
    offset: u64,
    line: u64,
    context: Vec<ContextRecord>,
    pub done: Done,
    rejects: Vec<RejectRow>,
}

/// Why a note cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("not a meterflow hand-over note ({0}); objects ending in {NOTE_SUFFIX} are read as notes, so do not upload meter data under such a name")]
    Json(serde_json::Error),
    #[error("a hand-over note of version {0}, but this splitter reads version {VERSION}: let the splitter that wrote it finish, or split the input again from its upload")]
    Version(u32),
    #[error("the hand-over note is damaged: {0}")]
    Damaged(&'static str),
}

impl Note {
    /// The note for the part after one that ended at `at`, with everything done so far.
    pub fn new(
        input: &ObjectRef,
        part: u32,
        at: &Handover,
        done: Done,
        rejects: &[Reject],
    ) -> Note {
        Note {
            meterflow_handover: VERSION,
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            version_id: input.version_id.clone(),
            part,
            chain: input.sequencer.clone(),
            etag: at.etag.clone(),
            input: at.input,
            plain: at.plain,
            access: at.access.as_ref().map(|a| AccessRecord {
                compressed: a.compressed,
                bits: a.bits,
                out: a.out,
                member_out: a.member_out,
                crc: a.crc,
                window: hex(&a.window),
            }),
            format: at.resume.format.name().to_owned(),
            offset: at.resume.offset,
            line: at.resume.line,
            context: at
                .resume
                .context
                .iter()
                .map(|(line, bytes)| ContextRecord {
                    line: *line,
                    hex: hex(bytes),
                })
                .collect(),
            done,
            rejects: rejects
                .iter()
                .map(|r| RejectRow {
                    source: r.source.to_string(),
                    line: r.line,
                    column: r.column,
                    kind: Some(r.kind.as_str().to_owned()),
                    reason: r.reason.clone(),
                })
                .collect(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Note, NoteError> {
        #[derive(Deserialize)]
        struct Versioned {
            meterflow_handover: u32,
        }
        let v: Versioned = serde_json::from_slice(bytes).map_err(NoteError::Json)?;
        if v.meterflow_handover != VERSION {
            return Err(NoteError::Version(v.meterflow_handover));
        }
        let note: Note = serde_json::from_slice(bytes).map_err(NoteError::Json)?;
        note.handover()?;
        Ok(note)
    }

    /// The input the note continues, with the sequencer of the upload that started the chain
    /// (so that the next note carries it on).
    pub fn input(&self) -> ObjectRef {
        ObjectRef {
            version_id: self.version_id.clone(),
            sequencer: self.chain.clone(),
            ..ObjectRef::new(&self.bucket, &self.key)
        }
    }

    /// Whether `other` hands over the same object in the same chain: a second delivery of
    /// one event split the same part. Never true without a chain, where the runs cannot be
    /// told apart.
    pub fn same_chain(&self, other: &Note) -> bool {
        self.chain.is_some()
            && (
                &self.chain,
                &self.etag,
                &self.bucket,
                &self.key,
                &self.version_id,
            ) == (
                &other.chain,
                &other.etag,
                &other.bucket,
                &other.key,
                &other.version_id,
            )
    }

    /// Where the part starts.
    pub fn handover(&self) -> Result<Handover, NoteError> {
        let format = Format::from_name(&self.format).ok_or(NoteError::Damaged("unknown format"))?;
        let context = self
            .context
            .iter()
            .map(|c| Ok((c.line, unhex(&c.hex).ok_or(NoteError::Damaged("bad hex"))?)))
            .collect::<Result<_, NoteError>>()?;
        let access = match &self.access {
            None => None,
            Some(a) if a.bits > 7 || a.out > self.offset || a.member_out > a.out => {
                return Err(NoteError::Damaged("access point out of range"))
            }
            Some(a) => Some(AccessPoint {
                compressed: a.compressed,
                bits: a.bits,
                out: a.out,
                member_out: a.member_out,
                crc: a.crc,
                window: unhex(&a.window)
                    .filter(|w| w.len() <= ACCESS_WINDOW)
                    .ok_or(NoteError::Damaged("bad access point window"))?,
            }),
        };
        Ok(Handover {
            etag: self.etag.clone(),
            input: self.input,
            plain: self.plain,
            access,
            resume: Resume {
                format,
                offset: self.offset,
                line: self.line,
                context,
            },
        })
    }

    /// The rejects of the parts before this one.
    pub fn rejects(&self) -> Vec<Reject> {
        self.rejects
            .iter()
            .map(|r| Reject {
                source: r.source.as_str().into(),
                line: r.line,
                column: r.column,
                kind: r
                    .kind
                    .as_deref()
                    .and_then(RejectKind::from_name)
                    .unwrap_or_default(),
                reason: r.reason.clone(),
            })
            .collect()
    }
}

/// Bucket and key of the note that starts part `part` of `input`.
pub fn location(input: &ObjectRef, part: u32, prefix: Option<&S3Location>) -> (String, String) {
    let name = format!("{}.part-{part:05}{NOTE_SUFFIX}", input.key);
    match prefix {
        None => (input.bucket.clone(), name),
        Some(p) => (p.bucket.clone(), p.key(&format!("{}/{name}", input.bucket))),
    }
}

/// Whether `object` is a note (by its suffix) rather than an input.
pub fn is_note(object: &ObjectRef) -> bool {
    object.key.ends_with(NOTE_SUFFIX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() & 1 == 1 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ObjectRef {
        ObjectRef {
            version_id: Some("v1".into()),
            ..ObjectRef::new("in", "a b/m.csv")
        }
    }

    #[test]
    fn a_note_reads_back_as_written() {
        let at = Handover {
            etag: Some("e1".into()),
            input: 2,
            plain: false,
            access: Some(AccessPoint {
                compressed: 1 << 33,
                bits: 5,
                out: 123_456_000_000,
                member_out: 4_000_000_000,
                crc: 0xdead_beef,
                window: (0..=255u8).cycle().take(32 * 1024).collect(),
            }),
            resume: Resume {
                format: Format::Wide,
                offset: 123_456_789_012,
                line: 4_000_001,
                context: vec![(1, b"Z\xe4hler,Datum,0:00".to_vec())],
            },
        };
        let rejects = vec![
            Reject {
                source: "s3://in/a b/m.csv#v1".into(),
                line: 7,
                column: Some(3),
                kind: RejectKind::Row,
                reason: "bad \"value\", here".into(),
            },
            Reject {
                source: "s3://in/a b/m.csv#v1".into(),
                line: 9,
                column: None,
                kind: RejectKind::Warning,
                reason: "no 900".into(),
            },
        ];
        let mut done = Done::default();
        done.add(
            &Stats {
                rows_read: 10,
                rows_accepted: 9,
                rows_rejected: 1,
                warnings: 1,
                fragments: 9,
                bytes: 5000,
                ..Stats::default()
            },
            2,
            1,
        );
        let note = Note::new(&input(), 2, &at, done, &rejects);
        let back = Note::from_json(&note.to_json()).unwrap();
        assert_eq!(back, note);
        assert_eq!(back.handover().unwrap(), at);
        assert_eq!(back.rejects(), rejects);
        assert_eq!(back.input(), input());
        assert_eq!((back.done.parts, back.done.rows_read), (1, 10));
        assert_eq!(back.done.warnings, 1);
    }

    #[test]
    fn a_chain_is_the_upload_events_sequencer_carried_from_note_to_note() {
        let at = |offset| Handover {
            etag: Some("e1".into()),
            input: 0,
            plain: true,
            access: None,
            resume: Resume {
                format: Format::Wide,
                offset,
                line: 9,
                context: vec![],
            },
        };
        let upload = ObjectRef {
            sequencer: Some("0055AED6DCD90281E5".into()),
            ..input()
        };
        let first = Note::new(&upload, 2, &at(100), Done::default(), &[]);
        // A second delivery of the event cut elsewhere: the same chain all the same.
        let again = Note::new(&upload, 2, &at(200), Done::default(), &[]);
        assert!(first.same_chain(&again));
        // The chain goes on in the next note.
        let next = Note::new(&first.input(), 3, &at(300), Done::default(), &[]);
        assert_eq!(next.chain.as_deref(), Some("0055AED6DCD90281E5"));
        assert!(next.same_chain(&first));
        // Another upload of the same key, or another version of the object: another chain.
        let reupload = ObjectRef {
            sequencer: Some("0055AED6DCD90281F0".into()),
            ..input()
        };
        assert!(!Note::new(&reupload, 2, &at(100), Done::default(), &[]).same_chain(&first));
        let mut changed = at(100);
        changed.etag = Some("e2".into());
        assert!(!Note::new(&upload, 2, &changed, Done::default(), &[]).same_chain(&first));
        // Without a sequencer no two runs can be told apart.
        let bare = Note::new(&input(), 2, &at(100), Done::default(), &[]);
        assert!(!bare.same_chain(&bare.clone()));
        // A note written before chains existed still reads.
        let mut old: serde_json::Value = serde_json::from_slice(&first.to_json()).unwrap();
        old.as_object_mut().unwrap().remove("chain");
        let back = Note::from_json(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(back.chain, None);
    }

    #[test]
    fn notes_are_found_by_suffix_and_placed_like_reports() {
        let (b, k) = location(&input(), 3, None);
        assert_eq!(
            (b.as_str(), k.as_str()),
            ("in", "a b/m.csv.part-00003.handover.json")
        );
        let p = S3Location {
            bucket: "ops".into(),
            prefix: "handover/".into(),
        };
        let (b, k) = location(&input(), 12, Some(&p));
        assert_eq!(
            (b.as_str(), k.as_str()),
            ("ops", "handover/in/a b/m.csv.part-00012.handover.json")
        );
        let mut note = input();
        note.key = k;
        assert!(is_note(&note) && !is_note(&input()));
    }

    #[test]
    fn a_foreign_or_damaged_note_is_refused_with_a_reason() {
        let e = Note::from_json(b"Meter,Date\n").unwrap_err();
        assert!(
            e.to_string().contains("not a meterflow hand-over note"),
            "{e}"
        );
        let e = Note::from_json(br#"{"meterflow_handover": 9}"#).unwrap_err();
        assert!(matches!(e, NoteError::Version(9)), "{e}");
        assert_eq!(unhex("4a0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("4a00ff").unwrap(), [0x4a, 0, 0xff]);
    }
}
