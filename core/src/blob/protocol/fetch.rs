//! Our side of a stream on which we fetch one range request from a provider.
//!
//! We write a [`Hello`] and a [`BlobRequest`] and finish our side; the provider answers
//! with its hello and a [`BlobResponse`]; after `Found { size }` the rest of the stream is
//! the verified-streaming encoding, fed straight to the [`Download`].

use std::time::Instant;

use bytes::Bytes;
use libp2p_identity::PeerId;

use super::{frames, msg_name, to_wire, MAX_FRAME};
use crate::blob::download::{Download, DropReason, RequestId};
use crate::blob::{BlobId, ChunkRanges};
use crate::framing;
use crate::wire::{self, BlobRequest, BlobResponse, Hello, Message};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchPhase {
    Hello,
    Header,
    Body,
}

/// Our side of a stream on which we fetch one range request.
#[derive(Debug)]
pub(super) struct Fetch {
    peer: PeerId,
    blob: BlobId,
    request: RequestId,
    frames: framing::Decoder,
    phase: FetchPhase,
    /// Whether any byte of the provider's arrived.
    answered: bool,
}

impl Fetch {
    pub(super) fn new(peer: PeerId, blob: BlobId, request: RequestId) -> Self {
        Self {
            peer,
            blob,
            request,
            frames: framing::Decoder::new(framing::Config {
                max_frame_len: MAX_FRAME,
            }),
            phase: FetchPhase::Hello,
            answered: false,
        }
    }

    /// Whether the provider sent anything yet.
    pub(super) fn answered(&self) -> bool {
        self.answered
    }

    pub(super) fn peer(&self) -> PeerId {
        self.peer
    }

    pub(super) fn blob(&self) -> BlobId {
        self.blob
    }

    pub(super) fn request(&self) -> RequestId {
        self.request
    }

    /// The bytes that open the stream: hello and request.
    pub(super) fn request_frames(&self, ranges: &ChunkRanges) -> Bytes {
        frames(&[
            Message::Hello(Hello::ours()),
            Message::BlobRequest(BlobRequest {
                id: self.blob,
                ranges: to_wire(ranges),
            }),
        ])
    }

    /// Bytes from the provider. `Err` is a protocol violation (the caller reports it).
    pub(super) fn receive(
        &mut self,
        data: Bytes,
        download: &mut Download,
        now: Instant,
    ) -> Result<(), String> {
        self.answered = true;
        if self.phase == FetchPhase::Body {
            download.handle_data(self.request, data, now);
            return Ok(());
        }
        download.handle_header_bytes(self.request, data.len(), now);
        self.frames.push_bytes(data);
        while self.phase != FetchPhase::Body {
            let frame = match self.frames.pop() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(err) => return Err(format!("blob response framing: {err}")),
            };
            let msg = wire::decode(&frame).map_err(|e| format!("blob response: {e}"))?;
            match (self.phase, msg) {
                (FetchPhase::Hello, Message::Hello(theirs)) => {
                    if let Err(err) = wire::negotiate(&Hello::ours(), &theirs) {
                        download.handle_refused(
                            self.request,
                            DropReason::Incompatible(err.to_string()),
                        );
                        return Ok(());
                    }
                    self.phase = FetchPhase::Header;
                }
                (FetchPhase::Header, Message::BlobResponse(response)) => match response {
                    BlobResponse::Found { size } => {
                        download.handle_found(self.request, size, now);
                        self.phase = FetchPhase::Body;
                    }
                    BlobResponse::NotFound => {
                        download.handle_refused(self.request, DropReason::NotFound);
                        return Ok(());
                    }
                    BlobResponse::Busy => {
                        download.handle_busy(self.request, now);
                        return Ok(());
                    }
                    BlobResponse::Error { reason } => {
                        download.handle_refused(
                            self.request,
                            DropReason::Incompatible(reason.to_string()),
                        );
                        return Ok(());
                    }
                },
                (phase, msg) => {
                    return Err(format!("unexpected {} in phase {phase:?}", msg_name(&msg)));
                }
            }
        }
        let rest = self.frames.take_remaining();
        if !rest.is_empty() {
            download.handle_data(self.request, rest, now);
        }
        Ok(())
    }

    /// The provider finished the stream.
    pub(super) fn finished(&self, download: &mut Download) {
        download.handle_closed(self.request);
    }
}
