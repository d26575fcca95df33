//! Helpers shared by the integration tests: in-process nodes on real loopback sockets, and
//! real `sinew node` processes driven through their control sockets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;
use sinew_tokio::{Client, Config, Event, EventStream, Options, Security};

/// The runtime a test's nodes run on. The shared suite runs each test body once per
/// runtime ([`on_both_runtimes!`](crate::on_both_runtimes)); the test itself (its timeouts,
/// its assertions) runs on tokio either way, the nodes under test on `Rt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rt {
    Tokio,
    Smol,
}

impl Rt {
    /// The name `sinew node --runtime` takes.
    pub fn name(self) -> &'static str {
        match self {
            Rt::Tokio => "tokio",
            Rt::Smol => "smol",
        }
    }

    /// Starts an in-process node on this runtime.
    pub fn start(self, config: Config, options: Options) -> (Client, EventStream) {
        match self {
            Rt::Tokio => sinew_tokio::start(config, options),
            Rt::Smol => sinew_smol::start(config, options),
        }
        .expect("node starts")
    }
}

/// Runs the test function `name(rt: Rt)` twice — `<name>::tokio` with nodes on tokio and
/// `<name>::smol` with nodes on smol: one suite for both runtimes. `on_both_runtimes!(async
/// name)` for an async body (run on a tokio test runtime), `on_both_runtimes!(name)` for a
/// blocking one.
#[macro_export]
macro_rules! on_both_runtimes {
    (async $name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tokio() {
                super::$name($crate::common::Rt::Tokio).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn smol() {
                super::$name($crate::common::Rt::Smol).await
            }
        }
    };
    ($name:ident) => {
        mod $name {
            #[test]
            fn tokio() {
                super::$name($crate::common::Rt::Tokio)
            }

            #[test]
            fn smol() {
                super::$name($crate::common::Rt::Smol)
            }
        }
    };
}

/// An in-process node on tokio listening on `listen`.
pub async fn node(listen: &str, security: Security) -> (Client, EventStream, Multiaddr) {
    node_on(Rt::Tokio, listen, security).await
}

/// An in-process node on `rt` listening on `listen`.
pub async fn node_on(rt: Rt, listen: &str, security: Security) -> (Client, EventStream, Multiaddr) {
    let (client, events) = rt.start(
        Config::default(),
        Options {
            security,
            ..Options::default()
        },
    );
    let address = client
        .listen_on(listen.parse().expect("valid address"))
        .await
        .expect("listens");
    let address = address
        .with_p2p(client.local_peer_id())
        .expect("no /p2p yet");
    (client, events, address)
}

/// A node on `rt` with `config`, listening on loopback TCP; its address ends in `/p2p/…`.
/// Its events are dropped (the tests that use it look at the client only).
pub async fn listening(rt: Rt, config: Config) -> (Client, Multiaddr) {
    let (client, _events) = rt.start(config, Options::default());
    let address = client
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("valid address"))
        .await
        .expect("listens")
        .with_p2p(client.local_peer_id())
        .expect("no /p2p yet");
    (client, address)
}

/// Waits (up to `timeout`) for an event matching `pick`.
pub async fn wait_for<T>(
    events: &mut EventStream,
    timeout: Duration,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(timeout, async {
        while let Some(event) = events.next().await {
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A `sinew node` process. Killed when dropped.
pub struct NodeProc {
    pub child: Child,
    pub dir: PathBuf,
    pub peer_id: PeerId,
    pub address: String,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sinew node` on tokio with data directory `dir` and waits until it is ready.
pub fn spawn_node(dir: &Path, bootstrap: Option<&str>, topic: &str) -> NodeProc {
    spawn_node_on(Rt::Tokio, dir, bootstrap, topic)
}

/// Starts `sinew node --runtime <rt>` with data directory `dir` and waits until it is ready.
pub fn spawn_node_on(rt: Rt, dir: &Path, bootstrap: Option<&str>, topic: &str) -> NodeProc {
    std::fs::create_dir_all(dir).expect("data dir");
    let out = dir.join("stdout.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sinew"));
    cmd.args([
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--json",
        "--topic",
        topic,
        "--runtime",
        rt.name(),
    ])
    .arg("--data-dir")
    .arg(dir)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).expect("stdout file"))
    .stderr(std::fs::File::create(dir.join("node.log")).expect("log file"));
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = cmd.spawn().expect("sinew node starts");
    wait_ready(child, dir, &out)
}

/// Waits until the node writing its JSON lines to `out` prints `ready`.
fn wait_ready(mut child: Child, dir: &Path, out: &Path) -> NodeProc {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "node exited early ({status}): {}",
                std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
            );
        }
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(ready) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "ready")
        {
            return NodeProc {
                child,
                dir: dir.to_path_buf(),
                peer_id: ready["peer_id"].as_str().unwrap().parse().unwrap(),
                address: ready["addresses"][0].as_str().unwrap().to_string(),
            };
        }
        assert!(
            Instant::now() < deadline,
            "node in {} not ready",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request on a node's control socket (through `sinew_tokio::control`, the client the
/// CLI uses), progress lines skipped; waits up to 10 s.
pub fn control(dir: &Path, request: Value) -> Result<Value, String> {
    control_long(dir, request, Duration::from_secs(10))
}

/// One request on a node's control socket, progress lines skipped; waits up to `timeout`.
pub fn control_long(dir: &Path, request: Value, timeout: Duration) -> Result<Value, String> {
    blocking(async {
        let call = async {
            let mut control = sinew_tokio::control::Control::connect(dir).await?;
            control.call_json(&request).await
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result.map_err(|e| format!("{e:#}")),
            Err(_) => Err(format!("no response within {timeout:?}")),
        }
    })
}

/// Runs `future` to completion on a runtime of its own (the helpers here are called from
/// plain `#[test]` functions).
fn blocking<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Starts `sinew node` on tokio, on loopback TCP with extra config-file lines (TOML), no
/// topic.
pub fn spawn_blob_node(dir: &Path, config: &str) -> NodeProc {
    spawn_blob_node_on(Rt::Tokio, dir, config)
}

/// [`spawn_blob_node`] on `rt` (the config file names the runtime).
pub fn spawn_blob_node_on(rt: Rt, dir: &Path, config: &str) -> NodeProc {
    std::fs::create_dir_all(dir).expect("data dir");
    let file = dir.join("sinew.toml");
    let config = format!("runtime = \"{}\"\n{config}", rt.name());
    std::fs::write(&file, config).expect("config file");
    let out = dir.join("stdout.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--json"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join("node.log")).expect("log file"))
        .spawn()
        .expect("sinew node starts");
    wait_ready(child, dir, &out)
}

/// Runs the `sinew` CLI; returns (success, stdout, stderr).
pub fn sinew(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the sinew CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `len` pseudo-random bytes (seeded xorshift) to `path`.
pub fn write_random(path: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("file"));
    let mut x = seed | 1;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

/// The BLAKE3 hash of a file, in hex: what `b3sum` prints.
pub fn b3(path: &Path) -> String {
    let mut hasher = blake3::Hasher::new();
    let mut f = std::fs::File::open(path).expect("file to hash");
    std::io::copy(&mut f, &mut hasher).expect("read");
    hasher.finalize().to_hex().to_string()
}

/// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`), 0 if unknown.
pub fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sends a signal to a process with `kill(1)` (`STOP`, `CONT`, `KILL`).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// A `blob_get` on a node's control socket whose progress lines the caller reads.
pub struct GetInProgress {
    runtime: tokio::runtime::Runtime,
    control: sinew_tokio::control::Control,
}

impl GetInProgress {
    pub fn start(dir: &Path, request: Value) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let control = runtime.block_on(async {
            let mut control = sinew_tokio::control::Control::connect(dir)
                .await
                .expect("control socket");
            control.send_json(&request).await.expect("request sent");
            control
        });
        Self { runtime, control }
    }

    /// The next line: `Ok(progress)` for a progress line, `Err(response)` at the end (or a
    /// closed socket, or nothing for 120 s: `Null`).
    pub fn next(&mut self) -> Result<Value, Value> {
        let next = self.control.next_line();
        let line = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(120), next).await });
        match line {
            Ok(Ok(Some(v))) => match v.get("progress") {
                Some(p) => Ok(p.clone()),
                None => Err(v),
            },
            _ => Err(Value::Null),
        }
    }
}
