//! The driver's blob commands (imports, exports, downloads, announcements, lookups) and
//! the download handles that watch their blob's events.

use std::collections::BTreeSet;

use libp2p::PeerId;

use super::pending::Lookup;
use super::{blob_key, Driver};
use crate::blob::store::BlobStore;
use crate::blob::{BlobId, DownloadFailure, Event};
use crate::shell::client::{BlobCommand, BlobInfo, ClientError, Reply};
use crate::shell::download::{self, BlobDownloaded, BlobProgress, Watcher};

impl Driver {
    pub(super) fn handle_blob_command(&mut self, command: BlobCommand) {
        match command {
            BlobCommand::AddBlob(content, reply) => {
                let _ = reply.send(self.node.add_blob(content).map_err(ClientError::from));
            }
            BlobCommand::Importer(reply) => {
                let _ = reply.send(Ok(self.node.store().importer()));
            }
            BlobCommand::CommitImport(prepared, reply) => {
                let store = self.node.store_mut();
                let _ = reply.send(store.commit_import(prepared).map_err(ClientError::from));
            }
            BlobCommand::ExportSource(id, reply) => {
                let source = self.node.store().export_source(&id);
                let _ = reply.send(source.map_err(ClientError::from));
            }
            BlobCommand::DeleteBlob(id, reply) => {
                let _ = reply.send(self.node.delete_blob(&id).map_err(ClientError::from));
            }
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
                let _ = reply.send(list.map_err(ClientError::from));
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
            #[allow(clippy::result_large_err)] // the error goes straight into the reply
            BlobCommand::GetBlob(id, reply) => {
                let store = self.node.store();
                let content = match store.state(&id) {
                    Ok(Some(state)) if state.is_complete() => usize::try_from(state.size())
                        .map_err(|_| {
                            ClientError::Store(crate::blob::store::StoreError::Io(format!(
                                "blob {id} does not fit in memory: use export_blob"
                            )))
                        })
                        .and_then(|size| {
                            store
                                .read_data(&id, 0, size)
                                .map(Some)
                                .map_err(ClientError::from)
                        }),
                    Ok(_) => Ok(None),
                    Err(e) => Err(ClientError::from(e)),
                };
                let _ = reply.send(content);
            }
        }
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
                    watcher.finish(Err(ClientError::Blob(err.clone())));
                }
                let _ = reply.send(Err(ClientError::Blob(err)));
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
                    DownloadFailure::NoProvidersFound => ClientError::NoProvidersFound(*id),
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
