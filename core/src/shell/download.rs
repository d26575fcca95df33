//! [`BlobDownload`]: the handle of one download — its progress, then its outcome.
//!
//! Unlike the event stream, which drops events for an application that falls behind,
//! a download's outcome is never lost: progress updates may be skipped when the holder
//! does not read them (each one supersedes the last), the final [`DownloadUpdate`] always
//! arrives.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, Stream, StreamExt};

use super::error::Error;
use crate::blob::BlobId;
use crate::blob::DownloadFailure;

/// Progress updates buffered per download before newer ones are skipped.
pub const PROGRESS_BUFFER: usize = 16;

/// How far a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobProgress {
    /// Verified bytes in the store (including those verified before a restart).
    pub verified: u64,
    /// The proven size, once known.
    pub size: Option<u64>,
    /// Providers still usable.
    pub providers: usize,
}

/// A download's outcome: the blob is complete, verified and durable in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobDownloaded {
    /// The blob.
    pub id: BlobId,
    /// Its size.
    pub size: u64,
    /// Bytes received from providers by this download (0 if the store already had it).
    pub received: u64,
}

/// One item of a [`BlobDownload`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownloadUpdate {
    /// More is verified.
    Progress(BlobProgress),
    /// Done: the last item.
    Downloaded(BlobDownloaded),
    /// Failed (the verified part stays in the store and a later download resumes from
    /// it): the last item.
    Failed(Error),
}

/// The driver's end of a download handle.
#[derive(Debug)]
pub(crate) struct Watcher {
    progress: mpsc::Sender<BlobProgress>,
    done: Option<oneshot::Sender<Result<BlobDownloaded, Error>>>,
}

impl Watcher {
    /// Skips the update if the holder is behind: the next one supersedes it.
    pub(crate) fn progress(&mut self, progress: BlobProgress) {
        let _ = self.progress.try_send(progress);
    }

    pub(crate) fn finish(mut self, outcome: Result<BlobDownloaded, Error>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(outcome);
        }
    }
}

/// A download in progress; a [`Stream`] of [`DownloadUpdate`]s that ends after the
/// outcome. Dropping it does not cancel the download.
#[derive(Debug)]
pub struct BlobDownload {
    id: BlobId,
    progress: mpsc::Receiver<BlobProgress>,
    done: oneshot::Receiver<Result<BlobDownloaded, Error>>,
    ended: bool,
}

impl BlobDownload {
    pub(crate) fn new(id: BlobId) -> (Self, Watcher) {
        let (ptx, prx) = mpsc::channel(PROGRESS_BUFFER);
        let (dtx, drx) = oneshot::channel();
        (
            Self {
                id,
                progress: prx,
                done: drx,
                ended: false,
            },
            Watcher {
                progress: ptx,
                done: Some(dtx),
            },
        )
    }

    /// The blob being downloaded.
    pub fn id(&self) -> BlobId {
        self.id
    }

    /// Waits for the outcome, skipping progress.
    pub async fn finish(mut self) -> Result<BlobDownloaded, Error> {
        while let Some(update) = self.next().await {
            match update {
                DownloadUpdate::Progress(_) => {}
                DownloadUpdate::Downloaded(done) => return Ok(done),
                DownloadUpdate::Failed(err) => return Err(err),
            }
        }
        Err(Error::Shutdown)
    }
}

impl Stream for BlobDownload {
    type Item = DownloadUpdate;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DownloadUpdate>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Some(progress)) = self.progress.poll_next_unpin(cx) {
            return Poll::Ready(Some(DownloadUpdate::Progress(progress)));
        }
        match self.done.poll_unpin(cx) {
            Poll::Ready(outcome) => {
                self.ended = true;
                Poll::Ready(Some(match outcome {
                    Ok(Ok(done)) => DownloadUpdate::Downloaded(done),
                    Ok(Err(err)) => DownloadUpdate::Failed(err),
                    Err(_) => DownloadUpdate::Failed(Error::Shutdown),
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error a failed download reports.
pub(crate) fn failure(id: BlobId, reason: DownloadFailure) -> Error {
    Error::Download {
        id,
        reason: Box::new(reason),
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn a_holder_that_does_not_read_skips_progress_but_never_the_outcome() {
        let id = BlobId::of(b"x");
        let (mut handle, mut watcher) = BlobDownload::new(id);
        for verified in 0..100 {
            watcher.progress(BlobProgress {
                verified,
                size: Some(100),
                providers: 1,
            });
        }
        watcher.finish(Ok(BlobDownloaded {
            id,
            size: 100,
            received: 100,
        }));
        let updates: Vec<DownloadUpdate> = block_on(async {
            let mut v = Vec::new();
            while let Some(u) = handle.next().await {
                v.push(u);
            }
            v
        });
        let progress = updates
            .iter()
            .filter(|u| matches!(u, DownloadUpdate::Progress(_)))
            .count();
        // The buffer (plus the sender's own slot) kept the first ones; the rest were skipped.
        assert_eq!(progress, PROGRESS_BUFFER + 1);
        assert!(matches!(
            updates.last(),
            Some(DownloadUpdate::Downloaded(BlobDownloaded { size: 100, .. }))
        ));
    }
}
