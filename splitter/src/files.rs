//! Many objects at once: the engine of `meterflow ingest`. Worker threads take inputs from a
//! shared queue, open each (a local file, an S3 object), run the object driver
//! ([`crate::object::split_object`]) on it into one records channel, and stop taking inputs
//! when the channel's consumer has gone. A large plain wide or long input that can be read
//! from anywhere (a local file) is cut in pieces (the private `pieces` module, after
//! [`meterflow_core::format::pieces`]) that go back on the queue ahead of the other inputs,
//! so one large file keeps every worker busy.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use meterflow_core::envelope::StreamRecord;
use meterflow_core::Reject;
use tokio::sync::mpsc;

use crate::channel::{ChannelOutput, StopWhenClosed};
use crate::object::{split_object, ObjectError, ObjectName, ObjectReport, Part, SplitSettings};
use crate::pack::Output;
use crate::pieces::{PieceDone, Pieces};

/// An input that can be opened on a worker thread.
pub trait Openable: Display + Send + Sync + 'static {
    /// The input's reader, name and size, or why it cannot be opened (the message names it).
    fn open(&self) -> Result<Opened, String>;

    /// The input's size, if it can be read from any offset ([`Openable::open_at`]: a local
    /// file). Such an input, when large, plain and wide or long, is read in pieces by several
    /// workers at once.
    fn seekable_len(&self) -> Option<u64> {
        None
    }

    /// The input's bytes from `offset`, if it can be read from anywhere.
    fn open_at(&self, _offset: u64) -> Option<io::Result<Box<dyn Read + Send>>> {
        None
    }
}

/// A local file's bytes from `offset`: [`Openable::open_at`] for files.
pub fn open_file_at(path: &std::path::Path, offset: u64) -> io::Result<Box<dyn Read + Send>> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(Box::new(file))
}

/// An opened input.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    pub name: ObjectName,
    /// Bytes as stored (compressed, for an archive).
    pub size: u64,
}

/// What happened to one input.
pub struct FileOutcome {
    /// The input, as given.
    pub input: String,
    pub result: Result<ObjectReport, FileFailure>,
}

/// Why an input failed (the message names it), and what it did before (its rows count).
#[derive(Debug)]
pub struct FileFailure {
    pub message: String,
    pub done: Box<ObjectReport>,
}

/// Where the workers send records, rejects and progress.
pub struct Channels {
    pub records: mpsc::Sender<StreamRecord>,
    /// Set by the workers when the records' consumer has gone (and by the caller to stop
    /// them): they stop at their next read.
    pub halt: Arc<AtomicBool>,
    /// Bytes read so far, of every input (progress and throughput).
    pub read: Arc<AtomicU64>,
    /// Every reject of every input, from any worker.
    pub rejects: Arc<dyn Fn(Reject) + Send + Sync>,
}

/// The worker threads of one run.
pub struct Workers<I> {
    threads: Vec<std::thread::JoinHandle<Vec<Done<I>>>>,
}

/// Starts `jobs` threads splitting `inputs` (in order, as threads free up) into `channels`.
/// Drop the caller's own sender before waiting on the receiver: the channel closes when the
/// last worker is done.
pub fn spawn<I: Openable>(
    inputs: Vec<I>,
    jobs: usize,
    settings: SplitSettings,
    channels: Channels,
) -> Workers<I> {
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState {
            jobs: inputs.into_iter().map(Job::Whole).collect(),
            planning: 0,
        }),
        changed: Condvar::new(),
    });
    let channels = Arc::new(channels);
    let threads = (0..jobs.max(1))
        .map(|_| {
            let (queue, channels) = (Arc::clone(&queue), Arc::clone(&channels));
            std::thread::spawn(move || work(&queue, &settings, &channels))
        })
        .collect();
    Workers { threads }
}

impl<I: Openable> Workers<I> {
    /// Waits for every worker; the outcomes of all inputs taken, in no particular order (the
    /// pieces of an input make one outcome).
    pub fn join(self) -> Result<Vec<FileOutcome>, WorkerPanicked> {
        let mut all = Vec::new();
        let mut pieces = Vec::new();
        for t in self.threads {
            for done in t.join().map_err(|_| WorkerPanicked)? {
                match done {
                    Done::Whole(outcome) => all.push(outcome),
                    Done::Piece(piece) => pieces.push(piece),
                }
            }
        }
        all.extend(crate::pieces::outcomes(pieces));
        Ok(all)
    }
}

/// A splitting thread panicked (a bug: its inputs' outcomes are lost).
#[derive(Debug, thiserror::Error)]
#[error("a splitting thread panicked")]
pub struct WorkerPanicked;

/// What a worker takes from the queue: an input, or a piece of one.
pub(crate) enum Job<I> {
    Whole(I),
    Piece(Arc<Pieces<I>>, usize),
}

/// What a worker did with a job.
pub(crate) enum Done<I> {
    Whole(FileOutcome),
    Piece(PieceDone<I>),
}

/// The jobs of a run. A worker that finds it empty while another is still cutting an input in
/// pieces waits for them instead of leaving.
struct Queue<I> {
    state: Mutex<QueueState<I>>,
    changed: Condvar,
}

struct QueueState<I> {
    jobs: VecDeque<Job<I>>,
    /// Workers deciding whether an input is cut in pieces (their pieces are not queued yet).
    planning: usize,
}

impl<I> Queue<I> {
    /// The next job, or `None` once there are none and none will come (or the run halted).
    fn next(&self, halt: &AtomicBool) -> Option<Job<I>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if halt.load(Ordering::Relaxed) {
                return None;
            }
            match state.jobs.pop_front() {
                Some(job) => {
                    state.planning += usize::from(matches!(job, Job::Whole(_)));
                    return Some(job);
                }
                None if state.planning == 0 => return None,
                None => state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// An input taken by [`Queue::next`] is planned: its pieces after the first (if any) go
    /// first in line, in order, so every worker joins it.
    fn planned(&self, pieces: Option<&Arc<Pieces<I>>>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = pieces {
            for k in (1..set.len()).rev() {
                state.jobs.push_front(Job::Piece(Arc::clone(set), k));
            }
        }
        state.planning -= 1;
        self.changed.notify_all();
    }
}

/// One input being planned: says so to the queue whatever happens, so that no worker waits
/// forever on a plan that panicked.
struct Planning<'q, I> {
    queue: &'q Queue<I>,
    said: bool,
}

impl<'q, I: Openable> Planning<'q, I> {
    fn new(queue: &'q Queue<I>) -> Self {
        Planning { queue, said: false }
    }

    fn run(mut self, input: I, settings: &SplitSettings) -> Result<Arc<Pieces<I>>, I> {
        let planned = crate::pieces::plan(input, settings);
        self.queue.planned(planned.as_ref().ok());
        self.said = true;
        planned
    }
}

impl<I> Drop for Planning<'_, I> {
    fn drop(&mut self) {
        if !self.said {
            self.queue.planned(None);
        }
    }
}

/// One worker: jobs from the queue until there are none or the consumer has gone.
fn work<I: Openable>(
    queue: &Queue<I>,
    settings: &SplitSettings,
    channels: &Channels,
) -> Vec<Done<I>> {
    let mut done = Vec::new();
    while let Some(job) = queue.next(&channels.halt) {
        let (set, k) = match job {
            Job::Piece(set, k) => (set, k),
            Job::Whole(input) => match Planning::new(queue).run(input, settings) {
                Ok(set) => (set, 0),
                Err(input) => {
                    let result = split_one(&input, settings, channels);
                    done.push(Done::Whole(FileOutcome {
                        input: input.to_string(),
                        result,
                    }));
                    continue;
                }
            },
        };
        let result = crate::pieces::split_piece(&set, k, settings, channels);
        done.push(Done::Piece(PieceDone { set, k, result }));
    }
    done
}

fn split_one<I: Openable>(
    input: &I,
    settings: &SplitSettings,
    channels: &Channels,
) -> Result<ObjectReport, FileFailure> {
    let opened = input.open().map_err(|message| FileFailure {
        message,
        done: Box::default(),
    })?;
    let size = opened.size;
    let mut done = split_from(
        opened.reader,
        &opened.name,
        settings,
        &Part::default(),
        channels,
        &mut channels.output(),
    )?;
    done.stats.bytes = size;
    Ok(done)
}

/// Splits `reader` (an object from its start, or from `part.from`) into `out` (normally
/// [`Channels::output`]), counting the bytes read for progress and stopping when the channels'
/// consumer has gone.
pub(crate) fn split_from(
    reader: Box<dyn Read + Send>,
    name: &ObjectName,
    settings: &SplitSettings,
    part: &Part,
    channels: &Channels,
    out: &mut impl Output,
) -> Result<ObjectReport, FileFailure> {
    let reader = Counting {
        inner: StopWhenClosed::new(reader, Arc::clone(&channels.halt)),
        read: Arc::clone(&channels.read),
    };
    split_object(reader, name, settings, part, out).map_err(|ObjectError { error, done }| {
        FileFailure {
            message: error.to_string(),
            done,
        }
    })
}

impl Channels {
    /// Where records and rejects go: the records channel and the rejects callback.
    pub(crate) fn output(&self) -> ChannelOutput<impl FnMut(Reject) + '_> {
        let rejects = &self.rejects;
        ChannelOutput::new(self.records.clone(), Arc::clone(&self.halt), |r| rejects(r))
    }
}

/// Counts bytes read, for progress and throughput.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
