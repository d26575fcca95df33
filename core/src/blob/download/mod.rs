//! The requester side: one blob download from any number of providers.
//!
//! A [`Download`] decides what to ask of whom, verifies every response with a
//! [`Decoder`], and reports verified hash pairs and chunk groups as events for the node to
//! write to its store. It never touches the network or the store itself.
//!
//! The rules it keeps:
//! - **Size first.** Until the size is proven, the only request is a *size probe* (the last
//!   chunk group and its proof path). A provider's claimed size is believed once that group
//!   verified, never before; a provider that later claims another size is dropped.
//! - **Split.** Once the size is known, the missing chunk groups are cut into spans and
//!   handed to every usable provider at once, a few requests deep each, so no provider waits
//!   a round trip between requests.
//! - **Verify before use.** A chunk group is reported (and so written) only after it hashed
//!   to what the tree promised. A provider whose response fails verification is dropped for
//!   good; the groups it already delivered stay (hashes bind bytes to positions, so they are
//!   genuine), its unfinished ranges go back to the pool.
//! - **Resume.** A download starts from the verified ranges the store already holds.
//! - **Stalls and tricklers.** A request that receives nothing for `request_timeout` is
//!   cancelled and its provider dropped; so is one that has not completed within
//!   `request_timeout` plus its size at `min_request_rate` (a provider that sends one byte
//!   every few seconds is dropped too, not only a silent one). A provider that ends
//!   responses early too often (`max_provider_failures` + 1 in a row, with a doubling pause
//!   before each retry) is dropped.
//! - **Every request that ends is released.** Whatever ends a request (a complete response,
//!   a refusal, `Busy`, a lie, a stall), the download reports [`Event::Cancel`] for it, so
//!   its stream is closed and its slot freed even if the provider keeps the stream open.
//! - **No predictable victim.** The size probe goes to a provider picked with the
//!   download's seeded RNG, and a second probe races it after `probe_race_delay`. At the
//!   end of a download, the ranges still in flight are asked again of an idle provider
//!   (each at most once), and whichever answer completes first wins.
//! - **Sizes are bounded.** A provider claiming a size above `max_blob_size` is dropped
//!   before anything is allocated for it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bao_tree::{ChunkNum, ChunkRanges};
use bytes::Bytes;
use libp2p_identity::PeerId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod requests;
mod types;

pub use types::{
    Config, DropReason, Event, Request, RequestId, BUSY_BACKOFF, MAX_BUSY_BACKOFF,
    MAX_BUSY_IN_A_ROW, PROBE_CHUNK,
};

use crate::blob::decoder::{DecodeError, Decoder, Item};
use crate::blob::store::BlobState;
use crate::blob::tree::{all_chunks, CHUNKS_PER_GROUP};
use crate::blob::BlobId;

#[derive(Debug)]
struct Provider {
    in_flight: usize,
    failures: u32,
    dropped: Option<DropReason>,
    /// `Busy` answers in a row (reset by a complete response).
    busy: u32,
    /// Not asked again before this (after a `Busy`).
    backoff_until: Option<Instant>,
    /// A pause to start at the next `poll_request` (after a failure, which comes without
    /// the time).
    backoff_pending: Option<Duration>,
}

#[derive(Debug)]
struct InFlight {
    peer: PeerId,
    ranges: ChunkRanges,
    probe: bool,
    decoder: Option<Decoder>,
    /// Inactivity deadline: pushed back by every byte.
    deadline: Instant,
    /// Completion deadline: `request_timeout` plus the request's size at
    /// `min_request_rate`, from when it was sent. Never pushed back.
    complete_by: Instant,
    /// When it was sent (the endgame re-asks the oldest first).
    sent: Instant,
    /// Asked twice (endgame): neither copy is duplicated again.
    duplicated: bool,
    /// Probe items held until the size is proven.
    held: Vec<Item>,
}

/// One blob download. See the module docs for the rules it keeps.
#[derive(Debug)]
pub struct Download {
    id: BlobId,
    config: Config,
    size: Option<u64>,
    have: ChunkRanges,
    providers: BTreeMap<PeerId, Provider>,
    requests: BTreeMap<RequestId, InFlight>,
    events: VecDeque<Event>,
    next_request: u64,
    complete: bool,
    stuck_reported: bool,
    /// Since when no provider is usable while some are only disconnected.
    starved_since: Option<Instant>,
    grace_expired: bool,
    bytes_received: u64,
    /// Picks the probe providers.
    rng: ChaCha8Rng,
    /// The latest time given to `poll_request` or `handle_timeout`: wake-ups that only
    /// let `poll_request` act (a probe race, a backoff's end) are not reported once past.
    now: Option<Instant>,
}

impl Download {
    /// A download of `id`, resuming from what the store holds (`state`).
    pub fn new(id: BlobId, state: Option<BlobState>, config: Config) -> Self {
        let (size, have) = match state {
            Some(state) => (Some(state.size()), state.verified()),
            None => (None, ChunkRanges::empty()),
        };
        let mut download = Self {
            id,
            config,
            size,
            have,
            providers: BTreeMap::new(),
            requests: BTreeMap::new(),
            events: VecDeque::new(),
            next_request: 0,
            complete: false,
            stuck_reported: false,
            starved_since: None,
            grace_expired: false,
            bytes_received: 0,
            rng: ChaCha8Rng::from_seed(*id.as_bytes()),
            now: None,
        };
        download.check_complete();
        download
    }

    /// Seeds the download's randomness (which provider gets the size probe). Without it
    /// the seed is the blob id: deterministic, but the same on every node.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self
    }

    // --- getters ---

    /// The blob being downloaded.
    pub fn id(&self) -> BlobId {
        self.id
    }

    /// The proven size, once known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Verified chunk ranges.
    pub fn verified(&self) -> &ChunkRanges {
        &self.have
    }

    /// Verified bytes (counting the short last group by its real length).
    pub fn bytes_verified(&self) -> u64 {
        let Some(size) = self.size else { return 0 };
        crate::blob::tree::verified_bytes(&self.have, size)
    }

    /// Bytes received from providers, including proof hashes and rejected data.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// True once every byte is verified.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Providers not dropped.
    pub fn usable_providers(&self) -> usize {
        self.providers
            .values()
            .filter(|p| p.dropped.is_none())
            .count()
    }

    /// Whether `peer` was ever added (dropped or not).
    pub fn has_provider(&self, peer: &PeerId) -> bool {
        self.providers.contains_key(peer)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// The ranges asked for in `request`, while it is in flight.
    pub fn ranges_of(&self, request: RequestId) -> Option<ChunkRanges> {
        self.requests.get(&request).map(|r| r.ranges.clone())
    }

    /// Every provider that was dropped, with why.
    pub fn dropped_providers(&self) -> Vec<(PeerId, DropReason)> {
        self.providers
            .iter()
            .filter_map(|(peer, p)| p.dropped.clone().map(|r| (*peer, r)))
            .collect()
    }

    // --- handle_* ---

    /// Adds a provider. A provider dropped for lying, a wrong size or a refusal stays
    /// dropped; one that was removed, stalled or failed gets another chance.
    ///
    /// Beyond `max_providers` known providers a new one is ignored.
    pub fn add_provider(&mut self, peer: PeerId) {
        if !self.providers.contains_key(&peer) && self.providers.len() >= self.config.max_providers
        {
            return;
        }
        let provider = self.providers.entry(peer).or_insert(Provider {
            in_flight: 0,
            failures: 0,
            dropped: None,
            busy: 0,
            backoff_until: None,
            backoff_pending: None,
        });
        if matches!(
            provider.dropped,
            Some(DropReason::Removed | DropReason::Stalled(_) | DropReason::TooManyFailures(..))
        ) {
            provider.dropped = None;
            provider.failures = 0;
        }
        if self.usable_providers() > 0 {
            self.stuck_reported = false;
            self.starved_since = None;
            self.grace_expired = false;
        }
    }

    /// Stops asking `peer` (disconnected, or the caller's choice); cancels its requests.
    /// [`Download::add_provider`] brings it back; until then, if no other provider is
    /// usable, the download waits `reconnect_grace` before it reports [`Event::Stuck`].
    pub fn remove_provider(&mut self, peer: &PeerId, now: Instant) {
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.peer == *peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.requests.remove(&id);
            self.events.push_back(Event::Cancel { request: id });
        }
        self.drop_provider(*peer, DropReason::Removed);
        if self.starving() && self.starved_since.is_none() {
            self.starved_since = Some(now);
        }
    }

    fn starving(&self) -> bool {
        !self.complete
            && self.requests.is_empty()
            && !self.providers.is_empty()
            && self.usable_providers() == 0
    }

    fn may_reconnect(&self) -> bool {
        self.providers
            .values()
            .any(|p| p.dropped == Some(DropReason::Removed))
    }

    /// The provider answered `request`: it has the blob and claims `size` bytes.
    pub fn handle_found(&mut self, request: RequestId, size: u64, now: Instant) {
        let Some(req) = self.requests.get_mut(&request) else {
            return;
        };
        req.deadline = now + self.config.request_timeout;
        if size > self.config.max_blob_size {
            let reason = DropReason::TooLarge {
                claimed: size,
                max: self.config.max_blob_size,
            };
            self.fail_request(request, Some(reason));
            return;
        }
        if let Some(proven) = self.size {
            if proven != size {
                let reason = DropReason::WrongSize {
                    claimed: size,
                    proven,
                };
                self.fail_request(request, Some(reason));
                return;
            }
        }
        if req.decoder.is_none() {
            req.decoder = Some(Decoder::new(self.id, size, &req.ranges));
            // The empty blob's response has no bytes at all: its one (empty) chunk group
            // verifies against the id right away.
            if size == 0 {
                self.drain(request);
            }
        }
    }

    /// The provider answered `request`: it does not have the blob.
    pub fn handle_not_found(&mut self, request: RequestId) {
        self.handle_refused(request, DropReason::NotFound);
    }

    /// The provider refused `request` for good (`reason`): it is not asked again.
    pub fn handle_refused(&mut self, request: RequestId, reason: DropReason) {
        self.fail_request(request, Some(reason));
    }

    /// `len` bytes of `request`'s response header arrived (before `Found`): activity,
    /// which pushes the inactivity deadline back (the completion deadline stays).
    pub fn handle_header_bytes(&mut self, request: RequestId, len: usize, now: Instant) {
        if let Some(req) = self.requests.get_mut(&request) {
            if len > 0 {
                req.deadline = now + self.config.request_timeout;
            }
        }
    }

    /// Response bytes for `request` arrived.
    pub fn handle_data(&mut self, request: RequestId, data: Bytes, now: Instant) {
        let Some(req) = self.requests.get_mut(&request) else {
            return;
        };
        self.bytes_received += data.len() as u64;
        req.deadline = now + self.config.request_timeout;
        let Some(decoder) = req.decoder.as_mut() else {
            // Data before the size header: the provider broke the protocol.
            self.fail_request(
                request,
                Some(DropReason::Lied(DecodeError::TrailingBytes {
                    extra: data.len(),
                })),
            );
            return;
        };
        decoder.push(data);
        self.drain(request);
    }

    /// The provider closed `request`'s stream (cleanly or not).
    pub fn handle_closed(&mut self, request: RequestId) {
        let Some(req) = self.requests.get_mut(&request) else {
            return;
        };
        let done = match req.decoder.as_mut() {
            Some(decoder) => decoder.finish(),
            None => Err(DecodeError::Truncated { missing: 1 }),
        };
        match done {
            Ok(()) => self.release(request),
            Err(DecodeError::Truncated { missing }) => {
                let cause = format!("it finished its stream {missing} bytes short");
                self.fail_request_because(request, None, &cause);
            }
            Err(err) => self.fail_request(request, Some(DropReason::Lied(err))),
        }
    }

    /// The provider answered `request` with `Busy`: it is not a failure. The request
    /// leaves, and the provider is asked again after a backoff that doubles with each
    /// `Busy` in a row ([`BUSY_BACKOFF`] up to [`MAX_BUSY_BACKOFF`]); after
    /// [`MAX_BUSY_IN_A_ROW`] it is dropped.
    pub fn handle_busy(&mut self, request: RequestId, now: Instant) {
        let Some(req) = self.requests.remove(&request) else {
            return;
        };
        self.events.push_back(Event::Cancel { request });
        let Some(provider) = self.providers.get_mut(&req.peer) else {
            return;
        };
        provider.in_flight = provider.in_flight.saturating_sub(1);
        provider.busy += 1;
        if provider.busy >= MAX_BUSY_IN_A_ROW {
            let busy = provider.busy;
            let cause = "busy, or its streams reset before it answered".to_string();
            self.drop_provider(req.peer, DropReason::TooManyFailures(busy, cause));
            return;
        }
        let pause = BUSY_BACKOFF
            .saturating_mul(1 << (provider.busy - 1).min(16))
            .min(MAX_BUSY_BACKOFF);
        provider.backoff_until = Some(now + pause);
    }

    /// The request's stream ended before the provider said anything: it could not be
    /// opened, or was reset at once (libp2p-stream drops an inbound stream when its
    /// receiver has no room, so a busy provider can look like this). Handled like `Busy`:
    /// a backoff, not a failure; [`MAX_BUSY_IN_A_ROW`] in a row drop the provider.
    pub fn handle_unanswered(&mut self, request: RequestId, now: Instant) {
        self.handle_busy(request, now);
    }

    /// The request's stream failed after the provider answered (reset, connection lost).
    pub fn handle_failed(&mut self, request: RequestId) {
        self.fail_request_because(request, None, "its stream was reset or its connection lost");
    }

    /// Time passed: cancels stalled requests, ends the reconnect grace.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(Some(now));
        for p in self.providers.values_mut() {
            if p.backoff_until.is_some_and(|t| t <= now) {
                p.backoff_until = None;
            }
        }
        if let Some(since) = self.starved_since {
            if now >= since + self.config.reconnect_grace {
                self.grace_expired = true;
            }
        }
        let late: Vec<(RequestId, bool)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now || r.complete_by <= now)
            .map(|(id, r)| (*id, r.deadline <= now))
            .collect();
        for (id, silent) in late {
            let reason = if silent {
                DropReason::Stalled(self.config.request_timeout)
            } else {
                DropReason::TooSlow {
                    min_rate: self.config.min_request_rate,
                }
            };
            self.fail_request(id, Some(reason));
        }
    }

    // --- poll_* ---

    /// The next request to send, if any provider can take one.
    #[must_use]
    pub fn poll_request(&mut self, now: Instant) -> Option<Request> {
        self.now = self.now.max(Some(now));
        for p in self.providers.values_mut() {
            if let Some(pause) = p.backoff_pending.take() {
                p.backoff_until = Some(now + pause);
            }
        }
        if self.complete {
            return None;
        }
        let limit = self.config.requests_per_provider.max(1);
        let usable: Vec<PeerId> = self
            .providers
            .iter()
            .filter(|(_, p)| p.dropped.is_none() && p.backoff_until.is_none_or(|t| t <= now))
            .map(|(peer, _)| *peer)
            .collect();
        let Some(size) = self.size else {
            // Size unknown: a probe to a provider picked at random, and a second one to
            // another provider if the first has not proven the size in time.
            let probes: Vec<(PeerId, Instant)> = self
                .requests
                .values()
                .filter(|r| r.probe)
                .map(|r| (r.peer, r.sent))
                .collect();
            let race = match probes.as_slice() {
                [] => false,
                [(_, sent)] if now >= *sent + self.config.probe_race_delay => true,
                _ => return None,
            };
            let candidates: Vec<PeerId> = usable
                .iter()
                .filter(|p| !probes.iter().any(|(q, _)| q == *p))
                .copied()
                .collect();
            if candidates.is_empty() || (!probes.is_empty() && !race) {
                return None;
            }
            let peer = candidates[self.rng.random_range(0..candidates.len())];
            let ranges = ChunkRanges::from(ChunkNum(PROBE_CHUNK)..);
            return Some(self.start_request(peer, ranges, true, now));
        };
        let peer = usable
            .iter()
            .filter(|peer| self.providers[*peer].in_flight < limit)
            .min_by_key(|peer| self.providers[*peer].in_flight)
            .copied()?;
        let mut missing = all_chunks(size);
        missing.difference_with(&self.have);
        for req in self.requests.values() {
            missing.difference_with(&req.ranges);
        }
        if missing.is_empty() {
            return self.endgame(peer, now);
        }
        let total = count_chunks(&missing, size);
        let share = total / usable.len().max(1) as u64;
        let group = CHUNKS_PER_GROUP;
        let span = share
            .clamp(
                self.config.min_request_bytes / 1024,
                self.config.max_request_bytes / 1024,
            )
            .div_ceil(group)
            .max(1)
            * group;
        let ranges = take_prefix(&missing, span, size);
        Some(self.start_request(peer, ranges, false, now))
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty()
            && !self.stuck_reported
            && self.starving()
            && (self.grace_expired || !self.may_reconnect())
        {
            self.stuck_reported = true;
            return Some(Event::Stuck);
        }
        self.events.pop_front()
    }

    /// The earliest request deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let grace = self
            .starved_since
            .filter(|_| !self.grace_expired && self.starving())
            .map(|since| since + self.config.reconnect_grace);
        let race = match self.size {
            None if self.usable_providers() > 1 => {
                let mut probes = self.requests.values().filter(|r| r.probe);
                match (probes.next(), probes.next()) {
                    (Some(first), None) => Some(first.sent + self.config.probe_race_delay),
                    _ => None,
                }
            }
            _ => None,
        };
        // A provider coming out of its backoff may take a request (only matters while
        // something is left to ask for).
        let backoff = self
            .providers
            .values()
            .filter(|p| p.dropped.is_none())
            .filter_map(|p| p.backoff_until)
            .filter(|_| !self.complete)
            .min();
        let wake_ups = race
            .into_iter()
            .chain(backoff)
            .filter(|t| self.now.is_none_or(|now| *t > now));
        self.requests
            .values()
            .map(|r| r.deadline.min(r.complete_by))
            .chain(grace)
            .chain(wake_ups)
            .min()
    }
}

/// How many chunks of a blob of `size` bytes `ranges` covers (an open range ends at the
/// blob's end).
pub(crate) fn count_chunks(ranges: &ChunkRanges, size: u64) -> u64 {
    let end = crate::blob::tree::chunks(size).0;
    ranges
        .iter()
        .map(|r| match r {
            range_collections::range_set::RangeSetRange::Range(r) => r.end.0 - r.start.0,
            range_collections::range_set::RangeSetRange::RangeFrom(r) => {
                end.saturating_sub(r.start.0)
            }
        })
        .sum()
}

/// The first `span` chunks of `ranges` (possibly several fragments).
fn take_prefix(ranges: &ChunkRanges, span: u64, size: u64) -> ChunkRanges {
    let end = crate::blob::tree::chunks(size).0;
    let mut out = ChunkRanges::empty();
    let mut left = span;
    for r in ranges.iter() {
        if left == 0 {
            break;
        }
        let (start, stop) = match r {
            range_collections::range_set::RangeSetRange::Range(r) => (r.start.0, r.end.0),
            range_collections::range_set::RangeSetRange::RangeFrom(r) => (r.start.0, end),
        };
        let take = (stop - start).min(left);
        out |= ChunkRanges::from(ChunkNum(start)..ChunkNum(start + take));
        left -= take;
    }
    out
}
