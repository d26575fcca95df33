//! The runtime-agnostic shell (feature `shell`): Sinew's core bound to a real libp2p swarm.
//!
//! An adapter (`sinew-tokio`, `sinew-smol`) is an [`Adapter`]: a [`Runtime`] (spawn,
//! blocking work, timers, the clock) and its raw transports. [`start`] does the rest: the
//! security choice and upgrades ([`transport`]), the swarm with the composed
//! [`Behaviour`], the blob store, the driver. What comes back is a [`Client`] (cloneable
//! async handle: dial, listen, publish, streams, blobs, status) and the [`EventStream`] of
//! [`Event`]s. Everything else — the swarm, the sans-IO [`Node`](crate::node::Node), the
//! per-stream I/O tasks — lives in one driver task. The identity file
//! ([`load_or_create_identity`]) and the quick start ([`QuickStart`]) are here too, so
//! every runtime has them.

mod adapter;
mod behaviour;
mod client;
mod config;
pub mod control;
mod download;
mod driver;
mod error;
mod export;
mod fs_store;
mod identity;
mod metrics;
#[doc(hidden)] // the adapters' transport upgrade; not part of the public API
pub mod muxer;
mod node_store;
mod provider_store;
mod quick;
mod stream;
#[doc(hidden)] // the adapters' transport upgrade; not part of the public API
pub mod tls;
pub mod transport;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use libp2p::Swarm;

pub use adapter::{start, Adapter, Options, StartError};
#[doc(hidden)]
pub use behaviour::{message_id, BehaviourEvent};
pub use behaviour::{Behaviour, BuildError};
pub use client::{
    BlobInfo, Client, ContextInfo, Error, Event, EventStream, LogEntry, Status, INLINE_IMPORT,
};
pub use config::{Config, GossipConfig, KadMode, MemoryLimit};
pub use download::{BlobDownload, BlobDownloaded, BlobProgress, DownloadUpdate, PROGRESS_BUFFER};
pub use fs_store::{
    export_verified, export_verified_bytes, FsStore, Importer, PreparedImport, DATABASE_CACHE,
    DATABASE_FILE, MAX_UNCOMMITTED, SYNC_EVERY,
};
pub use identity::{load_or_create_identity, IdentityError};
pub use metrics::Metrics;
pub use node_store::NodeStore;
pub use provider_store::{
    ProviderStore, MAX_PROVIDER_ADDRESSES, MAX_PROVIDER_ADDRESS_BYTES, MAX_REMOTE_PROVIDERS_PER_KEY,
};
pub use quick::{QuickMessage, QuickNode, QuickStart};
pub use stream::{SinewStream, StreamError};
pub use transport::Security;

/// What the shell needs from an async runtime: spawning tasks and blocking work, timers
/// that can be moved, and the clock. An adapter implements it in a few lines (see
/// `sinew-tokio`'s and `sinew-smol`'s).
pub trait Runtime: std::fmt::Debug + Send + Sync + 'static {
    /// Runs `future` to completion in the background.
    fn spawn(&self, future: BoxFuture<'static, ()>);

    /// Runs `work` on a thread where blocking is allowed (file copies, hashing).
    fn spawn_blocking(&self, work: Box<dyn FnOnce() + Send>);

    /// A timer that completes at `deadline` (at once if it has passed) and can be moved.
    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>>;

    /// The runtime's clock (the node's time comes from here).
    fn now(&self) -> Instant;

    /// A timer that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Timer>> {
        self.timer(self.now() + duration)
    }
}

/// A runtime's timer: completes at its deadline; [`Timer::reset`] moves the deadline (the
/// driver keeps one and moves it instead of allocating a timer per turn).
pub trait Timer: Future<Output = ()> + Send {
    /// Completes at `deadline` instead (again, if it had completed).
    fn reset(self: Pin<&mut Self>, deadline: Instant);
}

/// A [`Timer`] made of a runtime's own timer future `T` and the way to move it.
pub struct MovableTimer<T> {
    inner: T,
    move_to: fn(&mut T, Instant),
}

impl<T> MovableTimer<T> {
    /// `inner`, moved with `move_to`.
    pub fn new(inner: T, move_to: fn(&mut T, Instant)) -> Self {
        Self { inner, move_to }
    }
}

impl<T: Future + Unpin + Send> Future for MovableTimer<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        Pin::new(&mut self.inner).poll(cx).map(|_| ())
    }
}

impl<T: Future + Unpin + Send> Timer for MovableTimer<T> {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        let this = &mut *self;
        (this.move_to)(&mut this.inner, deadline);
    }
}

/// Size of the one allocation [`start`] makes and frees to tune glibc's allocator.
#[doc(hidden)]
pub const ALLOCATOR_NUDGE: usize = 4 << 20;

/// Keeps freed transfer buffers in the process instead of handing them back to the kernel.
///
/// At hundreds of MiB/s the muxer allocates a fresh zeroed buffer for every frame it
/// receives (up to 256 KiB). glibc's malloc trims the top of its heaps as soon as more than
/// 128 KiB is free there, so each such buffer was faulted in page by page and returned with
/// `madvise` again: 15 % of a downloading node's CPU. glibc raises that trim threshold to
/// twice the size of any freed block it had mapped separately; one such block of
/// [`ALLOCATOR_NUDGE`] bytes (allocated and freed once per process, never touched) lifts it
/// to 8 MiB, so a heap keeps up to 8 MiB of freed memory for reuse. Other allocators just
/// see one allocation and one free.
fn keep_freed_buffers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::hint::black_box(vec![0u8; ALLOCATOR_NUDGE])));
}

/// Starts the driver for a swarm built by hand on `runtime`; returns the client and the
/// event stream. [`start`] builds the swarm from an [`Adapter`] and calls this.
///
/// `metrics`, when given, are recorded for every event (serve them from the registry they
/// were created with). Opens the blob store first (`config.blob_dir`; memory if `None`)
/// and fails if it cannot be opened, e.g. because another node uses it.
pub fn run_swarm(
    swarm: Swarm<Behaviour>,
    config: Config,
    runtime: Arc<dyn Runtime>,
    metrics: Option<Metrics>,
) -> Result<(Client, EventStream), crate::blob::store::StoreError> {
    keep_freed_buffers();
    let store = NodeStore::open(config.blob_dir.as_deref())?;
    let (command_tx, command_rx) = futures::channel::mpsc::channel(config.command_buffer);
    let (events, stream) = client::EventSender::channel(config.event_buffer);
    let client = Client {
        local: *swarm.local_peer_id(),
        commands: command_tx,
        control: swarm.behaviour().stream.new_control(),
        open_timeout: config.open_stream_timeout,
        max_frame_len: config.node.max_frame_len,
        runtime: runtime.clone(),
    };
    let driver = driver::Driver::new(
        swarm,
        config,
        runtime.clone(),
        command_rx,
        events,
        metrics,
        store,
    )
    .map_err(|e| crate::blob::store::StoreError::Io(format!("cannot start the node: {e}")))?;
    runtime.spawn(Box::pin(driver.run()));
    Ok((client, stream))
}
