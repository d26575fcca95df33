//! The driver's context commands: each is a node command; what changes the store is
//! answered once durable.

use super::persist::DurableReply;
use super::Driver;
use crate::shell::client::{ContextCommand, ContextInfo, Error, LogEntry};
use crate::sync::contexts;

impl Driver {
    pub(super) fn handle_context_command(&mut self, command: ContextCommand) {
        match command {
            ContextCommand::Create(key, members, app, reply) => {
                match self.node.create_context(key, members, app) {
                    Ok(id) => self.when_durable(DurableReply::other(reply, id)),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            ContextCommand::Invite(context, invitee, role, reply) => {
                let mut addresses: Vec<libp2p::Multiaddr> =
                    self.swarm.external_addresses().cloned().collect();
                addresses.extend(self.swarm.listeners().cloned());
                addresses.retain(|a| !a.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified())));
                match self.node.invite(&context, invitee, role, addresses) {
                    Ok((_, invite)) => self.when_durable(DurableReply::other(reply, invite)),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            ContextCommand::Join(invite, key, reply) => {
                match self.node.join_context(invite.context, key, [invite.peer]) {
                    Ok(()) => self.when_durable(DurableReply::other(reply, ())),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            ContextCommand::Submit(context, body, reply) => {
                match self.node.submit(&context, body) {
                    Ok(id) => self.when_durable(DurableReply::other(reply, id)),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            ContextCommand::Info(context, reply) => {
                let _ = reply.send(self.context_info(context));
            }
            ContextCommand::Log(context, offset, limit, reply) => {
                let log = match self.node.context_txs(&context, offset, limit) {
                    Ok(txs) if !txs.is_empty() => Ok(txs
                        .into_iter()
                        .map(|tx| LogEntry {
                            id: tx.id(),
                            payload: self.node.context_payload(&context, &tx),
                            tx,
                        })
                        .collect()),
                    Ok(_) if self.node.context_member_key(&context).is_some() => Ok(Vec::new()),
                    Ok(_) => Err(contexts::Error::UnknownContext(context).into()),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(log);
            }
            ContextCommand::List(reply) => {
                let _ = reply.send(Ok(self.node.contexts().copied().collect()));
            }
            ContextCommand::Sync(context, peer, reply) => {
                let _ = reply.send(self.node.sync_context(&context, peer).map_err(Error::from));
            }
            ContextCommand::Leave(context, reply) => match self.node.leave_context(&context) {
                Ok(()) => self.when_durable(DurableReply::other(reply, ())),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
        }
    }

    #[allow(clippy::result_large_err)] // the error goes straight into a reply
    fn context_info(&self, context: crate::sync::ContextId) -> Result<ContextInfo, Error> {
        let member_key = self
            .node
            .context_member_key(&context)
            .ok_or(contexts::Error::UnknownContext(context))?;
        let syncing = self.node.is_syncing(&context);
        let catch_up = self.node.catch_up_progress(&context);
        Ok(match self.node.context(&context) {
            Some(dag) => {
                let membership = dag.membership();
                ContextInfo {
                    id: context,
                    member_key,
                    txs: dag.len() as u64,
                    heads: dag.heads().iter().copied().collect(),
                    heads_digest: Some(dag.heads_digest()),
                    members: membership.members.iter().map(|(k, r)| (*k, *r)).collect(),
                    app: membership.app,
                    syncing,
                    catch_up,
                    equivocations: dag.equivocations().len(),
                }
            }
            None => ContextInfo {
                id: context,
                member_key,
                txs: 0,
                heads: Vec::new(),
                heads_digest: None,
                members: Vec::new(),
                app: None,
                syncing,
                catch_up,
                equivocations: 0,
            },
        })
    }
}
