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
