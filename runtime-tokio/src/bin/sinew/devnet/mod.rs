//! `sinew devnet`: N real node processes on loopback, joined through a bootstrap node,
//! then the demo: every node publishes on a topic and every node must receive every
//! other node's message; every node fetches a blob node 0 added; a context spans every
//! node, one node is stopped while the others write, restarted, and must catch up to the
//! same heads. Prints a summary per phase and exits 0 only if every phase succeeded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

mod blob;
mod context;
mod procs;

use procs::{rss_kib, spawn, Launch, Proc};

use crate::control::{Control, Request};
use crate::node::unix_nanos;
use sinew_tokio::control::Received;

/// Most nodes one devnet starts.
pub(crate) const MAX_NODES: usize = 64;

/// Flags of `sinew devnet`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevnetArgs {
    /// How many node processes (2 to 64).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Leave the nodes running when the demo is over.
    #[arg(long)]
    keep: bool,
    /// Where the nodes' data directories go (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The demo's topic.
    #[arg(long, default_value = "devnet")]
    topic: String,
    /// Give up on any phase after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Size of the blob node 0 adds and every other node fetches, in MiB (0: no blob demo).
    #[arg(long, default_value_t = 64)]
    blob_mib: u64,
    /// Skip the context phase (a context across every node; one node stopped, the others
    /// write, it restarts and catches up; every node must end with the same heads).
    #[arg(long)]
    no_context: bool,
    /// The nodes' runtime: tokio, smol, or mixed (even-numbered nodes on tokio, odd ones on
    /// smol).
    #[arg(long, default_value = "tokio")]
    runtime: DevnetRuntime,
}

/// The runtimes of a devnet's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DevnetRuntime {
    /// Every node on tokio.
    Tokio,
    /// Every node on smol.
    Smol,
    /// Even-numbered nodes on tokio, odd ones on smol.
    Mixed,
}

impl DevnetRuntime {
    /// The runtime of node `index`.
    fn of(self, index: usize) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Smol => "smol",
            Self::Mixed if index.is_multiple_of(2) => "tokio",
            Self::Mixed => "smol",
        }
    }
}

pub(crate) async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    if !(2..=MAX_NODES).contains(&args.nodes) {
        bail!(
            "--nodes must be between 2 and {MAX_NODES}, not {}",
            args.nodes
        );
    }
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("sinew-devnet-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let timeout = Duration::from_secs(args.timeout);
    let exe = std::env::current_exe().context("cannot find the sinew executable")?;
    let started = Instant::now();

    let mut procs: Vec<Proc> = Vec::new();
    let launch = Launch {
        exe: &exe,
        base: &base,
        topic: &args.topic,
        keep: args.keep,
        timeout,
    };
    let result = async {
        for index in 0..args.nodes {
            let bootstrap = procs.first().map(|p: &Proc| p.address.clone());
            let runtime = args.runtime.of(index);
            let proc = spawn(&launch, index, runtime, bootstrap.as_deref()).await?;
            procs.push(proc);
        }
        let on = |rt: &str| procs.iter().filter(|p| p.runtime == rt).count();
        eprintln!(
            "devnet: {} nodes up (tokio: {}, smol: {}) in {:.1} s; waiting for the gossip mesh",
            procs.len(),
            on("tokio"),
            on("smol"),
            started.elapsed().as_secs_f64()
        );
        let mesh_started = Instant::now();
        let mesh = wait_for_mesh(&procs, &args.topic, timeout).await?;
        let mesh_time = mesh_started.elapsed();
        let sent = publish_all(&procs, &args.topic, timeout).await?;
        let received = collect(&procs, &args.topic, args.nodes - 1, timeout).await?;
        let gossip = report(&procs, &mesh, &sent, &received, mesh_time, &args);
        let blobs = if args.blob_mib > 0 {
            blob::run(&procs, &base, args.blob_mib, args.json, timeout).await
        } else {
            Ok(())
        };
        let contexts = if args.no_context {
            Ok(())
        } else {
            context::run(&mut procs, &launch, args.json, timeout).await
        };
        gossip.and(blobs).and(contexts)
    }
    .await;

    if args.keep {
        eprintln!("devnet: nodes left running; inspect one with:");
        for p in &procs {
            eprintln!("  sinew status --data-dir {}", p.dir.display());
        }
        eprintln!("stop them with `kill` on their pids or {{\"cmd\":\"shutdown\"}} on their control sockets");
        for p in &mut procs {
            eprintln!("  node {} pid {}", p.index, p.child.id().unwrap_or(0));
        }
        // Dropping `Child` does not kill it (kill_on_drop is off with --keep).
    } else {
        for p in &procs {
            if let Ok(mut control) = Control::connect(&p.dir).await {
                let _ = control.call(&Request::Shutdown).await;
            }
        }
        for p in &mut procs {
            if tokio::time::timeout(Duration::from_secs(5), p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.kill().await;
            }
        }
        if args.dir.is_none() {
            let _ = std::fs::remove_dir_all(&base);
        }
    }
    result
}

/// Waits until every node has at least one mesh peer on the topic, and the bootstrap node
/// meshes with everyone it can (or the timeout). Returns (peers, mesh) per node.
async fn wait_for_mesh(
    procs: &[Proc],
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<(usize, usize)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut sizes = Vec::new();
        for p in procs {
            let status = Control::connect(&p.dir)
                .await?
                .call(&Request::Status {
                    topic: Some(topic.to_string()),
                })
                .await?;
            let peers = status["peers"].as_array().map_or(0, Vec::len);
            let mesh = status["mesh"].as_u64().unwrap_or(0) as usize;
            sizes.push((peers, mesh));
        }
        let everyone_meshed = sizes.iter().all(|(_, mesh)| *mesh >= 1);
        if everyone_meshed || Instant::now() > deadline {
            return Ok(sizes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every node publishes one message carrying its index and send time. Returns the send
/// times (ns since the epoch).
async fn publish_all(procs: &[Proc], topic: &str, timeout: Duration) -> anyhow::Result<Vec<u128>> {
    let mut sent = Vec::new();
    for p in procs {
        let deadline = Instant::now() + timeout;
        let mut control = Control::connect(&p.dir).await?;
        loop {
            let at = unix_nanos();
            let data =
                serde_json::json!({ "node": p.index, "sent_ns": at.to_string() }).to_string();
            match control
                .call(&Request::Publish {
                    topic: topic.to_string(),
                    data,
                })
                .await
            {
                Ok(_) => {
                    sent.push(at);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(node = p.index, %e, "publish refused; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => bail!("node {} could not publish: {e}", p.index),
            }
        }
    }
    Ok(sent)
}

/// Polls every node until it received `expected` messages from distinct other nodes.
async fn collect(
    procs: &[Proc],
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<(usize, u128)>>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = Vec::new();
        for p in procs {
            let value = Control::connect(&p.dir)
                .await?
                .call(&Request::Received {
                    topic: Some(topic.to_string()),
                })
                .await?;
            let received: Vec<Received> = serde_json::from_value(value)?;
            let mut from: Vec<(usize, u128)> = received
                .iter()
                .filter_map(|r| {
                    let v: Value = serde_json::from_str(&r.data).ok()?;
                    let node = v["node"].as_u64()? as usize;
                    let sent: u128 = v["sent_ns"].as_str()?.parse().ok()?;
                    Some((node, r.at_ns.saturating_sub(sent)))
                })
                .filter(|(node, _)| *node != p.index)
                .collect();
            from.sort_unstable();
            from.dedup_by_key(|(node, _)| *node);
            all.push(from);
        }
        if all.iter().all(|f| f.len() >= expected) || Instant::now() > deadline {
            return Ok(all);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percentile(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank] as f64 / 1e6
}

fn report(
    procs: &[Proc],
    mesh: &[(usize, usize)],
    sent: &[u128],
    received: &[Vec<(usize, u128)>],
    mesh_time: Duration,
    args: &DevnetArgs,
) -> anyhow::Result<()> {
    let n = procs.len();
    let expected = n * (n - 1);
    let delivered: usize = received.iter().map(Vec::len).sum();
    let mut all: Vec<u128> = received.iter().flatten().map(|(_, l)| *l).collect();
    all.sort_unstable();
    if args.json {
        let nodes: Vec<Value> = procs
            .iter()
            .zip(mesh)
            .zip(received)
            .map(|((p, (peers, mesh)), r)| {
                let mut l: Vec<u128> = r.iter().map(|(_, l)| *l).collect();
                l.sort_unstable();
                serde_json::json!({
                    "node": p.index, "peer_id": p.peer_id, "address": p.address,
                    "peers": peers, "mesh": mesh, "received": r.len(),
                    "rss_kib": rss_kib(p.child.id()),
                    "latency_ms_p50": percentile(&l, 0.5), "latency_ms_max": percentile(&l, 1.0),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "nodes": nodes, "published": sent.len(), "delivered": delivered, "expected": expected,
                "mesh_ms": mesh_time.as_millis() as u64,
                "latency_ms_p50": percentile(&all, 0.5), "latency_ms_p99": percentile(&all, 0.99),
            })
        );
    } else {
        println!("node  peer id       peers  mesh  received  p50 ms  max ms  rss MiB");
        for ((p, (peers, mesh)), r) in procs.iter().zip(mesh).zip(received) {
            let mut l: Vec<u128> = r.iter().map(|(_, l)| *l).collect();
            l.sort_unstable();
            let short: String = p
                .peer_id
                .chars()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            println!(
                "{:>4}  {short:<12}  {peers:>5}  {mesh:>4}  {:>4}/{:<4}  {:>6.2}  {:>6.2}  {:>7.1}",
                p.index,
                r.len(),
                n - 1,
                percentile(&l, 0.5),
                percentile(&l, 1.0),
                rss_kib(p.child.id()) as f64 / 1024.0
            );
        }
        println!(
            "delivered {delivered}/{expected} messages; latency p50 {:.2} ms, p99 {:.2} ms; mesh formed in {} ms",
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            mesh_time.as_millis()
        );
    }
    if delivered < expected {
        bail!("only {delivered} of {expected} messages were delivered");
    }
    Ok(())
}
