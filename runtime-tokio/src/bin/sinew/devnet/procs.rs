//! The node processes of a devnet: starting one and waiting until it is ready.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::process::{Child, Command};

/// One node process of a devnet.
pub(crate) struct Proc {
    pub(crate) index: usize,
    /// The runtime it runs on (`tokio` or `smol`).
    pub(crate) runtime: &'static str,
    pub(crate) dir: PathBuf,
    pub(crate) child: Child,
    pub(crate) peer_id: String,
    pub(crate) address: String,
}

/// How a devnet starts its nodes.
pub(crate) struct Launch<'a> {
    /// The `sinew` executable.
    pub(crate) exe: &'a Path,
    /// Where the nodes' data directories go.
    pub(crate) base: &'a Path,
    pub(crate) topic: &'a str,
    /// The processes outlive the devnet.
    pub(crate) keep: bool,
    /// How long a node may take to be ready.
    pub(crate) timeout: Duration,
}

/// Starts node `index` of a devnet on `runtime` (bootstrapping from `bootstrap`) and waits
/// for its ready line.
pub(crate) async fn spawn(
    launch: &Launch<'_>,
    index: usize,
    runtime: &'static str,
    bootstrap: Option<&str>,
) -> anyhow::Result<Proc> {
    let Launch {
        exe,
        base,
        topic,
        keep,
        timeout,
    } = *launch;
    let dir = base.join(format!("node{index}"));
    std::fs::create_dir_all(&dir)?;
    let stdout_path = dir.join("stdout.jsonl");
    let stdout = std::fs::File::create(&stdout_path)?;
    let stderr = std::fs::File::create(dir.join("node.log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--listen")
        .arg("/ip4/127.0.0.1/tcp/0")
        .arg("--topic")
        .arg(topic)
        .arg("--runtime")
        .arg(runtime)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(!keep);
    if let Some(b) = bootstrap {
        cmd.arg("--bootstrap").arg(b);
    }
    let mut child = cmd.spawn().context("cannot start a node process")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "node {index} exited ({status}) before it was ready; see {}",
                dir.join("node.log").display()
            );
        }
        let text = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if let Some(ready) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "ready")
        {
            let address = ready["addresses"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .context("ready line without an address")?
                .to_string();
            let peer_id = ready["peer_id"].as_str().unwrap_or_default().to_string();
            return Ok(Proc {
                index,
                runtime,
                dir,
                child,
                peer_id,
                address,
            });
        }
        if Instant::now() > deadline {
            bail!("node {index} was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of a process in KiB (Linux), 0 if unknown.
pub(crate) fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
