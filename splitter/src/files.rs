//! Many objects at once: the engine of `meterflow ingest`. Worker threads take inputs from a
//! shared queue, open each (a local file, an S3 object), run the object driver
//! ([`crate::object::split_object`]) on it into one records channel, and stop taking inputs
//! when the channel's consumer has gone.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use meterflow_core::envelope::StreamRecord;
use meterflow_core::Reject;
use tokio::sync::mpsc;

use crate::channel::{ChannelOutput, StopWhenClosed};
use crate::object::{split_object, ObjectError, ObjectName, ObjectReport, Part, SplitSettings};

/// An input that can be opened on a worker thread.
pub trait Openable: Display + Send + 'static {
    /// The input's reader, name and size, or why it cannot be opened (the message names it).
    fn open(&self) -> Result<Opened, String>;
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
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<Vec<FileOutcome>>>,
}

/// Starts `jobs` threads splitting `inputs` (in order, as threads free up) into `channels`.
/// Drop the caller's own sender before waiting on the receiver: the channel closes when the
/// last worker is done.
pub fn spawn<I: Openable>(
    inputs: Vec<I>,
    jobs: usize,
    settings: SplitSettings,
    channels: Channels,
) -> Workers {
    let queue = Arc::new(Mutex::new(inputs.into_iter().collect::<VecDeque<_>>()));
    let channels = Arc::new(channels);
    let threads = (0..jobs.max(1))
        .map(|_| {
            let (queue, channels) = (Arc::clone(&queue), Arc::clone(&channels));
            std::thread::spawn(move || work(&queue, &settings, &channels))
        })
        .collect();
    Workers { threads }
}

impl Workers {
    /// Waits for every worker; the outcomes of all inputs taken, in no particular order.
    pub fn join(self) -> Result<Vec<FileOutcome>, WorkerPanicked> {
        let mut all = Vec::new();
        for t in self.threads {
            all.extend(t.join().map_err(|_| WorkerPanicked)?);
        }
        Ok(all)
    }
}

/// A splitting thread panicked (a bug: its inputs' outcomes are lost).
#[derive(Debug, thiserror::Error)]
#[error("a splitting thread panicked")]
pub struct WorkerPanicked;

/// One worker: inputs from the queue until it is empty or the consumer has gone.
fn work<I: Openable>(
    queue: &Mutex<VecDeque<I>>,
    settings: &SplitSettings,
    channels: &Channels,
) -> Vec<FileOutcome> {
    let mut outcomes = Vec::new();
    while !channels.halt.load(Ordering::Relaxed) {
        let Some(input) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
            break;
        };
        let result = split_one(&input, settings, channels);
        outcomes.push(FileOutcome {
            input: input.to_string(),
            result,
        });
    }
    outcomes
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
    let reader = Counting {
        inner: StopWhenClosed::new(opened.reader, Arc::clone(&channels.halt)),
        read: Arc::clone(&channels.read),
    };
    let rejects = &channels.rejects;
    let mut out = ChannelOutput::new(channels.records.clone(), Arc::clone(&channels.halt), |r| {
        rejects(r)
    });
    match split_object(reader, &opened.name, settings, &Part::default(), &mut out) {
        Ok(mut done) => {
            done.stats.bytes = opened.size;
            Ok(done)
        }
        Err(ObjectError { error, done }) => Err(FileFailure {
            message: error.to_string(),
            done,
        }),
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
