//! `cargo bench -p sinew-tokio --bench catchup`: a `sinew node` process that lacks a
//! context's whole history — `SINEW_BENCH_CATCHUP_TXS` signed transactions (100,000 by
//! default; 1,000,000 with `SINEW_BENCH_CATCHUP_TXS=1000000`) with 256-byte payloads —
//! joins it and catches up from another `sinew node` process over loopback TCP: every
//! transaction decoded, its id recomputed, its signature checked (in batches, on the
//! verification threads), authorised by the DAG and committed to redb with fsync, before
//! the node reports the session synced. Timed from the join request to the moment the
//! context's status shows every transaction and no catch-up running.
//!
//! Side by side, in the same run: the **serial single-signature verification** rate of
//! this machine — the same library (`SignedTx::check`: BLAKE3 id and one ed25519-consensus
//! verification per transaction) on one core, over transactions of the same shape. The
//! last line is `bench catchup: <tx/s> tx/s (<ratio>x serial-verify)`; above 1 means the
//! pipeline (batch verification off the driver, overlapped with the network and the
//! store) beats checking signatures one by one, with nothing else to do.
//!
//! Also printed: the requester's peak resident memory above its idle level (VmHWM minus
//! VmRSS before the join).
//!
//! The responder's store is written by this process before the responder starts (a core
//! `Node` on an `FsStore`, the same code the node runs). Stores go under `SINEW_BENCH_DIR`
//! (default: the temporary directory, i.e. a real disk with real fsyncs).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use libp2p::identity::ed25519;
use serde_json::{json, Value};
use sinew_tokio::core::sync::{AuthorKey, Invite, SignedTx, Transaction, TxBody, TxId};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PAYLOAD: usize = 256;

/// Serial verification rate on this thread: `SignedTx::check` over `n` transactions of
/// the benchmark's shape.
fn serial_verify_rate(n: usize) -> f64 {
    let key = ed25519::Keypair::generate();
    let author = AuthorKey::from(&key.public());
    let mut prev = TxId([1; 32]);
    let txs: Vec<SignedTx> = (0..n)
        .map(|k| {
            let tx = Transaction {
                context: TxId([9; 32]),
                author,
                seq: k as u64 + 1,
                parents: vec![prev],
                body: TxBody::Payload(vec![0x5a; PAYLOAD]),
            }
            .sign(&key);
            prev = tx.id();
            tx
        })
        .collect();
    let t0 = Instant::now();
    for tx in &txs {
        tx.check().expect("valid");
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

struct Proc {
    child: tokio::process::Child,
    dir: PathBuf,
    peer: libp2p::PeerId,
    address: String,
}

async fn start_node(dir: &Path) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let stdout_path = dir.join("stdout.jsonl");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .arg("node")
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .arg("--listen")
        .arg("/ip4/127.0.0.1/tcp/0")
        .env(
            "RUST_LOG",
            std::env::var("SINEW_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("the sinew binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if let Some(ready) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "ready")
        {
            return Proc {
                child,
                dir: dir.to_path_buf(),
                peer: ready["peer_id"].as_str().unwrap().parse().unwrap(),
                address: ready["addresses"][0].as_str().unwrap().to_string(),
            };
        }
        assert!(Instant::now() < deadline, "node in {dir:?} never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn control(dir: &Path, request: Value) -> Value {
    let mut control = sinew_tokio::control::Control::connect(dir).await.unwrap();
    match control.call_json(&request).await {
        Ok(v) => v,
        Err(e) => {
            let log = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
            panic!("{request} failed: {e:#}\n{log}");
        }
    }
}

/// A field of `/proc/<pid>/status` in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn stop(mut proc: Proc) {
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        control(&proc.dir, json!({"cmd": "shutdown"})),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), proc.child.wait()).await;
    let _ = proc.child.kill().await;
}

#[tokio::main]
async fn main() {
    let count = env("SINEW_BENCH_CATCHUP_TXS", 100_000);
    let base = std::env::var_os("SINEW_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("sinew-catchup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);

    // The requester's identity first: its key is the member the context lists.
    let req_dir = base.join("requester");
    std::fs::create_dir_all(&req_dir).unwrap();
    let identity = sinew_tokio::load_or_create_identity(&req_dir.join("identity")).unwrap();
    let member = AuthorKey::from(&identity.clone().try_into_ed25519().unwrap().public());

    let t0 = Instant::now();
    let resp_dir = base.join("responder");
    let (ctx, admin) = tokio::task::spawn_blocking({
        let resp_dir = resp_dir.clone();
        move || {
            sinew_tokio::fixtures::write_context(&resp_dir.join("store"), count, PAYLOAD, member)
                .expect("the responder's store is written")
        }
    })
    .await
    .unwrap();
    eprintln!(
        "catchup: wrote {count} signed transactions to the responder's store in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let responder = start_node(&resp_dir).await;
    let requester = start_node(&req_dir).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = requester.child.id().unwrap();
    let idle_kib = proc_kib(pid, "VmRSS:");

    let invite = Invite::new(
        &admin,
        ctx,
        member,
        responder.peer,
        vec![responder.address.parse().unwrap()],
    );
    let started = Instant::now();
    control(
        &requester.dir,
        json!({"cmd": "context_join", "invite": invite.to_string()}),
    )
    .await;
    // The genesis, its key, then the payloads.
    let expected = count as u64 + 2;
    let deadline = started + Duration::from_secs(600);
    loop {
        let s = control(
            &requester.dir,
            json!({"cmd": "context_status", "context": hex::encode(ctx.0)}),
        )
        .await;
        if s["txs"].as_u64() == Some(expected) && s["syncing"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the catch-up did not finish: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    let peak_kib = proc_kib(pid, "VmHWM:");
    stop(requester).await;
    stop(responder).await;
    let _ = std::fs::remove_dir_all(&base);

    let serial = serial_verify_rate(count.clamp(1_000, 20_000));
    let rate = expected as f64 / took.as_secs_f64();
    println!(
        "catchup: {expected} transactions in {:.2} s; serial single-signature verification on one core: {serial:.0} tx/s",
        took.as_secs_f64()
    );
    println!(
        "catchup: requester peak RSS {:.1} MiB above idle ({:.1} MiB idle)",
        peak_kib.saturating_sub(idle_kib) as f64 / 1024.0,
        idle_kib as f64 / 1024.0
    );
    println!(
        "bench catchup: {rate:.0} tx/s ({:.2}x serial-verify)",
        rate / serial
    );
}
