//! Sinew on tokio.
//!
//! This crate is thin: it builds the libp2p swarm with tokio's transports — TCP with Noise
//! or TLS (both offered, the faster one first) and Yamux, QUIC, DNS — and runs the
//! runtime-agnostic shell of `sinew-core` on the tokio executor. It also keeps a
//! persistent identity and hosts the `sinew` command-line tool.
//!
//! # Quick start
//!
//! One topic, bootstrap peers, messages in and out, graceful shutdown:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut chat = sinew_tokio::QuickStart::new("chat")
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
mod identity;
mod quick;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::identity::Keypair;
use libp2p::{noise, tcp, Swarm};
use prometheus_client::registry::Registry;
use sinew_core::shell::muxer::YamuxConfig;
use sinew_core::shell::tls::TlsConfig;
use sinew_core::shell::{Behaviour, Metrics, Runtime};
pub use sinew_core::shell::{
    BlobDownload, BlobDownloaded, BlobInfo, BlobProgress, Client, Config, DownloadUpdate, Error,
    Event, EventStream, SinewStream, Status,
};

pub use identity::{load_or_create_identity, IdentityError};
pub use quick::{QuickMessage, QuickNode, QuickStart};
pub use sinew_core as core;

/// The tokio executor and timers, for the shell.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio::spawn(future);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Which security protocols TCP offers, in order of preference.
///
/// Both sides negotiate the first protocol they share, so the preferred one is what two
/// Sinew nodes use. TLS comes first by default: Sinew's TLS ([`TlsConfig`]) uses AES-GCM
/// on CPUs with AES instructions, which measured faster than Noise's ChaCha20-Poly1305
/// (`cargo bench -p sinew-tokio --bench network`, figures in the README); Noise is still
/// offered, so Noise-only peers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Offer TLS, then Noise.
    #[default]
    TlsThenNoise,
    /// Offer Noise, then TLS.
    NoiseThenTls,
    /// Offer TLS only.
    TlsOnly,
    /// Offer Noise only.
    NoiseOnly,
}

impl std::str::FromStr for Security {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tls,noise" | "tls-then-noise" => Ok(Self::TlsThenNoise),
            "noise,tls" | "noise-then-tls" => Ok(Self::NoiseThenTls),
            "tls" => Ok(Self::TlsOnly),
            "noise" => Ok(Self::NoiseOnly),
            other => Err(format!(
                "unknown security {other:?}: use tls, noise, tls,noise or noise,tls"
            )),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The transport could not be built.
    #[error("cannot build the transport: {0}")]
    Transport(String),
    /// The behaviour's configuration is invalid.
    #[error(transparent)]
    Behaviour(#[from] sinew_core::shell::BuildError),
    /// The blob store could not be opened.
    #[error(transparent)]
    Store(#[from] sinew_core::blob::store::StoreError),
}

/// Options of [`start`] besides the network configuration.
#[derive(Debug, Default)]
pub struct Options {
    /// The node's key. Default: a fresh one (see [`load_or_create_identity`]).
    pub keypair: Option<Keypair>,
    /// TCP security preference.
    pub security: Security,
    /// Record metrics into this registry.
    pub metrics: Option<Arc<std::sync::Mutex<Registry>>>,
}

/// Builds the swarm: TCP (nodelay) + `security` + Yamux, QUIC v1, DNS; the Sinew behaviour.
pub fn build_swarm(
    keypair: Keypair,
    config: &Config,
    security: Security,
) -> Result<Swarm<Behaviour>, StartError> {
    let tcp_config = tcp::Config::default().nodelay(true);
    let idle = config.idle_connection_timeout;
    let mut behaviour_error = None;
    macro_rules! finish {
        ($security:expr) => {{
            libp2p::SwarmBuilder::with_existing_identity(keypair)
                .with_tokio()
                .with_tcp(tcp_config, $security, YamuxConfig::default)
                .map_err(|e| StartError::Transport(e.to_string()))?
                .with_quic()
                .with_dns()
                .map_err(|e| StartError::Transport(e.to_string()))?
                .with_behaviour(|key| match Behaviour::new(key, config) {
                    Ok(b) => Ok(b),
                    Err(e) => {
                        let message = e.to_string();
                        behaviour_error = Some(e);
                        Err(message.into())
                    }
                })
                .map_err(|e| match behaviour_error.take() {
                    Some(b) => StartError::Behaviour(b),
                    None => StartError::Transport(e.to_string()),
                })?
                .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                .build()
        }};
    }
    let swarm = match security {
        Security::TlsThenNoise => finish!((TlsConfig::new, noise::Config::new)),
        Security::NoiseThenTls => finish!((noise::Config::new, TlsConfig::new)),
        Security::TlsOnly => finish!(TlsConfig::new),
        Security::NoiseOnly => finish!(noise::Config::new),
    };
    Ok(swarm)
}

/// Starts a node on the current tokio runtime.
pub fn start(config: Config, options: Options) -> Result<(Client, EventStream), StartError> {
    let keypair = options.keypair.unwrap_or_else(Keypair::generate_ed25519);
    let swarm = build_swarm(keypair, &config, options.security)?;
    let metrics = options.metrics.map(|registry| {
        let mut registry = registry
            .lock()
            .expect("the metrics registry lock is never poisoned");
        Metrics::new(&mut registry)
    });
    Ok(sinew_core::shell::start(
        swarm,
        config,
        Arc::new(TokioRuntime),
        metrics,
    )?)
}
