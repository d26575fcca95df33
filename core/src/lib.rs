//! # sinew-core: Sinew's sans-IO core
//!
//! Sinew is a peer-to-peer networking and replication library. This crate is its core:
//! pure state machines that decide *what* to send and *what* to believe, with no sockets,
//! tasks, threads, clocks or OS randomness. The runtimes (`sinew-tokio`, `sinew-smol`) and
//! the simulator (`sinew-sim`) drive the very same [`node::Node`]; so do the tests, with
//! the deterministic [`testing::World`].
//!
//! Today the core holds:
//! - [`framing`]: length-delimited frames with a hard, configurable size limit;
//! - [`wire`]: Sinew's versioned messages, protocol ids and version negotiation;
//! - [`blob`]: verified BLAKE3 blob transfer — outboards, a provider [`blob::Encoder`], a
//!   response [`blob::Decoder`], and a multi-provider, resumable [`blob::Download`];
//! - [`store`]: the storage traits and an in-memory store;
//! - [`node`]: all of it composed behind one `Input`/`Output` contract.
//!
//! # The contract
//!
//! <div class="warning">
//!
//! After **every** call that changes the node — [`node::Node::handle_input`] or a command
//! such as [`node::Node::request_blob`] — drain [`node::Node::poll_output`] until it returns
//! [`node::Output::Timeout`].
//!
//! </div>
//!
//! A driver is one loop:
//!
//! 1. Wait for whichever comes first: a network event (a stream opened, bytes arrived, a
//!    stream closed, a peer connected) or the instant of the last [`node::Output::Timeout`].
//! 2. Turn it into one [`node::Input`] and call `handle_input(now, input)`, passing the
//!    current time. For a timer, the input is [`node::Input::Timeout`].
//! 3. Drain `poll_output()`: open streams, write and finish them, hand events to the
//!    application, until `Output::Timeout(at)` says when to wake up next.
//! 4. Give the node's streams ids: the ones it opens carry its own [`node::StreamId`]s,
//!    inbound ones get [`node::StreamId::inbound`] ids from the driver.
//!
//! ```no_run
//! use std::time::Instant;
//! use bytes::Bytes;
//! use sinew_core::node::{Config, Input, Node, Output, StreamId};
//! use sinew_core::store::MemStore;
//!
//! /// Whatever the runtime gives: here, a fake network that never produces anything.
//! struct FakeNet;
//! impl FakeNet {
//!     fn next_input(&mut self, _deadline: Instant) -> (Instant, Input) {
//!         (Instant::now(), Input::Timeout) // allowed: the driver owns the clock
//!     }
//!     fn open(&mut self, _stream: StreamId) {}
//!     fn write(&mut self, _stream: StreamId, _data: Bytes) {}
//! }
//!
//! # let local = libp2p_identity::Keypair::ed25519_from_bytes([1; 32]).unwrap().public().to_peer_id();
//! let mut net = FakeNet;
//! let start = Instant::now(); // allowed: the driver owns the clock
//! let mut node = Node::new(local, Config::default(), MemStore::new(), start);
//! let mut deadline = start;
//! loop {
//!     // 1.-2. one input, with the time it happened
//!     let (now, input) = net.next_input(deadline);
//!     node.handle_input(now, input);
//!     // 3. drain until Timeout
//!     loop {
//!         match node.poll_output() {
//!             Output::OpenStream { stream, .. } => net.open(stream),
//!             Output::Send { stream, data } => net.write(stream, data),
//!             Output::Event(event) => println!("{event:?}"),
//!             Output::Timeout(at) => {
//!                 deadline = at;
//!                 break;
//!             }
//!             _ => {} // finish, reset, and outputs of later versions
//!         }
//!     }
//! }
//! ```
//!
//! # Time and randomness are arguments
//!
//! The core never reads a clock: every input comes with `now`, and a `now` earlier than the
//! last one is taken as the last one (time never goes backwards). A timeout that fires
//! early or twice does nothing. Randomness comes from [`node::Config::seed`]. Given the same
//! inputs at the same times, a node produces the same outputs — which is what lets
//! [`testing::World`] and the simulator replay a run from its seed. A `clippy.toml` forbids
//! reading the clock (`now()` of `Instant` and `SystemTime`), thread RNGs and std hash
//! collections in this crate.
//!
//! # Errors and bugs
//!
//! - **Network input is never an error and never a panic.** Bytes a peer sends are checked
//!   against named limits before anything is allocated; what breaks a rule is dropped and
//!   reported as an event ([`node::Event::PeerMisbehaved`],
//!   [`node::Event::BlobProviderDropped`]), so the driver can disconnect the peer.
//! - **Misuse of a command is a typed error** (`thiserror`, `#[non_exhaustive]`), e.g.
//!   [`node::Error::TooManyDownloads`], saying what to do about it.
//! - **A broken internal invariant is a bug and panics**, and each `expect` says why it
//!   holds.
//!
//! # Features
//!
//! - default: the pure core. `cargo tree -p sinew-core -e normal` lists no runtime, socket
//!   or database crate; CI checks it.
//! - `shell`: the runtime-agnostic libp2p shell ([`shell`]): behaviour, driver,
//!   `NetworkClient` and `NetworkEvent`.
//! - `test-utils`: [`testing::World`] and [`testing::Pair`].
//! - `fuzzing`: the fuzz bodies in `fuzz`, shared by `cargo fuzz` and the corpus tests.

pub mod blob;
pub mod framing;
pub mod node;
pub(crate) mod pool;
pub mod store;
pub mod wire;

/// The peer id type used throughout (libp2p's).
pub use libp2p_identity::PeerId;

#[cfg(feature = "fuzzing")]
pub mod fuzz;

#[cfg(feature = "shell")]
pub mod shell;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
