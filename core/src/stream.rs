//! Streams, as the node and its driver see them: ids, what the driver reports about a
//! stream ([`Input`]) and what the node asks of it ([`Output`]).
//!
//! A stream is one reliable, ordered, bidirectional byte stream to a peer, negotiated for
//! one protocol (a libp2p stream in the shell, a virtual link in the simulator). Its life:
//!
//! 1. **Open.** The node asks with [`Output::Open`], naming the stream with an id it
//!    allocated; the driver answers [`Input::Opened`] once the protocol is negotiated (a
//!    round trip later), or [`Input::OpenFailed`]. A stream a *peer* opened is reported as
//!    [`Input::Opened`] with an id the driver allocates with [`StreamId::inbound`].
//! 2. **Data.** [`Output::Send`] hands bytes to write, in order; [`Input::Data`] delivers
//!    what arrived (never empty: an empty read is the end of the stream).
//! 3. **Flow control.** Every byte handed out with `Send` must be reported back as
//!    written, with [`Input::Written`] (a count) or [`Input::Flushed`] (everything). A
//!    protocol stops handing out bytes once its send window is full (the blob protocol's
//!    is `blob::Config::send_window`, 512 KiB): a driver that never reports writes stalls
//!    every response at the window, and the stream is reset when its timeout passes.
//! 4. **Half-close.** [`Output::Finish`] closes our write side after what was sent;
//!    [`Input::Finished`] says the peer closed theirs. A stream is over once both sides
//!    finished, or after a reset.
//! 5. **Reset.** [`Output::Reset`] aborts both directions; [`Input::Reset`] says the peer
//!    (or the connection) did. After either, the id is never used again.
//!
//! Bytes that arrive on a stream the node has already forgotten are answered with
//! [`Output::Reset`]: a peer cannot keep a finished stream busy.

use std::fmt;

use bytes::Bytes;
use libp2p_identity::PeerId;

use crate::wire::ProtocolId;

/// Names one stream for the node and its driver.
///
/// Streams the node opens have ids it allocates ([`Output::Open`]); streams a remote
/// peer opened get ids the driver allocates with [`StreamId::inbound`]. The two never clash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

impl StreamId {
    const INBOUND: u64 = 1 << 63;

    /// The id of the `n`th stream a remote peer opened (allocated by the driver).
    pub const fn inbound(n: u64) -> Self {
        Self(n | Self::INBOUND)
    }

    /// True for streams opened by the remote peer.
    pub const fn is_inbound(self) -> bool {
        self.0 & Self::INBOUND != 0
    }

    /// The raw value, for logs and maps.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_inbound() {
            write!(f, "in#{}", self.0 & !Self::INBOUND)
        } else {
            write!(f, "out#{}", self.0)
        }
    }
}

/// The node's one allocator of outbound stream ids (shared by every protocol child).
#[derive(Debug, Default)]
pub(crate) struct StreamIds {
    next: u64,
}

impl StreamIds {
    /// A fresh id for a stream the node opens.
    pub(crate) fn next(&mut self) -> StreamId {
        let id = StreamId(self.next);
        self.next += 1;
        id
    }
}

/// What the driver reports about a stream (inside [`crate::node::Input::Stream`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Input {
    /// A stream is open: one the node asked for ([`Output::Open`]), or one the remote
    /// peer opened (an id from [`StreamId::inbound`]).
    Opened {
        /// The stream.
        stream: StreamId,
        /// The remote peer.
        peer: PeerId,
        /// The negotiated protocol.
        protocol: ProtocolId,
    },
    /// A stream the node asked for could not be opened.
    OpenFailed {
        /// The stream.
        stream: StreamId,
        /// Why, for logs.
        reason: String,
    },
    /// Bytes arrived (never empty).
    Data {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// Everything handed over for this stream has been written: more may be sent.
    Flushed {
        /// The stream.
        stream: StreamId,
    },
    /// `bytes` more of what was handed over for this stream have been written (more may
    /// still be queued). A driver that only reports [`Input::Flushed`] works, with less
    /// overlap between preparing and writing.
    Written {
        /// The stream.
        stream: StreamId,
        /// How many bytes, counted in the order they were handed over.
        bytes: usize,
    },
    /// The remote finished writing (end of stream).
    Finished {
        /// The stream.
        stream: StreamId,
    },
    /// The stream broke (reset by the peer, connection lost).
    Reset {
        /// The stream.
        stream: StreamId,
    },
}

/// What the node asks of a stream (inside [`crate::node::Output::Stream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Open a stream to `peer` for `protocol`; answer with [`Input::Opened`] or
    /// [`Input::OpenFailed`].
    Open {
        /// The id the node gave it.
        stream: StreamId,
        /// To whom.
        peer: PeerId,
        /// For which protocol.
        protocol: ProtocolId,
    },
    /// Write `data` to the stream, in order; report it written ([`Input::Written`] or
    /// [`Input::Flushed`]).
    Send {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// Finish the stream's write side after the data already given.
    Finish {
        /// The stream.
        stream: StreamId,
    },
    /// Abort the stream in both directions; the id is dead afterwards.
    Reset {
        /// The stream.
        stream: StreamId,
    },
}

impl Output {
    /// The stream this output is about.
    pub fn stream(&self) -> StreamId {
        match self {
            Output::Open { stream, .. }
            | Output::Send { stream, .. }
            | Output::Finish { stream }
            | Output::Reset { stream } => *stream,
        }
    }
}

impl Input {
    /// The stream this input is about.
    pub fn stream(&self) -> StreamId {
        match self {
            Input::Opened { stream, .. }
            | Input::OpenFailed { stream, .. }
            | Input::Data { stream, .. }
            | Input::Flushed { stream }
            | Input::Written { stream, .. }
            | Input::Finished { stream }
            | Input::Reset { stream } => *stream,
        }
    }
}
