//! Durable writes, off the driver: the area of the contract through which a store's slow
//! work (fsyncs, renames, database commits) leaves the node and its acknowledgement comes
//! back.
//!
//! A store writes what it must at once (into memory, or into the page cache) and holds
//! back what makes those writes durable. The node asks it for that work as one
//! [`Batch`] at a time ([`crate::Output::Persist`]); the driver runs the batch on a worker
//! thread — never on the task that drives the node — and feeds back the verdict as
//! [`crate::Input::Persisted`]. While a batch is out, new writes queue behind it and go into
//! the next one, so a slow disk makes batches larger, not more numerous (group commit).
//!
//! What waits for durability waits for the batch: a download is reported
//! [`Downloaded`](crate::blob::Event::Downloaded) only once the batch that commits it is
//! acknowledged. And what is not yet durable pushes back: above
//! [`blob::Config::max_unpersisted`](crate::blob::Config::max_unpersisted) verified bytes
//! waiting for a batch, downloads send no new requests until an acknowledgement comes in.
//!
//! ```
//! use sinew_core::persist::{Batch, Done};
//!
//! let batch = Batch::new(7, || Ok(())); // a store's work: here, nothing
//! assert_eq!(batch.seq(), 7);
//! // The driver runs it on a worker and feeds back the verdict:
//! let done: Done = batch.run();
//! assert_eq!(done.seq, 7);
//! assert!(done.result.is_ok());
//! ```

use std::sync::{Arc, Mutex};

use crate::blob::store::StoreError;

type Job = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

/// Durable work a store held back, to run exactly once on a worker thread.
///
/// `seq` is the store's write sequence number the batch covers: once it is acknowledged,
/// every write the store accepted before handing it out is durable. Clones share the one
/// job (the first [`Batch::run`] runs it; later runs report an error), and equality is by
/// `seq`, so outputs that carry a batch can still be compared in tests.
#[derive(Clone)]
pub struct Batch {
    seq: u64,
    job: Arc<Mutex<Option<Job>>>,
}

impl Batch {
    /// A batch covering writes up to `seq`, whose work is `job`.
    pub fn new(seq: u64, job: impl FnOnce() -> Result<(), StoreError> + Send + 'static) -> Self {
        Self {
            seq,
            job: Arc::new(Mutex::new(Some(Box::new(job)))),
        }
    }

    /// The write sequence number this batch makes durable.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Runs the work (blocking: call it on a worker thread) and returns the verdict to feed
    /// back as [`crate::Input::Persisted`].
    pub fn run(self) -> Done {
        let job = self
            .job
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let result = match job {
            Some(job) => job(),
            None => Err(StoreError::Io(format!(
                "persist batch {} was already run",
                self.seq
            ))),
        };
        Done {
            seq: self.seq,
            result,
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("seq", &self.seq).finish()
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl Eq for Batch {}

/// The verdict on a [`Batch`], fed back as [`crate::Input::Persisted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The batch's [`Batch::seq`].
    pub seq: u64,
    /// `Ok` once every write of the batch is durable. An error means none of them can be
    /// counted on: the store reports it and the downloads waiting for it fail.
    pub result: Result<(), StoreError>,
}

/// The bookkeeping every store with deferred durability needs: write sequence numbers,
/// the batch that is out, verified bytes waiting for a batch, and a failure that stops all
/// later writes. The in-memory store (with deferred durability) and the shell's disk
/// store both keep one.
#[derive(Debug, Default)]
pub struct Ledger {
    written: u64,
    durable: u64,
    /// The batch that is out.
    out: Option<u64>,
    /// Verified bytes written since the last batch was handed out, and in the one out.
    unbatched: u64,
    in_batch: u64,
    failed: Option<StoreError>,
}

impl Ledger {
    /// Fails once a batch failed: its writes may not be durable, so nothing may build on them.
    pub fn check(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(err) => Err(StoreError::Io(format!(
                "an earlier write to the store failed ({err}); restart the node"
            ))),
            None => Ok(()),
        }
    }

    /// Counts one write that needs a batch (and `bytes` verified bytes); returns its
    /// sequence number.
    pub fn wrote(&mut self, bytes: u64) -> u64 {
        self.written += 1;
        self.unbatched += bytes;
        self.written
    }

    /// Counts verified bytes a later batch must sync (no sequence number of their own).
    pub fn add_bytes(&mut self, bytes: u64) {
        self.unbatched += bytes;
    }

    /// Verified bytes written since the last batch was handed out.
    pub fn unbatched(&self) -> u64 {
        self.unbatched
    }

    /// True when a batch may be handed out: none is out and none failed.
    pub fn may_hand_out(&self) -> bool {
        self.out.is_none() && self.failed.is_none()
    }

    /// True when something is not durable yet.
    pub fn has_pending(&self) -> bool {
        self.written > self.durable || self.unbatched > 0
    }

    /// Records that a batch covering everything so far is handed out; returns its
    /// sequence number (a new one, so a batch of byte syncs alone still moves it on).
    pub fn hand_out(&mut self) -> u64 {
        self.written += 1;
        self.out = Some(self.written);
        self.in_batch = std::mem::take(&mut self.unbatched);
        self.written
    }

    /// The batch `seq` came back with `result`: on success everything it covers is
    /// durable; on failure every later write fails ([`Ledger::check`]).
    pub fn done(&mut self, seq: u64, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if self.out != Some(seq) {
            return Err(StoreError::Io(format!("no persist batch {seq} is out")));
        }
        self.out = None;
        match result {
            Ok(()) => {
                self.durable = seq;
                self.in_batch = 0;
                Ok(())
            }
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// The latest write's sequence number.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Every write up to this sequence number is durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Verified bytes in no acknowledged batch.
    pub fn unpersisted(&self) -> u64 {
        self.unbatched + self.in_batch
    }
}
