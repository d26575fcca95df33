//! Catch-up sessions on `/sinew/sync/1` streams: the session machines of
//! [`crate::sync::session`] fed by frames, with verification on workers, credit granted
//! once batches are durable, idle deadlines and server limits.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use libp2p_identity::PeerId;

use super::MAX_SYNC_FRAME;
use super::{AfterDurable, Contexts, Event, Output, Purpose, Timer, Verified, VerifyJob};
use crate::blob::store::BlobStore;
use crate::framing::{self, Decoder};
use crate::stream::{self, StreamId, StreamIds};
use crate::sync::session::{Received, Requester, Responder};
use crate::sync::store::ContextStore;
use crate::sync::tx::ContextId;
use crate::wire::{self, Message, ProtocolId};

/// One catch-up stream.
#[derive(Debug)]
pub(super) enum Session {
    /// We catch up from the peer.
    Out(Box<Outbound>),
    /// The peer catches up from us.
    In(Box<Inbound>),
}

impl Session {
    pub(super) fn context(&self) -> Option<ContextId> {
        match self {
            Session::Out(out) => Some(out.context),
            Session::In(inbound) => inbound.machine.as_ref().map(|(c, _)| *c),
        }
    }

    fn peer(&self) -> PeerId {
        match self {
            Session::Out(out) => out.peer,
            Session::In(inbound) => inbound.peer,
        }
    }
}

#[derive(Debug)]
pub(super) struct Outbound {
    context: ContextId,
    peer: PeerId,
    /// Made when the stream opens (it shows the DAG as it is then).
    machine: Option<Requester>,
    decoder: Decoder,
    /// Verification jobs out, in order, with their bytes.
    jobs: VecDeque<(u64, u64)>,
    /// Jobs back before an earlier one.
    ready: BTreeMap<u64, Verified>,
    /// Credit grants waiting for their batch to be durable.
    credits_waiting: usize,
    /// Transactions this session applied.
    applied: u64,
    /// Every head of the peer's is here; reported once durable.
    complete: bool,
    finished_theirs: bool,
    /// When the session was opened (for the catch-up time).
    opened_at: Instant,
}

#[derive(Debug)]
pub(super) struct Inbound {
    peer: PeerId,
    decoder: Decoder,
    machine: Option<(ContextId, Responder)>,
    finished_ours: bool,
}

fn decoder() -> Decoder {
    Decoder::new(framing::Config {
        max_frame_len: MAX_SYNC_FRAME,
    })
}

fn frame(msg: &Message) -> Bytes {
    let mut body = BytesMut::new();
    wire::encode(msg, &mut body).expect("our own messages are within the wire limits");
    let mut out = BytesMut::with_capacity(body.len() + framing::HEADER_LEN);
    framing::Encoder::new(framing::Config {
        max_frame_len: MAX_SYNC_FRAME,
    })
    .encode(&body, &mut out)
    .expect("our own messages are within the sync frame limit");
    out.freeze()
}

impl Contexts {
    /// The catch-up of `context` running now: (transactions received, planned).
    pub(crate) fn progress(&self, context: &ContextId) -> Option<(u64, u64)> {
        let stream = self.contexts.get(context)?.session?;
        let Some(Session::Out(out)) = self.sessions.get(&stream) else {
            return None;
        };
        let machine = out.machine.as_ref()?;
        Some((machine.received().0, machine.planned().map_or(0, |p| p.0)))
    }

    fn send(&mut self, stream: StreamId, msg: &Message) {
        let data = frame(msg);
        self.out
            .push_back(Output::Stream(stream::Output::Send { stream, data }));
    }

    fn touch(&mut self, stream: StreamId, now: Instant) {
        let at = now + self.config.session_idle_timeout;
        self.timers.set(Timer::Session(stream), Some(at));
    }

    /// Opens a session for every context that wants one and has none.
    pub(super) fn start_sessions(&mut self, now: Instant, ids: &mut StreamIds) {
        let starting: Vec<(ContextId, PeerId)> = self
            .contexts
            .iter_mut()
            .filter(|(_, c)| c.session.is_none())
            .filter_map(|(id, c)| c.wanted.pop_first().map(|peer| (*id, peer)))
            .collect();
        for (context, peer) in starting {
            let stream = ids.next();
            self.out.push_back(Output::Stream(stream::Output::Open {
                stream,
                peer,
                protocol: ProtocolId::SYNC,
            }));
            self.sessions.insert(
                stream,
                Session::Out(Box::new(Outbound {
                    context,
                    peer,
                    machine: None,
                    decoder: decoder(),
                    jobs: VecDeque::new(),
                    ready: BTreeMap::new(),
                    credits_waiting: 0,
                    applied: 0,
                    complete: false,
                    finished_theirs: false,
                    opened_at: now,
                })),
            );
            if let Some(ctx) = self.contexts.get_mut(&context) {
                ctx.session = Some(stream);
            }
            self.stats.sessions_opened += 1;
            self.touch(stream, now);
        }
    }

    /// A peer opened a catch-up stream: accepted within the server's limits.
    pub(crate) fn handle_inbound(&mut self, stream: StreamId, peer: PeerId, now: Instant) -> bool {
        let inbound = self
            .sessions
            .values()
            .filter(|s| matches!(s, Session::In(_)));
        let (all, theirs) = inbound.fold((0, 0), |(all, theirs), s| {
            (all + 1, theirs + usize::from(s.peer() == peer))
        });
        if all >= self.config.max_inbound_sessions
            || theirs >= self.config.max_inbound_sessions_per_peer
        {
            self.stats.sessions_refused += 1;
            return false;
        }
        self.sessions.insert(
            stream,
            Session::In(Box::new(Inbound {
                peer,
                decoder: decoder(),
                machine: None,
                finished_ours: false,
            })),
        );
        self.touch(stream, now);
        true
    }

    /// Our stream opened: the hello goes out.
    pub(crate) fn handle_opened(&mut self, stream: StreamId) -> bool {
        let Some(Session::Out(out)) = self.sessions.get_mut(&stream) else {
            return false;
        };
        let Some(ctx) = self.contexts.get(&out.context) else {
            return false;
        };
        let (machine, hello) = Requester::open(
            out.context,
            ctx.dag.as_ref(),
            &ctx.key,
            &self.local,
            &out.peer,
            self.config.credit,
        );
        out.machine = Some(machine);
        self.send(stream, &hello);
        true
    }

    /// Bytes arrived on a catch-up stream: every whole frame is handled.
    pub(crate) fn handle_data<S: BlobStore + ContextStore>(
        &mut self,
        stream: StreamId,
        data: Bytes,
        now: Instant,
        store: &mut S,
    ) {
        match self.sessions.get_mut(&stream) {
            Some(Session::Out(out)) => {
                if out.machine.is_none() {
                    let error = ("data before the stream opened".into(), true);
                    return self.end_session(stream, Some(error));
                }
                out.decoder.push_bytes(data);
            }
            Some(Session::In(inbound)) => inbound.decoder.push_bytes(data),
            None => return,
        }
        loop {
            let frame = match self.sessions.get_mut(&stream) {
                Some(Session::Out(out)) => out.decoder.pop(),
                Some(Session::In(inbound)) => inbound.decoder.pop(),
                None => return,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => return self.end_session(stream, Some((format!("bad frame: {e}"), true))),
            };
            self.touch(stream, now);
            let msg = match wire::decode(&frame) {
                Ok(msg) => msg,
                Err(e) => {
                    return self.end_session(stream, Some((format!("bad message: {e}"), true)))
                }
            };
            if !self.handle_message(stream, msg, store) {
                return;
            }
        }
    }

    /// One message of a session; false if the session ended.
    fn handle_message<S: BlobStore + ContextStore>(
        &mut self,
        stream: StreamId,
        msg: Message,
        store: &mut S,
    ) -> bool {
        match self.sessions.get_mut(&stream) {
            Some(Session::Out(out)) => {
                let machine = out.machine.as_mut().expect("checked when the bytes came");
                match machine.receive(msg) {
                    Ok(Received::Plan { txs, app, .. }) => {
                        let event = Event::CatchUpProgress {
                            context: out.context,
                            peer: out.peer,
                            received: 0,
                            planned: txs,
                        };
                        let peer = out.peer;
                        self.out.push_back(Output::Event(event));
                        if let Some(app) = app {
                            self.fetch_app(app, peer, store);
                        }
                        true
                    }
                    Ok(Received::Batch { txs, bytes }) => {
                        self.stats.batches_received += 1;
                        self.stats.bytes_received += bytes;
                        let job = self.next_job;
                        self.next_job += 1;
                        out.jobs.push_back((job, bytes));
                        self.jobs.insert(job, Purpose::Session(stream));
                        self.out
                            .push_back(Output::Verify(VerifyJob { id: job, txs }));
                        true
                    }
                    Ok(Received::Done { .. }) => {
                        self.try_complete(stream, store);
                        self.sessions.contains_key(&stream)
                    }
                    Ok(Received::Ranges(list)) => {
                        self.stats.reconcile_rounds += 1;
                        let dag = self.contexts.get(&out.context).and_then(|c| c.dag.as_ref());
                        match machine.answer_ranges(dag, &list) {
                            Ok(reply) => {
                                self.send(stream, &reply);
                                true
                            }
                            Err(e) => {
                                self.end_session(stream, Some((e.to_string(), true)));
                                false
                            }
                        }
                    }
                    Err(e) => {
                        self.end_session(stream, Some((e.to_string(), true)));
                        false
                    }
                }
            }
            Some(Session::In(inbound)) => {
                let ok = match (&mut inbound.machine, msg) {
                    (None, Message::SyncHello(hello)) => {
                        let context = crate::sync::TxId(hello.context);
                        let accepted = self
                            .contexts
                            .get(&context)
                            .and_then(|c| c.dag.as_ref())
                            .and_then(|dag| {
                                Responder::accept(dag, &hello, &self.local, &inbound.peer).ok()
                            });
                        match accepted {
                            Some(responder) => {
                                inbound.machine = Some((context, responder));
                                self.stats.sessions_served += 1;
                                Ok(())
                            }
                            // Not a member here (or a context we do not hold): nothing.
                            None => {
                                self.stats.sessions_refused += 1;
                                Err(None)
                            }
                        }
                    }
                    (None, _) => Err(Some("a message before the hello".to_string())),
                    (Some((context, responder)), msg) => {
                        match self.contexts.get(context).and_then(|c| c.dag.as_ref()) {
                            Some(dag) => {
                                responder.handle(dag, msg).map_err(|e| Some(e.to_string()))
                            }
                            None => Err(None),
                        }
                    }
                };
                match ok {
                    Ok(()) => {
                        self.pump(stream, store);
                        true
                    }
                    Err(reason) => {
                        self.end_session(stream, reason.map(|r| (r, true)));
                        false
                    }
                }
            }
            None => false,
        }
    }

    /// Sends what the responder may send now (within the credit); finishes after the heads.
    fn pump<S: ContextStore>(&mut self, stream: StreamId, store: &S) {
        loop {
            let Some(Session::In(inbound)) = self.sessions.get_mut(&stream) else {
                return;
            };
            if inbound.finished_ours {
                return;
            }
            let Some((context, responder)) = &mut inbound.machine else {
                return;
            };
            let Some(dag) = self.contexts.get(context).and_then(|c| c.dag.as_ref()) else {
                return;
            };
            let msg = match responder.poll(dag, store) {
                Ok(Some(msg)) => msg,
                Ok(None) => return,
                Err(e) => {
                    self.end_session(stream, Some((e.to_string(), false)));
                    return;
                }
            };
            let last = responder.is_finished();
            if last {
                inbound.finished_ours = true;
            }
            if let Message::SyncBatch(batch) = &msg {
                self.stats.batches_sent += 1;
                self.stats.bytes_sent += batch.txs().iter().map(|t| t.len() as u64).sum::<u64>();
            }
            self.send(stream, &msg);
            if last {
                self.out
                    .push_back(Output::Stream(stream::Output::Finish { stream }));
            }
        }
    }

    /// A verification job of session `stream` came back: batches are applied in order.
    pub(super) fn session_verified<S: BlobStore + ContextStore>(
        &mut self,
        stream: StreamId,
        verified: Verified,
        now: Instant,
        store: &mut S,
    ) {
        let Some(Session::Out(out)) = self.sessions.get_mut(&stream) else {
            return;
        };
        out.ready.insert(verified.id, verified);
        loop {
            let Some(Session::Out(out)) = self.sessions.get_mut(&stream) else {
                return;
            };
            let Some(&(job, bytes)) = out.jobs.front() else {
                break;
            };
            let Some(verified) = out.ready.remove(&job) else {
                break;
            };
            out.jobs.pop_front();
            let (context, peer) = (out.context, out.peer);
            let before = self
                .contexts
                .get(&context)
                .and_then(|c| c.dag.as_ref())
                .map_or(0, |d| d.len());
            match self.apply(&context, peer, verified.results, now, store) {
                Ok(_) => {}
                Err(reason) => {
                    self.end_session(stream, Some((reason, true)));
                    return;
                }
            }
            let after = self
                .contexts
                .get(&context)
                .and_then(|c| c.dag.as_ref())
                .map_or(0, |d| d.len());
            let Some(Session::Out(out)) = self.sessions.get_mut(&stream) else {
                return;
            };
            out.applied += (after - before) as u64;
            out.credits_waiting += 1;
            self.durable
                .push_back((store.written_seq(), AfterDurable::Credit { stream, bytes }));
        }
        self.try_complete(stream, store);
    }

    /// Once the heads came and every batch is applied: checks every head is here.
    fn try_complete<S: BlobStore>(&mut self, stream: StreamId, store: &S) {
        let Some(Session::Out(out)) = self.sessions.get_mut(&stream) else {
            return;
        };
        let heads_came = out
            .machine
            .as_ref()
            .is_some_and(|m| m.final_heads().is_some());
        if !heads_came || !out.jobs.is_empty() || out.complete {
            return;
        }
        let dag = self.contexts.get(&out.context).and_then(|c| c.dag.as_ref());
        let machine = out.machine.as_mut().expect("heads came");
        match machine.finish(dag) {
            Ok(()) => {
                out.complete = true;
                self.durable
                    .push_back((store.written_seq(), AfterDurable::Synced { stream }));
            }
            Err(e) => self.end_session(stream, Some((e.to_string(), true))),
        }
    }

    /// A batch of `stream`'s is durable: the responder may send that much more.
    pub(super) fn grant(&mut self, stream: StreamId, bytes: u64) {
        let Some(Session::Out(out)) = self.sessions.get_mut(&stream) else {
            return;
        };
        out.credits_waiting = out.credits_waiting.saturating_sub(1);
        if out.complete {
            return; // nothing more will come
        }
        let Some(machine) = out.machine.as_mut() else {
            return;
        };
        let grant = machine.applied(bytes);
        let progress = Event::CatchUpProgress {
            context: out.context,
            peer: out.peer,
            received: machine.received().0,
            planned: machine.planned().map_or(0, |p| p.0),
        };
        self.out.push_back(Output::Event(progress));
        self.send(stream, &grant);
    }

    /// Everything of `stream`'s session is durable: it ended well.
    pub(super) fn synced(&mut self, stream: StreamId) {
        let Some(Session::Out(out)) = self.sessions.remove(&stream) else {
            return;
        };
        self.timers.clear(Timer::Session(stream));
        if let Some(ctx) = self.contexts.get_mut(&out.context) {
            ctx.session = None;
            ctx.wanted.remove(&out.peer);
        }
        let took = self.now.saturating_duration_since(out.opened_at);
        self.stats.sessions_synced += 1;
        self.stats.catch_up_time += took;
        self.stats.last_catch_up = Some(took);
        self.out.push_back(Output::Event(Event::Synced {
            context: out.context,
            peer: out.peer,
            applied: out.applied,
        }));
        self.out
            .push_back(Output::Stream(stream::Output::Finish { stream }));
        if out.finished_theirs {
            self.out.push_back(Output::Forget(stream));
        } else {
            // The responder finishes after its heads; we are done either way.
            self.out
                .push_back(Output::Stream(stream::Output::Reset { stream }));
        }
    }

    /// The peer finished its side; true when the node may forget the stream.
    pub(crate) fn handle_finished(&mut self, stream: StreamId) -> bool {
        match self.sessions.get_mut(&stream) {
            Some(Session::Out(out)) => {
                out.finished_theirs = true;
                let heads_came = out
                    .machine
                    .as_ref()
                    .is_some_and(|m| m.final_heads().is_some());
                if !heads_came {
                    // Not misbehaviour: a peer that does not hold the context (or no
                    // longer counts us a member) closes without a word.
                    self.end_session(
                        stream,
                        Some(("the responder closed before its heads".into(), false)),
                    );
                    return true;
                }
                false
            }
            Some(Session::In(inbound)) => {
                if inbound.finished_ours {
                    self.sessions.remove(&stream);
                    self.timers.clear(Timer::Session(stream));
                    true
                } else {
                    // The requester gave up: stop sending.
                    self.end_session(stream, None);
                    true
                }
            }
            None => true,
        }
    }

    /// The stream is gone (reset, failed to open, its peer disconnected).
    pub(crate) fn handle_reset(&mut self, stream: StreamId) {
        if let Some(session) = self.sessions.remove(&stream) {
            self.timers.clear(Timer::Session(stream));
            if let Session::Out(out) = session {
                self.session_failed(&out, "the stream was reset".into());
            }
        }
    }

    fn session_failed(&mut self, out: &Outbound, error: String) {
        self.stats.sessions_failed += 1;
        let until = self.now + super::RETRY_BACKOFF;
        self.backoff.insert((out.context, out.peer), until);
        let now = self.now;
        let backoff = &self.backoff;
        if let Some(ctx) = self.contexts.get_mut(&out.context) {
            ctx.session = None;
            ctx.wanted.remove(&out.peer);
            // Fail over: another member seen on the topic, not failed recently.
            if ctx.wanted.is_empty() {
                let context = out.context;
                let other = ctx.peers.iter().find(|p| {
                    **p != out.peer && backoff.get(&(context, **p)).is_none_or(|u| *u <= now)
                });
                if let Some(other) = other {
                    ctx.wanted.insert(*other);
                }
            }
        }
        self.out.push_back(Output::Event(Event::SyncFailed {
            context: out.context,
            peer: out.peer,
            error,
        }));
    }

    /// Ends `stream`'s session with a reset; `error` (with whether the peer broke a rule)
    /// is reported for our own sessions.
    pub(super) fn end_session(&mut self, stream: StreamId, error: Option<(String, bool)>) {
        let Some(session) = self.sessions.remove(&stream) else {
            return;
        };
        self.timers.clear(Timer::Session(stream));
        self.out
            .push_back(Output::Stream(stream::Output::Reset { stream }));
        let peer = session.peer();
        if let Some((reason, true)) = &error {
            self.out.push_back(Output::Misbehaved {
                peer,
                reason: format!("sync: {reason}"),
            });
        }
        if let Session::Out(out) = session {
            for (job, _) in &out.jobs {
                self.jobs.remove(job);
            }
            let reason = error.map_or_else(|| "ended".to_string(), |(r, _)| r);
            self.session_failed(&out, reason);
        }
    }

    /// A session's idle deadline passed.
    pub(super) fn session_timeout(&mut self, stream: StreamId, now: Instant) {
        let waiting_on_us = match self.sessions.get(&stream) {
            Some(Session::Out(out)) => {
                !out.jobs.is_empty() || out.credits_waiting > 0 || out.complete
            }
            Some(Session::In(_)) => false,
            None => {
                self.timers.clear(Timer::Session(stream));
                return;
            }
        };
        if waiting_on_us {
            self.touch(stream, now);
        } else {
            self.end_session(stream, Some(("idle timeout".into(), false)));
        }
    }
}
