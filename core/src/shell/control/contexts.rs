//! The control socket's context requests (`context_*`), answered from the node's client
//! with the member key its owner set ([`super::ControlServer::set_member_key`]).

use anyhow::{bail, Context};
use libp2p::identity::ed25519;
use serde_json::{json, Value};

use super::{Request, MAX_LOG_ENTRIES};
use crate::shell::client::{ContextInfo, LogEntry};
use crate::shell::Client;
use crate::sync::{AuthorKey, ContextId, Invite, Role, TxBody, TxId};

/// Answers one context request.
pub(super) async fn answer(
    client: &Client,
    key: Option<ed25519::Keypair>,
    request: &Request,
) -> anyhow::Result<Value> {
    let key = || {
        key.clone()
            .context("this node has no member key for contexts")
    };
    Ok(match request {
        Request::ContextCreate => {
            let key = key()?;
            let member = AuthorKey::from(&key.public());
            let id = client.create_context(key, vec![], None).await?;
            json!({ "context": hex::encode(id.0), "member": member.to_hex() })
        }
        Request::ContextInvite {
            context,
            member,
            role,
        } => {
            let context = parse_context(context)?;
            let invitee = parse_member(member)?;
            let role = match role.as_deref() {
                None | Some("writer") => Role::Writer,
                Some("admin") => Role::Admin,
                Some(other) => bail!("unknown role {other:?}: writer or admin"),
            };
            let invite = client.invite(context, invitee, role).await?;
            json!({ "invite": invite.to_string(), "member": invitee.to_hex() })
        }
        Request::ContextJoin { invite } => {
            let invite: Invite = invite.parse()?;
            let key = key()?;
            if AuthorKey::from(&key.public()) != invite.invitee {
                bail!(
                    "this invitation is for member {}, not for this node ({})",
                    invite.invitee.to_hex(),
                    AuthorKey::from(&key.public()).to_hex()
                );
            }
            let context = invite.context;
            client.join_context(invite, key).await?;
            json!({ "context": hex::encode(context.0) })
        }
        Request::ContextTx { context, data } => {
            let context = parse_context(context)?;
            let id = client
                .submit(context, TxBody::Payload(data.clone().into_bytes()))
                .await?;
            json!({ "id": hex::encode(id.0) })
        }
        Request::ContextLog {
            context,
            offset,
            limit,
        } => {
            let context = parse_context(context)?;
            let limit = limit.unwrap_or(100).min(MAX_LOG_ENTRIES);
            let log = client.context_log(context, *offset, limit).await?;
            Value::Array(log.iter().map(entry).collect())
        }
        Request::ContextStatus { context } => match context {
            Some(context) => info(&client.context_info(parse_context(context)?).await?),
            None => {
                let mut all = Vec::new();
                for id in client.contexts().await? {
                    all.push(info(&client.context_info(id).await?));
                }
                Value::Array(all)
            }
        },
        Request::ContextSync { context } => {
            client.sync_context(parse_context(context)?, None).await?;
            json!({})
        }
        _ => bail!("not a context request"),
    })
}

fn parse_context(text: &str) -> anyhow::Result<ContextId> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .with_context(|| format!("invalid context id {text:?}: 64 hex digits expected"))?;
    Ok(TxId(bytes))
}

/// A member key in hex, or a peer id whose key it is.
fn parse_member(text: &str) -> anyhow::Result<AuthorKey> {
    if let Ok(key) = text.parse::<AuthorKey>() {
        return Ok(key);
    }
    let peer: libp2p::PeerId = text.parse().with_context(|| {
        format!("{text:?} is neither a member key (64 hex digits) nor a peer id")
    })?;
    AuthorKey::from_peer_id(&peer)
        .with_context(|| format!("peer id {peer} does not carry an ed25519 key"))
}

fn entry(e: &LogEntry) -> Value {
    let (id, tx) = (&e.id, &e.tx);
    let (kind, data) = match &tx.tx.body {
        TxBody::Genesis { members, .. } => ("genesis", json!({ "members": members.len() })),
        TxBody::Payload(bytes) => ("payload", json!(String::from_utf8_lossy(bytes))),
        TxBody::AddMember { key, role } => (
            "add_member",
            json!({ "member": key.to_hex(), "role": format!("{role:?}").to_lowercase() }),
        ),
        TxBody::RemoveMember { key } => ("remove_member", json!({ "member": key.to_hex() })),
        TxBody::SetApp { app } => ("set_app", json!(app.to_string())),
        TxBody::Keys { sealed, .. } => ("keys", json!({ "members": sealed.len() })),
        TxBody::Encrypted { .. } => (
            "payload",
            match &e.payload {
                Some(bytes) => json!(String::from_utf8_lossy(bytes)),
                None => json!(null),
            },
        ),
    };
    json!({
        "id": hex::encode(id.0),
        "author": tx.tx.author.to_hex(),
        "seq": tx.tx.seq,
        "parents": tx.tx.parents.len(),
        "kind": kind,
        "data": data,
    })
}

fn info(info: &ContextInfo) -> Value {
    json!({
        "context": hex::encode(info.id.0),
        "member": info.member_key.to_hex(),
        "txs": info.txs,
        "heads": info.heads.iter().map(|h| hex::encode(h.0)).collect::<Vec<_>>(),
        "heads_digest": info.heads_digest.map(hex::encode),
        "members": info.members.iter().map(|(k, r)| json!({ "member": k.to_hex(), "role": format!("{r:?}").to_lowercase() })).collect::<Vec<_>>(),
        "syncing": info.syncing,
        "catch_up": info.catch_up.map(|(received, planned)| json!({ "received": received, "planned": planned })),
        "equivocations": info.equivocations,
    })
}
