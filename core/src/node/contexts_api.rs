//! The node's contexts commands and getters, and how it routes the contexts child's
//! outputs and its topics' gossip.

use libp2p_identity::PeerId;

use super::{Child, Event, Node, Output, Route};
use crate::blob::store::{BlobStore, StoreError};
use crate::blob::BlobId;
use crate::gossip;
use crate::stream;
use crate::sync::contexts::{self, Contexts};
use crate::sync::store::ContextStore;
use crate::sync::{self as contexts_area, AuthorKey, ContextId, Role, TxBody, TxId};

impl<S: BlobStore + ContextStore> Node<S> {
    /// Founds a context with `key` as its first admin and the other `members` (and an
    /// application blob); returns its id. The genesis is reported
    /// [`contexts::Event::Applied`] once durable.
    pub fn create_context(
        &mut self,
        key: libp2p_identity::ed25519::Keypair,
        members: Vec<(AuthorKey, Role)>,
        app: Option<BlobId>,
    ) -> Result<ContextId, contexts::Error> {
        self.check_topic_room()?;
        let store = self.blobs.store_mut();
        let id = self.contexts.create(key, members, app, self.now, store)?;
        let _ = self.gossip.subscribe(&Contexts::topic(&id));
        Ok(id)
    }

    /// Joins `context` as `key`, which an admin already added as a member: its history
    /// arrives by catch-up from `peers`, or from the first member seen on its topic.
    pub fn join_context(
        &mut self,
        context: ContextId,
        key: libp2p_identity::ed25519::Keypair,
        peers: impl IntoIterator<Item = PeerId>,
    ) -> Result<(), contexts::Error> {
        self.check_topic_room()?;
        let store = self.blobs.store_mut();
        self.contexts.join(context, key, peers, self.now, store)?;
        let _ = self.gossip.subscribe(&Contexts::topic(&context));
        Ok(())
    }

    pub(super) fn check_topic_room(&self) -> Result<(), contexts::Error> {
        if self.gossip.topics().count() >= gossip::MAX_TOPICS {
            // Reported as the contexts limit the caller can act on.
            return Err(contexts::Error::TooManyContexts {
                max: contexts::MAX_CONTEXTS,
            });
        }
        Ok(())
    }

    /// Leaves `context`: its transactions are deleted here and its topic left.
    pub fn leave_context(&mut self, context: &ContextId) -> Result<(), contexts::Error> {
        let store = self.blobs.store_mut();
        let topic = self.contexts.leave(context, store)?;
        self.gossip.unsubscribe(&topic);
        Ok(())
    }

    /// Writes a transaction with `body` in `context` on top of every head it holds:
    /// applied here at once, published to the members, reported
    /// [`contexts::Event::Applied`] once durable. Membership changes need an admin.
    pub fn submit(&mut self, context: &ContextId, body: TxBody) -> Result<TxId, contexts::Error> {
        let store = self.blobs.store_mut();
        self.contexts.submit(context, body, self.now, store)
    }

    /// [`Node::submit`] of application data (at most [`contexts_area::MAX_PAYLOAD`] bytes).
    pub fn submit_payload(
        &mut self,
        context: &ContextId,
        payload: Vec<u8>,
    ) -> Result<TxId, contexts::Error> {
        self.submit(context, TxBody::Payload(payload))
    }

    /// Adds `invitee` to `context` with `role` (this node's key must be an admin there)
    /// and returns the transaction and an invitation naming this node at `addresses`, to
    /// hand to the invitee out of band.
    pub fn invite(
        &mut self,
        context: &ContextId,
        invitee: AuthorKey,
        role: Role,
        addresses: Vec<multiaddr::Multiaddr>,
    ) -> Result<(TxId, contexts_area::Invite), contexts::Error> {
        let store = self.blobs.store_mut();
        self.contexts
            .invite(context, invitee, role, addresses, self.now, store)
    }

    /// Catches `context` up now, from `peer` or from every member seen on its topic.
    pub fn sync_context(
        &mut self,
        context: &ContextId,
        peer: Option<PeerId>,
    ) -> Result<(), contexts::Error> {
        self.contexts.sync_now(context, peer)
    }

    /// The contexts this node belongs to.
    pub fn contexts(&self) -> impl Iterator<Item = &ContextId> {
        self.contexts.ids()
    }

    /// The DAG of `context`, if its history is here (heads, members, log, evidence).
    pub fn context(&self, context: &ContextId) -> Option<&contexts_area::Dag> {
        self.contexts.dag(context)
    }

    /// The application data of `tx` (a transaction of `context`): its payload, decrypted if
    /// this member holds the key it was encrypted with.
    pub fn context_payload(
        &self,
        context: &ContextId,
        tx: &contexts_area::SignedTx,
    ) -> Option<Vec<u8>> {
        self.contexts.plaintext(context, tx)
    }

    /// Transaction `id` of `context`, read from the store; `None` if it is not applied
    /// here.
    pub fn context_tx(
        &self,
        context: &ContextId,
        id: &TxId,
    ) -> Result<Option<contexts_area::SignedTx>, StoreError> {
        let Some(position) = self.contexts.dag(context).and_then(|dag| dag.position(id)) else {
            return Ok(None);
        };
        let bytes = self
            .blobs
            .store()
            .encoded_txs(context, &[u64::from(position)])?;
        let tx = contexts_area::SignedTx::decode(&bytes[0])
            .map_err(|e| StoreError::Io(format!("a stored transaction is corrupt: {e}")))?;
        Ok(Some(tx))
    }

    /// Up to `limit` transactions of `context` from index `offset` of the order applied
    /// ([`contexts_area::Dag::applied`]), read from the store. Unknown or not yet received
    /// contexts give none.
    pub fn context_txs(
        &self,
        context: &ContextId,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<contexts_area::SignedTx>, StoreError> {
        let Some(dag) = self.contexts.dag(context) else {
            return Ok(Vec::new());
        };
        let limit = limit.min(dag.len().saturating_sub(offset));
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.blobs.store().txs_from(context, offset as u64, limit)
    }

    /// Feeds every transaction of `context` held here to `app`, in `order`, payloads
    /// decrypted (see [`contexts_area::app`]); returns how many. Unknown or not yet
    /// received contexts give 0. The transactions are read from the store a slice at a
    /// time ([`contexts_area::app::REPLAY_SLICE`]), so a long log is never in memory whole.
    pub fn replay_context(
        &self,
        context: &ContextId,
        order: contexts_area::Order,
        app: &mut impl contexts_area::Application,
    ) -> Result<usize, StoreError> {
        let Some(dag) = self.contexts.dag(context) else {
            return Ok(0);
        };
        let positions: Vec<u64> = match order {
            contexts_area::Order::Causal => (0..dag.len() as u64).collect(),
            contexts_area::Order::Linear => dag
                .linearized()
                .iter()
                .filter_map(|id| dag.position(id))
                .map(u64::from)
                .collect(),
        };
        let store = self.blobs.store();
        let mut n = 0;
        for slice in positions.chunks(contexts_area::app::REPLAY_SLICE) {
            for bytes in store.encoded_txs(context, slice)? {
                let tx = contexts_area::SignedTx::decode(&bytes)
                    .map_err(|e| StoreError::Io(format!("a stored transaction is corrupt: {e}")))?;
                let payload = self.contexts.plaintext(context, &tx);
                app.apply(contexts_area::AppTx {
                    context: *context,
                    id: tx.id(),
                    author: tx.tx.author,
                    seq: tx.tx.seq,
                    tx: &tx,
                    payload: payload.as_deref(),
                });
                n += 1;
            }
        }
        Ok(n)
    }

    /// This node's member key in `context`.
    pub fn context_member_key(&self, context: &ContextId) -> Option<AuthorKey> {
        self.contexts.member_key(context)
    }

    /// True while a catch-up of `context` runs or is wanted.
    pub fn is_syncing(&self, context: &ContextId) -> bool {
        self.contexts.is_syncing(context)
    }

    /// The catch-up of `context` running now: (transactions received, transactions its
    /// plan announced).
    pub fn catch_up_progress(&self, context: &ContextId) -> Option<(u64, u64)> {
        self.contexts.progress(context)
    }

    /// The contexts protocol's counters since this node started (sessions, batches, bytes,
    /// transactions applied, refusals by reason, catch-up time).
    pub fn sync_stats(&self) -> &contexts::Stats {
        self.contexts.stats()
    }

    /// The contexts protocol's configuration.
    pub fn sync_config(&self) -> &contexts::Config {
        self.contexts.config()
    }

    pub(super) fn handle_gossip(&mut self, input: gossip::Input) {
        let ours = |topic: &str| self.contexts.context_of_topic(topic).is_some();
        match input {
            gossip::Input::Message(m) if ours(&m.topic) => self.contexts.handle_gossip(m),
            gossip::Input::Subscribed { peer, topic } if ours(&topic) => {
                self.contexts.handle_subscription(peer, &topic, true);
            }
            gossip::Input::Unsubscribed { peer, topic } if ours(&topic) => {
                self.contexts.handle_subscription(peer, &topic, false);
            }
            input => self.queue.push_back(Output::Event(Event::Gossip(input))),
        }
    }

    /// What the contexts child produced, as the node's output (`None`: handled here).
    pub(super) fn sync_output(&mut self, out: contexts::Output) -> Option<Output> {
        match out {
            contexts::Output::Stream(out) => {
                match &out {
                    stream::Output::Open { stream, peer, .. } => {
                        let route = Route {
                            peer: *peer,
                            child: Child::Sync,
                        };
                        self.routes.insert(*stream, route);
                    }
                    stream::Output::Reset { stream } => {
                        self.routes.remove(stream);
                    }
                    stream::Output::Send { .. } | stream::Output::Finish { .. } => {}
                }
                Some(Output::Stream(out))
            }
            contexts::Output::Forget(stream) => {
                self.routes.remove(&stream);
                None
            }
            contexts::Output::Publish { topic, data } => {
                self.gossip.publish(&topic, data);
                None
            }
            contexts::Output::Misbehaved { peer, reason } => Some(self.misbehaved(peer, reason)),
            contexts::Output::Verify(job) => Some(Output::Verify(job)),
            // A download that cannot start now (too many at once) is asked again by the
            // next catch-up's plan.
            contexts::Output::FetchApp { app, peer } => {
                let _ = self.blobs.request_blob(app, [peer]);
                None
            }
            contexts::Output::Event(event) => Some(Output::Event(Event::Sync(event))),
        }
    }
}
