//! `sinew node`: configuration (TOML file, flags, environment), the node itself, its
//! control socket and its optional metrics endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::StreamExt;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};
use sinew_tokio::{Config, Event, Options, Security};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use sinew_tokio::core::shell::control::{self, Received};

/// Flags of `sinew node`; each overrides the config file, and has an environment variable.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// TOML config file (see the README for its keys).
    #[arg(long, env = "SINEW_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: identity key, control socket.
    #[arg(long, env = "SINEW_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address (repeatable). Default /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1.
    #[arg(long, env = "SINEW_LISTEN", value_delimiter = ',')]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer, ending in /p2p/<peer id> (repeatable).
    #[arg(long, env = "SINEW_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<Multiaddr>,
    /// Topic to subscribe to at start (repeatable).
    #[arg(long, env = "SINEW_TOPIC", value_delimiter = ',')]
    topic: Vec<String>,
    /// TCP security preference: tls,noise (default), noise,tls, noise or tls.
    #[arg(long, env = "SINEW_SECURITY")]
    security: Option<Security>,
    /// Serve Prometheus metrics on this loopback address (e.g. 127.0.0.1:9464).
    #[arg(long, env = "SINEW_METRICS")]
    metrics: Option<SocketAddr>,
    /// The runtime the node runs on: tokio (default) or smol (TCP only: no QUIC on smol).
    #[arg(long, env = "SINEW_RUNTIME")]
    runtime: Option<NodeRuntime>,
    /// Print machine-readable JSON lines on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// The config file. Every key is optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Listen addresses.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Bootstrap peers.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Topics to subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// TCP security preference.
    pub security: Option<String>,
    /// Metrics address (loopback).
    pub metrics: Option<SocketAddr>,
    /// The runtime: tokio or smol.
    pub runtime: Option<String>,
    /// Kademlia mode: auto, server or client.
    pub kad_mode: Option<String>,
    /// Check each chunk group against the outboard before serving it (default true).
    pub validate_on_serve: Option<bool>,
    /// Seconds a blob request may receive nothing before its provider is dropped as
    /// stalled (default 10).
    pub blob_request_timeout: Option<u64>,
}

/// The runtime a node runs on: its swarm, transports, driver and streams. (The CLI's own
/// plumbing — control socket, signals, metrics endpoint — runs on tokio either way.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum NodeRuntime {
    /// `sinew-tokio`: TCP, QUIC, DNS.
    #[default]
    Tokio,
    /// `sinew-smol`: TCP and DNS over async-io.
    Smol,
}

impl NodeRuntime {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Smol => "smol",
        }
    }
}

impl std::str::FromStr for NodeRuntime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tokio" => Ok(Self::Tokio),
            "smol" => Ok(Self::Smol),
            other => Err(format!("unknown runtime {other:?}: use tokio or smol")),
        }
    }
}

struct Settings {
    runtime: NodeRuntime,
    data_dir: PathBuf,
    network: Config,
    topics: Vec<String>,
    security: Security,
    metrics: Option<SocketAddr>,
}

fn settings(args: &NodeArgs) -> anyhow::Result<Settings> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let parse = |list: &[String], what: &str| -> anyhow::Result<Vec<Multiaddr>> {
        list.iter()
            .map(|s| {
                s.parse()
                    .with_context(|| format!("invalid {what} address {s:?} in config file"))
            })
            .collect()
    };
    let runtime = match (&args.runtime, &file.runtime) {
        (Some(r), _) => *r,
        (None, Some(r)) => r.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        (None, None) => NodeRuntime::default(),
    };
    let mut listen = if args.listen.is_empty() {
        parse(&file.listen, "listen")?
    } else {
        args.listen.clone()
    };
    if listen.is_empty() {
        listen = vec!["/ip4/0.0.0.0/tcp/0".parse().expect("valid")];
        if runtime == NodeRuntime::Tokio {
            listen.push("/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("valid"));
        }
    }
    let bootstrap = if args.bootstrap.is_empty() {
        parse(&file.bootstrap, "bootstrap")?
    } else {
        args.bootstrap.clone()
    };
    let kad_mode = match file.kad_mode.as_deref() {
        None | Some("auto") => sinew_tokio::core::shell::KadMode::Auto,
        Some("server") => sinew_tokio::core::shell::KadMode::Server,
        Some("client") => sinew_tokio::core::shell::KadMode::Client,
        Some(other) => {
            bail!("invalid kad_mode {other:?} in config file: use auto, server or client")
        }
    };
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(".sinew"));
    let mut network = Config {
        listen,
        bootstrap,
        kad_mode,
        blob_dir: Some(data_dir.join("store")),
        ..Config::default()
    };
    if let Some(validate) = file.validate_on_serve {
        network.node.blobs.validate_on_serve = validate;
    }
    if let Some(secs) = file.blob_request_timeout {
        if secs == 0 {
            bail!("blob_request_timeout must be at least 1 second");
        }
        network.node.blobs.download.request_timeout = std::time::Duration::from_secs(secs);
    }
    let security = match (&args.security, &file.security) {
        (Some(s), _) => *s,
        (None, Some(s)) => s.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        (None, None) => Security::default(),
    };
    let metrics = args.metrics.or(file.metrics);
    if let Some(addr) = metrics {
        if !addr.ip().is_loopback() {
            bail!("metrics address {addr} is not on loopback: metrics are served on 127.0.0.1 or ::1 only");
        }
    }
    let topics = if args.topic.is_empty() {
        file.topics
    } else {
        args.topic.clone()
    };
    Ok(Settings {
        runtime,
        data_dir,
        network,
        topics,
        security,
        metrics,
    })
}

/// Time since the Unix epoch in nanoseconds (for latencies between local processes).
pub(crate) fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Creates the data directory (and missing parents) with mode 0700, or restricts an
/// existing one to 0700: it holds the identity key, the blob store and the control socket,
/// and the socket is bound inside it, so no other user can reach the socket even before
/// its own mode is set.
fn private_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "data directory {} is open to other users (mode {:o}) and cannot be restricted to 0700",
                    dir.display(),
                    mode & 0o777
                )
            },
        )?;
        tracing::warn!(
            "data directory {} was open to other users (mode {:o}); restricted it to 0700",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

pub(crate) async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let s = settings(&args)?;
    private_data_dir(&s.data_dir)?;
    let keypair = sinew_tokio::load_or_create_identity(&s.data_dir.join("identity"))?;
    let peer_id = keypair.public().to_peer_id();
    let member_key = keypair.clone();
    let registry = s
        .metrics
        .map(|_| Arc::new(Mutex::new(prometheus_client::registry::Registry::default())));
    let expected_listeners = s.network.listen.len();
    let options = Options {
        keypair: Some(keypair),
        security: s.security,
        metrics: registry.clone(),
    };
    let (client, mut events) = match s.runtime {
        NodeRuntime::Tokio => sinew_tokio::start(s.network, options)?,
        NodeRuntime::Smol => sinew_smol::start(s.network, options)?,
    };
    for topic in &s.topics {
        client.subscribe(topic).await?;
    }
    let socket = s.data_dir.join("control.sock");
    let runtime: Arc<dyn sinew_tokio::core::shell::Runtime> = match s.runtime {
        NodeRuntime::Tokio => Arc::new(sinew_tokio::Tokio),
        NodeRuntime::Smol => Arc::new(sinew_smol::Smol),
    };
    let control = control::serve(&socket, client.clone(), runtime, s.runtime.name())?;
    if let Ok(key) = member_key.try_into_ed25519() {
        control.set_member_key(key);
    }
    if let (Some(addr), Some(registry)) = (s.metrics, registry) {
        serve_metrics(addr, registry).await?;
    }
    let json = args.json;
    if !json {
        println!("peer id: {peer_id}");
    }
    let mut announced = false;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                match event {
                    Event::ListeningOn { address } => {
                        let full = address.with_p2p(peer_id).unwrap_or_else(|a| a);
                        if json {
                            println!("{}", serde_json::json!({"event": "listening", "address": full.to_string()}));
                        } else {
                            println!("listening on {full}");
                        }
                        control.record_listen(full.to_string());
                        let listen = control.listen();
                        if !announced && listen.len() >= expected_listeners {
                            announced = true;
                            if json {
                                println!("{}", serde_json::json!({
                                    "event": "ready",
                                    "peer_id": peer_id.to_string(),
                                    "addresses": listen,
                                    "control": socket.display().to_string(),
                                }));
                            }
                        }
                    }
                    Event::Message { source, topic, data, .. } => {
                        control.record_message(Received {
                            from: source.map(|p| p.to_string()).unwrap_or_default(),
                            topic,
                            data: String::from_utf8_lossy(&data).into_owned(),
                            at_ns: unix_nanos(),
                        });
                    }
                    Event::PeerConnected { peer, .. } => tracing::info!(%peer, "connected"),
                    Event::PeerDisconnected { peer } => tracing::info!(%peer, "disconnected"),
                    Event::Lagged { missed } => tracing::warn!(missed, "event consumer lagged"),
                    Event::Blob(sinew_tokio::core::blob::Event::ProviderDropped { id, peer, reason }) => {
                        tracing::info!(%id, %peer, %reason, "blob provider dropped");
                    }
                    Event::Blob(sinew_tokio::core::blob::Event::StoreFailed { id, reason }) => {
                        tracing::error!(%id, %reason, "local blob store failed");
                    }
                    _ => {}
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    client.shutdown().await?;
    drop(control); // stops serving, removes the socket
    Ok(())
}

async fn serve_metrics(
    addr: SocketAddr,
    registry: Arc<Mutex<prometheus_client::registry::Registry>>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                // Read (and ignore) the request head; answer with the whole registry.
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    tokio::io::AsyncReadExt::read(&mut conn, &mut buf),
                )
                .await;
                let mut body = String::new();
                {
                    let registry = registry.lock().expect("registry lock");
                    let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(())
}
