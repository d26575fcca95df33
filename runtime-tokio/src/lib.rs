//! Sinew on tokio.
//!
//! This crate is thin: tokio's executor and timers ([`Tokio`], a
//! [`Runtime`](sinew_core::shell::Runtime)) and its transports — TCP, QUIC v1 and DNS — as
//! a shell [`Adapter`](sinew_core::shell::Adapter). Everything else (security, Yamux, the
//! swarm, the driver, the identity file, the quick start) is `sinew-core`'s shell, the same
//! on every runtime. It also hosts the `sinew` command-line tool.
//!
//! # Quick start
//!
//! One topic, bootstrap peers, messages in and out, graceful shutdown:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut chat = sinew_tokio::quick_start("chat")
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

pub mod control;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::Future;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::Transport;
use libp2p::identity::Keypair;
use libp2p::{dns, quic, tcp, Swarm};
use sinew_core::shell::transport::{self, Connections};
pub use sinew_core::shell::{
    load_or_create_identity, BlobDownload, BlobDownloaded, BlobInfo, BlobProgress, Client, Config,
    DownloadUpdate, Error, Event, EventStream, IdentityError, Options, QuickMessage, QuickNode,
    QuickStart, Security, SinewStream, StartError, Status,
};
use sinew_core::shell::{Adapter, Behaviour, Runtime, Timer};

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
        let at = tokio::time::Instant::from_std(deadline);
        Box::pin(TokioTimer(Box::pin(tokio::time::sleep_until(at))))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A tokio sleep that can be moved.
struct TokioTimer(Pin<Box<tokio::time::Sleep>>);

impl Future for TokioTimer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Timer for TokioTimer {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0
            .as_mut()
            .reset(tokio::time::Instant::from_std(deadline));
    }
}

impl Adapter for Tokio {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(Tokio)
    }

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
}

/// Builds the swarm on tokio's transports (see [`Tokio`]) with the Sinew behaviour.
pub fn build_swarm(
    keypair: Keypair,
    config: &Config,
    security: Security,
) -> Result<Swarm<Behaviour>, StartError> {
    let transports = Tokio.transports(&keypair, security)?;
    transport::build_swarm(&keypair, config, transports, Arc::new(Tokio))
}

/// Starts a node on the current tokio runtime.
pub fn start(config: Config, options: Options) -> Result<(Client, EventStream), StartError> {
    sinew_core::shell::start(&Tokio, config, options)
}

/// The quick start on tokio: one topic, bootstrap peers, messages in and out.
pub fn quick_start(topic: impl Into<String>) -> QuickStart {
    QuickStart::new(Arc::new(Tokio), topic)
}
