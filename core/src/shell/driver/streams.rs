//! The driver's streams: one small task per libp2p stream of the node, the bounded channel
//! they report through, and the protocols accepted from peers. Pure translation: stream
//! events become [`stream::Input`]s, [`stream::Output`]s become commands to the tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, SinkExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};

use super::stream_task::stream_task;
use crate::pool::BufferPool;
use crate::shell::client::{Error, Event};
use crate::shell::stream::SinewStream;
use crate::shell::Runtime;
use crate::stream::{self, StreamId};
use crate::wire::ProtocolId;

/// Messages from stream tasks to the driver. Bounded: a slow driver stops the readers.
#[derive(Debug)]
pub(super) enum StreamIo {
    Opened(
        StreamId,
        PeerId,
        ProtocolId,
        mpsc::UnboundedSender<StreamCmd>,
    ),
    OpenFailed(StreamId, String),
    Data(StreamId, Bytes),
    Flushed(StreamId),
    /// Bytes of one `Send` were written; more is queued.
    Written(StreamId, usize),
    Finished(StreamId),
    Reset(StreamId),
    /// The stream's task ended: forget its command channel.
    Ended(StreamId),
}

/// What the driver tells a stream task.
#[derive(Debug)]
pub(super) enum StreamCmd {
    Send(Bytes),
    Finish,
    Reset,
}

/// Whose a stream a peer opened is.
pub(super) enum Inbound {
    /// The node's protocol: its input.
    Node(stream::Input),
    /// An accepted application protocol: the event that hands it over.
    App(Event),
}

/// Bytes a stream task reads at once.
const STREAM_READ: usize = 64 * 1024;

/// Stream read buffers kept for reuse when idle (4 MiB).
const IDLE_READ_BUFFERS: usize = 64;

/// Stream I/O messages the channel holds before the readers wait.
const IO_BUFFER: usize = 256;

type Incoming = BoxStream<'static, (PeerId, libp2p::Stream, StreamProtocol)>;

/// The node's streams and the application's accepted protocols.
pub(super) struct Streams {
    runtime: Arc<dyn Runtime>,
    control: libp2p_stream::Control,
    io_tx: mpsc::Sender<StreamIo>,
    /// Stream I/O for the node (the select loop reads it).
    pub(super) io_rx: mpsc::Receiver<StreamIo>,
    /// Each open stream's task.
    tasks: BTreeMap<StreamId, mpsc::UnboundedSender<StreamCmd>>,
    /// Inbound streams of every accepted protocol (the select loop reads it).
    pub(super) incoming: SelectAll<Incoming>,
    accepted: Vec<StreamProtocol>,
    next_inbound: u64,
    /// Read buffers of the stream tasks, reused once the node is done with their bytes.
    read_pool: BufferPool,
    open_timeout: Duration,
    /// Frame limit of the application's streams.
    max_frame_len: usize,
}

impl Streams {
    pub(super) fn new(
        runtime: Arc<dyn Runtime>,
        mut control: libp2p_stream::Control,
        open_timeout: Duration,
        max_frame_len: usize,
    ) -> Self {
        let (io_tx, io_rx) = mpsc::channel(IO_BUFFER);
        let mut incoming = SelectAll::new();
        // Every protocol of the node's own (blobs, catch-up).
        for id in ProtocolId::ALL {
            let protocol = StreamProtocol::new(id.as_str());
            if let Ok(streams) = control.accept(protocol.clone()) {
                incoming.push(
                    streams
                        .map(move |(peer, stream)| (peer, stream, protocol.clone()))
                        .boxed(),
                );
            }
        }
        Self {
            runtime,
            control,
            io_tx,
            io_rx,
            tasks: BTreeMap::new(),
            incoming,
            accepted: Vec::new(),
            next_inbound: 0,
            read_pool: BufferPool::new(STREAM_READ, IDLE_READ_BUFFERS),
            open_timeout,
            max_frame_len,
        }
    }

    /// Carries out what the node asked of a stream.
    pub(super) fn apply(&mut self, out: stream::Output) {
        match out {
            stream::Output::Open {
                stream,
                peer,
                protocol,
            } => self.open(stream, peer, protocol),
            stream::Output::Send { stream, data } => self.command(stream, StreamCmd::Send(data)),
            stream::Output::Finish { stream } => self.command(stream, StreamCmd::Finish),
            stream::Output::Reset { stream } => {
                if let Some(tx) = self.tasks.remove(&stream) {
                    let _ = tx.unbounded_send(StreamCmd::Reset);
                }
            }
        }
    }

    fn command(&self, stream: StreamId, cmd: StreamCmd) {
        if let Some(tx) = self.tasks.get(&stream) {
            let _ = tx.unbounded_send(cmd);
        }
    }

    fn open(&mut self, stream: StreamId, peer: PeerId, protocol: ProtocolId) {
        let mut control = self.control.clone();
        let mut io = self.io_tx.clone();
        let runtime = self.runtime.clone();
        let timeout = self.open_timeout;
        let pool = self.read_pool.clone();
        let task = async move {
            let open = control.open_stream(peer, StreamProtocol::new(protocol.as_str()));
            let sleep = runtime.sleep(timeout);
            let result = match futures::future::select(Box::pin(open), sleep).await {
                futures::future::Either::Left((Ok(s), _)) => Ok(s),
                futures::future::Either::Left((Err(e), _)) => Err(e.to_string()),
                futures::future::Either::Right(_) => Err(format!("timed out after {timeout:?}")),
            };
            match result {
                Ok(s) => {
                    let (cmd_tx, cmd_rx) = mpsc::unbounded();
                    let opened = StreamIo::Opened(stream, peer, protocol, cmd_tx);
                    if io.send(opened).await.is_ok() {
                        stream_task(stream, s, cmd_rx, io, pool).await;
                    }
                }
                Err(reason) => {
                    let _ = io.send(StreamIo::OpenFailed(stream, reason)).await;
                }
            }
        };
        self.runtime.spawn(task.boxed());
    }

    /// A stream a peer opened: the node's (an input) or the application's (an event).
    pub(super) fn inbound(
        &mut self,
        peer: PeerId,
        stream: libp2p::Stream,
        protocol: StreamProtocol,
    ) -> Inbound {
        let ours = ProtocolId::ALL
            .iter()
            .find(|id| id.as_str() == protocol.as_ref())
            .copied();
        let Some(ours) = ours else {
            let config = crate::framing::Config {
                max_frame_len: self.max_frame_len,
            };
            return Inbound::App(Event::StreamOpened {
                stream: SinewStream::new(peer, protocol, stream, config),
            });
        };
        let id = StreamId::inbound(self.next_inbound);
        self.next_inbound += 1;
        let (cmd_tx, cmd_rx) = mpsc::unbounded();
        self.tasks.insert(id, cmd_tx);
        let pool = self.read_pool.clone();
        let task = stream_task(id, stream, cmd_rx, self.io_tx.clone(), pool);
        self.runtime.spawn(task.boxed());
        Inbound::Node(stream::Input::Opened {
            stream: id,
            peer,
            protocol: ours,
        })
    }

    /// What a stream task reported, as the node's input (none for bookkeeping).
    pub(super) fn io(&mut self, io: StreamIo) -> Option<stream::Input> {
        Some(match io {
            StreamIo::Opened(stream, peer, protocol, tx) => {
                self.tasks.insert(stream, tx);
                stream::Input::Opened {
                    stream,
                    peer,
                    protocol,
                }
            }
            StreamIo::OpenFailed(stream, reason) => {
                tracing::debug!(?stream, %reason, "a stream could not be opened");
                stream::Input::OpenFailed { stream, reason }
            }
            StreamIo::Data(stream, data) => stream::Input::Data { stream, data },
            StreamIo::Flushed(stream) => stream::Input::Flushed { stream },
            StreamIo::Written(stream, bytes) => stream::Input::Written { stream, bytes },
            StreamIo::Finished(stream) => stream::Input::Finished { stream },
            StreamIo::Reset(stream) => {
                tracing::debug!(?stream, "a stream was reset");
                self.tasks.remove(&stream);
                stream::Input::Reset { stream }
            }
            StreamIo::Ended(stream) => {
                self.tasks.remove(&stream);
                return None;
            }
        })
    }

    /// Starts accepting `protocol` for the application.
    #[allow(clippy::result_large_err)] // the error goes straight into a reply
    pub(super) fn accept(&mut self, protocol: StreamProtocol) -> Result<(), Error> {
        let taken = self.accepted.contains(&protocol)
            || ProtocolId::ALL
                .iter()
                .any(|id| id.as_str() == protocol.as_ref());
        if taken {
            return Err(Error::AlreadyAccepting(protocol.to_string()));
        }
        let streams = self
            .control
            .accept(protocol.clone())
            .map_err(|_| Error::AlreadyAccepting(protocol.to_string()))?;
        self.accepted.push(protocol.clone());
        self.incoming.push(
            streams
                .map(move |(peer, stream)| (peer, stream, protocol.clone()))
                .boxed(),
        );
        Ok(())
    }

    /// Resets every stream (at shutdown).
    pub(super) fn reset_all(&mut self) {
        for (_, tx) in std::mem::take(&mut self.tasks) {
            let _ = tx.unbounded_send(StreamCmd::Reset);
        }
    }
}
