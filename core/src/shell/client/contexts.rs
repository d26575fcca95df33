//! The contexts half of [`Client`]: founding, inviting, joining, writing, reading and
//! syncing contexts, and what the driver answers.

use libp2p::PeerId;

use super::{Client, Command, Error, Reply};
use crate::blob::BlobId;
use crate::sync::{AuthorKey, ContextId, Invite, Role, SignedTx, TxBody, TxId};

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // boxed as a whole inside `Command`
pub(crate) enum ContextCommand {
    Create(
        libp2p::identity::ed25519::Keypair,
        Vec<(AuthorKey, Role)>,
        Option<BlobId>,
        Reply<ContextId>,
    ),
    Join(Box<Invite>, libp2p::identity::ed25519::Keypair, Reply<()>),
    Invite(ContextId, AuthorKey, Role, Reply<Invite>),
    Submit(ContextId, TxBody, Reply<TxId>),
    Info(ContextId, Reply<ContextInfo>),
    Log(ContextId, usize, usize, Reply<Vec<LogEntry>>),
    List(Reply<Vec<ContextId>>),
    Sync(ContextId, Option<PeerId>, Reply<()>),
    Leave(ContextId, Reply<()>),
}

impl From<ContextCommand> for Command {
    fn from(command: ContextCommand) -> Self {
        Command::Context(Box::new(command))
    }
}

/// One transaction of a context's log ([`Client::context_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The transaction's id.
    pub id: TxId,
    /// The transaction as it travels (an encrypted payload stays encrypted here).
    pub tx: SignedTx,
    /// Its application data, decrypted; `None` if it is not a payload or this node does
    /// not hold its key.
    pub payload: Option<Vec<u8>>,
}

/// A context as this node holds it ([`Client::context_info`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextInfo {
    /// The context.
    pub id: ContextId,
    /// This node's member key in it.
    pub member_key: AuthorKey,
    /// Transactions held (0 while a joined context's history has not arrived).
    pub txs: u64,
    /// The heads (transactions nothing here builds on yet).
    pub heads: Vec<TxId>,
    /// The heads digest members gossip to compare their state (`None` before the history
    /// arrived).
    pub heads_digest: Option<[u8; 32]>,
    /// The members at the heads and their roles.
    pub members: Vec<(AuthorKey, Role)>,
    /// The application blob at the heads.
    pub app: Option<BlobId>,
    /// A catch-up session runs or is wanted.
    pub syncing: bool,
    /// The catch-up running now: (transactions received, transactions announced).
    pub catch_up: Option<(u64, u64)>,
    /// Equivocations kept as evidence (both versions applied; at most
    /// `sync::MAX_EVIDENCE` kept).
    pub equivocations: usize,
}

impl Client {
    /// Founds a context with `key` as its first admin, the other `members` (a node's key
    /// is its peer id's: [`AuthorKey::from_peer_id`]) and an application blob. Returns once
    /// the genesis is durable.
    pub async fn create_context(
        &self,
        key: libp2p::identity::ed25519::Keypair,
        members: Vec<(AuthorKey, Role)>,
        app: Option<BlobId>,
    ) -> Result<ContextId, Error> {
        self.call(|r| ContextCommand::Create(key, members, app, r))
            .await
    }

    /// Adds `invitee` to `context` with `role` (this node must be an admin there) and
    /// returns an invitation naming this node and its addresses (its `Display` is the
    /// token to hand over). Returns once the membership change is durable.
    pub async fn invite(
        &self,
        context: ContextId,
        invitee: AuthorKey,
        role: Role,
    ) -> Result<Invite, Error> {
        self.call(|r| ContextCommand::Invite(context, invitee, role, r))
            .await
    }

    /// Joins the context of `invite` as `key` (the invited key): dials the inviting node
    /// (the first of its addresses that answers) and catches up from it. Returns once the
    /// context is recorded here; its history arrives as [`Event::Sync`](super::Event::Sync) events
    /// (`Applied`, then `Synced`).
    pub async fn join_context(
        &self,
        invite: Invite,
        key: libp2p::identity::ed25519::Keypair,
    ) -> Result<(), Error> {
        let mut last = None;
        for address in &invite.addresses {
            match self.dial(address.clone()).await {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        self.call(|r| ContextCommand::Join(Box::new(invite), key, r))
            .await
    }

    /// Writes `payload` (at most [`crate::sync::MAX_PAYLOAD`] bytes) in `context` on top
    /// of every head this node holds. Returns once it is durable here; it reaches the
    /// members live (gossip) or by catch-up.
    pub async fn submit_transaction(
        &self,
        context: ContextId,
        payload: Vec<u8>,
    ) -> Result<TxId, Error> {
        self.submit(context, TxBody::Payload(payload)).await
    }

    /// Writes a transaction of any body (membership changes need an admin). Returns once
    /// it is durable here.
    pub async fn submit(&self, context: ContextId, body: TxBody) -> Result<TxId, Error> {
        self.call(|r| ContextCommand::Submit(context, body, r))
            .await
    }

    /// What this node holds of `context`: heads, members, size, whether it is syncing.
    pub async fn context_info(&self, context: ContextId) -> Result<ContextInfo, Error> {
        self.call(|r| ContextCommand::Info(context, r)).await
    }

    /// Up to `limit` transactions of `context` from position `offset`, in the order this
    /// node applied them (causal: parents first).
    pub async fn context_log(
        &self,
        context: ContextId,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<LogEntry>, Error> {
        self.call(|r| ContextCommand::Log(context, offset, limit, r))
            .await
    }

    /// The contexts this node belongs to.
    pub async fn contexts(&self) -> Result<Vec<ContextId>, Error> {
        self.call(ContextCommand::List).await
    }

    /// Catches `context` up now, from `peer` or from every member seen on its topic.
    pub async fn sync_context(
        &self,
        context: ContextId,
        peer: Option<PeerId>,
    ) -> Result<(), Error> {
        self.call(|r| ContextCommand::Sync(context, peer, r)).await
    }

    /// Leaves `context`: its transactions are deleted here.
    pub async fn leave_context(&self, context: ContextId) -> Result<(), Error> {
        self.call(|r| ContextCommand::Leave(context, r)).await
    }
}
