//! [`YamuxConfig`]: Yamux (`/yamux/1.0.0`, wire-compatible with every libp2p peer) with
//! larger data frames.
//!
//! `libp2p-yamux` keeps the `yamux` crate's 16 KiB frames and does not expose the setting.
//! A frame costs a header, a trip through the connection's queue and, beneath TLS, a
//! record and a write of its own: on a blob transfer that is 65 536 frames per GiB. We
//! send frames of up to [`DEFAULT_SPLIT_SEND_SIZE`]. Every Yamux implementation accepts
//! them (the Rust one reads frames of up to [`MAX_SPLIT_SEND_SIZE`], Go's any size the
//! window allows), and a small message still goes out as one small frame.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// Our data frames' largest payload.
pub const DEFAULT_SPLIT_SEND_SIZE: usize = 256 * 1024;

/// The largest frame payload the `yamux` crate accepts from a peer; we never send more.
pub const MAX_SPLIT_SEND_SIZE: usize = 1024 * 1024;

/// Inbound streams held while the swarm is not asking for them; more are dropped.
pub const MAX_BUFFERED_INBOUND_STREAMS: usize = 256;

/// Open streams per connection, both directions together (yamux's default is 512). A peer
/// that opens one more is sent a GoAway that ends the session (yamux's answer); opening
/// one more ourselves fails that stream. Sinew needs at most 64 blob requests each way (the node-wide
/// `max_outbound_requests` on either side) plus a few streams of gossipsub, Kademlia,
/// identify and ping: 256 leaves room, and bounds what unread stream windows can pin per
/// connection to 256 x 256 KiB = 64 MiB.
pub const MAX_STREAMS_PER_CONNECTION: usize = 256;

/// The Yamux multiplexer upgrade.
#[derive(Debug, Clone)]
pub struct YamuxConfig {
    inner: yamux::Config,
}

impl Default for YamuxConfig {
    fn default() -> Self {
        Self::with_split_send_size(DEFAULT_SPLIT_SEND_SIZE)
    }
}

impl YamuxConfig {
    /// Frames of at most `bytes` of payload, clamped to `1..=`[`MAX_SPLIT_SEND_SIZE`].
    pub fn with_split_send_size(bytes: usize) -> Self {
        let mut inner = yamux::Config::default();
        inner.set_split_send_size(bytes.clamp(1, MAX_SPLIT_SEND_SIZE));
        inner.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
        Self { inner }
    }
}

impl UpgradeInfo for YamuxConfig {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for YamuxConfig
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = futures::future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        futures::future::ready(Ok(Muxer::new(io, self.inner, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for YamuxConfig
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = futures::future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        futures::future::ready(Ok(Muxer::new(io, self.inner, yamux::Mode::Client)))
    }
}

/// One Yamux connection as a libp2p [`StreamMuxer`].
#[derive(Debug)]
pub struct Muxer<C> {
    connection: yamux::Connection<C>,
    /// Streams the peer opened while the swarm was driving the connection (`poll`) rather
    /// than asking for streams (`poll_inbound`); bounded by
    /// [`MAX_BUFFERED_INBOUND_STREAMS`].
    inbound: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn new(io: C, config: yamux::Config, mode: yamux::Mode) -> Self {
        Self {
            connection: yamux::Connection::new(io, config, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }

    fn next_inbound(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<yamux::Stream, yamux::ConnectionError>> {
        match futures::ready!(self.connection.poll_next_inbound(cx)) {
            Some(result) => Poll::Ready(result),
            None => Poll::Ready(Err(yamux::ConnectionError::Closed)),
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Substream = yamux::Stream;
    type Error = yamux::ConnectionError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.inbound.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        if let Poll::Ready(result) = this.next_inbound(cx) {
            return Poll::Ready(result);
        }
        this.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut().connection.poll_new_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = futures::ready!(this.next_inbound(cx))?;
        if this.inbound.len() < MAX_BUFFERED_INBOUND_STREAMS {
            this.inbound.push_back(stream);
            if let Some(waker) = this.inbound_waker.take() {
                waker.wake();
            }
        } else {
            tracing::warn!(
                "dropping an inbound stream: {MAX_BUFFERED_INBOUND_STREAMS} are waiting"
            );
        }
        // Come back at once: the connection has more to do than this one stream.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_size(config: &YamuxConfig) -> String {
        let debug = format!("{:?}", config.inner);
        let at = debug
            .find("split_send_size: ")
            .expect("yamux's Config shows the split size");
        debug[at..]
            .split([',', ' ', '}'])
            .nth(1)
            .expect("a number")
            .to_string()
    }

    #[test]
    fn the_frame_size_is_clamped_to_what_peers_accept() {
        assert_eq!(
            split_size(&YamuxConfig::default()),
            DEFAULT_SPLIT_SEND_SIZE.to_string()
        );
        for (asked, got) in [
            (MAX_SPLIT_SEND_SIZE, MAX_SPLIT_SEND_SIZE),
            (MAX_SPLIT_SEND_SIZE + 1, MAX_SPLIT_SEND_SIZE),
            (usize::MAX, MAX_SPLIT_SEND_SIZE),
            (0, 1),
            (1, 1),
        ] {
            assert_eq!(
                split_size(&YamuxConfig::with_split_send_size(asked)),
                got.to_string()
            );
        }
    }

    /// The peer's side of a connection in memory: what it sent is read by our muxer once,
    /// then reads wait (the connection stays open); what our muxer writes is kept.
    struct Wire {
        incoming: Vec<u8>,
        at: usize,
        written: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl AsyncRead for Wire {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.incoming.len() - self.at);
            if n == 0 {
                return Poll::Pending;
            }
            let at = self.at;
            buf[..n].copy_from_slice(&self.incoming[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Wire {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written
                .lock()
                .expect("test lock")
                .extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A Yamux header (version 0): type, flags, stream id, length.
    fn header(kind: u8, flags: u16, stream: u32, len: u32) -> Vec<u8> {
        let mut h = vec![0, kind];
        h.extend_from_slice(&flags.to_be_bytes());
        h.extend_from_slice(&stream.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h
    }

    /// Our muxer (default config) after the peer opened `n` streams, each a window
    /// update with SYN, polled until it has nothing more to do (the streams stay open in
    /// its buffer, which holds as many as the cap); and whether it sent the peer a GoAway,
    /// i.e. ended the session.
    fn open_streams(n: usize) -> (Muxer<Wire>, bool) {
        const SYN: u16 = 0x1;
        const GO_AWAY: u8 = 3;
        let mut incoming = Vec::new();
        for i in 0..n as u32 {
            incoming.extend(header(1, SYN, 2 * i + 1, 0));
        }
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let wire = Wire {
            incoming,
            at: 0,
            written: written.clone(),
        };
        let mut muxer = Muxer::new(wire, YamuxConfig::default().inner, yamux::Mode::Server);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..4 * n {
            if Pin::new(&mut muxer).poll(&mut cx).is_ready() {
                break;
            }
        }
        let written = written.lock().expect("test lock").clone();
        let go_away = written.chunks(12).any(|h| h.len() == 12 && h[1] == GO_AWAY);
        (muxer, go_away)
    }

    #[test]
    fn a_peer_may_open_max_streams_and_one_more_is_sent_a_go_away() {
        const { assert!(MAX_STREAMS_PER_CONNECTION <= MAX_BUFFERED_INBOUND_STREAMS) };
        let (muxer, go_away) = open_streams(MAX_STREAMS_PER_CONNECTION);
        assert!(!go_away);
        assert_eq!(muxer.inbound.len(), MAX_STREAMS_PER_CONNECTION);
        let (muxer, go_away) = open_streams(MAX_STREAMS_PER_CONNECTION + 1);
        assert!(go_away, "the session survived one stream too many");
        assert_eq!(muxer.inbound.len(), MAX_STREAMS_PER_CONNECTION);
    }

    #[test]
    fn inbound_streams_beyond_the_buffer_are_dropped_and_the_rest_kept() {
        const SYN: u16 = 0x1;
        const RST: u16 = 0x8;
        // A peer (the client: odd stream ids) opens one stream more than we buffer, each
        // with a window update carrying SYN, while the swarm only drives the connection.
        let opened = MAX_BUFFERED_INBOUND_STREAMS + 1;
        let mut incoming = Vec::new();
        for n in 0..opened as u32 {
            incoming.extend(header(1, SYN, 2 * n + 1, 0));
        }
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let wire = Wire {
            incoming,
            at: 0,
            written: written.clone(),
        };
        let mut config = yamux::Config::default();
        config.set_max_num_streams(2 * opened);
        let mut muxer = Muxer::new(wire, config, yamux::Mode::Server);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..4 * opened {
            assert!(Pin::new(&mut muxer).poll(&mut cx).is_pending());
        }
        assert_eq!(muxer.inbound.len(), MAX_BUFFERED_INBOUND_STREAMS);
        // The dropped one, the last opened, is reset towards the peer.
        for _ in 0..16 {
            let _ = Pin::new(&mut muxer).poll(&mut cx);
        }
        let last = 2 * (opened as u32 - 1) + 1;
        let written = written.lock().expect("test lock").clone();
        let reset = written.chunks(12).any(|h| {
            h.len() == 12
                && u16::from_be_bytes([h[2], h[3]]) & RST != 0
                && u32::from_be_bytes([h[4], h[5], h[6], h[7]]) == last
        });
        assert!(reset, "the stream beyond the buffer was not reset");
        // Every buffered stream is handed out, oldest first, then none.
        for n in 0..MAX_BUFFERED_INBOUND_STREAMS {
            match Pin::new(&mut muxer).poll_inbound(&mut cx) {
                Poll::Ready(Ok(stream)) => assert_eq!(stream.id().val(), 2 * n as u32 + 1),
                other => panic!("stream {n} not handed out: {other:?}"),
            }
        }
        assert!(Pin::new(&mut muxer).poll_inbound(&mut cx).is_pending());
    }
}
