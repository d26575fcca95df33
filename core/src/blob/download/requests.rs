//! How a download's requests start and end: starting one, the endgame's duplicates, a
//! request released or failed, a provider dropped, verified items drained from a
//! response (and a racing probe settled), completion.

use std::time::{Duration, Instant};

use libp2p_identity::PeerId;

use super::{count_chunks, Download, DropReason, Event, InFlight, Request, RequestId};
use super::{BUSY_BACKOFF, MAX_BUSY_BACKOFF};
use crate::blob::decoder::Item;
use crate::blob::tree::{all_chunks, leaf_chunks, tree, CHUNK_GROUP_BYTES, PAIR_BYTES};
use crate::blob::ChunkRanges;

impl Download {
    pub(super) fn start_request(
        &mut self,
        peer: PeerId,
        ranges: ChunkRanges,
        probe: bool,
        now: Instant,
    ) -> Request {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.providers
            .get_mut(&peer)
            .expect("requests go to known providers")
            .in_flight += 1;
        let bytes = match self.size {
            Some(size) if !probe => count_chunks(&ranges, size) * 1024,
            _ => CHUNK_GROUP_BYTES,
        };
        let rate = self.config.min_request_rate.max(1);
        let allowance = Duration::from_secs_f64(bytes as f64 / rate as f64);
        self.requests.insert(
            id,
            InFlight {
                peer,
                ranges: ranges.clone(),
                probe,
                decoder: None,
                deadline: now + self.config.request_timeout,
                complete_by: now + self.config.request_timeout + allowance,
                sent: now,
                duplicated: false,
                held: Vec::new(),
            },
        );
        Request { id, peer, ranges }
    }

    /// Nothing is left to hand out but `peer` is idle: ask it for what the oldest request
    /// of another provider still lacks. Each request is duplicated at most once; the copy
    /// that loses is cancelled once its ranges are verified.
    pub(super) fn endgame(&mut self, peer: PeerId, now: Instant) -> Option<Request> {
        if self.providers[&peer].in_flight > 0 {
            return None;
        }
        let size = self.size?;
        let (original, ranges) = self
            .requests
            .iter()
            .filter(|(_, r)| !r.probe && !r.duplicated && r.peer != peer)
            .min_by_key(|(id, r)| (r.sent, **id))
            .map(|(id, r)| {
                let mut lacking = r.ranges.clone();
                lacking.difference_with(&self.have);
                (*id, lacking)
            })?;
        if count_chunks(&ranges, size) == 0 {
            return None;
        }
        self.requests
            .get_mut(&original)
            .expect("picked above")
            .duplicated = true;
        let request = self.start_request(peer, ranges, false, now);
        self.requests
            .get_mut(&request.id)
            .expect("just started")
            .duplicated = true;
        Some(request)
    }

    /// A request ended well (its response is complete): it leaves, its provider is in
    /// good standing, and its stream is released.
    pub(super) fn release(&mut self, request: RequestId) {
        let Some(req) = self.requests.remove(&request) else {
            return;
        };
        if let Some(p) = self.providers.get_mut(&req.peer) {
            p.in_flight = p.in_flight.saturating_sub(1);
            p.failures = 0;
            p.busy = 0;
        }
        self.events.push_back(Event::Cancel { request });
    }

    /// Ends a request; with a reason, also drops its provider.
    pub(super) fn fail_request(&mut self, request: RequestId, drop: Option<DropReason>) {
        self.fail_request_because(request, drop, "its stream failed");
    }

    /// [`Download::fail_request`], saying why (kept for [`DropReason::TooManyFailures`]).
    pub(super) fn fail_request_because(
        &mut self,
        request: RequestId,
        drop: Option<DropReason>,
        cause: &str,
    ) {
        let Some(req) = self.requests.remove(&request) else {
            return;
        };
        let verified = req.decoder.as_ref().map_or(0, |d| d.bytes_verified());
        self.events.push_back(Event::Cancel { request });
        let Some(provider) = self.providers.get_mut(&req.peer) else {
            return;
        };
        provider.in_flight = provider.in_flight.saturating_sub(1);
        match drop {
            Some(reason) => self.drop_provider(req.peer, reason),
            None => {
                provider.failures += 1;
                // A failure may be passing (a connection hiccup, an overloaded peer): the
                // provider is asked again only after a pause, doubling with each failure in
                // a row.
                provider.backoff_pending = Some(
                    BUSY_BACKOFF
                        .saturating_mul(1 << (provider.failures - 1).min(16))
                        .min(MAX_BUSY_BACKOFF),
                );
                if provider.failures > self.config.max_provider_failures {
                    let failures = provider.failures;
                    let cause = format!("{cause}, {verified} bytes into its response");
                    let reason = DropReason::TooManyFailures(failures, cause);
                    self.drop_provider(req.peer, reason);
                }
            }
        }
    }

    pub(super) fn drop_provider(&mut self, peer: PeerId, reason: DropReason) {
        let Some(provider) = self.providers.get_mut(&peer) else {
            return;
        };
        if provider.dropped.is_some() {
            return;
        }
        provider.dropped = Some(reason.clone());
        // Its other requests are abandoned too: their ranges go back to the pool.
        let others: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in others {
            self.requests.remove(&id);
            self.events.push_back(Event::Cancel { request: id });
        }
        provider.in_flight = 0;
        self.events
            .push_back(Event::ProviderDropped { peer, reason });
    }

    /// Pulls verified items out of `request`'s decoder.
    pub(super) fn drain(&mut self, request: RequestId) {
        loop {
            let Some(req) = self.requests.get_mut(&request) else {
                return;
            };
            let decoder = req.decoder.as_mut().expect("drain runs after the header");
            let item = match decoder.poll() {
                None => break,
                Some(Ok(item)) => item,
                Some(Err(err)) => {
                    self.fail_request(request, Some(DropReason::Lied(err)));
                    return;
                }
            };
            if req.probe && self.size.is_none() {
                let proved = decoder.proved_size();
                let claimed = decoder.claimed_size();
                req.held.push(item);
                if proved {
                    let held = std::mem::take(&mut req.held);
                    self.size = Some(claimed);
                    self.events.push_back(Event::SizeProven { size: claimed });
                    for item in held {
                        self.accept(claimed, item);
                    }
                    self.settle_racing_probes(request, claimed);
                }
            } else {
                let size = decoder.claimed_size();
                self.accept(size, item);
            }
        }
        let done = self
            .requests
            .get_mut(&request)
            .and_then(|r| r.decoder.as_mut())
            .is_some_and(|d| d.is_done());
        if done {
            // The provider may keep the stream open; the response is complete either way.
            self.release(request);
        }
        self.cancel_covered();
        self.check_complete();
    }

    /// The size was just proven by `winner`: a racing probe that claimed another size is
    /// dropped; one that agrees hands over what it held.
    pub(super) fn settle_racing_probes(&mut self, winner: RequestId, size: u64) {
        let others: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(id, r)| **id != winner && r.probe && r.decoder.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in others {
            let req = self.requests.get_mut(&id).expect("listed above");
            let claimed = req.decoder.as_ref().expect("filtered").claimed_size();
            if claimed != size {
                let reason = DropReason::WrongSize {
                    claimed,
                    proven: size,
                };
                self.fail_request(id, Some(reason));
                continue;
            }
            for item in std::mem::take(&mut req.held) {
                self.accept(size, item);
            }
        }
    }

    /// Cancels requests whose every range is verified already (the slower copy of an
    /// endgame duplicate).
    pub(super) fn cancel_covered(&mut self) {
        let covered: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| !r.probe && r.duplicated && self.have.is_superset(&r.ranges))
            .map(|(id, _)| *id)
            .collect();
        for id in covered {
            self.release(id);
        }
    }

    pub(super) fn accept(&mut self, size: u64, item: Item) {
        match item {
            Item::Parent { node, pair } => {
                let offset = tree(size)
                    .pre_order_offset(node)
                    .expect("responses only carry pairs the outboard stores");
                self.events.push_back(Event::Pair {
                    offset: offset * PAIR_BYTES as u64,
                    pair,
                });
            }
            Item::Leaf { offset, data } => {
                let chunks = leaf_chunks(offset, data.len());
                if self.have.is_superset(&chunks) && !chunks.is_empty() {
                    return; // already have it (e.g. the probe's group on resume)
                }
                self.have |= chunks;
                self.events.push_back(Event::Data { offset, data });
            }
        }
    }

    pub(super) fn check_complete(&mut self) {
        if self.complete {
            return;
        }
        let Some(size) = self.size else { return };
        if self.have.is_superset(&all_chunks(size)) {
            self.complete = true;
            for (id, _) in std::mem::take(&mut self.requests) {
                self.events.push_back(Event::Cancel { request: id });
            }
            for p in self.providers.values_mut() {
                p.in_flight = 0;
            }
            self.events.push_back(Event::Complete { size });
        }
    }
}
