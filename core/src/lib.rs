//! # sinew-core: Sinew's sans-IO core
//!
//! Sinew is a peer-to-peer networking and replication library. This crate is its core:
//! pure state machines that decide *what* to send and *what* to believe, with no sockets,
//! tasks, threads, clocks or OS randomness. The runtimes (`sinew-tokio`, `sinew-smol`) and
//! the simulator (`sinew-sim`) drive the very same [`Node`]; so do the tests, with the
//! deterministic `testing::World` (feature `test-utils`).
//!
//! What is inside:
//! - [`node`]: the [`Node`], a router over protocol children, behind one
//!   [`Input`]/[`Output`] contract (this page teaches it);
//! - [`stream`], [`peer`] and [`dht`]: the areas of that contract — stream ids and the
//!   life of a stream; peers connecting, pings and what the node decides about them; the
//!   DHT's lookups, addresses and what the node decides about it;
//! - [`discovery`]: bootstrap, the DHT's mode and routing table, the ping watchdog;
//! - [`gossip`]: topics — what the application publishes and subscribes to goes through
//!   the node, and what arrives comes back through it;
//! - [`blob`]: verified BLAKE3 blob transfer — outboards, the provider's
//!   [`blob::Encoder`], the response [`blob::Decoder`], the multi-provider, resumable
//!   [`blob::Download`], the store trait ([`blob::store`]) and the protocol
//!   `/sinew/blob/1`;
//! - [`sync`]: contexts — signed transaction DAGs shared by their members, membership
//!   decided at each transaction's position, live gossip of transactions and heads
//!   digests, and the one-round-trip catch-up over `/sinew/sync/1` paced by credit
//!   ([`sync::contexts`] is the node's child; [`sync::session`] the two session machines);
//! - [`framing`] and [`wire`]: length-delimited frames with hard limits, and Sinew's
//!   versioned messages.
//!
//! # The contract: drain after every mutation
//!
//! <div class="warning">
//!
//! **The drain invariant.** After *every* call that mutates the node, drain
//! [`Node::poll_output`] until it returns [`Output::Timeout`], before the next mutation.
//!
//! </div>
//!
//! The calls that mutate a node are exactly:
//! - [`Node::handle_input`] — something happened (time passed, a peer came or went, a
//!   stream opened, bytes arrived, bytes were written, a stream ended, a persist batch
//!   came back);
//! - the commands: [`Node::subscribe`], [`Node::unsubscribe`], [`Node::publish`],
//!   [`Node::request_blob`], [`Node::add_blob`], [`Node::import_blob`],
//!   [`Node::announce_blob`], [`Node::cancel_download`], [`Node::delete_blob`],
//!   [`Node::forget_checked`], [`Node::persist_all`], [`Node::create_context`],
//!   [`Node::join_context`], [`Node::leave_context`], [`Node::submit`],
//!   [`Node::submit_payload`], [`Node::invite`], [`Node::sync_context`];
//! - [`Node::store_mut`] (importing into the store behind the node's back).
//!
//! Commands may be called *while* draining (say, on an event): their outputs join the same
//! drain. Getters ([`Node::store`], [`Node::poll_timeout`], [`Node::downloads`], …) never
//! mutate. [`Node::into_store`] takes the node apart (a restart builds a new node on the
//! store).
//!
//! # The loop
//!
//! A driver is one loop, the same in both runtimes, the simulator and the fuzzers:
//!
//! 1. **Wait** for whichever comes first: an event of the network (a stream opened, bytes
//!    arrived, bytes were written out, a stream ended, a peer connected or disconnected), a
//!    persist batch's or verification job's verdict, or the instant of the last
//!    [`Output::Timeout`].
//! 2. **Feed** it as one [`Input`] with the time it happened:
//!    `node.handle_input(now, input)`. A timer is [`Input::Timeout`].
//! 3. **Drain** `poll_output()` until `Output::Timeout(at)`, doing what each output says:
//!    - [`Output::Stream`]: open a stream, write bytes, finish or reset it (see
//!      [`stream`] for the life of a stream and its flow control);
//!    - [`Output::Peer`]: act on a peer (dial a bootstrap peer, disconnect one that
//!      misbehaved or stopped answering pings);
//!    - [`Output::Gossip`]: subscribe, unsubscribe, publish (messages come back as
//!      [`Input::Gossip`]);
//!    - [`Output::Dht`]: act on the DHT (mode, bootstrap, routing table, provide, look up;
//!      lookup results come back as [`Input::Dht`]);
//!    - [`Output::Persist`]: run the store's batch of durable work on a worker thread —
//!      never on the task that runs this loop — and, when it is done, feed
//!      `Input::Persisted(batch.run())` like any other input (see [`persist`]: at most one
//!      batch is out; a download is reported complete only once its batch is back);
//!    - [`Output::Verify`]: decode and check a batch of a context's transactions (ids and
//!      signatures, verified as one batch) on a worker thread — never on this loop's task
//!      — with an RNG peers cannot predict, and feed `Input::Verified(job.run(rng))` when
//!      it is done. Jobs may come back in any order; a context's transactions are applied,
//!      and reported [`sync::contexts::Event::Applied`], only once the store made them
//!      durable;
//!    - [`Output::Event`]: hand it to the application;
//!    - [`Output::Timeout`]: remember `at`, go back to 1.
//!
//! **Flow control is part of the contract.** Every byte handed out in a
//! [`stream::Output::Send`] must be reported back once written, with
//! [`stream::Input::Written`] (a count) or [`stream::Input::Flushed`] (everything). A
//! driver that never does stalls every blob response at the send window (512 KiB,
//! [`blob::Config::send_window`]), and the stream is reset when its timeout passes (10 s,
//! [`blob::Config::serve_timeout`]).
//!
//! **Streams** carry ids: the node allocates the ids of streams it opens
//! ([`stream::Output::Open`]); a stream a peer opened gets an id the driver allocates with
//! [`StreamId::inbound`]. After a reset (either way) an id is dead.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::time::{Duration, Instant};
//! use sinew_core::blob::store::MemStore;
//! use sinew_core::{peer, stream, Config, Event, Input, Node, Output, StreamId};
//!
//! /// Whatever the runtime gives: here, a network where nothing ever happens and every
//! /// write completes at once.
//! #[derive(Default)]
//! struct FakeNet {
//!     pending: VecDeque<Input>,
//! }
//! impl FakeNet {
//!     /// The next thing that happened, or a timeout at `deadline`.
//!     fn next_input(&mut self, deadline: Instant) -> (Instant, Input) {
//!         match self.pending.pop_front() {
//!             Some(input) => (deadline, input),
//!             None => (deadline, Input::Timeout),
//!         }
//!     }
//!     fn open(&mut self, stream: StreamId, peer: sinew_core::PeerId) {
//!         let reason = format!("no connection to {peer}");
//!         self.pending.push_back(stream::Input::OpenFailed { stream, reason }.into());
//!     }
//!     fn write(&mut self, stream: StreamId, data: bytes::Bytes) {
//!         // Flow control: say what was written.
//!         let bytes = data.len();
//!         self.pending.push_back(stream::Input::Written { stream, bytes }.into());
//!     }
//!     fn finish(&mut self, _stream: StreamId) {}
//!     fn reset(&mut self, _stream: StreamId) {}
//!     fn disconnect(&mut self, _peer: sinew_core::PeerId) {}
//! }
//!
//! # let local = libp2p_identity::Keypair::ed25519_from_bytes([1; 32]).unwrap().public().to_peer_id();
//! let mut net = FakeNet::default();
//! let start = Instant::now(); // allowed: the driver owns the clock
//! let mut node = Node::new(local, Config::default(), MemStore::new(), start);
//! let mut deadline = start;
//! # let mut turns = 0;
//! loop {
//!     // 1.-2. one input, with the time it happened
//!     let (now, input) = net.next_input(deadline);
//!     node.handle_input(now, input);
//!     // 3. drain until Timeout
//!     loop {
//!         match node.poll_output() {
//!             Output::Stream(stream::Output::Open { stream, peer, .. }) => net.open(stream, peer),
//!             Output::Stream(stream::Output::Send { stream, data }) => net.write(stream, data),
//!             Output::Stream(stream::Output::Finish { stream }) => net.finish(stream),
//!             Output::Stream(stream::Output::Reset { stream }) => net.reset(stream),
//!             Output::Peer(peer::Output::Disconnect { peer, .. }) => net.disconnect(peer),
//!             Output::Peer(out) => println!("peer: {out:?}"),
//!             Output::Dht(out) => println!("dht: {out:?}"),
//!             Output::Gossip(out) => println!("gossip: {out:?}"),
//!             // A real driver runs this on a worker thread and feeds the verdict back
//!             // when it arrives; a memory store's work is nothing.
//!             Output::Persist(batch) => net.pending.push_back(Input::Persisted(batch.run())),
//!             // The same for signature checks: a worker thread, an OS-seeded RNG.
//!             Output::Verify(job) => {
//!                 let rng = sinew_core::sync::SeededBatchRng::new(job.id()); // tests only
//!                 net.pending.push_back(Input::Verified(job.run(rng)));
//!             }
//!             Output::Event(Event::Blob(event)) => println!("blob: {event:?}"),
//!             Output::Event(event) => println!("{event:?}"),
//!             Output::Timeout(at) => {
//!                 deadline = at;
//!                 break;
//!             }
//!             // Outputs of later versions (the enums are non-exhaustive).
//!             other => println!("not handled yet: {other:?}"),
//!         }
//!     }
//! #   turns += 1;
//! #   if turns == 3 { break; }
//! }
//! # assert!(deadline >= start + Duration::from_secs(60)); // idle: the housekeeping wake-up
//! ```
//!
//! # Time and randomness are arguments
//!
//! The core never reads a clock: every input comes with `now`, and a `now` earlier than the
//! last one is taken as the last one (time never goes backwards). A timeout that fires
//! early or twice does nothing. The node says why it asked to be woken
//! ([`Node::last_timeout_reason`]); a node whose only deadline is housekeeping reports
//! [`Node::poll_timeout`] as `None`. Randomness comes from [`node::Config::seed`]; given
//! the same inputs at the same times, a node produces the same outputs — which is what lets
//! the harness and the simulator replay a run from its seed. A `clippy.toml` forbids
//! reading the clock, thread RNGs and std hash collections in this crate.
//!
//! # Errors and bugs
//!
//! - **Network input is never an error and never a panic.** Bytes a peer sends are checked
//!   against named limits before anything is allocated; what breaks a rule is dropped and
//!   reported ([`peer::Event::Misbehaved`], [`blob::Event::ProviderDropped`]), and the node
//!   disconnects the peer ([`peer::Output::Disconnect`]).
//! - **Misuse of a command is a typed error** (`thiserror`, `#[non_exhaustive]`), e.g.
//!   [`blob::Error::TooManyDownloads`], saying what to do about it.
//! - **A broken internal invariant is a bug and panics**, and each `expect` says why it
//!   holds.
//!
//! # Features
//!
//! - default: the pure core. `cargo tree -p sinew-core -e normal` lists no runtime, socket
//!   or database crate; CI checks it, and builds this crate alone without features.
//! - `shell`: the runtime-agnostic libp2p shell: behaviour, driver, `Client` and
//!   `Event`.
//! - `test-utils`: `testing::World` and `testing::Pair`.
//! - `fuzzing`: the fuzz bodies, shared by `cargo fuzz` and the corpus tests.

#![forbid(unsafe_code)]

pub mod blob;
pub mod dht;
pub mod discovery;
pub mod framing;
pub mod gossip;
pub mod node;
pub mod peer;
pub mod persist;
pub(crate) mod pool;
pub mod stream;
pub mod sync;
pub(crate) mod timer;
pub mod wire;

/// The peer id type used throughout (libp2p's).
pub use libp2p_identity::PeerId;

pub use node::{Config, Event, Input, Node, Output, Reason};
pub use stream::StreamId;

#[cfg(feature = "fuzzing")]
pub mod fuzz;

#[cfg(feature = "shell")]
pub mod shell;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
