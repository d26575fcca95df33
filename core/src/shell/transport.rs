//! What every runtime's transports share: the security choice, the upgrade of a raw byte
//! transport (TCP from tokio, TCP from async-io, …) into authenticated, multiplexed
//! connections, and the swarm built on top. An adapter brings the raw transport and an
//! executor; everything else is here, once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Either, FutureExt};
use futures::{AsyncRead, AsyncWrite, TryFutureExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;
use libp2p::{noise, PeerId, Swarm};

use super::muxer::YamuxConfig;
use super::tls::TlsConfig;
use super::{Behaviour, Config, Runtime, StartError};

/// How long a connection may take from its first byte to an authenticated, multiplexed
/// link; a slower one is dropped. 10 s.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// An authenticated, multiplexed transport: what the swarm runs on.
pub type Connections = Boxed<(PeerId, StreamMuxerBox)>;

/// Upgrades a raw byte transport (a runtime's TCP) into authenticated, multiplexed
/// connections: multistream-select (lazy), `security`, Yamux ([`YamuxConfig`]), and an
/// [`UPGRADE_TIMEOUT`].
pub fn upgrade<T>(raw: T, keypair: &Keypair, security: Security) -> Result<Connections, StartError>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    let tls = || TlsConfig::new(keypair).map_err(|e| StartError::Transport(e.to_string()));
    let noise = || noise::Config::new(keypair).map_err(|e| StartError::Transport(e.to_string()));
    let builder = raw.upgrade(libp2p::core::upgrade::Version::V1Lazy);
    macro_rules! finish {
        ($security:expr) => {
            builder
                .authenticate($security)
                .multiplex(YamuxConfig::default())
                .timeout(UPGRADE_TIMEOUT)
                .boxed()
        };
    }
    Ok(match security {
        Security::TlsThenNoise => finish!(SelectSecurity(tls()?, noise()?)),
        Security::NoiseThenTls => finish!(SelectSecurity(noise()?, tls()?)),
        Security::TlsOnly => finish!(tls()?),
        Security::NoiseOnly => finish!(noise()?),
    })
}

/// Builds the swarm on `transport` with the Sinew behaviour, its tasks spawned on
/// `runtime`.
pub fn build_swarm(
    keypair: &Keypair,
    config: &Config,
    transport: Connections,
    runtime: Arc<dyn Runtime>,
) -> Result<Swarm<Behaviour>, StartError> {
    let behaviour = Behaviour::new(keypair, config)?;
    let swarm_config = libp2p::swarm::Config::with_executor(RuntimeExecutor(runtime))
        .with_idle_connection_timeout(config.idle_connection_timeout);
    Ok(Swarm::new(
        transport,
        behaviour,
        keypair.public().to_peer_id(),
        swarm_config,
    ))
}

/// The swarm's executor: the adapter's runtime.
struct RuntimeExecutor(Arc<dyn Runtime>);

impl libp2p::swarm::Executor for RuntimeExecutor {
    fn exec(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.0.spawn(future);
    }
}

/// Offers two security upgrades, the first preferred; the connection is secured by the one
/// the peers share. (libp2p's own combinator is private to its `SwarmBuilder`.)
#[derive(Debug, Clone)]
pub struct SelectSecurity<A, B>(pub A, pub B);

type InfoIter<U, I> = std::iter::Map<
    <<U as UpgradeInfo>::InfoIter as IntoIterator>::IntoIter,
    fn(<U as UpgradeInfo>::Info) -> I,
>;

impl<A: UpgradeInfo, B: UpgradeInfo> UpgradeInfo for SelectSecurity<A, B> {
    type Info = either::Either<A::Info, B::Info>;
    type InfoIter = std::iter::Chain<InfoIter<A, Self::Info>, InfoIter<B, Self::Info>>;

    fn protocol_info(&self) -> Self::InfoIter {
        let first: fn(A::Info) -> Self::Info = either::Either::Left;
        let second: fn(B::Info) -> Self::Info = either::Either::Right;
        let a = self.0.protocol_info().into_iter().map(first);
        a.chain(self.1.protocol_info().into_iter().map(second))
    }
}

/// The upgrade's outcome: the peer and the stream secured by whichever side was chosen.
type Secured<TA, TB, EA, EB> =
    BoxFuture<'static, Result<(PeerId, Either<TA, TB>), either::Either<EA, EB>>>;

/// The chosen side's upgrade, its outcome tagged with the side.
fn secured<FA, FB, TA, TB, EA, EB>(chosen: either::Either<FA, FB>) -> Secured<TA, TB, EA, EB>
where
    FA: Future<Output = Result<(PeerId, TA), EA>> + Send + 'static,
    FB: Future<Output = Result<(PeerId, TB), EB>> + Send + 'static,
    (TA, TB, EA, EB): 'static,
{
    match chosen {
        either::Either::Left(upgrade) => upgrade
            .map_ok(|(peer, s)| (peer, Either::Left(s)))
            .map_err(either::Either::Left)
            .boxed(),
        either::Either::Right(upgrade) => upgrade
            .map_ok(|(peer, s)| (peer, Either::Right(s)))
            .map_err(either::Either::Right)
            .boxed(),
    }
}

impl<C, A, B, TA, TB, EA, EB> InboundConnectionUpgrade<C> for SelectSecurity<A, B>
where
    A: InboundConnectionUpgrade<C, Output = (PeerId, TA), Error = EA>,
    B: InboundConnectionUpgrade<C, Output = (PeerId, TB), Error = EB>,
    A::Future: Send + 'static,
    B::Future: Send + 'static,
    (TA, TB, EA, EB): 'static,
{
    type Output = (PeerId, Either<TA, TB>);
    type Error = either::Either<EA, EB>;
    type Future = Secured<TA, TB, EA, EB>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        secured(match info {
            either::Either::Left(info) => {
                either::Either::Left(self.0.upgrade_inbound(socket, info))
            }
            either::Either::Right(info) => {
                either::Either::Right(self.1.upgrade_inbound(socket, info))
            }
        })
    }
}

impl<C, A, B, TA, TB, EA, EB> OutboundConnectionUpgrade<C> for SelectSecurity<A, B>
where
    A: OutboundConnectionUpgrade<C, Output = (PeerId, TA), Error = EA>,
    B: OutboundConnectionUpgrade<C, Output = (PeerId, TB), Error = EB>,
    A::Future: Send + 'static,
    B::Future: Send + 'static,
    (TA, TB, EA, EB): 'static,
{
    type Output = (PeerId, Either<TA, TB>);
    type Error = either::Either<EA, EB>;
    type Future = Secured<TA, TB, EA, EB>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        secured(match info {
            either::Either::Left(info) => {
                either::Either::Left(self.0.upgrade_outbound(socket, info))
            }
            either::Either::Right(info) => {
                either::Either::Right(self.1.upgrade_outbound(socket, info))
            }
        })
    }
}
