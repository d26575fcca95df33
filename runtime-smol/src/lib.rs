//! Sinew on smol.
//!
//! This crate is thin: smol's executor, blocking pool and timers ([`Smol`], a
//! [`Runtime`]) and transports of its own over async-io — TCP
//! ([`tcp`]) and DNS names ([`dns`]) — as a shell [`Adapter`].
//! Everything else (security, Yamux, the swarm, the driver, the identity file, the quick
//! start) is `sinew-core`'s shell, the same as on tokio: the API below is `sinew-tokio`'s.
//!
//! What smol lacks next to tokio: **QUIC** (libp2p-quic runs only on tokio and keeps its
//! runtime provider private; a QUIC transport of Sinew's own over quinn's smol runtime is
//! not written) and **`/dnsaddr`** addresses (TXT lookups; `/dns`, `/dns4` and `/dns6`
//! work).
//!
//! Tasks run on an executor of Sinew's with one thread per core ([`EXECUTOR_THREADS`]),
//! started on first use, so a node runs at full speed whatever executor the application
//! itself uses.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! smol::block_on(async {
//!     let mut chat = sinew_smol::QuickStart::new(sinew_smol::Smol, "chat")
//!         .listen("/ip4/0.0.0.0/tcp/0".parse()?)
//!         .start()
//!         .await?;
//!     chat.publish("hello").await.ok();
//!     while let Some(message) = chat.next_message().await {
//!         println!("{}: {}", message.from, String::from_utf8_lossy(&message.data));
//!     }
//!     Ok(())
//! })
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod dns;
pub mod tcp;

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures::future::BoxFuture;
use libp2p::identity::Keypair;
use sinew_core::shell::transport::{self, Connections};
pub use sinew_core::shell::{
    load_or_create_identity, BlobDownload, BlobDownloaded, BlobInfo, BlobProgress, Client, Config,
    DownloadUpdate, Error, Event, EventStream, IdentityError, Options, QuickMessage, QuickNode,
    QuickStart, Security, SinewStream, StartError, Status,
};
use sinew_core::shell::{Adapter, MovableTimer, Runtime, Timer};

pub use sinew_core as core;

/// Threads of Sinew's smol executor: one per core the OS reports (at least 2).
pub fn executor_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// The name of [`executor_threads`] for the docs: one thread per core, at least 2.
pub const EXECUTOR_THREADS: &str = "one per core, at least 2";

/// Sinew's executor, started on first use.
fn executor() -> &'static smol::Executor<'static> {
    static EXECUTOR: OnceLock<&'static smol::Executor<'static>> = OnceLock::new();
    EXECUTOR.get_or_init(|| {
        let executor: &'static smol::Executor<'static> = Box::leak(Box::default());
        for n in 0..executor_threads() {
            let spawned = std::thread::Builder::new()
                .name(format!("sinew-smol-{n}"))
                .spawn(move || smol::block_on(executor.run(std::future::pending::<()>())));
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start an executor thread");
            }
        }
        executor
    })
}

/// smol as the shell's runtime and adapter: Sinew's smol executor, smol's blocking pool
/// and timers; TCP and DNS over async-io.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

impl Runtime for Smol {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        executor().spawn(future).detach();
    }

    fn spawn_blocking(&self, work: Box<dyn FnOnce() + Send>) {
        smol::unblock(work).detach();
    }

    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        let timer = smol::Timer::at(deadline);
        Box::pin(MovableTimer::new(timer, |timer, at| timer.set_at(at)))
    }

    #[allow(clippy::disallowed_methods)] // allowed: the adapter is the node's clock
    fn now(&self) -> Instant {
        Instant::now() // allowed: the adapter is the node's clock
    }
}

impl Adapter for Smol {
    fn transports(&self, keypair: &Keypair, security: Security) -> Result<Connections, StartError> {
        transport::upgrade(dns::Dns::new(tcp::Tcp::new()), keypair, security)
    }

    fn name(&self) -> &'static str {
        "smol"
    }
}

/// Starts a node on smol (from any thread: its tasks run on Sinew's smol executor).
pub fn start(config: Config, options: Options) -> Result<(Client, EventStream), StartError> {
    sinew_core::shell::start(Arc::new(Smol), config, options)
}
