//! Invitations: what an admin hands a new member out of band (a string) so that it can
//! join a context — the context, who is invited, a member to catch up from and its
//! addresses, signed by the admin who added the invitee.
//!
//! The token proves who wrote it, not that the invitee is a member: that is the DAG's to
//! say, once the history (with the admin's `AddMember`) has arrived by catch-up.
//!
//! ```
//! use libp2p_identity::ed25519;
//! use sinew_core::sync::{AuthorKey, Invite, TxId};
//!
//! let admin = ed25519::Keypair::generate();
//! let invitee = AuthorKey::from(&ed25519::Keypair::generate().public());
//! let peer = libp2p_identity::PeerId::random();
//! let addr = "/ip4/127.0.0.1/tcp/4001".parse()?;
//! let invite = Invite::new(&admin, TxId([7; 32]), invitee, peer, vec![addr]);
//! let token = invite.to_string();
//! let back: Invite = token.parse()?;
//! assert_eq!(back, invite);
//! assert!(back.is_signed_by_admin());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use libp2p_identity::{ed25519, PeerId};
use multiaddr::Multiaddr;

use super::tx::{AuthorKey, ContextId, TxId};

/// Addresses an invitation carries at most.
pub const MAX_INVITE_ADDRESSES: usize = 8;
/// The longest token accepted, in characters.
pub const MAX_INVITE_LEN: usize = 4096;

const PREFIX: &str = "sinew-invite1:";
const DOMAIN: &[u8] = b"sinew/sync/invite/1";

/// An invitation to a context. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The context.
    pub context: ContextId,
    /// The member key invited.
    pub invitee: AuthorKey,
    /// A member to catch up from (the inviting node).
    pub peer: PeerId,
    /// Where to reach it.
    pub addresses: Vec<Multiaddr>,
    /// The admin who signed the invitation.
    pub admin: AuthorKey,
    /// The admin's signature over everything above.
    pub signature: [u8; 64],
}

#[derive(BorshSerialize, BorshDeserialize)]
struct Body {
    context: [u8; 32],
    invitee: [u8; 32],
    peer: Vec<u8>,
    addresses: Vec<Vec<u8>>,
    admin: [u8; 32],
}

/// Why a token is not an invitation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Sinew invitation: {0}")]
pub struct InviteError(String);

impl Invite {
    /// An invitation to `context` for `invitee`, reachable through `peer` at `addresses`
    /// (at most [`MAX_INVITE_ADDRESSES`] are kept), signed by `admin`.
    pub fn new(
        admin: &ed25519::Keypair,
        context: ContextId,
        invitee: AuthorKey,
        peer: PeerId,
        mut addresses: Vec<Multiaddr>,
    ) -> Self {
        addresses.truncate(MAX_INVITE_ADDRESSES);
        let mut invite = Self {
            context,
            invitee,
            peer,
            addresses,
            admin: AuthorKey::from(&admin.public()),
            signature: [0; 64],
        };
        let message = invite.signed_message();
        invite.signature = admin
            .sign(&message)
            .try_into()
            .expect("an ed25519 signature is 64 bytes");
        invite
    }

    fn body(&self) -> Body {
        Body {
            context: self.context.0,
            invitee: self.invitee.0,
            peer: self.peer.to_bytes(),
            addresses: self.addresses.iter().map(|a| a.to_vec()).collect(),
            admin: self.admin.0,
        }
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut message = DOMAIN.to_vec();
        message.extend(borsh::to_vec(&self.body()).expect("encoding into memory cannot fail"));
        message
    }

    /// True if the signature is the named admin's (whether that key is an admin of the
    /// context is for its DAG to say).
    pub fn is_signed_by_admin(&self) -> bool {
        let Ok(key) = ed25519_consensus::VerificationKey::try_from(self.admin.0) else {
            return false;
        };
        key.verify(
            &ed25519_consensus::Signature::from(self.signature),
            &self.signed_message(),
        )
        .is_ok()
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = borsh::to_vec(&self.body()).expect("encoding into memory cannot fail");
        bytes.extend_from_slice(&self.signature);
        write!(f, "{PREFIX}{}", hex::encode(bytes))
    }
}

impl FromStr for Invite {
    type Err = InviteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |what: &str| InviteError(what.to_string());
        let s = s.trim();
        if s.len() > MAX_INVITE_LEN {
            return Err(err("longer than MAX_INVITE_LEN"));
        }
        let hex_part = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| err("it does not start with sinew-invite1:"))?;
        let bytes = hex::decode(hex_part).map_err(|_| err("not hexadecimal"))?;
        let (body, signature) = bytes
            .split_at_checked(bytes.len().saturating_sub(64))
            .ok_or_else(|| err("too short"))?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| err("too short"))?;
        let body = Body::try_from_slice(body).map_err(|_| err("malformed"))?;
        if body.addresses.len() > MAX_INVITE_ADDRESSES {
            return Err(err("too many addresses"));
        }
        let addresses = body
            .addresses
            .into_iter()
            .map(Multiaddr::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| err("a malformed address"))?;
        let peer = PeerId::from_bytes(&body.peer).map_err(|_| err("a malformed peer id"))?;
        let invite = Self {
            context: TxId(body.context),
            invitee: AuthorKey(body.invitee),
            peer,
            addresses,
            admin: AuthorKey(body.admin),
            signature,
        };
        if !invite.is_signed_by_admin() {
            return Err(err("its signature is not its admin's"));
        }
        Ok(invite)
    }
}
