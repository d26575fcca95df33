//! Contexts: a signed transaction DAG shared by its members (issue 12, in progress).
//!
//! What exists: the transaction format ([`tx`]: canonical bytes, BLAKE3 ids, ed25519
//! signatures, limits checked before anything else) and the DAG ([`dag`]: what enters it,
//! membership decided at each transaction's own position, equivocation kept as evidence, a
//! bounded and expiring orphan buffer, causal and total orders) and what two members
//! compare to find what one lacks in one round trip ([`frontier`]). Not yet: gossip of
//! transactions and heads, the catch-up session over `/sinew/sync/1`, batch verification
//! off the driver, encryption to members, persistence, the node child, the API and CLI —
//! see the README.

pub mod contexts;
pub mod dag;
pub mod frontier;
pub mod invite;
pub mod session;
pub mod store;
pub mod tx;
pub mod verify;

#[cfg(test)]
mod tests;

pub use dag::{Dag, Membership, Rejection, Verdict, MAX_EVIDENCE, MAX_ORPHANS, ORPHAN_TTL};
pub use frontier::{MAX_HELLO_HEADS, MAX_SKIP_ANCESTORS};
pub use invite::{Invite, InviteError, MAX_INVITE_ADDRESSES, MAX_INVITE_LEN};
pub use session::{Received, Requester, Responder, SessionError, CREDIT, MAX_BATCH_BYTES};
pub use tx::{
    AuthorKey, Checked, ContextId, Role, SignedTx, Transaction, TxBody, TxError, TxId,
    MAX_GENESIS_MEMBERS, MAX_PARENTS, MAX_PAYLOAD, MAX_TX_BYTES, NO_CONTEXT, SIGNATURE_DOMAIN,
};
pub use verify::{check_batch, check_batch_owned, sign_hello, verify_hello, SeededBatchRng};
