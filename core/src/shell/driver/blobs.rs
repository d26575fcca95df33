//! The driver's blob commands (imports, exports, downloads, announcements, lookups) and
//! the download handles that watch their blob's events.

use std::collections::BTreeSet;

use libp2p::PeerId;

use super::pending::Lookup;
use super::persist::DurableReply;
use super::{blob_key, Driver};
use crate::blob::store::BlobStore;
use crate::blob::{BlobId, DownloadFailure, Event};
use crate::shell::client::{BlobCommand, BlobInfo, Error, Reply};
use crate::shell::download::{self, BlobDownloaded, BlobProgress, Watcher};

impl Driver {
    pub(super) fn handle_blob_command(&mut self, command: BlobCommand) {
        match command {
            BlobCommand::AddBlob(content, outboard, reply) => {
                match self.node.import_blob(content, outboard) {
                    Ok(id) => self.when_durable(DurableReply::Added(reply, id)),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            BlobCommand::Importer(reply) => {
                let _ = reply.send(Ok(self.node.store().importer()));
            }
            BlobCommand::CommitImport(prepared, reply) => {
                match self.node.store_mut().commit_import(prepared) {
                    Ok(id) => self.when_durable(DurableReply::Added(reply, id)),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            BlobCommand::ExportSource(id, reply) => {
                let source = self.node.store().export_source(&id);
                let _ = reply.send(source.map_err(Error::from));
            }
            BlobCommand::DeleteBlob(id, reply) => match self.node.delete_blob(&id) {
                Ok(existed) => self.when_durable(DurableReply::Deleted(reply, existed)),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            BlobCommand::ListBlobs(reply) => {
                let list = self.node.store().list().map(|entries| {
                    entries
                        .into_iter()
                        .map(|(id, state)| BlobInfo {
                            id,
                            size: state.size(),
                            verified: crate::blob::tree::verified_bytes(
                                &state.verified(),
                                state.size(),
                            ),
                            complete: state.is_complete(),
                        })
                        .collect()
                });
                let _ = reply.send(list.map_err(Error::from));
            }
            BlobCommand::Download(id, providers, watcher, reply) => {
                self.watchers.entry(id).or_default().push(watcher);
                self.start_download(id, providers, reply);
            }
            BlobCommand::RequestBlob(id, providers, reply) => {
                self.start_download(id, providers, reply);
            }
            BlobCommand::AnnounceBlob(id, reply) => match self.node.announce_blob(id) {
                Ok(()) => self.pending.announce_requested(id, reply),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            BlobCommand::QueryBlob(id, reply) => {
                let query = self.swarm.behaviour_mut().kad.get_providers(blob_key(&id));
                let lookup = Lookup::Client {
                    blob: id,
                    found: BTreeSet::new(),
                    reply,
                };
                self.pending.lookup_started(query, lookup);
            }
        }
    }

    /// Answers `reply` once every write so far is durable.
    pub(super) fn when_durable(&mut self, reply: DurableReply) {
        let store = self.node.store();
        let (seq, durable) = (store.written_seq(), store.durable_seq());
        self.persist.when_durable(seq, durable, reply);
    }

    /// Starts a download. Without providers the node looks them up: the caller is
    /// answered once some are found (the download started) or none.
    fn start_download(&mut self, id: BlobId, providers: Vec<PeerId>, reply: Reply<()>) {
        // Without providers, and unless it is held or already on its way, the node looks
        // them up: the caller hears once some are found (or none).
        let lookup = providers.is_empty()
            && !self.node.is_downloading(&id)
            && !matches!(self.node.store().state(&id), Ok(Some(s)) if s.is_complete());
        match self.node.request_blob(id, providers) {
            Ok(()) if lookup => self.pending.requests.entry(id).or_default().push(reply),
            Ok(()) => {
                let _ = reply.send(Ok(()));
            }
            Err(err) => {
                for watcher in self.watchers.remove(&id).unwrap_or_default() {
                    watcher.finish(Err(Error::Blob(err.clone())));
                }
                let _ = reply.send(Err(Error::Blob(err)));
            }
        }
    }

    /// Tells the download handles of `event`'s blob what happened.
    pub(super) fn notify_watchers(&mut self, event: &Event) {
        match event {
            Event::DownloadProgress {
                id,
                verified,
                size,
                providers,
            } => {
                for watcher in self.watchers.get_mut(id).into_iter().flatten() {
                    watcher.progress(BlobProgress {
                        verified: *verified,
                        size: *size,
                        providers: *providers,
                    });
                }
            }
            Event::Downloaded { id, size, received } => {
                let done = BlobDownloaded {
                    id: *id,
                    size: *size,
                    received: *received,
                };
                self.pending.request_answered(*id, Ok(()));
                for watcher in self.watchers.remove(id).unwrap_or_default() {
                    watcher.finish(Ok(done));
                }
            }
            Event::DownloadFailed { id, reason } => {
                let err = match reason {
                    DownloadFailure::NoProvidersFound => Error::NoProvidersFound(*id),
                    reason => download::failure(*id, reason.clone()),
                };
                self.pending.request_answered(*id, Err(err.clone()));
                for watcher in self.watchers.remove(id).unwrap_or_default() {
                    watcher.finish(Err(err.clone()));
                }
            }
            Event::ProvidersFound { id, .. } => self.pending.request_answered(*id, Ok(())),
            _ => {}
        }
    }
}

/// Watchers of one blob's download.
pub(super) type Watchers = std::collections::BTreeMap<BlobId, Vec<Watcher>>;
