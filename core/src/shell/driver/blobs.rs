//! The driver's blob commands: imports, exports, downloads and their watchers, DHT
//! provider records.

use std::collections::BTreeSet;

use libp2p::kad::{self, QueryId};
use libp2p::PeerId;

use super::{blob_key, Driver, ProviderQuery};
use crate::blob::store::BlobStore;
use crate::blob::{self, BlobId, Event};
use crate::shell::client::{BlobInfo, ClientError, Command, NetworkEvent, Reply};
use crate::shell::download::{self, BlobDownloaded, BlobProgress, Watcher};

impl Driver {
    pub(super) fn handle_blob_command(&mut self, command: Command) {
        match command {
            Command::AddBlob(content, reply) => {
                let _ = reply.send(self.node.add_blob(content).map_err(ClientError::from));
            }
            Command::Importer(reply) => {
                let _ = reply.send(Ok(self.node.store().importer()));
            }
            Command::CommitImport(prepared, reply) => {
                let _ = reply.send(
                    self.node
                        .store_mut()
                        .commit_import(prepared)
                        .map_err(ClientError::from),
                );
            }
            Command::ExportSource(id, reply) => {
                let _ = reply.send(
                    self.node
                        .store()
                        .export_source(&id)
                        .map_err(ClientError::from),
                );
            }
            Command::DeleteBlob(id, reply) => {
                self.announced.remove(&id);
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&blob_key(&id));
                let _ = reply.send(self.node.delete_blob(&id).map_err(ClientError::from));
            }
            Command::ListBlobs(reply) => {
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
            Command::Download(id, providers, watcher, reply) => {
                self.watchers.entry(id).or_default().push(watcher);
                self.start_download(id, providers, reply);
            }
            Command::RequestBlob(id, providers, reply) => {
                self.start_download(id, providers, reply);
            }
            Command::AnnounceBlob(id, reply) => match self.announce(id) {
                Ok(query) => self.pending_announces.push((query, id, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::QueryBlob(id, reply) => {
                let query = self.swarm.behaviour_mut().kad.get_providers(blob_key(&id));
                self.provider_queries.push(ProviderQuery {
                    id: query,
                    blob: id,
                    found: BTreeSet::new(),
                    reply: Some(reply),
                    request: None,
                });
            }
            #[allow(clippy::result_large_err)] // the error goes straight into the reply
            Command::GetBlob(id, reply) => {
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
            other => unreachable!("not a blob command: {other:?}"),
        }
    }

    /// Starts providing `id` in the DHT, and remembers it so that it is announced again
    /// after a restart.
    #[allow(clippy::result_large_err)] // the error goes straight into a reply
    fn announce(&mut self, id: BlobId) -> Result<QueryId, ClientError> {
        match self.node.store().state(&id) {
            Ok(Some(state)) if state.is_complete() => {}
            Ok(_) => return Err(ClientError::BlobNotComplete(id)),
            Err(e) => return Err(e.into()),
        }
        let query = self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(blob_key(&id))
            .map_err(|e| ClientError::Announce {
                id,
                reason: format!(
                    "{e} (NetworkConfig::max_provided_blobs is {})",
                    self.config.max_provided_blobs
                ),
            })?;
        self.announced.insert(id);
        Ok(query)
    }

    /// After a start, once the routing table has its first peer: every complete blob of a
    /// persistent store is provided again (provider records live in memory, so a restart
    /// would otherwise forget them, and an announcement with an empty routing table
    /// reaches nobody until the next republish).
    pub(super) fn announce_stored(&mut self) {
        if !self.config.announce_stored_blobs {
            return;
        }
        let Ok(entries) = self.node.store().list() else {
            return;
        };
        for (id, state) in entries {
            if state.is_complete() {
                if let Err(err) = self.announce(id) {
                    tracing::warn!(%id, %err, "cannot announce a stored blob");
                }
            }
        }
    }

    fn start_download(&mut self, id: BlobId, providers: Vec<PeerId>, reply: Reply<()>) {
        let complete = matches!(self.node.store().state(&id), Ok(Some(s)) if s.is_complete());
        if providers.is_empty() && !complete {
            let query = self.swarm.behaviour_mut().kad.get_providers(blob_key(&id));
            self.provider_queries.push(ProviderQuery {
                id: query,
                blob: id,
                found: BTreeSet::new(),
                reply: None,
                request: Some(reply),
            });
            return;
        }
        let result = self.node.request_blob(id, providers);
        self.started(id, result, reply);
    }

    /// Answers a download's caller; a download that could not start ends its watchers.
    fn started(&mut self, id: BlobId, result: Result<(), blob::Error>, reply: Reply<()>) {
        if let Err(err) = &result {
            for watcher in self.watchers.remove(&id).unwrap_or_default() {
                watcher.finish(Err(ClientError::Blob(err.clone())));
            }
        }
        let _ = reply.send(result.map_err(ClientError::from));
    }

    pub(super) fn handle_providers(
        &mut self,
        id: QueryId,
        result: kad::GetProvidersResult,
        last: bool,
    ) {
        let Some(i) = self.provider_queries.iter().position(|q| q.id == id) else {
            return;
        };
        let done = match result {
            Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                self.provider_queries[i].found.extend(providers);
                last
            }
            Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => true,
        };
        if !done {
            return;
        }
        let mut query = self.provider_queries.swap_remove(i);
        let local = *self.swarm.local_peer_id();
        query.found.remove(&local);
        let providers: Vec<PeerId> = query.found.into_iter().collect();
        self.events.send(NetworkEvent::BlobProvidersFound {
            id: query.blob,
            providers: providers.clone(),
        });
        if let Some(reply) = query.reply {
            let _ = reply.send(Ok(providers.clone()));
        }
        if let Some(reply) = query.request {
            if providers.is_empty() {
                let err = ClientError::NoProvidersFound(query.blob);
                for watcher in self.watchers.remove(&query.blob).unwrap_or_default() {
                    watcher.finish(Err(err.clone()));
                }
                let _ = reply.send(Err(err));
                return;
            }
            let result = self.node.request_blob(query.blob, providers);
            self.started(query.blob, result, reply);
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
                for watcher in self.watchers.remove(id).unwrap_or_default() {
                    watcher.finish(Ok(done));
                }
            }
            Event::DownloadFailed { id, reason } => {
                for watcher in self.watchers.remove(id).unwrap_or_default() {
                    watcher.finish(Err(download::failure(*id, reason.clone())));
                }
            }
            _ => {}
        }
    }
}

/// Watchers of one blob's download.
pub(super) type Watchers = std::collections::BTreeMap<BlobId, Vec<Watcher>>;
