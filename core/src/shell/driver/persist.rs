//! The store's persist worker: runs each batch the node hands out
//! ([`Output::Persist`](crate::node::Output::Persist)) on a thread of its own and brings
//! the verdict back to the driver's loop; and the replies that wait for durability
//! (an import's id, a delete's answer).

use std::collections::VecDeque;

use futures::channel::mpsc;

use crate::blob::BlobId;
use crate::persist::{Batch, Done};
use crate::shell::client::{Error, Reply};

/// A reply owed once the write it answers is durable.
pub(super) enum DurableReply {
    /// `add_blob`, `add_blob_file`: the id.
    Added(Reply<BlobId>, BlobId),
    /// `delete_blob`: whether the store had it.
    Deleted(Reply<bool>, bool),
    /// Any other reply with its value (context commands).
    Other(Box<dyn FnOnce(Result<(), Error>) + Send>),
}

impl DurableReply {
    /// Answers `reply` with `value` once durable (or with the store's error).
    pub(super) fn other<T: Send + 'static>(reply: Reply<T>, value: T) -> Self {
        Self::Other(Box::new(move |result| {
            let _ = reply.send(result.map(|()| value));
        }))
    }
}

impl DurableReply {
    fn send(self, result: Result<(), Error>) {
        match self {
            Self::Added(reply, id) => {
                let _ = reply.send(result.map(|()| id));
            }
            Self::Deleted(reply, existed) => {
                let _ = reply.send(result.map(|()| existed));
            }
            Self::Other(answer) => answer(result),
        }
    }
}

/// The worker thread's two ends, and the replies waiting for it.
pub(super) struct Persister {
    /// Batches to run, one at a time (the node hands out the next only after this one's
    /// verdict). `None` once the thread is gone.
    jobs: Option<std::sync::mpsc::Sender<Batch>>,
    /// Verdicts, for the driver's loop.
    pub(super) done: mpsc::UnboundedReceiver<Done>,
    /// Replies and the write sequence number each waits for, in order.
    waiting: VecDeque<(u64, DurableReply)>,
}

impl Persister {
    /// Starts the worker thread.
    pub(super) fn start() -> std::io::Result<Self> {
        let (jobs, batches) = std::sync::mpsc::channel::<Batch>();
        let (verdicts, done) = mpsc::unbounded();
        std::thread::Builder::new()
            .name("sinew-persist".into())
            .spawn(move || {
                // Ends when the driver drops its end.
                while let Ok(batch) = batches.recv() {
                    if verdicts.unbounded_send(batch.run()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            waiting: VecDeque::new(),
        })
    }

    /// Hands `batch` to the worker. If the worker is gone, the verdict is an error at once.
    pub(super) fn run(&mut self, batch: Batch) -> Option<Done> {
        let seq = batch.seq();
        match &self.jobs {
            Some(jobs) if jobs.send(batch).is_ok() => None,
            _ => {
                self.jobs = None;
                Some(Done {
                    seq,
                    result: Err(crate::blob::store::StoreError::Io(
                        "the blob store's persist thread stopped".into(),
                    )),
                })
            }
        }
    }

    /// Answers `reply` once writes up to `seq` are durable (at once if `durable` is there).
    pub(super) fn when_durable(&mut self, seq: u64, durable: u64, reply: DurableReply) {
        if durable >= seq && self.waiting.is_empty() {
            reply.send(Ok(()));
        } else {
            self.waiting.push_back((seq, reply));
        }
    }

    /// A verdict was fed to the node: answers what it covers (every waiting reply, with the
    /// error, if the batch failed: the store takes no more writes).
    pub(super) fn answer(&mut self, durable: u64, failed: Option<&crate::blob::store::StoreError>) {
        while let Some((seq, _)) = self.waiting.front() {
            if *seq > durable && failed.is_none() {
                break;
            }
            let Some((_, reply)) = self.waiting.pop_front() else {
                break;
            };
            reply.send(match failed {
                Some(err) => Err(Error::Store(err.clone())),
                None => Ok(()),
            });
        }
    }
}
