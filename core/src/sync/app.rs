//! How an application sees a context's transactions: it implements [`Application`] and
//! gets every transaction once, parents first, with its payload decrypted.
//!
//! - **Live**: hand each `contexts::Event` the node emits (in the shell, each
//!   `Event::Sync`) to [`deliver`]; `Applied` events reach [`Application::apply`] in the
//!   order the node made them durable, which is causal per context.
//! - **Replay**: [`Node::replay_context`](crate::node::Node::replay_context) feeds a
//!   context's whole history in causal order (the order this node applied it) or in the
//!   deterministic total order ([`Order::Linear`], the same on every member), for an
//!   application that rebuilds its state from scratch or needs one order everywhere.

use super::contexts::Event;
use super::tx::{AuthorKey, ContextId, SignedTx, TxBody, TxId};

/// Transactions [`Node::replay_context`](crate::node::Node::replay_context) reads from
/// the store at a time.
pub const REPLAY_SLICE: usize = 1024;

/// What the application implements.
pub trait Application {
    /// A transaction of a context it belongs to entered its DAG (durably): called once per
    /// transaction, after all of its parents.
    fn apply(&mut self, tx: AppTx<'_>);
}

/// One transaction as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppTx<'a> {
    /// The context.
    pub context: ContextId,
    /// The transaction's id.
    pub id: TxId,
    /// Its author (a member key) and the author's sequence number.
    pub author: AuthorKey,
    /// The author's sequence number.
    pub seq: u64,
    /// The whole transaction (membership changes, keys, …), as it travels.
    pub tx: &'a SignedTx,
    /// Its application data, decrypted; `None` for a transaction that carries none, or
    /// one whose key this member does not hold.
    pub payload: Option<&'a [u8]>,
}

impl AppTx<'_> {
    /// True if it carries application data (a payload, encrypted or not).
    pub fn is_payload(&self) -> bool {
        matches!(
            self.tx.tx.body,
            TxBody::Payload(_) | TxBody::Encrypted { .. }
        )
    }
}

/// The order of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The order this node applied the transactions (causal; may differ between members
    /// for concurrent transactions).
    Causal,
    /// (depth, id) ascending: causal too, and the same on every member holding the same
    /// transactions.
    Linear,
}

/// Hands `event` to `app` if it is an `Applied` event; true if it was.
pub fn deliver(event: &Event, app: &mut impl Application) -> bool {
    match event {
        Event::Applied {
            context,
            id,
            tx,
            payload,
        } => {
            app.apply(AppTx {
                context: *context,
                id: *id,
                author: tx.tx.author,
                seq: tx.tx.seq,
                tx,
                payload: payload.as_deref(),
            });
            true
        }
        _ => false,
    }
}
