//! Checkpoints of the store file's write-ahead log, kept off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold: the one
//! write connection copies the log into the database and waits for two fsyncs (log, then
//! database) before the next write can start. A 1 GB ingest made 56 of them and waited 1.3 s in
//! fsync (strace), over a third of its wall time, with the parsers stalled behind a full
//! channel. Here a thread of its own, on a connection of its own, runs *passive* checkpoints
//! (which never block the writer or readers) whenever the log has grown by [`SOFT_FRAMES`];
//! the writer checkpoints itself only when the log reaches [`HARD_FRAMES`]: a passive
//! checkpoint cannot restart a log that a writer keeps appending to, so this bounds the log
//! file whether or not the thread keeps up, and it reports the errors the thread cannot.
//! Durability is unchanged: the same checkpoints with the same fsyncs happen, on another
//! thread, and the last connection to close checkpoints the rest, as before.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

use super::sqlite_error;
use crate::StoreError;

/// Log frames (pages) after which the thread is asked for a checkpoint: 16 MiB of log, about
/// SQLite's own automatic threshold (1000 pages) at 16 KiB pages.
pub(super) const SOFT_FRAMES: i32 = frames(16 << 20);
/// Log frames at which the writer checkpoints itself and restarts the log: 64 MiB, so the log
/// file stays bounded however long an ingest runs. (Measured on a 1 GB ingest with 16 KiB
/// pages: a 256 MiB log or 4× larger write groups made no difference beyond noise.)
pub(super) const HARD_FRAMES: i32 = frames(64 << 20);

/// Frames (pages of [`super::PAGE_SIZE`]) in `bytes` of log.
const fn frames(bytes: u32) -> i32 {
    (bytes / super::PAGE_SIZE) as i32
}

/// When to checkpoint, in log frames: [`SOFT_FRAMES`] and [`HARD_FRAMES`] but in tests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) soft: i32,
    pub(super) hard: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            soft: SOFT_FRAMES,
            hard: HARD_FRAMES,
        }
    }
}

thread_local! {
    /// Frames in the log after this thread's last commit, set by [`note_frames`] from inside
    /// the commit (SQLite's log hook takes a plain function, and calls it on the committing
    /// thread).
    static FRAMES: Cell<i32> = const { Cell::new(0) };
}

fn note_frames(_: &Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    FRAMES.set(frames);
    Ok(())
}

/// The checkpoint thread of one store file, and what the writer needs to work with it.
pub(super) struct Checkpoints {
    path: PathBuf,
    limits: Limits,
    /// One checkpoint at a time: the writer's own waits for the thread's here rather than in
    /// SQLite's busy handler, which sleeps in steps of up to 100 ms.
    turn: Arc<Mutex<()>>,
    /// The thread and its request channel, started by the first commit that asks for a
    /// checkpoint: opening a store to read (`query`, `serve`) starts no thread.
    thread: Mutex<Option<(SyncSender<()>, JoinHandle<()>)>>,
}

impl Checkpoints {
    /// Takes over checkpointing of `writer`'s log (replacing SQLite's automatic checkpoint,
    /// which is itself a log hook); a thread on its own connection to `path` will run them.
    pub(super) fn new(writer: &Connection, path: PathBuf, limits: Limits) -> Checkpoints {
        writer.wal_hook(Some(note_frames));
        Checkpoints {
            path,
            limits,
            turn: Arc::new(Mutex::new(())),
            thread: Mutex::new(None),
        }
    }

    /// Whether the thread was started.
    #[cfg(test)]
    pub(super) fn started(&self) -> bool {
        self.thread.lock().is_ok_and(|t| t.is_some())
    }

    /// Called by the writer right after each commit, on the committing thread.
    pub(super) fn after_commit(&self, writer: &Connection) -> Result<(), StoreError> {
        let frames = FRAMES.replace(0);
        if frames >= self.limits.hard {
            let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
            // Copies what the thread has not, then lets the next write restart the log from its
            // start. Busy (a reader still on an old snapshot) only means the log goes on
            // growing until the next try; errors are the store's.
            writer
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                .map_err(sqlite_error("checkpointing the store's log"))?;
        } else if frames >= self.limits.soft {
            let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
            if thread.is_none() {
                // One pending request is enough: the thread checkpoints all committed so far.
                let (nudge, nudges) = mpsc::sync_channel(1);
                let (path, turn) = (self.path.clone(), Arc::clone(&self.turn));
                let handle = std::thread::Builder::new()
                    .name("sqlite-checkpoint".into())
                    .spawn(move || checkpoint_on_request(&path, &nudges, &turn))
                    .map_err(|e| {
                        StoreError::permanent("cannot start the store's checkpoint thread", e)
                    })?;
                *thread = Some((nudge, handle));
            }
            if let Some((nudge, _)) = thread.as_ref() {
                // Full: a request is already pending, which covers this commit too.
                let _ = nudge.try_send(());
            }
        }
        Ok(())
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        // Closing the channel ends the thread after its current checkpoint; joining it means
        // its connection is closed (and the log checkpointed, if it was the last) when the
        // store is gone.
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((nudge, handle)) = thread {
            drop(nudge);
            let _ = handle.join();
        }
    }
}

/// The thread: a passive checkpoint per request. Its failures are not reported here: the
/// log then grows to [`HARD_FRAMES`], where the writer checkpoints and reports them.
fn checkpoint_on_request(path: &std::path::Path, nudges: &Receiver<()>, turn: &Mutex<()>) {
    let Ok(conn) = Connection::open(path) else {
        return;
    };
    while nudges.recv().is_ok() {
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}
