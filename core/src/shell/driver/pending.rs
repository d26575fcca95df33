//! Replies the driver owes the application, waiting for the swarm: dials, listens,
//! bootstraps, announcements and provider lookups. Bookkeeping only: which answer belongs
//! to which caller; every decision about the network is the node's.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::core::transport::ListenerId;
use libp2p::kad::QueryId;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::blob::BlobId;
use crate::shell::client::{Error, Reply};
use crate::{dht, gossip};

/// Who asked for a provider lookup.
pub(super) enum Lookup {
    /// The node (a download without providers): steps go back to it as inputs.
    Node(dht::Key),
    /// The application (`query_blob`): answered with every provider once it ends.
    Client {
        blob: BlobId,
        found: BTreeSet<PeerId>,
        reply: Reply<Vec<PeerId>>,
    },
}

#[derive(Default)]
pub(super) struct Pending {
    pub(super) dials: BTreeMap<ConnectionId, (Multiaddr, Reply<PeerId>)>,
    /// Few at a time (one per waiting `listen_on` call): a short list.
    pub(super) listens: Vec<(ListenerId, Multiaddr, Reply<Multiaddr>)>,
    pub(super) bootstraps: Vec<(QueryId, Reply<()>)>,
    /// `publish` callers, answered as soon as the node's publish reaches gossipsub.
    pub(super) publishes: Vec<(gossip::PublishId, Reply<Vec<u8>>)>,
    /// `announce_blob` callers whose announcement the node has not handed out yet.
    announces_waiting: BTreeMap<BlobId, Vec<Reply<()>>>,
    /// Announcements running in Kademlia, with their callers (`QueryId` is not `Ord`:
    /// a list; one entry per announcement in flight).
    announces: Vec<(QueryId, BlobId, Vec<Reply<()>>)>,
    /// Provider lookups in flight (the node's are bounded by `blob::Config::max_lookups`).
    lookups: Vec<(QueryId, Lookup)>,
    /// `request_blob` callers without providers, answered once the node's lookup finds
    /// some (the download started) or none.
    pub(super) requests: BTreeMap<BlobId, Vec<Reply<()>>>,
}

impl Pending {
    /// An `announce_blob` caller, answered when the announcement ends.
    pub(super) fn announce_requested(&mut self, id: BlobId, reply: Reply<()>) {
        self.announces_waiting.entry(id).or_default().push(reply);
    }

    /// The node's announcement of `key` became Kademlia query `query` (or failed to start).
    pub(super) fn announce_started(
        &mut self,
        key: &dht::Key,
        started: Result<QueryId, String>,
        max_provided_blobs: usize,
    ) {
        let Some(id) = key.blob() else { return };
        let replies = self.announces_waiting.remove(&id).unwrap_or_default();
        match started {
            Ok(query) => self.announces.push((query, id, replies)),
            Err(reason) => {
                tracing::warn!(%id, %reason, "cannot announce a blob");
                let reason =
                    format!("{reason} (Config::max_provided_blobs is {max_provided_blobs})");
                for reply in replies {
                    let _ = reply.send(Err(Error::Announce {
                        id,
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    /// Kademlia finished announcement `query`.
    pub(super) fn announce_done(&mut self, query: QueryId, result: Result<(), String>) {
        if let Some(i) = self.announces.iter().position(|a| a.0 == query) {
            let (_, id, replies) = self.announces.swap_remove(i);
            for reply in replies {
                let result = result
                    .clone()
                    .map_err(|reason| Error::Announce { id, reason });
                let _ = reply.send(result);
            }
        }
    }

    /// A provider lookup started as Kademlia query `query`.
    pub(super) fn lookup_started(&mut self, query: QueryId, lookup: Lookup) {
        self.lookups.push((query, lookup));
    }

    /// The lookup of query `query`, if it is one.
    pub(super) fn lookup_mut(&mut self, query: QueryId) -> Option<&mut Lookup> {
        self.lookups
            .iter_mut()
            .find(|(q, _)| *q == query)
            .map(|(_, l)| l)
    }

    /// Ends the lookup of query `query`.
    pub(super) fn lookup_done(&mut self, query: QueryId) -> Option<Lookup> {
        let i = self.lookups.iter().position(|(q, _)| *q == query)?;
        Some(self.lookups.swap_remove(i).1)
    }

    /// The node's lookup of `id` found providers (`Ok`) or ended with none.
    pub(super) fn request_answered(&mut self, id: BlobId, result: Result<(), Error>) {
        for reply in self.requests.remove(&id).unwrap_or_default() {
            let _ = reply.send(result.clone());
        }
    }
}
