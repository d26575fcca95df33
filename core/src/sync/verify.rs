//! Signature verification of many transactions at once, with the verdicts single
//! verification gives.
//!
//! Signatures follow ZIP-215 (`ed25519-consensus`): batch and single verification accept
//! exactly the same signatures, so a batch can never let through what a peer checking one
//! at a time would refuse, and honest peers never disagree. A batch that fails is checked
//! one by one to name the culprits. Batch verification costs about half as much per
//! signature; `cargo bench -p sinew-core --bench verify` measures it against single
//! verification on this machine.
//!
//! The batch needs unpredictable randomness (its security rests on the attacker not knowing
//! the coefficients): the caller passes a cryptographic RNG. It runs on worker threads,
//! never on the task that drives the node.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_core_06::{CryptoRng, RngCore};

use super::tx::{Checked, SignedTx, TxError, TxId};

/// Checks every transaction as [`SignedTx::check`] does, verifying their signatures in one
/// batch; one verdict per transaction, in order, equal to what `check` gives each.
pub fn check_batch<R: RngCore + CryptoRng>(txs: &[SignedTx], rng: R) -> Vec<Result<TxId, TxError>> {
    let mut verdicts: Vec<Result<TxId, TxError>> = Vec::with_capacity(txs.len());
    let mut batch = ed25519_consensus::batch::Verifier::new();
    let mut messages = Vec::with_capacity(txs.len());
    for tx in txs {
        match tx.check_shape() {
            Ok(id) => {
                messages.push(Some(super::tx::signed_message(&id)));
                verdicts.push(Ok(id));
            }
            Err(e) => {
                messages.push(None);
                verdicts.push(Err(e));
            }
        }
    }
    for (tx, message) in txs.iter().zip(&messages) {
        if let Some(message) = message {
            let key = ed25519_consensus::VerificationKeyBytes::from(tx.tx.author.0);
            let signature = ed25519_consensus::Signature::from(tx.signature);
            batch.queue((key, signature, message));
        }
    }
    if batch.verify(rng).is_ok() {
        return verdicts;
    }
    // Somebody's signature is bad: find out whose, one at a time.
    for (tx, verdict) in txs.iter().zip(verdicts.iter_mut()) {
        if let Ok(id) = verdict {
            if !tx.signature_is_valid(id) {
                *verdict = Err(TxError::BadSignature(*id));
            }
        }
    }
    verdicts
}

/// [`check_batch`] taking the transactions, keeping each with its id: what
/// [`super::Dag::insert_checked`] takes without checking signatures again.
pub fn check_batch_owned<R: RngCore + CryptoRng>(
    txs: Vec<SignedTx>,
    rng: R,
) -> Vec<Result<Checked, TxError>> {
    let verdicts = check_batch(&txs, rng);
    txs.into_iter()
        .zip(verdicts)
        .map(|(tx, verdict)| verdict.map(|id| Checked::assume_checked(id, tx)))
        .collect()
}

/// The membership proof of a catch-up hello (`wire::SyncHello::proof`): `member`'s
/// signature over the context and both peers' ids, so it proves membership to this
/// responder only and cannot be replayed to another.
pub fn sign_hello(
    member: &libp2p_identity::ed25519::Keypair,
    context: &super::ContextId,
    requester: &libp2p_identity::PeerId,
    responder: &libp2p_identity::PeerId,
) -> [u8; 64] {
    member
        .sign(&hello_message(context, requester, responder))
        .try_into()
        .expect("an ed25519 signature is 64 bytes")
}

/// True if `proof` is `member`'s signature for a hello from `requester` to `responder` in
/// `context` (ZIP-215 rules). Whether `member` is a member is the DAG's to say.
pub fn verify_hello(
    member: &super::AuthorKey,
    proof: &[u8; 64],
    context: &super::ContextId,
    requester: &libp2p_identity::PeerId,
    responder: &libp2p_identity::PeerId,
) -> bool {
    let Ok(key) = ed25519_consensus::VerificationKey::try_from(member.0) else {
        return false;
    };
    let signature = ed25519_consensus::Signature::from(*proof);
    key.verify(&signature, &hello_message(context, requester, responder))
        .is_ok()
}

fn hello_message(
    context: &super::ContextId,
    requester: &libp2p_identity::PeerId,
    responder: &libp2p_identity::PeerId,
) -> Vec<u8> {
    let mut message = Vec::new();
    crate::wire::hello_proof_message(
        &context.0,
        &requester.to_bytes(),
        &responder.to_bytes(),
        &mut message,
    )
    .expect("writing into memory cannot fail");
    message
}

/// A batch verifier's RNG from a seed, for runs that must be replayable: tests, the
/// simulator, benchmarks. **Not for untrusted input in production**: batch verification
/// is sound only if the attacker cannot predict the coefficients, so a node verifying
/// peers' transactions passes an RNG seeded by the OS (the shell's workers do).
#[derive(Debug)]
pub struct SeededBatchRng(ChaCha8Rng);

impl SeededBatchRng {
    /// The RNG of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }
}

impl RngCore for SeededBatchRng {
    fn next_u32(&mut self) -> u32 {
        rand::RngCore::next_u32(&mut self.0)
    }

    fn next_u64(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut self.0, dest)
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        rand::RngCore::fill_bytes(&mut self.0, dest);
        Ok(())
    }
}

impl CryptoRng for SeededBatchRng {}
