//! Contexts: a signed transaction DAG shared by its members, replicated by live gossip and
//! a one-round-trip catch-up (issue 12; what is not done yet is listed below and in the
//! README).
//!
//! - [`tx`]: the transaction format — canonical bytes, BLAKE3 ids, ed25519 signatures,
//!   limits checked before anything else;
//! - [`verify`]: batch signature verification (ed25519-consensus: batch and single
//!   verdicts always agree), run on workers through `node::Output::Verify`;
//! - [`dag`]: what enters a context — membership decided at each transaction's own
//!   position (a pure function of the DAG), equivocation applied beside its twin and kept
//!   as evidence (a verdict that does not depend on arrival order either), a
//!   bounded and expiring orphan buffer, causal and deterministic total orders;
//! - [`frontier`]: what a requester shows (heads and skip ancestors) so the responder finds
//!   what it lacks in one round trip;
//! - [`session`]: the catch-up session machines (hello, plan, batches paced by credit,
//!   heads compared at the end);
//! - [`contexts`]: the node's child that runs all of it — sessions on `/sinew/sync/1`,
//!   gossip on each context's topic, verification jobs, durability before `Applied`,
//!   server limits;
//! - [`store`]: what a node's store keeps of its contexts (`MemStore`, and redb in the
//!   shell's `FsStore`);
//! - [`invite`]: the invitation token an admin hands to a new member;
//! - [`crypto`]: payloads encrypted to members under a context key sealed to each member,
//!   renewed at every membership change.
//!
//! - [`app`]: the trait an application implements to see transactions in causal order
//!   (or the deterministic total order), payloads decrypted;
//! - [`reconcile`]: range-based set reconciliation, the catch-up's fallback when no common
//!   frontier is found.
//!
//! Not yet: DAGs larger than memory (the whole DAG of every context is held in memory).

pub mod app;
pub mod contexts;
pub mod crypto;
pub mod dag;
pub mod frontier;
mod id_index;
pub mod invite;
pub mod reconcile;
pub mod session;
pub mod store;
pub mod tx;
pub mod verify;

#[cfg(test)]
mod tests;

pub use app::{AppTx, Application, Order};
pub use dag::{
    Dag, Equivocation, Membership, Rejection, Verdict, MAX_EVIDENCE, MAX_ORPHANS, ORPHAN_TTL,
};
pub use frontier::{MAX_HELLO_HEADS, MAX_SKIP_ANCESTORS};
pub use invite::{Invite, InviteError, MAX_INVITE_ADDRESSES, MAX_INVITE_LEN};
pub use session::{
    Received, Requester, Responder, SessionError, CREDIT, MAX_BATCH_BYTES, SEND_BATCH_BYTES,
};
pub use tx::{
    AuthorKey, Checked, ContextId, Role, SignedTx, Transaction, TxBody, TxError, TxId,
    MAX_GENESIS_MEMBERS, MAX_PARENTS, MAX_PAYLOAD, MAX_TX_BYTES, NO_CONTEXT, SIGNATURE_DOMAIN,
};
pub use verify::{check_batch, check_batch_owned, sign_hello, verify_hello, SeededBatchRng};
