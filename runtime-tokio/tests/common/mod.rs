//! Helpers shared by the integration tests: in-process nodes on real loopback sockets, and
//! real `sinew node` processes driven through their control sockets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;
use sinew_tokio::{EventStream, NetworkClient, NetworkConfig, NetworkEvent, Options, Security};

/// An in-process node listening on `listen`.
pub async fn node(listen: &str, security: Security) -> (NetworkClient, EventStream, Multiaddr) {
    let (client, events) = sinew_tokio::start(
        NetworkConfig::default(),
        Options {
            security,
            ..Options::default()
        },
    )
    .expect("node starts");
    let address = client
        .listen_on(listen.parse().expect("valid address"))
        .await
        .expect("listens");
    let address = address
        .with_p2p(client.local_peer_id())
        .expect("no /p2p yet");
    (client, events, address)
}

/// Waits (up to `timeout`) for an event matching `pick`.
pub async fn wait_for<T>(
    events: &mut EventStream,
    timeout: Duration,
    mut pick: impl FnMut(NetworkEvent) -> Option<T>,
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

/// Starts `sinew node` with data directory `dir` and waits until it is ready.
pub fn spawn_node(dir: &Path, bootstrap: Option<&str>, topic: &str) -> NodeProc {
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
    ])
    .arg("--data-dir")
    .arg(dir)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).expect("stdout file"))
    .stderr(std::fs::File::create(dir.join("node.log")).expect("log file"));
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let mut child = cmd.spawn().expect("sinew node starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "node exited early ({status}): {}",
                std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
            );
        }
        let text = std::fs::read_to_string(&out).unwrap_or_default();
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

/// One request on a node's control socket.
pub fn control(dir: &Path, request: Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(dir.join("control.sock")).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut line = serde_json::to_vec(&request).unwrap();
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&reply).map_err(|e| e.to_string())?;
    if v["ok"] == true {
        Ok(v["result"].clone())
    } else {
        Err(v["error"].as_str().unwrap_or("unknown error").to_string())
    }
}
