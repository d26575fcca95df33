//! What a runtime adapter plugs into the shell ([`Adapter`]: its executor and its raw
//! transports), and starting a node on one ([`start`]). Everything else a node needs —
//! the security choice, the upgrades, the swarm, the driver — is the shell's, so the
//! adapters differ only in what their runtime must provide.

use std::sync::Arc;

use libp2p::identity::Keypair;
use prometheus_client::registry::Registry;

use super::transport::{Connections, Security};
use super::{Client, Config, EventStream, Metrics, Runtime};

/// A runtime's plug: the runtime itself (its executor, blocking pool, timers and clock)
/// and its transports.
pub trait Adapter: Runtime {
    /// The runtime's transports, authenticated and multiplexed: its TCP through
    /// [`super::transport::upgrade`], plus whatever else it has (QUIC, DNS).
    fn transports(&self, keypair: &Keypair, security: Security) -> Result<Connections, StartError>;

    /// The runtime's name, for logs and the CLI (`tokio`, `smol`).
    fn name(&self) -> &'static str;
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
    Behaviour(#[from] super::BuildError),
    /// The blob store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::blob::store::StoreError),
}

/// Options of [`start`] besides the network configuration.
#[derive(Debug, Default)]
pub struct Options {
    /// The node's key. Default: a fresh one (see [`super::load_or_create_identity`]).
    pub keypair: Option<Keypair>,
    /// TCP security preference.
    pub security: Security,
    /// Record metrics into this registry.
    pub metrics: Option<Arc<std::sync::Mutex<Registry>>>,
}

/// Starts a node on `adapter`'s runtime: builds its transports and swarm, opens the blob
/// store and spawns the driver. Call it from within that runtime.
pub fn start(
    adapter: Arc<dyn Adapter>,
    config: Config,
    options: Options,
) -> Result<(Client, EventStream), StartError> {
    let keypair = options.keypair.unwrap_or_else(Keypair::generate_ed25519);
    let transport = adapter.transports(&keypair, options.security)?;
    let runtime: Arc<dyn Runtime> = adapter;
    let swarm = super::transport::build_swarm(&keypair, &config, transport, runtime.clone())?;
    let metrics = options.metrics.map(|registry| {
        let mut registry = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Metrics::new(&mut registry)
    });
    Ok(super::run_swarm(swarm, config, runtime, metrics)?)
}
