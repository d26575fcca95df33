//! The blob protocol's drain: downloads write what they verified and ask for more within
//! the node-wide request bound; serving streams answer and fill their send windows.

use std::time::Instant;

use super::serve::ServeContext;
use super::{Blobs, DownloadFailure, Event, Output, Stream, Timer};
use crate::blob::download::{self, DropReason};
use crate::blob::store::BlobStore;
use crate::blob::BlobId;
use crate::stream::{self, StreamId, StreamIds};
use crate::wire::ProtocolId;

impl<S: BlobStore> Blobs<S> {
    /// Drains every download: store writes, new requests, finished downloads.
    pub(super) fn drive_downloads(&mut self, now: Instant, ids: &mut StreamIds) {
        let blobs: Vec<BlobId> = self.downloads.keys().copied().collect();
        for id in blobs {
            self.drive_download(id, now, ids);
            let deadline = self.downloads.get(&id).and_then(|d| d.poll_timeout());
            self.timers.set(Timer::Download(id), deadline);
        }
    }

    fn drive_download(&mut self, id: BlobId, now: Instant, ids: &mut StreamIds) {
        let mut progressed = false;
        let mut outcome: Option<Event> = None;
        loop {
            let Some(download) = self.downloads.get_mut(&id) else {
                return;
            };
            let Some(event) = download.poll_event() else {
                break;
            };
            let written = match event {
                download::Event::SizeProven { size } => self.store.begin_partial(&id, size),
                download::Event::Pair { offset, pair } => self.store.write_pair(&id, offset, &pair),
                download::Event::Data { offset, data } => {
                    progressed = true;
                    self.store.write_verified(&id, offset, &data)
                }
                download::Event::Cancel { request } => {
                    // The request ended: close its stream (if the provider has not) and
                    // free its slot.
                    if let Some(stream) = self.request_streams.get(&(id, request)).copied() {
                        self.remove_stream(stream);
                        self.transmit(stream::Output::Reset { stream });
                    }
                    Ok(())
                }
                download::Event::ProviderDropped { peer, reason } => {
                    if matches!(
                        reason,
                        DropReason::Lied(_)
                            | DropReason::WrongSize { .. }
                            | DropReason::TooLarge { .. }
                    ) {
                        self.misbehaved(peer, format!("blob {id}: {reason}"));
                    }
                    self.events.push_back(Output::Event(Event::ProviderDropped {
                        id,
                        peer,
                        reason,
                    }));
                    Ok(())
                }
                download::Event::Complete { size } => {
                    let received = self.downloads[&id].bytes_received();
                    outcome = Some(Event::Downloaded { id, size, received });
                    Ok(())
                }
                download::Event::Stuck => {
                    let dropped = self.downloads[&id].dropped_providers();
                    outcome = Some(Event::DownloadFailed {
                        id,
                        reason: DownloadFailure::NoProviders { dropped },
                    });
                    Ok(())
                }
            };
            if let Err(err) = written {
                outcome = Some(Event::DownloadFailed {
                    id,
                    reason: DownloadFailure::Store(err),
                });
                break;
            }
        }
        let due = self
            .last_progress
            .get(&id)
            .is_none_or(|last| now >= *last + self.config.progress_interval);
        if progressed && due && outcome.is_none() {
            self.last_progress.insert(id, now);
            let d = &self.downloads[&id];
            self.events
                .push_back(Output::Event(Event::DownloadProgress {
                    id,
                    verified: d.bytes_verified(),
                    size: d.size(),
                    providers: d.usable_providers(),
                }));
        }
        if let Some(event) = outcome {
            self.downloads.remove(&id);
            self.end_download(id, event);
            return;
        }
        // New requests, within the node-wide bound, unless too much is not durable yet.
        while self.outbound < self.config.max_outbound_requests && !self.is_paused() {
            let Some(download) = self.downloads.get_mut(&id) else {
                return;
            };
            let Some(request) = download.poll_request(now) else {
                break;
            };
            let stream = ids.next();
            self.outbound += 1;
            self.streams.insert(
                stream,
                Stream::Opening {
                    peer: request.peer,
                    blob: id,
                    request: request.id,
                },
            );
            self.request_streams.insert((id, request.id), stream);
            self.timers
                .set(Timer::Open(stream), Some(now + self.config.open_timeout));
            self.transmit(stream::Output::Open {
                stream,
                peer: request.peer,
                protocol: ProtocolId::BLOB,
            });
        }
    }

    /// Answers requests and pushes response bytes out, within each stream's send window.
    pub(super) fn drive_serves(&mut self, now: Instant) {
        let active: Vec<StreamId> = std::mem::take(&mut self.active).into_iter().collect();
        for stream in active {
            let Some(Stream::Serve(serve)) = self.streams.get_mut(&stream) else {
                continue;
            };
            let peer = serve.peer();
            let of_peer = self.serving_per_peer.get(&peer).copied().unwrap_or(0);
            let mut ctx = ServeContext {
                store: &self.store,
                checked: &mut self.checked,
                admitted: self.serving < self.config.max_inbound_requests
                    && of_peer < self.config.max_inbound_requests_per_peer,
                validate: self.config.validate_on_serve,
                window: self.config.send_window,
                now,
                timeout: self.config.serve_timeout,
                min_rate: self.config.min_serve_rate,
            };
            let step = serve.step(&mut ctx);
            let deadline = serve.deadline();
            if step.took_slot {
                self.serving += 1;
                *self.serving_per_peer.entry(peer).or_default() += 1;
            }
            self.timers.set(Timer::Serve(stream), Some(deadline));
            for data in step.sends {
                self.transmit(stream::Output::Send { stream, data });
            }
            if let Some(event) = step.event {
                self.events.push_back(Output::Event(event));
            }
            if let Some((id, reason)) = step.corrupt {
                // Our own copy is bad (or unreadable): stop and tell the application.
                self.events
                    .push_back(Output::Event(Event::StoreFailed { id, reason }));
            }
            if step.finish {
                self.transmit(stream::Output::Finish { stream });
            }
            if step.reset {
                self.transmit(stream::Output::Reset { stream });
            }
            if step.done {
                self.remove_stream(stream);
                if !step.reset {
                    self.transmits.push_back(Output::Forget(stream));
                }
            }
        }
    }
}
