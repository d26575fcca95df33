//! [`SinewStream`]: a libp2p stream carrying length-delimited frames.
//!
//! Applications exchange whole messages over it: [`SinewStream::send`] writes one frame,
//! [`SinewStream::recv`] returns the next one. A header that declares more than the
//! frame limit (8 MiB by default) is refused the moment it arrives, before a byte of the
//! payload is buffered, and the stream is unusable afterwards. A peer that disappears
//! mid-frame shows up as an error, never as a hang: the connection's ping watchdog closes
//! a silent connection and every stream on it fails.

use std::fmt;

use bytes::{Bytes, BytesMut};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};

use crate::framing;

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 64 * 1024;

/// What went wrong on a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The peer sent a frame header over the limit, or we tried to send one.
    #[error(transparent)]
    Framing(#[from] framing::Error),
    /// The stream ended in the middle of a frame (the peer vanished or reset it).
    #[error("stream ended in the middle of a frame ({buffered} bytes of it received)")]
    Truncated {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },
    /// The stream or its connection failed.
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A framed libp2p stream to one peer. See the module docs.
pub struct SinewStream {
    peer: PeerId,
    protocol: StreamProtocol,
    inner: Stream,
    decoder: framing::Decoder,
    encoder: framing::Encoder,
    buf: Vec<u8>,
}

impl fmt::Debug for SinewStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinewStream")
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .field("buffered", &self.decoder.buffered_len())
            .finish()
    }
}

impl SinewStream {
    /// Wraps an open libp2p stream with frames of at most `config.max_frame_len` bytes.
    pub fn new(
        peer: PeerId,
        protocol: StreamProtocol,
        inner: Stream,
        config: framing::Config,
    ) -> Self {
        Self {
            peer,
            protocol,
            inner,
            decoder: framing::Decoder::new(config),
            encoder: framing::Encoder::new(config),
            buf: Vec::new(),
        }
    }

    /// The remote peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The stream's protocol.
    pub fn protocol(&self) -> &StreamProtocol {
        &self.protocol
    }

    /// Sends one frame.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), StreamError> {
        let mut header = BytesMut::with_capacity(framing::HEADER_LEN);
        self.encoder.encode_header(payload.len(), &mut header)?;
        self.inner.write_all(&header).await?;
        self.inner.write_all(payload).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// The next frame, or `None` when the peer finished the stream cleanly.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        loop {
            if let Some(frame) = self.decoder.pop()? {
                return Ok(Some(frame));
            }
            if self.buf.len() != READ_CHUNK {
                self.buf.resize(READ_CHUNK, 0);
            }
            let n = self.inner.read(&mut self.buf).await?;
            if n == 0 {
                return match self.decoder.buffered_len() {
                    0 => Ok(None),
                    buffered => Err(StreamError::Truncated { buffered }),
                };
            }
            self.decoder.push(&self.buf[..n]);
        }
    }

    /// Finishes our side of the stream (the peer's `recv` returns `None`).
    pub async fn close(&mut self) -> Result<(), StreamError> {
        self.inner.close().await?;
        Ok(())
    }

    /// The raw libp2p stream, for protocols that do their own framing. Bytes already read
    /// but not yet returned as a frame are lost.
    pub fn into_inner(self) -> Stream {
        self.inner
    }
}
