//! The contexts protocol's commands: found, join, leave, write (payloads encrypted, keys
//! renewed at every membership change), invite, catch up now — and whom to catch up from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use libp2p_identity::{ed25519, PeerId};

use super::{stored, AfterDurable, Contexts, Error, MAX_CONTEXTS, MAX_CONTEXT_PEERS};
use crate::blob::store::BlobStore;
use crate::blob::BlobId;
use crate::stream::StreamId;
use crate::sync::crypto;
use crate::sync::dag::{Dag, Verdict};
use crate::sync::store::ContextStore;
use crate::sync::tx::{AuthorKey, ContextId, Role, SignedTx, Transaction, TxBody, TxId};
use crate::sync::MAX_PARENTS;

impl Contexts {
    /// Founds a context with `key` as its first admin, the other `members`, and the
    /// application blob `app`; returns its id.
    pub(crate) fn create<S: BlobStore + ContextStore>(
        &mut self,
        key: ed25519::Keypair,
        members: Vec<(AuthorKey, Role)>,
        app: Option<BlobId>,
        now: Instant,
        store: &mut S,
    ) -> Result<ContextId, Error> {
        let author = AuthorKey::from(&key.public());
        let mut all: BTreeMap<AuthorKey, Role> = members.into_iter().collect();
        all.insert(author, Role::Admin);
        let genesis = Transaction {
            context: crate::sync::NO_CONTEXT,
            author,
            seq: 0,
            parents: Vec::new(),
            body: TxBody::Genesis {
                members: all.into_iter().collect(),
                app,
            },
        }
        .sign(&key);
        genesis.check()?;
        let id = genesis.id();
        self.check_room(&id)?;
        let dag = Dag::new(genesis.clone()).map_err(|e| match e {
            crate::sync::Rejection::Invalid(e) => Error::Invalid(e),
            _ => Error::NotAllowed(id),
        })?;
        store.put_context(&stored(id, &key))?;
        let txs = Arc::new(vec![genesis]);
        store.append_txs(&id, 0, txs.clone())?;
        self.durable.push_back((
            store.written_seq(),
            AfterDurable::Applied {
                context: id,
                ids: vec![id],
                txs,
            },
        ));
        self.add(id, key, Some(dag), now);
        self.rotate_key(&id, now, store)?;
        Ok(id)
    }

    /// Joins `context` as `key` (which an admin added as a member): its history arrives by
    /// catch-up from `peers` (or from the first member seen on its topic).
    pub(crate) fn join<S: BlobStore + ContextStore>(
        &mut self,
        context: ContextId,
        key: ed25519::Keypair,
        peers: impl IntoIterator<Item = PeerId>,
        now: Instant,
        store: &mut S,
    ) -> Result<(), Error> {
        self.check_room(&context)?;
        store.put_context(&stored(context, &key))?;
        self.add(context, key, None, now);
        let ctx = self.contexts.get_mut(&context).expect("just added");
        for peer in peers {
            if ctx.wanted.len() < MAX_CONTEXT_PEERS {
                ctx.wanted.insert(peer);
            }
        }
        Ok(())
    }

    fn check_room(&self, context: &ContextId) -> Result<(), Error> {
        if self.contexts.contains_key(context) {
            return Err(Error::Exists(*context));
        }
        if self.contexts.len() >= MAX_CONTEXTS {
            return Err(Error::TooManyContexts { max: MAX_CONTEXTS });
        }
        Ok(())
    }

    /// Leaves `context`: forgets it and its transactions here; its sessions end.
    pub(crate) fn leave<S: ContextStore>(
        &mut self,
        context: &ContextId,
        store: &mut S,
    ) -> Result<String, Error> {
        let ctx = self
            .contexts
            .remove(context)
            .ok_or(Error::UnknownContext(*context))?;
        self.by_topic.remove(&ctx.topic);
        let doomed: Vec<StreamId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.context() == Some(*context))
            .map(|(id, _)| *id)
            .collect();
        for stream in doomed {
            self.end_session(stream, None);
        }
        store.remove_context(context)?;
        Ok(ctx.topic)
    }

    /// Writes a transaction with `body` in `context`, on top of every head: applied and
    /// stored at once (reported applied once durable) and published on the topic. A
    /// payload is encrypted under the context's current key; a membership change is
    /// followed by a new key sealed to the members after it.
    pub(crate) fn submit<S: BlobStore + ContextStore>(
        &mut self,
        context: &ContextId,
        body: TxBody,
        now: Instant,
        store: &mut S,
    ) -> Result<TxId, Error> {
        if matches!(body, TxBody::Keys { .. } | TxBody::Encrypted { .. }) {
            // Made here, never by the caller.
            return Err(Error::NotAllowed(*context));
        }
        let rotate = matches!(body, TxBody::AddMember { .. } | TxBody::RemoveMember { .. });
        let id = self.write(context, body, now, store)?;
        if rotate {
            self.rotate_key(context, now, store)?;
        }
        Ok(id)
    }

    /// Writes a new context key sealed to every member at the heads, with the current key
    /// chained under it (this node must be an admin).
    fn rotate_key<S: BlobStore + ContextStore>(
        &mut self,
        context: &ContextId,
        now: Instant,
        store: &mut S,
    ) -> Result<TxId, Error> {
        let ctx = self
            .contexts
            .get(context)
            .ok_or(Error::UnknownContext(*context))?;
        let dag = ctx.dag.as_ref().ok_or(Error::NotSynced(*context))?;
        let seq = dag.last_seq(&ctx.author).map_or(1, |(seq, _)| seq + 1);
        let key = crypto::new_key(&ctx.key, context, seq);
        let sealed = dag
            .membership()
            .members
            .keys()
            .filter_map(|member| crypto::seal(&key, member, &ctx.key, context, seq))
            .collect();
        let previous = ctx.current_key.and_then(|id| {
            Some(Box::new(crypto::chain(
                &key,
                id,
                ctx.keys.get(&id)?,
                context,
            )))
        });
        self.write(context, TxBody::Keys { sealed, previous }, now, store)
    }

    /// [`Contexts::submit`] of exactly `body` (a payload is encrypted).
    fn write<S: BlobStore + ContextStore>(
        &mut self,
        context: &ContextId,
        body: TxBody,
        now: Instant,
        store: &mut S,
    ) -> Result<TxId, Error> {
        let ctx = self
            .contexts
            .get_mut(context)
            .ok_or(Error::UnknownContext(*context))?;
        let Some(dag) = &mut ctx.dag else {
            return Err(Error::NotSynced(*context));
        };
        if matches!(body, TxBody::Genesis { .. }) {
            return Err(Error::NotAllowed(*context));
        }
        match dag.membership().members.get(&ctx.author) {
            Some(Role::Admin) => {}
            Some(Role::Writer) if !body.is_admin_only() => {}
            _ => return Err(Error::NotAllowed(*context)),
        }
        let last = dag.last_seq(&ctx.author);
        let mut parents: Vec<TxId> = Vec::with_capacity(MAX_PARENTS);
        if let Some((seq, prev)) = last {
            if seq > 0 {
                parents.push(prev);
            }
        }
        // The deepest heads first: they cover the most history.
        let mut heads: Vec<(u64, TxId)> = dag
            .heads()
            .iter()
            .filter(|h| !parents.contains(h))
            .map(|h| (dag.depth(h), *h))
            .collect();
        heads.sort_by(|a, b| b.cmp(a));
        parents.extend(heads.into_iter().map(|(_, h)| h));
        parents.truncate(MAX_PARENTS);
        let seq = last.map_or(1, |(seq, _)| seq + 1);
        let body = match (body, ctx.current_key) {
            (TxBody::Payload(data), Some(key_id)) => {
                let key = ctx.keys.get(&key_id).expect("the current key is held");
                let ciphertext =
                    crypto::encrypt_payload(key, &key_id, context, &ctx.author, seq, &data);
                TxBody::Encrypted {
                    key: key_id,
                    ciphertext,
                }
            }
            (body, _) => body,
        };
        let tx = Transaction {
            context: *context,
            author: ctx.author,
            seq,
            parents,
            body,
        }
        .sign(&ctx.key);
        let checked = tx.clone().checked()?;
        let id = checked.id();
        let verdicts = dag.insert_checked(checked, now);
        // Ours, and any transaction that waited for it (none, in practice).
        let applied = dag.take_applied();
        // Never an equivocation: our sequence number comes from this DAG.
        dag.take_equivocations();
        if verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Rejected { id: r, .. } if *r == id))
        {
            return Err(Error::NotAllowed(*context));
        }
        let first = (dag.len() - applied.len()) as u64;
        for (id, tx) in &applied {
            ctx.learn_keys(*id, tx);
        }
        let (ids, txs): (Vec<TxId>, Vec<SignedTx>) = applied.into_iter().unzip();
        let txs = Arc::new(txs);
        store.append_txs(context, first, txs.clone())?;
        let data = crate::wire::to_bytes(&crate::wire::Message::SyncTx(
            crate::wire::TxBatch::new(vec![tx.encode()]).expect("one transaction"),
        ))
        .expect("a transaction fits a message");
        // Published only once durable: a crash before that loses the write everywhere,
        // so the restarted node cannot sign another transaction with its sequence number
        // (an equivocation of its own, which every member would refuse).
        self.durable.push_back((
            store.written_seq(),
            AfterDurable::Publish {
                topic: ctx.topic.clone(),
                data,
            },
        ));
        self.durable.push_back((
            store.written_seq(),
            AfterDurable::Applied {
                context: *context,
                ids,
                txs,
            },
        ));
        Ok(id)
    }

    /// Adds `invitee` to `context` with `role` (this node must be an admin there) and signs
    /// an invitation naming this node at `addresses`.
    pub(crate) fn invite<S: BlobStore + ContextStore>(
        &mut self,
        context: &ContextId,
        invitee: AuthorKey,
        role: Role,
        addresses: Vec<multiaddr::Multiaddr>,
        now: Instant,
        store: &mut S,
    ) -> Result<(TxId, crate::sync::Invite), Error> {
        let id = self.submit(
            context,
            TxBody::AddMember { key: invitee, role },
            now,
            store,
        )?;
        let ctx = self.contexts.get(context).expect("submit found it");
        let invite = crate::sync::Invite::new(&ctx.key, *context, invitee, self.local, addresses);
        Ok((id, invite))
    }

    /// Catches `context` up from `peer` (or from every peer seen on its topic) now.
    pub(crate) fn sync_now(
        &mut self,
        context: &ContextId,
        peer: Option<PeerId>,
    ) -> Result<(), Error> {
        let ctx = self
            .contexts
            .get_mut(context)
            .ok_or(Error::UnknownContext(*context))?;
        match peer {
            Some(peer) => {
                ctx.wanted.insert(peer);
            }
            None => ctx.wanted.extend(ctx.peers.iter().copied()),
        }
        Ok(())
    }

    /// The node's clock, before every call that may end a session.
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// True if a session with `peer` for `context` failed less than [`RETRY_BACKOFF`] ago.
    pub(super) fn backing_off(&self, context: &ContextId, peer: &PeerId) -> bool {
        self.backoff
            .get(&(*context, *peer))
            .is_some_and(|until| *until > self.now)
    }

    /// Someone to catch up from, later (bounded; a session in progress is not disturbed).
    pub(super) fn want(&mut self, context: &ContextId, peer: PeerId) {
        if peer == self.local || self.backing_off(context, &peer) {
            return;
        }
        if let Some(ctx) = self.contexts.get_mut(context) {
            if ctx.wanted.len() < MAX_CONTEXT_PEERS {
                ctx.wanted.insert(peer);
            }
        }
    }
}
