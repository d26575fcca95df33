//! The blob child's commands (import, download, cancel, delete, provider lookups) and its
//! side of durability: events that wait for a persist batch, and the pause of new requests
//! while too much is not durable ([`Config::max_unpersisted`]).

use bytes::Bytes;
use libp2p_identity::PeerId;
use rand::RngCore;

use super::{Blobs, DownloadFailure, Error, Event, Output};
use crate::blob::download;
use crate::blob::store::BlobStore;
use crate::blob::{BlobId, Outboard};
use crate::dht;

impl<S: BlobStore> Blobs<S> {
    // --- commands ---

    /// Imports `content` into the store and returns its id; it can be served at once.
    pub(crate) fn add_blob(&mut self, content: Bytes) -> Result<BlobId, Error> {
        let outboard = Outboard::create(&content);
        Ok(self.store.import(content, outboard)?)
    }

    /// Imports `content` with the outboard the caller built.
    pub(crate) fn import_blob(
        &mut self,
        content: Bytes,
        outboard: Outboard,
    ) -> Result<BlobId, Error> {
        Ok(self.store.import(content, outboard)?)
    }

    /// See [`crate::node::Node::request_blob`].
    pub(crate) fn request_blob(
        &mut self,
        id: BlobId,
        providers: impl IntoIterator<Item = PeerId>,
    ) -> Result<(), Error> {
        let local = self.local;
        let providers: Vec<PeerId> = providers.into_iter().filter(|p| *p != local).collect();
        if let Some(download) = self.downloads.get_mut(&id) {
            for p in providers {
                download.add_provider(p);
            }
            return Ok(());
        }
        let state = self.store.state(&id)?;
        if let Some(state) = &state {
            if state.is_complete() {
                // It may have just completed: told once it is durable.
                self.when_durable(Event::Downloaded {
                    id,
                    size: state.size(),
                    received: 0,
                });
                return Ok(());
            }
        }
        if providers.is_empty() {
            // Nobody named: look the providers up (the download starts with the first
            // ones found).
            if !self.lookups.contains_key(&id) {
                if self.lookups.len() >= self.config.max_lookups {
                    return Err(Error::TooManyLookups {
                        max: self.config.max_lookups,
                    });
                }
                self.lookups.insert(id, false);
                let find = dht::Output::FindProviders { key: id.into() };
                self.events.push_back(Output::Dht(find));
            }
            return Ok(());
        }
        if self.downloads.len() >= self.config.max_downloads {
            return Err(Error::TooManyDownloads {
                max: self.config.max_downloads,
            });
        }
        if let Some(state) = &state {
            // Resuming: the store reopens what it kept of the blob (after a restart it may
            // only have the metadata in memory).
            self.store.begin_partial(&id, state.size())?;
        }
        let mut download = download::Download::new(id, state, self.config.download.clone())
            .with_seed(self.rng.next_u64());
        for p in providers {
            download.add_provider(p);
        }
        self.downloads.insert(id, download);
        Ok(())
    }

    /// Forgets which chunk groups of `id` were already checked before serving.
    pub(crate) fn forget_checked(&mut self, id: &BlobId) {
        self.checked.forget(id);
    }

    /// A step of the provider lookup of `id`: the download starts (or gains providers)
    /// with what was found; a lookup that ends with nothing found fails the download.
    pub(crate) fn handle_providers(&mut self, id: BlobId, providers: Vec<PeerId>, last: bool) {
        let Some(found) = self.lookups.get_mut(&id) else {
            return; // not ours (or cancelled)
        };
        let local = self.local;
        let providers: Vec<PeerId> = providers.into_iter().filter(|p| *p != local).collect();
        if !providers.is_empty() {
            *found = true;
            let event = Event::ProvidersFound {
                id,
                providers: providers.clone(),
            };
            self.events.push_back(Output::Event(event));
            if let Err(err) = self.request_blob(id, providers) {
                self.lookups.remove(&id);
                let reason = DownloadFailure::NotStarted(err);
                self.events
                    .push_back(Output::Event(Event::DownloadFailed { id, reason }));
                return;
            }
        }
        if last {
            let found = self.lookups.remove(&id).unwrap_or(false);
            if !found && !self.downloads.contains_key(&id) {
                let reason = DownloadFailure::NoProvidersFound;
                self.events
                    .push_back(Output::Event(Event::DownloadFailed { id, reason }));
            }
        }
    }

    /// Stops a download (or its provider lookup); verified ranges stay in the store.
    pub(crate) fn cancel_download(&mut self, id: &BlobId) {
        let looking = self.lookups.remove(id).is_some();
        if self.downloads.remove(id).is_some() || looking {
            self.end_download(
                *id,
                Event::DownloadFailed {
                    id: *id,
                    reason: DownloadFailure::Cancelled,
                },
            );
        }
    }

    /// Deletes `id`: its download stops, its checked record is forgotten, the store
    /// drops it. True if the store had it.
    pub(crate) fn delete_blob(&mut self, id: &BlobId) -> Result<bool, Error> {
        self.cancel_download(id);
        self.checked.forget(id);
        // A download that completed but is not durable yet never will be: it was deleted.
        let mut kept = std::collections::VecDeque::new();
        for (seq, event) in std::mem::take(&mut self.durable_waits) {
            match event {
                Event::Downloaded { id: done, .. } if done == *id => {
                    let reason = DownloadFailure::Cancelled;
                    let failed = Event::DownloadFailed { id: *id, reason };
                    self.events.push_back(Output::Event(failed));
                }
                event => kept.push_back((seq, event)),
            }
        }
        self.durable_waits = kept;
        Ok(self.store.delete(id)?)
    }

    // --- durability ---

    /// Tells `event` once every write the store accepted so far is durable.
    pub(super) fn when_durable(&mut self, event: Event) {
        let seq = self.store.written_seq();
        if self.store.durable_seq() >= seq && self.durable_waits.is_empty() {
            self.events.push_back(Output::Event(event));
        } else {
            self.durable_waits.push_back((seq, event));
        }
    }

    /// True while downloads may send no new requests: too many verified bytes are not
    /// durable yet ([`Config::max_unpersisted`]).
    pub(crate) fn is_paused(&self) -> bool {
        self.store.unpersisted_bytes() >= self.config.max_unpersisted
    }

    /// The store's next persist batch, if one is due. The child forces one when something
    /// waits for it: an event, paused downloads, or no download left to fill a batch.
    pub(crate) fn take_batch(&mut self, force: bool) -> Option<crate::persist::Batch> {
        let force = force
            || !self.durable_waits.is_empty()
            || self.is_paused()
            || self.downloads.is_empty();
        self.store.take_batch(force)
    }

    /// True while an event waits for durability.
    pub(crate) fn awaits_durability(&self) -> bool {
        !self.durable_waits.is_empty()
    }

    /// A persist batch came back: what waited for it is told; if it failed, downloads
    /// waiting for it fail with the store's error (their bytes may not survive a crash).
    pub(crate) fn handle_persisted(&mut self, done: crate::persist::Done) {
        let failed = self.store.batch_done(done.seq, done.result).err();
        let durable = self.store.durable_seq();
        while let Some((seq, _)) = self.durable_waits.front() {
            if *seq > durable && failed.is_none() {
                break;
            }
            let Some((_, event)) = self.durable_waits.pop_front() else {
                break;
            };
            let event = match (&failed, event) {
                (Some(err), Event::Downloaded { id, .. }) => Event::DownloadFailed {
                    id,
                    reason: DownloadFailure::Store(err.clone()),
                },
                (_, event) => event,
            };
            self.events.push_back(Output::Event(event));
        }
    }
}
