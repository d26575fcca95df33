//! Sinew on tokio.
//!
//! This crate is thin: tokio's executor and timers ([`Tokio`], a
//! [`Runtime`]) and its transports — TCP, QUIC v1 and DNS — as
//! a shell [`Adapter`]. Everything else (security, Yamux, the
//! swarm, the driver, the identity file, the quick start) is `sinew-core`'s shell, the same
//! on every runtime. It also hosts the `sinew` command-line tool.
//!
//! # Quick start
//!
//! One topic, bootstrap peers, messages in and out, graceful shutdown:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut chat = sinew_tokio::QuickStart::new(sinew_tokio::Tokio, "chat")
//!     .listen("/ip4/0.0.0.0/tcp/0".parse()?)
//!     .bootstrap(vec![/* "/ip4/.../tcp/.../p2p/..." */])
//!     .start()
//!     .await?;
//! chat.publish("hello").await.ok(); // Err(NoPeers) until someone subscribed is connected
//! while let Some(message) = chat.next_message().await {
//!     println!("{}: {}", message.from, String::from_utf8_lossy(&message.data));
//! }
//! chat.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # The full API
//!
//! [`start`] returns the shell's [`Client`] and [`EventStream`]; see
//! [`sinew_core::shell`].

#![forbid(unsafe_code)]

pub mod control;
#[doc(hidden)]
pub mod fixtures;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::Transport;
use libp2p::identity::Keypair;
use libp2p::{dns, quic, tcp};
use sinew_core::shell::transport::{self, Connections};
pub use sinew_core::shell::{
    load_or_create_identity, BlobDownload, BlobDownloaded, BlobInfo, BlobProgress, Client, Config,
    DownloadUpdate, Error, Event, EventStream, IdentityError, Options, QuickMessage, QuickNode,
    QuickStart, Security, SinewStream, StartError, Status,
};
use sinew_core::shell::{Adapter, MovableTimer, Runtime, Timer};

pub use sinew_core as core;

/// The tokio runtime as the shell's runtime and adapter: tokio's executor, blocking pool,
/// timers and clock; TCP (nodelay), QUIC v1 and DNS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio::spawn(future);
    }

    fn spawn_blocking(&self, work: Box<dyn FnOnce() + Send>) {
        tokio::task::spawn_blocking(work);
    }

    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        let sleep = Box::pin(tokio::time::sleep_until(deadline.into()));
        Box::pin(MovableTimer::new(sleep, |sleep, at| {
            sleep.as_mut().reset(at.into());
        }))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl Adapter for Tokio {
    fn transports(&self, keypair: &Keypair, security: Security) -> Result<Connections, StartError> {
        let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
        let tcp = transport::upgrade(tcp, keypair, security)?;
        let quic = quic::tokio::Transport::new(quic::Config::new(keypair))
            .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)));
        let both = tcp.or_transport(quic).map(|either, _| either.into_inner());
        let dns = dns::tokio::Transport::system(both).map_err(|e| {
            StartError::Transport(format!("cannot read the DNS configuration: {e}"))
        })?;
        Ok(dns.boxed())
    }

    fn name(&self) -> &'static str {
        "tokio"
    }
}

/// Starts a node on the current tokio runtime.
pub fn start(config: Config, options: Options) -> Result<(Client, EventStream), StartError> {
    sinew_core::shell::start(Arc::new(Tokio), config, options)
}
