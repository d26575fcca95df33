//! The verification workers: threads that decode and check the transactions the node
//! hands out ([`Output::Verify`](crate::node::Output::Verify)) — signatures in one batch,
//! with coefficients from the OS's randomness, which peers cannot predict — and bring the
//! verdicts back to the driver's loop. Jobs may finish in any order; the node applies
//! them in order.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;

use crate::sync::contexts::{Verified, VerifyJob};

/// Verification threads at most (one core is the driver's).
pub(super) const MAX_VERIFY_THREADS: usize = 4;

/// The worker threads' two ends.
pub(super) struct Verifier {
    /// Jobs to run. `None` once the threads are gone.
    jobs: Option<std::sync::mpsc::Sender<VerifyJob>>,
    /// Verdicts, for the driver's loop.
    pub(super) done: mpsc::UnboundedReceiver<Verified>,
}

impl Verifier {
    /// Starts one thread per core but the driver's (at least one, at most
    /// [`MAX_VERIFY_THREADS`]).
    pub(super) fn start() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let threads = cores.saturating_sub(1).clamp(1, MAX_VERIFY_THREADS);
        let (jobs, queue) = std::sync::mpsc::channel::<VerifyJob>();
        let queue = Arc::new(Mutex::new(queue));
        let (verdicts, done) = mpsc::unbounded();
        for n in 0..threads {
            let queue = queue.clone();
            let verdicts = verdicts.clone();
            std::thread::Builder::new()
                .name(format!("sinew-verify-{n}"))
                .spawn(move || loop {
                    // Ends when the driver drops its end.
                    let job = {
                        let queue = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        queue.recv()
                    };
                    let Ok(job) = job else {
                        return;
                    };
                    let verified = job.run(rand_core_06::OsRng);
                    if verdicts.unbounded_send(verified).is_err() {
                        return;
                    }
                })?;
        }
        Ok(Self {
            jobs: Some(jobs),
            done,
        })
    }

    /// Hands `job` to a worker; false if the workers are gone (the node's session then
    /// times out and fails over).
    pub(super) fn run(&mut self, job: VerifyJob) -> bool {
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => true,
            _ => {
                self.jobs = None;
                false
            }
        }
    }
}
