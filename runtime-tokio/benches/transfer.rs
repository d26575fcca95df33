//! `cargo bench -p sinew-tokio --bench transfer`: one blob from one `sinew node` process
//! to another over loopback — verified chunk group by chunk group and written to the
//! requester's store — side by side with a raw rust-libp2p stream of the same payload.
//!
//! - Sinew: a provider process imports the blob once; each round starts a fresh
//!   requester process (empty store) and times `blob_get` from the download's start to
//!   `BlobDownloaded` (every byte verified and in the store, synced), as the node reports
//!   it. Once over TCP, once over QUIC — and once more over TCP with both processes on
//!   smol (`sinew node --runtime smol`, a provider of its own holding the same blob):
//!   `transfer-tcp-smol` is that pair's rate against the tokio pair's, in the same run.
//! - Baseline: two libp2p 0.57 swarms in this process with libp2p-stream only, TCP +
//!   Noise + Yamux with their default settings (and QUIC for the QUIC line), one stream,
//!   the same number of bytes written in 1 MiB writes and read into a 1 MiB buffer; no
//!   verification, no disk.
//!
//! - Also shown, not a baseline: the same raw stream over Sinew's own transport (TCP +
//!   `shell::tls` with AES-GCM + `shell::muxer` with 256 KiB frames), i.e. what the
//!   transport costs without verification and the store.
//!
//! Rounds are interleaved and the best of `SINEW_BENCH_ROUNDS` (3) is kept for each.
//! `SINEW_BENCH_TRANSFER_MIB` sets the size (512). Both stores are put under
//! `SINEW_BENCH_DIR` (default `/dev/shm` when it exists, else the temp directory): the
//! benchmark measures the network, verification and the store's writes, not this
//! machine's disk — see the README for the same run on disk.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm};
use serde_json::Value;

const PROTO: StreamProtocol = StreamProtocol::new("/raw-bench/1");

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// --- the baseline: raw rust-libp2p ---

/// Which transport a raw stream runs on.
#[derive(Clone, Copy, PartialEq)]
enum Raw {
    /// libp2p's defaults: TCP + Noise + Yamux (the baseline).
    Tcp,
    /// QUIC (the baseline of the QUIC line's side figure).
    Quic,
    /// Sinew's transport alone: TCP + `shell::tls` (AES-GCM) + `shell::muxer` (256 KiB
    /// frames). Not a baseline: it shows what the transport costs without the blob work.
    SinewTransport,
}

fn raw_swarm(kind: Raw) -> Swarm<libp2p_stream::Behaviour> {
    let builder = libp2p::SwarmBuilder::with_new_identity().with_tokio();
    if kind == Raw::SinewTransport {
        return builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                |k: &libp2p::identity::Keypair| sinew_tokio::core::shell::tls::TlsConfig::new(k),
                sinew_tokio::core::shell::muxer::YamuxConfig::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .build();
    }
    if kind == Raw::Quic {
        builder
            .with_quic()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .build()
    } else {
        builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .build()
    }
}

/// MiB/s of one raw libp2p stream carrying `bytes`.
async fn raw(bytes: u64, kind: Raw) -> Run {
    let mut a = raw_swarm(kind);
    let mut b = raw_swarm(kind);
    let listen = if kind == Raw::Quic {
        "/ip4/127.0.0.1/udp/0/quic-v1"
    } else {
        "/ip4/127.0.0.1/tcp/0"
    };
    a.listen_on(listen.parse().unwrap()).unwrap();
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = a.select_next_some().await {
            break address;
        }
    };
    let a_id = *a.local_peer_id();
    let mut incoming = a.behaviour().new_control().accept(PROTO).unwrap();
    let mut control = b.behaviour().new_control();
    b.dial(addr.with_p2p(a_id).unwrap()).unwrap();
    let a_task = tokio::spawn(async move {
        loop {
            a.select_next_some().await;
        }
    });
    let b_task = tokio::spawn(async move {
        loop {
            b.select_next_some().await;
        }
    });
    let mut s = control.open_stream(a_id, PROTO).await.unwrap();
    let cpu0 = cpu_seconds("self");
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        let chunk = vec![0xA5u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n]).await.unwrap();
            left -= n as u64;
        }
        s.close().await.unwrap();
    });
    let (_, mut r) = incoming.next().await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let elapsed = t0.elapsed();
    sender.await.unwrap();
    let cpu = cpu_seconds("self") - cpu0;
    a_task.abort();
    b_task.abort();
    assert_eq!(got, bytes);
    Run::new(bytes, elapsed.as_secs_f64(), cpu)
}

/// One timed transfer: its rate, and the CPU time all its processes spent on it.
#[derive(Clone, Copy, Default)]
struct Run {
    mib_s: f64,
    /// CPU-seconds per GiB moved (user + system, every thread of every process involved).
    cpu_per_gib: f64,
}

impl Run {
    fn new(bytes: u64, secs: f64, cpu: f64) -> Run {
        Run {
            mib_s: bytes as f64 / (1 << 20) as f64 / secs,
            cpu_per_gib: cpu / (bytes as f64 / (1u64 << 30) as f64),
        }
    }

    /// The better of two runs by rate (the CPU figure goes with its run).
    fn best(self, other: Run) -> Run {
        if other.mib_s > self.mib_s {
            other
        } else {
            self
        }
    }
}

/// User + system CPU time of a process so far (`self` or a pid), from `/proc`; 0 where
/// there is no `/proc` (the CPU figures then read 0).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

// --- Sinew: two node processes ---

struct Node {
    child: tokio::process::Child,
    dir: PathBuf,
    addresses: Vec<String>,
}

impl Node {
    fn pid(&self) -> String {
        self.child.id().map(|p| p.to_string()).unwrap_or_default()
    }
}

async fn start_node(dir: &Path, listen: &[&str], runtime: &str) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let stdout_path = dir.join("stdout.jsonl");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"));
    cmd.arg("node").arg("--data-dir").arg(dir).arg("--json");
    cmd.arg("--runtime").arg(runtime);
    for l in listen {
        cmd.arg("--listen").arg(l);
    }
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("the sinew binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if let Some(ready) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "ready")
        {
            let addresses = ready["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            return Node {
                child,
                dir: dir.to_path_buf(),
                addresses,
            };
        }
        assert!(Instant::now() < deadline, "node in {dir:?} never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request on a node's control socket (through `sinew_tokio::control`); progress lines
/// are skipped. A failure panics with the tail of the node's log.
async fn control(dir: &Path, request: Value) -> Value {
    let result = async {
        let mut control = sinew_tokio::control::Control::connect(dir).await?;
        control.call_json(&request).await
    }
    .await;
    match result {
        Ok(result) => result,
        Err(err) => {
            let log = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "control request {request} to the node in {dir:?} failed: {err:#}; its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

async fn stop(mut node: Node) {
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        control(&node.dir, serde_json::json!({"cmd": "shutdown"})),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), node.child.wait()).await;
    let _ = node.child.kill().await;
}

/// What a Sinew download runs over: the requester's runtime and transport.
#[derive(Debug, Clone, Copy)]
enum Over {
    TokioTcp,
    TokioQuic,
    SmolTcp,
}

impl Over {
    fn runtime(self) -> &'static str {
        match self {
            Over::TokioTcp | Over::TokioQuic => "tokio",
            Over::SmolTcp => "smol",
        }
    }

    fn listen(self) -> &'static str {
        match self {
            Over::TokioTcp | Over::SmolTcp => "/ip4/127.0.0.1/tcp/0",
            Over::TokioQuic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }
}

/// MiB/s of one Sinew download of `id` from `provider` (address `from`) into a fresh store,
/// the requester running `over`.
async fn sinew(
    base: &Path,
    provider: &Node,
    round: usize,
    id: &str,
    from: &str,
    size: u64,
    over: Over,
) -> Run {
    let dir = base.join(format!("requester-{round}-{over:?}"));
    let node = start_node(&dir, &[over.listen()], over.runtime()).await;
    let pids = [provider.pid(), node.pid()];
    let cpu0: f64 = pids.iter().map(|p| cpu_seconds(p)).sum();
    let result = control(
        &dir,
        serde_json::json!({"cmd": "blob_get", "id": id, "from": [from]}),
    )
    .await;
    assert_eq!(result["size"].as_u64(), Some(size));
    let cpu = pids.iter().map(|p| cpu_seconds(p)).sum::<f64>() - cpu0;
    let secs = result["seconds"].as_f64().unwrap();
    stop(node).await;
    let _ = std::fs::remove_dir_all(&dir);
    Run::new(size, secs, cpu)
}

/// CPU-seconds per GiB of the work a verified download cannot skip, measured here on the
/// payload: BLAKE3 over every byte (the requester's verification), writing it into a file
/// beside the stores (the requester's store) and reading it back in chunk groups (the
/// provider's store).
struct Work {
    hash: f64,
    write: f64,
    read: f64,
}

fn measure_work(payload: &Path) -> Work {
    use std::io::{Read, Write};
    use std::os::unix::fs::FileExt;
    let bytes = std::fs::metadata(payload).unwrap().len();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let mut data = Vec::new();
    std::fs::File::open(payload)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    // Hashing runs on this thread only: wall time is its CPU time.
    let t0 = Instant::now();
    let hash = blake3::hash(&data);
    let hash_secs = t0.elapsed().as_secs_f64();
    assert_ne!(hash.as_bytes(), &[0; 32]);
    let copy = payload.with_extension("copy");
    let cpu0 = cpu_seconds("self");
    let mut f = std::fs::File::create(&copy).unwrap();
    for piece in data.chunks(256 * 1024) {
        f.write_all(piece).unwrap();
    }
    drop(f);
    let write = cpu_seconds("self") - cpu0;
    let cpu0 = cpu_seconds("self");
    let f = std::fs::File::open(&copy).unwrap();
    let mut group = vec![0u8; 16 * 1024];
    for offset in (0..bytes).step_by(group.len()) {
        let _ = f.read_at(&mut group, offset).unwrap();
    }
    let read = cpu_seconds("self") - cpu0;
    std::fs::remove_file(&copy).unwrap();
    Work {
        hash: hash_secs / gib,
        write: write / gib,
        read: read / gib,
    }
}

/// Fills a file with `mib` MiB of pseudo-random bytes (xorshift; incompressible enough).
fn write_random(path: &Path, mib: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib = env("SINEW_BENCH_TRANSFER_MIB", 512);
    let rounds = env("SINEW_BENCH_ROUNDS", 3);
    let size = (mib as u64) << 20;
    let parent = std::env::var_os("SINEW_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
    let base = tempfile::Builder::new()
        .prefix("sinew-transfer-")
        .tempdir_in(&parent)
        .unwrap();
    let file = base.path().join("payload");
    write_random(&file, mib);
    let work = measure_work(&file);

    let provider = start_node(
        &base.path().join("provider"),
        &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"],
        "tokio",
    )
    .await;
    // The same blob on a smol provider, for the smol pair.
    let smol_provider = start_node(
        &base.path().join("provider-smol"),
        &["/ip4/127.0.0.1/tcp/0"],
        "smol",
    )
    .await;
    let add = serde_json::json!({"cmd": "blob_add", "path": file.display().to_string()});
    let added = control(&provider.dir, add.clone()).await;
    let added_smol = control(&smol_provider.dir, add).await;
    std::fs::remove_file(&file).unwrap();
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(added_smol["id"], added["id"]);
    let smol_addr = smol_provider.addresses[0].clone();
    let tcp_addr = provider
        .addresses
        .iter()
        .find(|a| a.contains("/tcp/"))
        .unwrap()
        .clone();
    let quic_addr = provider
        .addresses
        .iter()
        .find(|a| a.contains("/quic-v1/"))
        .unwrap()
        .clone();
    println!("  {mib} MiB blob {id}, stores under {}", parent.display());

    let (mut raw_tcp, mut raw_quic) = (Run::default(), Run::default());
    let (mut sinew_tcp, mut sinew_quic, mut transport) =
        (Run::default(), Run::default(), Run::default());
    let mut smol_tcp = Run::default();
    let dir = base.path();
    for round in 0..rounds {
        let rt = raw(size, Raw::Tcp).await;
        let tr = raw(size, Raw::SinewTransport).await;
        let st = sinew(dir, &provider, round, &id, &tcp_addr, size, Over::TokioTcp).await;
        let sm = sinew(
            dir,
            &smol_provider,
            round,
            &id,
            &smol_addr,
            size,
            Over::SmolTcp,
        )
        .await;
        let rq = raw(size, Raw::Quic).await;
        let sq = sinew(
            dir,
            &provider,
            round,
            &id,
            &quic_addr,
            size,
            Over::TokioQuic,
        )
        .await;
        println!(
            "  round {round}: raw tcp {:.0}, sinew transport alone {:.0}, sinew tcp {:.0} (smol pair {:.0}), raw quic {:.0}, sinew quic {:.0} MiB/s",
            rt.mib_s, tr.mib_s, st.mib_s, sm.mib_s, rq.mib_s, sq.mib_s
        );
        transport = transport.best(tr);
        raw_tcp = raw_tcp.best(rt);
        raw_quic = raw_quic.best(rq);
        sinew_tcp = sinew_tcp.best(st);
        smol_tcp = smol_tcp.best(sm);
        sinew_quic = sinew_quic.best(sq);
    }
    stop(provider).await;
    stop(smol_provider).await;
    println!(
        "  best of {rounds}: raw libp2p TCP+Noise+Yamux {:.0} MiB/s, raw libp2p QUIC {:.0} MiB/s",
        raw_tcp.mib_s, raw_quic.mib_s
    );
    println!(
        "  sinew's transport alone (TLS AES-GCM + 256 KiB Yamux frames, raw stream, no verification, no disk): {:.0} MiB/s ({:.2}x raw-libp2p)",
        transport.mib_s,
        transport.mib_s / raw_tcp.mib_s
    );
    println!(
        "  CPU-seconds per GiB moved, both ends (in those best runs): raw tcp {:.2}, sinew transport alone {:.2}, sinew tcp {:.2}, raw quic {:.2}, sinew quic {:.2}",
        raw_tcp.cpu_per_gib,
        transport.cpu_per_gib,
        sinew_tcp.cpu_per_gib,
        raw_quic.cpu_per_gib,
        sinew_quic.cpu_per_gib
    );
    // The least a verified download into a store can cost: the transport (as measured
    // alone) plus the work it cannot skip. Spread perfectly over every core, it bounds the
    // rate from above; the real rate is lower (two processes never keep every core busy).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let floor = transport.cpu_per_gib + work.hash + work.write + work.read;
    let ceiling = cores / floor * 1024.0;
    println!(
        "  the work itself, CPU-seconds per GiB: BLAKE3 {:.2}, store write {:.2}, store read {:.2}; with sinew's transport alone that is {floor:.2} per GiB, i.e. at most {ceiling:.0} MiB/s on {cores} cores ({:.2}x raw-libp2p) even if every core were busy all the time",
        work.hash,
        work.write,
        work.read,
        ceiling / raw_tcp.mib_s
    );
    println!(
        "  sinew over QUIC vs raw libp2p QUIC: {:.2}x",
        sinew_quic.mib_s / raw_quic.mib_s
    );
    println!(
        "bench transfer-tcp: {:.0} MiB/s ({:.2}x raw-libp2p)",
        sinew_tcp.mib_s,
        sinew_tcp.mib_s / raw_tcp.mib_s
    );
    println!(
        "bench transfer-tcp-smol: {:.0} MiB/s ({:.2}x tokio)",
        smol_tcp.mib_s,
        smol_tcp.mib_s / sinew_tcp.mib_s
    );
    println!(
        "bench transfer-quic: {:.0} MiB/s ({:.2}x raw-libp2p)",
        sinew_quic.mib_s,
        sinew_quic.mib_s / raw_tcp.mib_s
    );
}
