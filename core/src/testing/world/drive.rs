//! Driving the [`World`]: steps in virtual time, each node's drain, and streams carried
//! over the links (the shared timing model, trickles, cuts, partitions).

use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p_identity::PeerId;

use super::{Delivery, StreamEnd, World};
use crate::node::{Input, Output};
use crate::peer;
use crate::stream::{self, StreamId};

impl World {
    // --- driving ---

    /// Processes the next delivery or timer. Returns false if there is nothing at all.
    pub fn step(&mut self) -> bool {
        let next_delivery = self.queue.keys().next().map(|(t, _)| *t);
        let next_timer = self
            .timers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (t, i)))
            .min();
        let deliver = match (next_delivery, next_timer) {
            (None, None) => return false,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(d), Some((t, _))) => d <= t,
        };
        self.steps += 1;
        if deliver {
            let (key, delivery) = self.queue.pop_first().expect("checked above");
            self.now = self.now.max(key.0);
            if let (Input::Stream(stream::Input::Flushed { stream }), Some(tag)) =
                (&delivery.input, delivery.flush_tag)
            {
                let current = self.streams.get(&(delivery.node, *stream)).map(|s| s.sends);
                if current != Some(tag) {
                    return true; // more was sent since: a later flush will come
                }
            }
            if let Input::Stream(stream::Input::Reset { stream }) = &delivery.input {
                self.streams.remove(&(delivery.node, *stream));
            }
            let node = delivery.node;
            self.nodes[node].handle_input(self.now, delivery.input);
            self.drain(node);
            if let Some((from, stream)) = delivery.trickle {
                let to = delivery.node;
                if let Some(every) = self.links[&(from, to)].config.trickle {
                    self.next_trickle(from, stream, every);
                }
            }
        } else {
            let (at, node) = next_timer.expect("checked above");
            self.now = self.now.max(at);
            self.timers[node] = None;
            self.nodes[node].handle_input(self.now, Input::Timeout);
            self.drain(node);
        }
        true
    }

    /// True when nothing is in flight and no node has a deadline other than housekeeping.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.nodes.iter().all(|n| n.is_idle())
    }

    /// Steps until idle. Panics after ten million steps (a livelock).
    pub fn drive(&mut self) {
        assert!(
            self.drive_bounded(10_000_000),
            "world {} did not settle (livelock?)",
            self.seed
        );
    }

    /// Steps until idle or `max_steps` steps; true if it became idle.
    pub fn drive_bounded(&mut self, max_steps: u64) -> bool {
        for _ in 0..max_steps {
            if self.is_idle() {
                return true;
            }
            if !self.step() {
                return self.is_idle();
            }
        }
        self.is_idle()
    }

    /// Steps until virtual time reaches `deadline` (or everything is idle).
    pub fn drive_until(&mut self, deadline: Instant) {
        while !self.is_idle() {
            let next = self
                .queue
                .keys()
                .next()
                .map(|(t, _)| *t)
                .into_iter()
                .chain(self.timers.iter().flatten().copied())
                .min();
            match next {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(deadline);
    }

    /// Steps every delivery and timer (housekeeping ones too: heads digests, watchdogs)
    /// until virtual time reaches `deadline`, idle or not.
    pub fn run_until(&mut self, deadline: Instant) {
        loop {
            let next = self
                .queue
                .keys()
                .next()
                .map(|(t, _)| *t)
                .into_iter()
                .chain(self.timers.iter().flatten().copied())
                .min();
            match next {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(deadline);
    }

    /// Drains node `i`'s outputs into the world.
    pub fn drain(&mut self, i: usize) {
        loop {
            match self.nodes[i].poll_output() {
                Output::Timeout(at) => {
                    self.timers[i] = Some(at);
                    return;
                }
                Output::Event(event) => self.events.push((i, self.now, event)),
                Output::Persist(batch) => {
                    // The work runs now (it is nothing in memory); its verdict arrives
                    // after the disk's delay.
                    let at = self.now + self.persist_delay;
                    let mut done = batch.run();
                    if self.persist_fails.contains(&i) {
                        done.result = Err(crate::blob::store::StoreError::Io(
                            "the disk failed (World::fail_persists)".into(),
                        ));
                    }
                    self.schedule(at, i, Input::Persisted(done), None, None);
                }
                Output::Verify(job) => {
                    // Checked now (real CPU, no virtual time); the verdict comes back after
                    // the world's verification delay.
                    let rng = crate::sync::SeededBatchRng::new(self.seed ^ job.id());
                    let verified = job.run(rng);
                    let at = self.now + self.verify_delay;
                    self.schedule(at, i, Input::Verified(verified), None, None);
                }
                Output::Peer(peer::Output::Disconnect { peer, .. }) => {
                    if let Some(j) = self.index_of(&peer) {
                        self.disconnect(i, j);
                    }
                }
                // Every pair starts connected: a dial has nothing to do.
                Output::Peer(peer::Output::Dial { .. }) => {}
                Output::Dht(out) => self.dht(i, out),
                Output::Gossip(out) => self.gossip(i, out),
                Output::Stream(stream::Output::Open {
                    stream,
                    peer,
                    protocol,
                }) => self.open_stream(i, stream, peer, protocol),
                Output::Stream(stream::Output::Send { stream, data }) => self.send(i, stream, data),
                Output::Stream(stream::Output::Finish { stream }) => {
                    if let Some(end) = self.streams.get_mut(&(i, stream)) {
                        let (to, remote) = end.remote;
                        let link = &self.links[&(i, to)].config;
                        if link.swallow_finish {
                            continue;
                        }
                        if self.partition.is_some_and(|p| p.blocks(i, to)) {
                            // A reliable stream cannot lose its end: the connection breaks.
                            self.disconnect(i, to);
                            continue;
                        }
                        if !end.trickling.is_empty() {
                            end.finish_after_trickle = true;
                            continue;
                        }
                        let at = self.transmit(i, to, 0);
                        let input = Input::Stream(stream::Input::Finished { stream: remote });
                        self.schedule(at, to, input, Some((i, to)), None);
                    }
                }
                Output::Stream(stream::Output::Reset { stream }) => {
                    if let Some(end) = self.streams.remove(&(i, stream)) {
                        let (to, remote) = end.remote;
                        if self.blocked(i, to) {
                            continue; // the peer learns it when the connection breaks
                        }
                        let at = self.now + self.links[&(i, to)].config.latency;
                        let input = Input::Stream(stream::Input::Reset { stream: remote });
                        self.schedule(at, to, input, Some((i, to)), None);
                    }
                }
            }
        }
    }

    pub(super) fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p == peer)
    }

    pub(super) fn open_stream(
        &mut self,
        from: usize,
        stream: StreamId,
        peer: PeerId,
        protocol: crate::wire::ProtocolId,
    ) {
        let now = self.now;
        let to = match self.index_of(&peer) {
            Some(to)
                if self.links.get(&(from, to)).is_some_and(|l| l.config.up)
                    && self.connected.contains(&(from.min(to), from.max(to)))
                    && !self.blocked(from, to)
                    && !self.blocked(to, from) =>
            {
                to
            }
            _ => {
                let reason = format!("no link to {peer}");
                self.schedule(
                    now,
                    from,
                    Input::Stream(stream::Input::OpenFailed { stream, reason }),
                    None,
                    None,
                );
                return;
            }
        };
        let remote = StreamId::inbound(self.next_inbound[to]);
        self.next_inbound[to] += 1;
        self.streams.insert(
            (from, stream),
            StreamEnd {
                remote: (to, remote),
                protocol,
                sends: 0,
                trickling: Default::default(),
                finish_after_trickle: false,
            },
        );
        self.streams.insert(
            (to, remote),
            StreamEnd {
                remote: (from, stream),
                protocol,
                sends: 0,
                trickling: Default::default(),
                finish_after_trickle: false,
            },
        );
        let latency = self.links[&(from, to)].config.latency;
        let peer_from = self.peers[from];
        let opened_remote = Input::Stream(stream::Input::Opened {
            stream: remote,
            peer: peer_from,
            protocol,
        });
        self.schedule(now + latency, to, opened_remote, Some((from, to)), None);
        // Protocol negotiation takes a round trip before the opener may write.
        let opened_local = Input::Stream(stream::Input::Opened {
            stream,
            peer,
            protocol,
        });
        self.schedule(
            now + latency * 2,
            from,
            opened_local,
            Some((to, from)),
            None,
        );
    }

    pub(super) fn send(&mut self, from: usize, stream: StreamId, data: Bytes) {
        let Some(end) = self.streams.get_mut(&(from, stream)) else {
            return; // the stream is gone: the bytes go nowhere, as on a reset socket
        };
        end.sends += 1;
        let tag = end.sends;
        let (to, remote) = end.remote;
        // `self.blocked` would borrow all of `self` while `end` holds `self.streams`.
        if self.partition.is_some_and(|p| p.blocks(from, to)) {
            // A reliable stream cannot lose bytes: the connection breaks instead.
            return self.disconnect(from, to);
        }
        let len = data.len();
        *self.sent.entry((from, to, end.protocol)).or_default() += len;
        if let Some(every) = self.links[&(from, to)].config.trickle {
            let idle = end.trickling.is_empty();
            end.trickling.extend(data.iter());
            if idle && !data.is_empty() {
                self.next_trickle(from, stream, every);
            }
            let flushed = Input::Stream(stream::Input::Flushed { stream });
            let now = self.now;
            self.schedule(now, from, flushed, None, Some(tag));
            return;
        }
        let at = self.transmit(from, to, len);
        // A real stream never delivers an empty read (a read of 0 bytes is its end), so
        // neither does the harness.
        if !data.is_empty() {
            let input = Input::Stream(stream::Input::Data {
                stream: remote,
                data,
            });
            self.schedule(at, to, input, Some((from, to)), None);
        }
        let flushed_at = self.instant(self.links[&(from, to)].wire.busy_until());
        let flushed = Input::Stream(stream::Input::Flushed { stream });
        self.schedule(flushed_at, from, flushed, None, Some(tag));
    }

    /// Schedules the next trickled byte of `from`'s `stream` (or its finish) `every` from now.
    pub(super) fn next_trickle(&mut self, from: usize, stream: StreamId, every: Duration) {
        let Some(end) = self.streams.get_mut(&(from, stream)) else {
            return;
        };
        let (to, remote) = end.remote;
        if self.partition.is_some_and(|p| p.blocks(from, to)) {
            return self.disconnect(from, to);
        }
        let at = self.now + every;
        let input = match end.trickling.pop_front() {
            Some(byte) => Input::Stream(stream::Input::Data {
                stream: remote,
                data: Bytes::copy_from_slice(&[byte]),
            }),
            None if end.finish_after_trickle => {
                end.finish_after_trickle = false;
                Input::Stream(stream::Input::Finished { stream: remote })
            }
            None => return,
        };
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Delivery {
                node: to,
                input,
                link: Some((from, to)),
                flush_tag: None,
                trickle: Some((from, stream)),
            },
        );
    }

    /// Puts `len` bytes of a stream on the link; returns when they arrive (the shared
    /// [`link::Link::transmit`](crate::testing::link::Link::transmit)).
    pub(super) fn transmit(&mut self, from: usize, to: usize, len: usize) -> Instant {
        let now = self.since_start(self.now);
        let wire = &mut self
            .links
            .get_mut(&(from, to))
            .expect("links exist for all pairs")
            .wire;
        let lost = wire.draw_loss(&mut self.rng);
        let at = wire.transmit(now, len, lost);
        self.instant(at)
    }

    pub(super) fn schedule(
        &mut self,
        at: Instant,
        node: usize,
        input: Input,
        link: Option<(usize, usize)>,
        flush_tag: Option<u64>,
    ) {
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Delivery {
                node,
                input,
                link,
                flush_tag,
                trickle: None,
            },
        );
    }
}
