//! Confidentiality of a context's payloads: a context key only its members hold.
//!
//! - An admin makes a new key whenever the membership changes (and once after the
//!   genesis) and writes it in a [`TxBody::Keys`](super::TxBody::Keys) transaction,
//!   **sealed to every member at that position**: X25519 between a one-time key and the
//!   member's ed25519 key in Montgomery form, then ChaCha20-Poly1305 under a BLAKE3-derived
//!   key. A member removed before it gets nothing, so it cannot read what follows.
//! - The same transaction carries the key the admin held before, encrypted under the new
//!   one: whoever holds the newest key walks the chain back and reads the whole history (a
//!   member added later included).
//! - Payloads are [`TxBody::Encrypted`](super::TxBody::Encrypted): ChaCha20-Poly1305 under
//!   the key of a named `Keys` transaction, the nonce derived from the key's id and the
//!   author's (author, sequence) place — unique for an honest author — and the context,
//!   key, author and sequence bound as associated data. Relays and subscribers that are not
//!   members see ciphertext only.
//! - Keys and one-time keys are derived from the admin's secret key, the context and the
//!   admin's sequence number (BLAKE3 `derive_key`): unpredictable to anyone without that
//!   secret, with no randomness needed in the pure core.

use borsh::{BorshDeserialize, BorshSerialize};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use libp2p_identity::ed25519;
use sha2::{Digest, Sha512};

use super::tx::{AuthorKey, ContextId, TxId};

/// Bytes of a context key.
pub const KEY_LEN: usize = 32;
/// Bytes the AEAD adds to what it encrypts (Poly1305's tag).
pub const TAG_LEN: usize = 16;

/// A context key as a member holds it.
pub type ContextKey = [u8; KEY_LEN];

/// A context key sealed to one member.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SealedKey {
    /// The member it is sealed to.
    pub member: AuthorKey,
    /// The one-time X25519 public key.
    pub ephemeral: [u8; 32],
    /// The key, encrypted (with its tag).
    pub ciphertext: [u8; KEY_LEN + TAG_LEN],
}

/// The key an admin held before a new one, encrypted under the new one.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PreviousKey {
    /// The `Keys` transaction that introduced it.
    pub id: TxId,
    /// The key, encrypted under the new key (with its tag).
    pub ciphertext: [u8; KEY_LEN + TAG_LEN],
}

fn derive(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// The admin's secret, for derivations only.
fn secret_of(key: &ed25519::Keypair) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&key.to_bytes()[..32]);
    out
}

/// A new key `admin` makes in `context` at its sequence number `seq`.
pub fn new_key(admin: &ed25519::Keypair, context: &ContextId, seq: u64) -> ContextKey {
    derive(
        "sinew/sync/context-key/1",
        &[&secret_of(admin), &context.0, &seq.to_le_bytes()],
    )
}

/// The X25519 secret of an ed25519 key (the clamping happens in the multiplication).
fn x25519_secret(member: &ed25519::Keypair) -> [u8; 32] {
    let hash = Sha512::digest(secret_of(member));
    let mut out = [0u8; 32];
    out.copy_from_slice(&hash[..32]);
    out
}

/// An ed25519 public key in Montgomery form, if it is a valid point.
fn x25519_public(member: &AuthorKey) -> Option<MontgomeryPoint> {
    CompressedEdwardsY(member.0)
        .decompress()
        .map(|p| p.to_montgomery())
}

fn seal_cipher(
    shared: &MontgomeryPoint,
    ephemeral: &[u8; 32],
    member: &AuthorKey,
    context: &ContextId,
) -> ChaCha20Poly1305 {
    let key = derive(
        "sinew/sync/seal/1",
        &[shared.as_bytes(), ephemeral, &member.0, &context.0],
    );
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// Seals `key` to `member` (`admin` at `seq` makes the one-time key); `None` if the
/// member's key is not a valid point.
pub fn seal(
    key: &ContextKey,
    member: &AuthorKey,
    admin: &ed25519::Keypair,
    context: &ContextId,
    seq: u64,
) -> Option<SealedKey> {
    let theirs = x25519_public(member)?;
    let one_time = derive(
        "sinew/sync/one-time-key/1",
        &[&secret_of(admin), &context.0, &seq.to_le_bytes(), &member.0],
    );
    let ephemeral = MontgomeryPoint::mul_base_clamped(one_time);
    let shared = theirs.mul_clamped(one_time);
    // Each sealing key is used once: the nonce may be fixed.
    let sealed = seal_cipher(&shared, &ephemeral.0, member, context)
        .encrypt(&Nonce::default(), &key[..])
        .ok()?;
    Some(SealedKey {
        member: *member,
        ephemeral: ephemeral.0,
        ciphertext: sealed.try_into().ok()?,
    })
}

/// Opens a key sealed to `member`; `None` if it is not for this key or was tampered with.
pub fn unseal(
    sealed: &SealedKey,
    member: &ed25519::Keypair,
    context: &ContextId,
) -> Option<ContextKey> {
    let shared = MontgomeryPoint(sealed.ephemeral).mul_clamped(x25519_secret(member));
    let author = AuthorKey::from(&member.public());
    let key = seal_cipher(&shared, &sealed.ephemeral, &author, context)
        .decrypt(&Nonce::default(), &sealed.ciphertext[..])
        .ok()?;
    key.try_into().ok()
}

/// `previous` (introduced by transaction `id`) encrypted under `key`.
pub fn chain(
    key: &ContextKey,
    id: TxId,
    previous: &ContextKey,
    context: &ContextId,
) -> PreviousKey {
    let nonce = derive("sinew/sync/chain-nonce/1", &[&id.0]);
    let ciphertext = ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            Nonce::from_slice(&nonce[..12]),
            Payload {
                msg: previous,
                aad: &context.0,
            },
        )
        .expect("encrypting into memory cannot fail");
    PreviousKey {
        id,
        ciphertext: ciphertext
            .try_into()
            .expect("a key and a tag are KEY_LEN + TAG_LEN bytes"),
    }
}

/// The previous key from its [`PreviousKey`], given the key it is encrypted under.
pub fn unchain(
    key: &ContextKey,
    previous: &PreviousKey,
    context: &ContextId,
) -> Option<ContextKey> {
    let nonce = derive("sinew/sync/chain-nonce/1", &[&previous.id.0]);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            Nonce::from_slice(&nonce[..12]),
            Payload {
                msg: &previous.ciphertext,
                aad: &context.0,
            },
        )
        .ok()?
        .try_into()
        .ok()
}

fn payload_parts(
    key_id: &TxId,
    context: &ContextId,
    author: &AuthorKey,
    seq: u64,
) -> ([u8; 12], Vec<u8>) {
    let nonce = derive(
        "sinew/sync/payload-nonce/1",
        &[&key_id.0, &author.0, &seq.to_le_bytes()],
    );
    let mut aad = Vec::with_capacity(32 * 3 + 8);
    aad.extend_from_slice(&context.0);
    aad.extend_from_slice(&key_id.0);
    aad.extend_from_slice(&author.0);
    aad.extend_from_slice(&seq.to_le_bytes());
    let mut n = [0u8; 12];
    n.copy_from_slice(&nonce[..12]);
    (n, aad)
}

/// Encrypts an application payload of `author`'s transaction `seq` in `context` under the
/// key of transaction `key_id`.
pub fn encrypt_payload(
    key: &ContextKey,
    key_id: &TxId,
    context: &ContextId,
    author: &AuthorKey,
    seq: u64,
    plaintext: &[u8],
) -> Vec<u8> {
    let (nonce, aad) = payload_parts(key_id, context, author, seq);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("encrypting into memory cannot fail")
}

/// Decrypts what [`encrypt_payload`] made; `None` if any of its inputs differ.
pub fn decrypt_payload(
    key: &ContextKey,
    key_id: &TxId,
    context: &ContextId,
    author: &AuthorKey,
    seq: u64,
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    let (nonce, aad) = payload_parts(key_id, context, author, seq);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> ed25519::Keypair {
        ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes([n; 32]).expect("32 bytes"))
    }

    #[test]
    fn a_sealed_key_opens_for_its_member_only() {
        let (admin, alice, bob) = (key(1), key(2), key(3));
        let ctx = TxId([7; 32]);
        let k = new_key(&admin, &ctx, 1);
        let alice_key = AuthorKey::from(&alice.public());
        let sealed = seal(&k, &alice_key, &admin, &ctx, 1).unwrap();
        assert_eq!(unseal(&sealed, &alice, &ctx), Some(k));
        assert_eq!(unseal(&sealed, &bob, &ctx), None, "another member");
        assert_eq!(
            unseal(&sealed, &alice, &TxId([8; 32])),
            None,
            "another context"
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(unseal(&tampered, &alice, &ctx), None);
        // Sealed again by the same admin at another place: another one-time key.
        let again = seal(&k, &alice_key, &admin, &ctx, 2).unwrap();
        assert_ne!(again.ephemeral, sealed.ephemeral);
    }

    #[test]
    fn new_keys_differ_per_place_and_need_the_admins_secret() {
        let ctx = TxId([7; 32]);
        let a = new_key(&key(1), &ctx, 1);
        assert_ne!(a, new_key(&key(1), &ctx, 2));
        assert_ne!(a, new_key(&key(2), &ctx, 1));
        assert_ne!(a, new_key(&key(1), &TxId([8; 32]), 1));
    }

    #[test]
    fn a_payload_decrypts_only_with_its_key_and_place() {
        let ctx = TxId([7; 32]);
        let (k, id) = (new_key(&key(1), &ctx, 1), TxId([5; 32]));
        let author = AuthorKey::from(&key(2).public());
        let ct = encrypt_payload(&k, &id, &ctx, &author, 3, b"secret");
        assert_eq!(ct.len(), 6 + TAG_LEN);
        assert!(!ct.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            decrypt_payload(&k, &id, &ctx, &author, 3, &ct).as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(decrypt_payload(&k, &id, &ctx, &author, 4, &ct), None);
        assert_eq!(
            decrypt_payload(&k, &TxId([6; 32]), &ctx, &author, 3, &ct),
            None
        );
        let other = new_key(&key(1), &ctx, 2);
        assert_eq!(decrypt_payload(&other, &id, &ctx, &author, 3, &ct), None);
    }

    #[test]
    fn the_previous_key_opens_under_the_new_one_only() {
        let ctx = TxId([7; 32]);
        let (old, new) = (new_key(&key(1), &ctx, 1), new_key(&key(1), &ctx, 5));
        let link = chain(&new, TxId([3; 32]), &old, &ctx);
        assert_eq!(unchain(&new, &link, &ctx), Some(old));
        assert_eq!(unchain(&old, &link, &ctx), None);
    }
}
