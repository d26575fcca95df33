//! Transactions of a context: what an author signs, its id, its wire form and the checks
//! every receiver runs before anything else (shape, limits, id, signature).
//!
//! A transaction names its context, its author (an ed25519 public key), the author's
//! sequence number, its parents and its body. Its id is the BLAKE3 hash of its canonical
//! bytes (borsh); the author signs [`SIGNATURE_DOMAIN`] followed by the id. The genesis
//! transaction founds a context: its id *is* the context id, and its own `context` field
//! is all zeros.

use borsh::{BorshDeserialize, BorshSerialize};
use libp2p_identity::ed25519;

use super::crypto::{PreviousKey, SealedKey, TAG_LEN};
use crate::blob::BlobId;

/// Parents a transaction may name at most.
pub const MAX_PARENTS: usize = 16;
/// Bytes of application payload in one transaction at most.
pub const MAX_PAYLOAD: usize = 64 << 10;
/// Members a genesis transaction may list at most.
pub const MAX_GENESIS_MEMBERS: usize = 256;
/// Encoded bytes of one signed transaction at most, checked before decoding.
pub const MAX_TX_BYTES: usize = MAX_PAYLOAD + 4096 + MAX_GENESIS_MEMBERS * 112;
/// What an author signs before the id, so a signature can never be replayed elsewhere.
pub const SIGNATURE_DOMAIN: &[u8] = b"sinew/sync/tx/1";

/// A transaction's id: BLAKE3 of its canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct TxId(pub [u8; 32]);

impl std::fmt::Debug for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..6]))
    }
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A context's id: the id of its genesis transaction.
pub type ContextId = TxId;

/// The context field of a genesis transaction (it has no context yet).
pub const NO_CONTEXT: ContextId = TxId([0; 32]);

/// An author: the 32 bytes of an ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct AuthorKey(pub [u8; 32]);

impl std::fmt::Debug for AuthorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "author:{}", hex::encode(&self.0[..4]))
    }
}

impl From<&ed25519::PublicKey> for AuthorKey {
    fn from(key: &ed25519::PublicKey) -> Self {
        Self(key.to_bytes())
    }
}

impl AuthorKey {
    /// The key of a peer whose id inlines an ed25519 public key (every Sinew node's id
    /// does), so a node's identity can be invited by its peer id alone.
    pub fn from_peer_id(peer: &libp2p_identity::PeerId) -> Option<Self> {
        let multihash = peer.as_ref();
        if multihash.code() != 0 {
            return None; // a hashed key: the key itself is not in the id
        }
        let key = libp2p_identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
        Some(Self::from(&key.try_into_ed25519().ok()?))
    }

    /// Lowercase hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::str::FromStr for AuthorKey {
    type Err = hex::FromHexError;

    /// 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes)?;
        Ok(Self(bytes))
    }
}

/// What a member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum Role {
    /// Submits payloads, changes membership and the application.
    Admin,
    /// Submits payloads.
    Writer,
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TxBody {
    /// Founds a context with its first members (the author among them, as admin).
    Genesis {
        /// The members and their roles.
        members: Vec<(AuthorKey, Role)>,
        /// The application's blob, if any.
        app: Option<BlobId>,
    },
    /// Application data, opaque to Sinew.
    Payload(Vec<u8>),
    /// Adds a member or changes its role (admins only).
    AddMember {
        /// The member.
        key: AuthorKey,
        /// Its role.
        role: Role,
    },
    /// Removes a member (admins only).
    RemoveMember {
        /// The member.
        key: AuthorKey,
    },
    /// Changes the application's blob (admins only).
    SetApp {
        /// The new blob.
        app: BlobId,
    },
    /// A new context key (admins only), sealed to every member at this position (at most
    /// [`MAX_GENESIS_MEMBERS`]), with the key its author held before encrypted under it
    /// ([`super::crypto`]).
    Keys {
        /// The key, once per member.
        sealed: Vec<SealedKey>,
        /// The author's previous key, if it had one (boxed: it is rare and large).
        previous: Option<Box<PreviousKey>>,
    },
    /// Application data encrypted under the key of the `Keys` transaction `key` (at most
    /// [`MAX_PAYLOAD`] bytes before encryption).
    Encrypted {
        /// The `Keys` transaction whose key encrypts it.
        key: TxId,
        /// The payload, encrypted, its tag included.
        ciphertext: Vec<u8>,
    },
}

impl TxBody {
    /// True for the bodies that change who may write (or the application): only admins
    /// may sign them.
    pub fn is_admin_only(&self) -> bool {
        matches!(
            self,
            TxBody::AddMember { .. }
                | TxBody::RemoveMember { .. }
                | TxBody::SetApp { .. }
                | TxBody::Keys { .. }
        )
    }
}

/// A transaction before it is signed.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    /// The context ([`NO_CONTEXT`] for a genesis).
    pub context: ContextId,
    /// Who signs it.
    pub author: AuthorKey,
    /// The author's sequence number: 0 for a genesis, then 1, 2, … per author and context.
    pub seq: u64,
    /// The transactions it builds on (at most [`MAX_PARENTS`], none for a genesis).
    pub parents: Vec<TxId>,
    /// What it does.
    pub body: TxBody,
}

impl Transaction {
    /// Its id: BLAKE3 of its canonical bytes.
    pub fn id(&self) -> TxId {
        let bytes = borsh::to_vec(self).expect("encoding into memory cannot fail");
        TxId(*blake3::hash(&bytes).as_bytes())
    }

    /// Signs it with `key` (whose public half must be the author).
    pub fn sign(self, key: &ed25519::Keypair) -> SignedTx {
        let message = signed_message(&self.id());
        let signature: [u8; 64] = key
            .sign(&message)
            .try_into()
            .expect("an ed25519 signature is 64 bytes");
        SignedTx {
            tx: self,
            signature,
        }
    }
}

pub(crate) fn signed_message(id: &TxId) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 32);
    message.extend_from_slice(SIGNATURE_DOMAIN);
    message.extend_from_slice(&id.0);
    message
}

/// A transaction with its author's signature: what travels and what is stored.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Transaction,
    /// The author's signature over [`SIGNATURE_DOMAIN`] and the id.
    pub signature: [u8; 64],
}

/// A transaction whose shape and signature were checked, with its id: only
/// [`SignedTx::checked`] and [`super::verify::check_batch_owned`] make one, so a DAG can
/// take it without checking the signature again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    id: TxId,
    tx: SignedTx,
}

impl Checked {
    /// Its id (computed when it was checked).
    pub fn id(&self) -> TxId {
        self.id
    }

    /// The transaction.
    pub fn tx(&self) -> &SignedTx {
        &self.tx
    }

    /// The id and the transaction.
    pub fn into_parts(self) -> (TxId, SignedTx) {
        (self.id, self.tx)
    }

    /// For [`super::verify::check_batch_owned`], which checked it.
    pub(crate) fn assume_checked(id: TxId, tx: SignedTx) -> Self {
        Self { id, tx }
    }
}

/// Why a transaction is refused before it is even placed in a context's DAG. Each is a
/// peer's fault (or a forgery), never a local problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// More bytes than [`MAX_TX_BYTES`].
    #[error("transaction of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a transaction (or trailing bytes).
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// A limit of its shape is exceeded.
    #[error("transaction {id:?}: {what}")]
    Shape {
        /// The transaction.
        id: TxId,
        /// What is wrong.
        what: String,
    },
    /// The signature is not the author's over this transaction.
    #[error("transaction {0:?}: the signature is not its author's")]
    BadSignature(TxId),
}

impl TxError {
    /// The id of the transaction it is about, when it was computed.
    pub fn tx_id(&self) -> Option<TxId> {
        match self {
            TxError::Shape { id, .. } | TxError::BadSignature(id) => Some(*id),
            TxError::TooLarge { .. } | TxError::Malformed(_) => None,
        }
    }
}

impl SignedTx {
    /// The transaction's id.
    pub fn id(&self) -> TxId {
        self.tx.id()
    }

    /// Its wire form.
    pub fn encode(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("encoding into memory cannot fail")
    }

    /// Decodes one transaction, refusing more than [`MAX_TX_BYTES`] before decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        if bytes.len() > MAX_TX_BYTES {
            return Err(TxError::TooLarge {
                len: bytes.len(),
                max: MAX_TX_BYTES,
            });
        }
        Self::try_from_slice(bytes).map_err(|e| TxError::Malformed(e.to_string()))
    }

    /// Checks its shape against the limits and its signature against its author; returns
    /// its id. Every transaction passes here (or through [`super::verify::check_batch`],
    /// which gives the same verdicts) before it can be placed in a DAG.
    pub fn check(&self) -> Result<TxId, TxError> {
        let id = self.check_shape()?;
        if !self.signature_is_valid(&id) {
            return Err(TxError::BadSignature(id));
        }
        Ok(id)
    }

    /// [`SignedTx::check`], keeping the id with the transaction: what
    /// [`super::Dag::insert_checked`] takes.
    pub fn checked(self) -> Result<Checked, TxError> {
        let id = self.check()?;
        Ok(Checked { id, tx: self })
    }

    /// The checks of [`SignedTx::check`] but the signature; returns the id.
    pub(crate) fn check_shape(&self) -> Result<TxId, TxError> {
        let id = self.id();
        let shape = |what: String| Err(TxError::Shape { id, what });
        let tx = &self.tx;
        if tx.parents.len() > MAX_PARENTS {
            return shape(format!(
                "{} parents, at most {MAX_PARENTS} allowed",
                tx.parents.len()
            ));
        }
        let mut sorted = tx.parents.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != tx.parents.len() {
            return shape("a parent is named twice".into());
        }
        match &tx.body {
            TxBody::Payload(data) if data.len() > MAX_PAYLOAD => {
                return shape(format!(
                    "payload of {} bytes, at most {MAX_PAYLOAD}",
                    data.len()
                ))
            }
            TxBody::Encrypted { ciphertext, .. } if ciphertext.len() > MAX_PAYLOAD + TAG_LEN => {
                return shape(format!(
                    "encrypted payload of {} bytes, at most {}",
                    ciphertext.len(),
                    MAX_PAYLOAD + TAG_LEN
                ))
            }
            TxBody::Keys { sealed, .. } if sealed.len() > MAX_GENESIS_MEMBERS => {
                return shape(format!(
                    "{} sealed keys, at most {MAX_GENESIS_MEMBERS}",
                    sealed.len()
                ))
            }
            TxBody::Genesis { members, .. } => {
                if members.len() > MAX_GENESIS_MEMBERS {
                    return shape(format!(
                        "{} members, at most {MAX_GENESIS_MEMBERS}",
                        members.len()
                    ));
                }
                if tx.context != NO_CONTEXT || tx.seq != 0 || !tx.parents.is_empty() {
                    return shape("a genesis has no context, sequence 0 and no parents".into());
                }
            }
            _ if tx.seq == 0 || tx.parents.is_empty() => {
                return shape("only a genesis has sequence 0 or no parents".into());
            }
            _ => {}
        }
        Ok(id)
    }

    /// True if the signature is the author's over `id` (ZIP-215 rules, as in a batch).
    pub(crate) fn signature_is_valid(&self, id: &TxId) -> bool {
        let Ok(key) = ed25519_consensus::VerificationKey::try_from(self.tx.author.0) else {
            return false;
        };
        let signature = ed25519_consensus::Signature::from(self.signature);
        key.verify(&signature, &signed_message(id)).is_ok()
    }
}
