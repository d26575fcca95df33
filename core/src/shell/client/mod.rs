//! [`Client`]: the cloneable handle applications use, and [`Event`]s.
//!
//! Every method sends a command to the driver task and waits for its answer; the client
//! is cheap to clone and can be used from any task. Events arrive on one bounded
//! [`EventStream`]: when the application falls behind by more than
//! [`Config::event_buffer`](super::Config::event_buffer) events, newer events
//! are dropped (never older ones, never silently) and the next event delivered is
//! [`Event::Lagged`] with the number missed. The node itself never blocks on a slow
//! application.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, Stream};
use libp2p::{Multiaddr, PeerId, StreamProtocol};

use super::download::BlobDownload;
pub use super::error::Error;
use super::stream::SinewStream;
use crate::blob::{self, BlobId};

/// Content up to this size is hashed (and, for a disk store, copied) on the caller's task
/// by [`Client::add_blob`]; larger content on a thread of its own. 1 MiB.
pub const INLINE_IMPORT: usize = 1 << 20;

mod contexts;
pub(crate) use contexts::ContextCommand;
pub use contexts::{ContextInfo, LogEntry};

/// A snapshot of the node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Our peer id.
    pub local_peer_id: PeerId,
    /// Addresses we listen on.
    pub listen_addrs: Vec<Multiaddr>,
    /// External addresses confirmed for us.
    pub external_addrs: Vec<Multiaddr>,
    /// Connected peers.
    pub connected_peers: Vec<PeerId>,
    /// Topics we are subscribed to.
    pub topics: Vec<String>,
    /// Whether Kademlia answers queries.
    pub kad_server: bool,
    /// Peers in the Kademlia routing table.
    pub kad_peers: usize,
}

/// One blob in the local store, as [`Client::list_blobs`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob.
    pub id: BlobId,
    /// Its size in bytes.
    pub size: u64,
    /// Verified bytes present (the size, once complete).
    pub verified: u64,
    /// Whether every byte is present and verified.
    pub complete: bool,
}

/// What happened on the network.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// We listen on a new address.
    ListeningOn {
        /// The address, with its real port.
        address: Multiaddr,
    },
    /// The first connection to a peer is up.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// The remote address of that connection.
        address: Multiaddr,
    },
    /// The last connection to a peer is down.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer subscribed to a topic.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A peer unsubscribed from a topic.
    Unsubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A message on a topic we subscribed to (signed by its author; validated).
    Message {
        /// Its author.
        source: Option<PeerId>,
        /// The peer that forwarded it to us.
        propagated_by: PeerId,
        /// The topic.
        topic: String,
        /// The payload.
        data: Bytes,
        /// Its id (author ‖ sequence number).
        id: Vec<u8>,
    },
    /// A peer opened a stream for a protocol we accept.
    StreamOpened {
        /// The stream, framed.
        stream: SinewStream,
    },
    /// Something from the blob protocol.
    Blob(blob::Event),
    /// A peer broke a protocol rule; unless `node::Config::disconnect_misbehaving` is
    /// off, the node disconnected it.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
    /// A DHT query for a blob's providers finished.
    BlobProvidersFound {
        /// The blob.
        id: BlobId,
        /// Every provider found (without us), in peer id order.
        providers: Vec<PeerId>,
    },
    /// About contexts: transactions applied (durable, causal order per context), catch-up
    /// progress and its end, rejected transactions.
    Sync(crate::sync::contexts::Event),
    /// The application fell behind: this many events were dropped before this one.
    Lagged {
        /// How many.
        missed: u64,
    },
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What the application asks of the driver, by area.
#[derive(Debug)]
pub(crate) enum Command {
    /// Connections, listening, gossip, status, streams.
    Net(NetCommand),
    /// Blobs.
    Blob(BlobCommand),
    /// Contexts.
    Context(Box<ContextCommand>),
    Shutdown(Reply<()>),
}

#[derive(Debug)]
pub(crate) enum NetCommand {
    Dial(Multiaddr, Reply<PeerId>),
    ListenOn(Multiaddr, Reply<Multiaddr>),
    Bootstrap(Reply<()>),
    Subscribe(String, Reply<bool>),
    Unsubscribe(String, Reply<bool>),
    Publish(String, Bytes, Reply<Vec<u8>>),
    PeerCount(Reply<usize>),
    MeshPeers(String, Reply<Vec<PeerId>>),
    SubscribedPeers(String, Reply<Vec<PeerId>>),
    Status(Reply<Status>),
    Accept(StreamProtocol, Reply<()>),
}

#[derive(Debug)]
pub(crate) enum BlobCommand {
    AddBlob(Bytes, blob::Outboard, Reply<BlobId>),
    Importer(Reply<Option<super::fs_store::Importer>>),
    CommitImport(super::fs_store::PreparedImport, Reply<BlobId>),
    ExportSource(BlobId, Reply<Option<super::node_store::ExportSource>>),
    DeleteBlob(BlobId, Reply<bool>),
    ListBlobs(Reply<Vec<BlobInfo>>),
    Download(BlobId, Vec<PeerId>, super::download::Watcher, Reply<()>),
    RequestBlob(BlobId, Vec<PeerId>, Reply<()>),
    AnnounceBlob(BlobId, Reply<()>),
    QueryBlob(BlobId, Reply<Vec<PeerId>>),
}

impl From<NetCommand> for Command {
    fn from(command: NetCommand) -> Self {
        Command::Net(command)
    }
}

impl From<BlobCommand> for Command {
    fn from(command: BlobCommand) -> Self {
        Command::Blob(command)
    }
}

/// The cloneable handle to a running network node.
#[derive(Clone)]
pub struct Client {
    pub(crate) local: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) control: libp2p_stream::Control,
    pub(crate) open_timeout: Duration,
    pub(crate) max_frame_len: usize,
    pub(crate) runtime: std::sync::Arc<dyn super::Runtime>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Client {
    async fn call<T, C: Into<Command>>(
        &self,
        make: impl FnOnce(Reply<T>) -> C,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .clone()
            .send(make(tx).into())
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// Our peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Dials `address` (ending in `/p2p/<peer id>` or not); returns the peer once connected.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, Error> {
        self.call(|r| NetCommand::Dial(address, r)).await
    }

    /// Starts listening on `address`; returns the address actually bound (port 0 resolved).
    pub async fn listen_on(&self, address: Multiaddr) -> Result<Multiaddr, Error> {
        self.call(|r| NetCommand::ListenOn(address, r)).await
    }

    /// Runs a Kademlia bootstrap and waits for it to finish.
    pub async fn bootstrap(&self) -> Result<(), Error> {
        self.call(NetCommand::Bootstrap).await
    }

    /// Subscribes to `topic` (re-announced to every peer on every new connection). Returns
    /// false if already subscribed.
    pub async fn subscribe(&self, topic: &str) -> Result<bool, Error> {
        self.call(|r| NetCommand::Subscribe(topic.to_string(), r))
            .await
    }

    /// Unsubscribes from `topic`. Returns false if not subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> Result<bool, Error> {
        self.call(|r| NetCommand::Unsubscribe(topic.to_string(), r))
            .await
    }

    /// Publishes `data` on `topic`; returns the message id.
    ///
    /// Fails with [`Error::NoPeers`] when no connected peer is subscribed: the
    /// message is never dropped silently.
    pub async fn publish(&self, topic: &str, data: impl Into<Bytes>) -> Result<Vec<u8>, Error> {
        let data = data.into();
        self.call(|r| NetCommand::Publish(topic.to_string(), data, r))
            .await
    }

    /// Connected peers.
    pub async fn peer_count(&self) -> Result<usize, Error> {
        self.call(NetCommand::PeerCount).await
    }

    /// Peers in our gossipsub mesh for `topic`.
    pub async fn mesh_peers(&self, topic: &str) -> Result<Vec<PeerId>, Error> {
        self.call(|r| NetCommand::MeshPeers(topic.to_string(), r))
            .await
    }

    /// How many peers are in our mesh for `topic`.
    pub async fn mesh_peer_count(&self, topic: &str) -> Result<usize, Error> {
        Ok(self.mesh_peers(topic).await?.len())
    }

    /// Connected peers subscribed to `topic`.
    pub async fn subscribed_peers(&self, topic: &str) -> Result<Vec<PeerId>, Error> {
        self.call(|r| NetCommand::SubscribedPeers(topic.to_string(), r))
            .await
    }

    /// A snapshot of the node's state.
    pub async fn network_status(&self) -> Result<Status, Error> {
        self.call(NetCommand::Status).await
    }

    /// Accepts inbound streams of `protocol`; each arrives as [`Event::StreamOpened`].
    pub async fn accept_streams(&self, protocol: StreamProtocol) -> Result<(), Error> {
        self.call(|r| NetCommand::Accept(protocol, r)).await
    }

    /// Opens a framed stream to `peer` for `protocol`, dialing it if needed.
    ///
    /// Fails within [`Config::open_stream_timeout`](super::Config) rather
    /// than hanging on a stale connection; on failure it retries once (which redials when
    /// the connection is gone).
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<SinewStream, Error> {
        let mut last = String::new();
        for _attempt in 0..2 {
            let mut control = self.control.clone();
            let wanted = protocol.clone();
            let open = async move { control.open_stream(peer, wanted).await };
            let timeout = self.runtime.sleep(self.open_timeout);
            match futures::future::select(Box::pin(open), timeout).await {
                futures::future::Either::Left((Ok(stream), _)) => {
                    let config = crate::framing::Config {
                        max_frame_len: self.max_frame_len,
                    };
                    return Ok(SinewStream::new(peer, protocol, stream, config));
                }
                futures::future::Either::Left((Err(err), _)) => {
                    last = err.to_string();
                    if matches!(err, libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) {
                        break;
                    }
                }
                futures::future::Either::Right(((), _)) => {
                    last = format!("timed out after {:?}", self.open_timeout);
                }
            }
        }
        Err(Error::OpenStream {
            peer,
            protocol: protocol.to_string(),
            reason: last,
        })
    }

    /// Imports `content` as a blob this node provides; returns its id once the blob is
    /// durable (with a disk store: synced, named and committed).
    ///
    /// Hashing and copying happen on the caller's task for small content and on a thread
    /// of their own above [`INLINE_IMPORT`] bytes, never on the node's task.
    pub async fn add_blob(&self, content: impl Into<Bytes>) -> Result<BlobId, Error> {
        let content: Bytes = content.into();
        let small = content.len() <= INLINE_IMPORT;
        match self.call(BlobCommand::Importer).await? {
            Some(importer) => {
                let prepared = if small {
                    importer.prepare_bytes(&content)?
                } else {
                    blocking(&self.runtime, move || importer.prepare_bytes(&content)).await??
                };
                self.call(|r| BlobCommand::CommitImport(prepared, r)).await
            }
            None => {
                let outboard = if small {
                    crate::blob::Outboard::create(&content)
                } else {
                    let c = content.clone();
                    blocking(&self.runtime, move || crate::blob::Outboard::create(&c)).await?
                };
                self.call(|r| BlobCommand::AddBlob(content, outboard, r))
                    .await
            }
        }
    }

    /// Announces in the DHT that this node provides blob `id` (a Kademlia provider record;
    /// every provider of a blob has its own record). Kademlia republishes it every 12 h and
    /// it expires after 48 h unless republished.
    pub async fn announce_blob(&self, id: BlobId) -> Result<(), Error> {
        self.call(|r| BlobCommand::AnnounceBlob(id, r)).await
    }

    /// Finds every provider of blob `id` in the DHT.
    pub async fn query_blob(&self, id: BlobId) -> Result<Vec<PeerId>, Error> {
        self.call(|r| BlobCommand::QueryBlob(id, r)).await
    }

    /// Starts downloading blob `id` from `providers` — or, with none given, from every
    /// provider the DHT knows; the outcome arrives as [`Event::Blob`]
    /// (`blob::Event::Downloaded` or `blob::Event::DownloadFailed`).
    pub async fn request_blob(&self, id: BlobId, providers: Vec<PeerId>) -> Result<(), Error> {
        self.call(|r| BlobCommand::RequestBlob(id, providers, r))
            .await
    }

    /// The complete, verified content of blob `id`, if this node has all of it (read on a
    /// thread of its own with a disk store).
    pub async fn get_blob(&self, id: BlobId) -> Result<Option<Bytes>, Error> {
        let Some(source) = self.call(|r| BlobCommand::ExportSource(id, r)).await? else {
            return Ok(None);
        };
        match source {
            super::node_store::ExportSource::Memory(bytes) => Ok(Some(bytes)),
            super::node_store::ExportSource::File(file, size) => {
                let len = usize::try_from(size).map_err(|_| {
                    Error::Store(crate::blob::store::StoreError::Io(format!(
                        "blob {id} does not fit in memory: use export_blob"
                    )))
                })?;
                let read = blocking(&self.runtime, move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, 0)
                        .map(|()| Bytes::from(buf))
                        .map_err(|e| {
                            crate::blob::store::StoreError::Io(format!("reading blob {id}: {e}"))
                        })
                })
                .await??;
                Ok(Some(read))
            }
        }
    }

    /// Imports the file at `path` into the store and returns its id (equal to what `b3sum`
    /// prints for the file).
    ///
    /// With a disk store the file is copied and hashed on a thread of its own, in one pass
    /// with bounded memory, while the node keeps running; the blob becomes visible only
    /// once its copy and outboard are durable. With a memory store the file is read into
    /// memory.
    pub async fn add_blob_file(&self, path: impl Into<PathBuf>) -> Result<BlobId, Error> {
        let path = path.into();
        match self.call(BlobCommand::Importer).await? {
            Some(importer) => {
                let prepared = blocking(&self.runtime, move || importer.prepare(&path)).await??;
                self.call(|r| BlobCommand::CommitImport(prepared, r)).await
            }
            None => {
                let content = blocking(&self.runtime, move || {
                    std::fs::read(&path).map_err(|e| {
                        crate::blob::store::StoreError::Io(format!(
                            "cannot read {}: {e}",
                            path.display()
                        ))
                    })
                })
                .await??;
                self.add_blob(content).await
            }
        }
    }

    /// Writes the complete blob `id` to the file `dest`, re-hashing it on the way: `dest`
    /// appears (atomically, by rename) only if the bytes hash to `id`. Returns the size.
    ///
    /// Fails with [`Error::BlobNotComplete`] unless the store holds all of it.
    pub async fn export_blob(&self, id: BlobId, dest: impl Into<PathBuf>) -> Result<u64, Error> {
        let dest = dest.into();
        let source = self
            .call(|r| BlobCommand::ExportSource(id, r))
            .await?
            .ok_or(Error::BlobNotComplete(id))?;
        let exported = blocking(&self.runtime, move || match source {
            super::node_store::ExportSource::File(file, size) => {
                super::export::export_verified_file(&file, size, &id, &dest)
            }
            super::node_store::ExportSource::Memory(bytes) => {
                super::fs_store::export_verified_bytes(&bytes, &id, &dest)
            }
        })
        .await??;
        Ok(exported)
    }

    /// Deletes `id` from the store, cancels its download if one runs, and stops announcing
    /// it. Returns whether the store had it. (Provider records other peers already hold
    /// expire after [`Config::provider_record_ttl`](super::Config); a peer
    /// that asks meanwhile is answered "not found" and moves on to other providers.)
    pub async fn delete_blob(&self, id: BlobId) -> Result<bool, Error> {
        self.call(|r| BlobCommand::DeleteBlob(id, r)).await
    }

    /// Every blob in the store, complete or partial, in id order.
    pub async fn list_blobs(&self) -> Result<Vec<BlobInfo>, Error> {
        self.call(BlobCommand::ListBlobs).await
    }

    /// Downloads `id` from `providers` (or, if empty, from every provider the DHT
    /// knows) and returns a handle that reports progress and the outcome.
    ///
    /// Returns once the download has started; a blob already complete in the store ends
    /// at once with `received: 0`. Fails if no provider is given or found.
    pub async fn download_blob(
        &self,
        id: BlobId,
        providers: Vec<PeerId>,
    ) -> Result<BlobDownload, Error> {
        let (handle, watcher) = BlobDownload::new(id);
        self.call(|r| BlobCommand::Download(id, providers, watcher, r))
            .await?;
        Ok(handle)
    }

    /// Stops the node: connections close, the event stream ends.
    pub async fn shutdown(&self) -> Result<(), Error> {
        match self.call(Command::Shutdown).await {
            Ok(()) | Err(Error::Shutdown) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Runs blocking file work on the runtime's blocking threads (imports and exports are rare
/// and long; the node's task must not wait for the disk).
async fn blocking<T: Send + 'static>(
    runtime: &std::sync::Arc<dyn super::Runtime>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = oneshot::channel();
    runtime.spawn_blocking(Box::new(move || {
        let _ = tx.send(work());
    }));
    rx.await.map_err(|_| Error::Shutdown)
}

/// The node's events. Ends when the node shuts down.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

/// The driver's side of the event channel: never blocks; counts what it drops.
#[derive(Debug)]
pub(crate) struct EventSender {
    tx: mpsc::Sender<Event>,
    missed: u64,
}

impl EventSender {
    pub(crate) fn channel(capacity: usize) -> (Self, EventStream) {
        // mpsc gives each sender one extra slot; capacity 0 would still hold one event.
        let (tx, rx) = mpsc::channel(capacity.saturating_sub(1));
        (Self { tx, missed: 0 }, EventStream { rx })
    }

    pub(crate) fn send(&mut self, event: Event) {
        if self.missed > 0 {
            match self.tx.try_send(Event::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => self.missed = 0,
                Err(e) if e.is_disconnected() => return,
                Err(_) => {
                    self.missed += 1;
                    return;
                }
            }
        }
        if let Err(e) = self.tx.try_send(event) {
            if e.is_full() {
                self.missed += 1;
            }
        }
    }
}

/// Topics as a sorted set of strings, for status.
pub(crate) fn topic_names<'a>(
    topics: impl Iterator<Item = &'a libp2p::gossipsub::TopicHash>,
) -> Vec<String> {
    topics
        .map(|t| t.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn a_slow_consumer_gets_lagged_instead_of_blocking_the_node() {
        let (mut tx, mut rx) = EventSender::channel(3);
        let peer = PeerId::random();
        for _ in 0..10 {
            tx.send(Event::PeerDisconnected { peer });
        }
        // The buffer holds the first three; the other seven were dropped and counted.
        let mut got = Vec::new();
        while let Ok(e) = rx.rx.try_recv() {
            got.push(e);
        }
        assert_eq!(got.len(), 3);
        tx.send(Event::PeerConnected {
            peer,
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
        });
        let lagged = futures::executor::block_on(rx.next()).unwrap();
        assert!(matches!(lagged, Event::Lagged { missed: 7 }), "{lagged:?}");
        let next = futures::executor::block_on(rx.next()).unwrap();
        assert!(matches!(next, Event::PeerConnected { .. }));
    }
}
