//! The node's side of the control socket: accepting connections, reading requests within
//! their limit, answering them from the node's [`Client`] and what the node's owner
//! recorded ([`ControlServer::record_listen`], [`ControlServer::record_message`]).

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_io::Async;
use futures::future::AbortHandle;
use futures::io::BufReader;
use futures::{AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId};
use serde_json::{json, Value};

use super::MAX_REQUEST_LINE;
use super::{read_request_line, Received, ReceivedLog, Request, RequestLineError, Response};
use crate::blob::BlobId;
use crate::shell::{Client, DownloadUpdate, Runtime};

/// Addresses a ticket carries at most.
pub const TICKET_ADDRESSES: usize = 8;

/// A ticket: `<id>@<addr>,<addr>...`, the line another machine pastes into
/// `sinew blob get` (at most [`TICKET_ADDRESSES`] addresses).
pub fn ticket(id: &BlobId, addresses: &[String]) -> String {
    let usable: Vec<&str> = addresses
        .iter()
        .map(String::as_str)
        .take(TICKET_ADDRESSES)
        .collect();
    if usable.is_empty() {
        id.to_string()
    } else {
        format!("{id}@{}", usable.join(","))
    }
}

/// What the control socket reports besides the node's own state.
#[derive(Debug)]
struct State {
    received: ReceivedLog,
    listen: Vec<String>,
    runtime: &'static str,
    /// The key this node writes in contexts with.
    member_key: Option<libp2p::identity::ed25519::Keypair>,
}

/// Everything a request is answered from.
#[derive(Clone)]
struct Service {
    client: Client,
    state: Arc<Mutex<State>>,
    runtime: Arc<dyn Runtime>,
}

impl Service {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running control socket. Dropping it stops serving and removes the socket file.
pub struct ControlServer {
    service: Service,
    path: PathBuf,
    accept: AbortHandle,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// A listen address of the node, full (with `/p2p/…`), for `status` and tickets.
    pub fn record_listen(&self, address: String) {
        self.service.state().listen.push(address);
    }

    /// The key `context_*` requests create, join and write with (the CLI sets the node's
    /// identity key: a node is invited by its peer id).
    pub fn set_member_key(&self, key: libp2p::identity::ed25519::Keypair) {
        self.service.state().member_key = Some(key);
    }

    /// The listen addresses recorded so far.
    pub fn listen(&self) -> Vec<String> {
        self.service.state().listen.clone()
    }

    /// A gossip message the node received, for `received` (the log is bounded:
    /// [`super::RECEIVED_LOG`], [`super::RECEIVED_LOG_BYTES`]).
    pub fn record_message(&self, message: Received) {
        self.service.state().received.push(message);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the control socket at `path` for the node behind `client`, its tasks on
/// `runtime` (whose name `status` reports). A socket left by a killed process is replaced.
/// The socket is made 0600: only the node's owner may control it (put it in a directory
/// only the owner can enter, so it is never reachable by others, even before the chmod).
pub fn serve(
    path: &Path,
    client: Client,
    runtime: Arc<dyn Runtime>,
    runtime_name: &'static str,
) -> anyhow::Result<ControlServer> {
    let _ = std::fs::remove_file(path);
    let listener = Async::<UnixListener>::bind(path)
        .with_context(|| format!("cannot create control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket {}", path.display()))?;
    let service = Service {
        client,
        state: Arc::new(Mutex::new(State {
            received: ReceivedLog::default(),
            listen: Vec::new(),
            runtime: runtime_name,
            member_key: None,
        })),
        runtime: runtime.clone(),
    };
    let accepting = service.clone();
    let (accept, registration) = AbortHandle::new_pair();
    let accept_loop = async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let service = accepting.clone();
            let spawner = service.runtime.clone();
            spawner.spawn(Box::pin(connection(conn, service)));
        }
    };
    let accept_loop = futures::future::Abortable::new(accept_loop, registration);
    runtime.spawn(Box::pin(async move {
        let _ = accept_loop.await;
    }));
    Ok(ControlServer {
        service,
        path: path.to_path_buf(),
        accept,
    })
}

/// One connection: requests until the client closes it, an I/O error, or an overlong line.
async fn connection(conn: Async<UnixStream>, service: Service) {
    let (read, mut write) = conn.split();
    let mut read = BufReader::new(read);
    loop {
        let line = match read_request_line(&mut read, MAX_REQUEST_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) | Err(RequestLineError::Io(_)) => return,
            Err(e @ RequestLineError::TooLong { .. }) => {
                // The rest of the line is not read: answer and close.
                let _ = send(&mut write, &Response::error(e.to_string())).await;
                return;
            }
        };
        let request = serde_json::from_slice::<Request>(&line);
        let shutdown = matches!(request, Ok(Request::Shutdown));
        let response = match request {
            Ok(Request::BlobGet { id, from, output }) => {
                blob_get(&service, &id, &from, output.as_deref(), &mut write).await
            }
            // Answered below, before the network stops: once it has, the process may end,
            // and with it this task.
            Ok(Request::Shutdown) => Response::ok(json!({})),
            Ok(request) => answer(&service, request).await,
            Err(e) => Response::error(format!("invalid request: {e}")),
        };
        if send(&mut write, &response).await.is_err() {
            return;
        }
        if shutdown {
            let _ = write.flush().await;
            if let Err(e) = service.client.shutdown().await {
                tracing::warn!("shutdown: {e:#}");
            }
            return;
        }
    }
}

/// Writes one JSON line.
async fn send(
    write: &mut (impl AsyncWrite + Unpin),
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

async fn answer(service: &Service, request: Request) -> Response {
    let client = &service.client;
    let result: anyhow::Result<Value> = async {
        Ok(match request {
            Request::Status { topic } => {
                let status = client.network_status().await?;
                let mesh = match &topic {
                    Some(t) => Some(client.mesh_peer_count(t).await?),
                    None => None,
                };
                let (listen, runtime) = {
                    let state = service.state();
                    (state.listen.clone(), state.runtime)
                };
                json!({
                    "peer_id": status.local_peer_id.to_string(),
                    "runtime": runtime,
                    "listen": listen,
                    "peers": status.connected_peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "topics": status.topics,
                    "kad_server": status.kad_server,
                    "kad_peers": status.kad_peers,
                    "mesh": mesh,
                })
            }
            Request::Publish { topic, data } => {
                let id = client.publish(&topic, data.into_bytes()).await?;
                json!({ "id": hex::encode(id) })
            }
            Request::Subscribe { topic } => json!({ "new": client.subscribe(&topic).await? }),
            Request::Received { topic } => {
                let state = service.state();
                let list: Vec<&Received> = state
                    .received
                    .iter()
                    .filter(|r| topic.as_ref().is_none_or(|t| *t == r.topic))
                    .collect();
                serde_json::to_value(list)?
            }
            Request::Dial { address } => {
                let address: Multiaddr = address.parse().context("invalid address")?;
                json!({ "peer": client.dial(address).await?.to_string() })
            }
            Request::Shutdown => bail!("shutdown is answered before the network stops"),
            Request::BlobAdd { path } => {
                require_absolute("blob_add path", &path)?;
                let size = std::fs::metadata(&path)
                    .with_context(|| format!("cannot read {path}"))?
                    .len();
                let id = client.add_blob_file(&path).await?;
                announce_in_background(service, id);
                let listen = service.state().listen.clone();
                json!({ "id": id.to_string(), "size": size, "ticket": ticket(&id, &listen) })
            }
            Request::BlobLs => {
                let list: Vec<Value> = client
                    .list_blobs()
                    .await?
                    .into_iter()
                    .map(|b| {
                        json!({ "id": b.id.to_string(), "size": b.size, "verified": b.verified, "complete": b.complete })
                    })
                    .collect();
                Value::Array(list)
            }
            Request::BlobRm { id } => {
                let id = parse_id(&id)?;
                json!({ "existed": client.delete_blob(id).await? })
            }
            Request::BlobGet { .. } => bail!("blob_get is served with its progress lines"),
            request @ (Request::ContextCreate
            | Request::ContextInvite { .. }
            | Request::ContextJoin { .. }
            | Request::ContextTx { .. }
            | Request::ContextLog { .. }
            | Request::ContextStatus { .. }
            | Request::ContextSync { .. }) => {
                let key = service.state().member_key.clone();
                super::contexts::answer(client, key, &request).await?
            }
        })
    }
    .await;
    match result {
        Ok(value) => Response::ok(value),
        Err(e) => Response::error(format!("{e:#}")),
    }
}

fn parse_id(id: &str) -> anyhow::Result<BlobId> {
    id.parse()
        .with_context(|| format!("invalid blob id {id:?}: 64 hex digits expected"))
}

/// Refuses a path that is not absolute: the node would resolve it against its own working
/// directory, which is not the caller's.
fn require_absolute(what: &str, path: &str) -> anyhow::Result<()> {
    if !Path::new(path).is_absolute() {
        bail!("{what} {path:?} is not absolute: the node does not know the caller's working directory; send an absolute path");
    }
    Ok(())
}

/// Starts announcing `id` without making the caller wait for the DHT.
fn announce_in_background(service: &Service, id: BlobId) {
    let client = service.client.clone();
    service.runtime.spawn(Box::pin(async move {
        match client.announce_blob(id).await {
            Ok(()) => tracing::info!(%id, "blob announced in the DHT"),
            Err(err) => {
                tracing::warn!(%id, %err, "cannot announce the blob (it is still served to peers that ask)")
            }
        }
    }));
}

fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// `blob_get`: connects to the given providers, downloads with progress lines on
/// `write`, exports the blob, and announces it (this node is a provider now).
async fn blob_get(
    service: &Service,
    id: &str,
    from: &[String],
    output: Option<&str>,
    write: &mut (impl AsyncWrite + Unpin),
) -> Response {
    let client = &service.client;
    let result: anyhow::Result<Value> = async {
        let id = parse_id(id)?;
        if let Some(output) = output {
            require_absolute("blob_get output", output)?;
        }
        let connected = client.network_status().await?.connected_peers;
        let mut providers = Vec::new();
        let mut failures = Vec::new();
        for address in from {
            let address: Multiaddr = address
                .parse()
                .with_context(|| format!("invalid address {address:?}"))?;
            let peer = peer_of(&address).with_context(|| {
                format!("provider address {address} must end in /p2p/<peer id>")
            })?;
            if connected.contains(&peer) {
                providers.push(peer);
                continue;
            }
            match client.dial(address.clone()).await {
                Ok(peer) => providers.push(peer),
                Err(err) => failures.push(err.to_string()),
            }
        }
        providers.sort();
        providers.dedup();
        if !from.is_empty() && providers.is_empty() {
            bail!(
                "could not reach any of the given providers: {}",
                failures.join("; ")
            );
        }
        let started = service.runtime.now();
        let mut download = client.download_blob(id, providers).await?;
        let mut last_line: Option<Instant> = None;
        while let Some(update) = download.next().await {
            match update {
                // The CLI redraws at most ten times a second.
                DownloadUpdate::Progress(p)
                    if last_line.is_none_or(|at| {
                        service.runtime.now() >= at + Duration::from_millis(100)
                    }) =>
                {
                    last_line = Some(service.runtime.now());
                    let line = json!({ "progress": {
                        "verified": p.verified, "size": p.size, "providers": p.providers,
                    }});
                    // A CLI that went away does not stop the download.
                    let _ = send(write, &line).await;
                }
                DownloadUpdate::Downloaded(done) => {
                    let secs = (service.runtime.now() - started).as_secs_f64();
                    if let Some(output) = output {
                        client.export_blob(id, output).await?;
                    }
                    announce_in_background(service, id);
                    return Ok(json!({
                        "id": id.to_string(), "size": done.size, "received": done.received,
                        "output": output, "seconds": secs,
                    }));
                }
                DownloadUpdate::Failed(err) => return Err(err.into()),
                _ => {}
            }
        }
        bail!("the node stopped during the download")
    }
    .await;
    match result {
        Ok(value) => Response::ok(value),
        Err(e) => Response::error(format!("{e:#}")),
    }
}
