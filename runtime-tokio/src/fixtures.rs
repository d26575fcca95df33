//! Data for benchmarks and process tests, written the way a node writes it (a core
//! `Node` on the node's own store), before any process starts. Not part of the API.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use libp2p::identity::ed25519;
use sinew_core::node::{Config, Input, Node, Output};
use sinew_core::shell::FsStore;
use sinew_core::sync::{AuthorKey, ContextId, Role};

/// Founds a context in the store at `store_dir` (a node's `<data-dir>/store`) with a
/// fresh admin key and `member` as a writer, then writes `count` transactions of
/// `payload_len` bytes (the transaction's number in the first 8 bytes, big-endian) as one
/// chain, every one of them durable before this returns: with the genesis and the context
/// key's transaction, `count + 2` transactions. Returns the context and its admin key (to
/// sign invitations with).
pub fn write_context(
    store_dir: &Path,
    count: usize,
    payload_len: usize,
    member: AuthorKey,
) -> anyhow::Result<(ContextId, ed25519::Keypair)> {
    let admin = ed25519::Keypair::generate();
    let store = FsStore::open(store_dir).context("opening the store")?;
    let now = Instant::now();
    let local = libp2p::PeerId::random();
    let mut node = Node::open(local, Config::default(), store, now).context("opening the node")?;
    let ctx = node
        .create_context(admin.clone(), vec![(member, Role::Writer)], None)
        .context("founding the context")?;
    let payload = vec![0x5a; payload_len.max(8)];
    for k in 0..count {
        let mut data = payload.clone();
        data[..8].copy_from_slice(&(k as u64).to_be_bytes());
        node.submit_payload(&ctx, data).context("writing")?;
        if k % 4096 == 0 {
            drain(&mut node, now)?;
        }
    }
    node.persist_all();
    drain(&mut node, now)?;
    while node.persisting().is_some() {
        drain(&mut node, now)?;
    }
    Ok((ctx, admin))
}

/// Runs every persist batch the node hands out until it has nothing more to do.
fn drain(node: &mut Node<FsStore>, now: Instant) -> anyhow::Result<()> {
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return Ok(()),
            Output::Persist(batch) => {
                let done = batch.run();
                if let Err(e) = &done.result {
                    anyhow::bail!("persisting failed: {e}");
                }
                node.handle_input(now, Input::Persisted(done));
            }
            _ => {}
        }
    }
}
