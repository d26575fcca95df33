//! A peer that vanishes without a word (its link goes down: no FIN, no RST, packets
//! black-holed) is detected by the ping watchdog, which closes the connection, so nothing
//! waits on it forever. Two `sinew node` processes run in network namespaces this test
//! creates (it needs root, as CI has); the link is then cut under them.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{control, Rt};
use serde_json::{json, Value};

struct Namespaces {
    a: String,
    b: String,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("the ip command exists");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root to create network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(
    rt: Rt,
    ns: &str,
    dir: &std::path::Path,
    listen: &str,
    bootstrap: Option<&str>,
) -> (Proc, String) {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("stdout.jsonl");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        env!("CARGO_BIN_EXE_sinew"),
        "node",
        "--json",
        "--topic",
        "t",
        "--runtime",
        rt.name(),
    ])
    .args(["--listen", listen])
    .arg("--data-dir")
    .arg(dir)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).unwrap())
    .stderr(std::fs::File::create(dir.join("node.log")).unwrap());
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = Proc(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(ready) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "ready")
        {
            return (child, ready["addresses"][0].as_str().unwrap().to_string());
        }
        assert!(Instant::now() < deadline, "node in {ns} not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn peers(dir: &std::path::Path) -> usize {
    control(dir, json!({"cmd": "status"}))
        .map(|s| s["peers"].as_array().map_or(0, Vec::len))
        .unwrap_or(usize::MAX)
}

fn the_ping_watchdog_closes_a_connection_to_a_vanished_peer(rt: Rt) {
    let tag = std::process::id();
    let ns = Namespaces {
        a: format!("sinew-wd-a-{tag}-{}", rt.name()),
        b: format!("sinew-wd-b-{tag}-{}", rt.name()),
    };
    ip(&["netns", "add", &ns.a]);
    ip(&["netns", "add", &ns.b]);
    let (va, vb) = (
        format!("swa{}{}", tag % 100_000, &rt.name()[..1]),
        format!("swb{}{}", tag % 100_000, &rt.name()[..1]),
    );
    ip(&[
        "link", "add", &va, "netns", &ns.a, "type", "veth", "peer", "name", &vb, "netns", &ns.b,
    ]);
    ip(&["-n", &ns.a, "addr", "add", "10.231.7.1/24", "dev", &va]);
    ip(&["-n", &ns.b, "addr", "add", "10.231.7.2/24", "dev", &vb]);
    for (n, dev) in [(&ns.a, &va), (&ns.b, &vb)] {
        ip(&["-n", n, "link", "set", dev, "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }

    let root = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    let (_a, a_addr) = spawn_in(rt, &ns.a, &dir_a, "/ip4/10.231.7.1/tcp/0", None);
    let (_b, _) = spawn_in(rt, &ns.b, &dir_b, "/ip4/10.231.7.2/tcp/0", Some(&a_addr));
    let deadline = Instant::now() + Duration::from_secs(20);
    while peers(&dir_a) != 1 || peers(&dir_b) != 1 {
        assert!(Instant::now() < deadline, "the nodes never connected");
        std::thread::sleep(Duration::from_millis(50));
    }

    // B's link goes down: A's packets vanish, nothing tells A.
    ip(&["-n", &ns.b, "link", "set", &vb, "down"]);
    let cut = Instant::now();
    // The watchdog closes a connection 15 s after its last successful ping (pings every
    // 5 s): well within 20 s of the cut.
    while peers(&dir_a) != 0 {
        assert!(
            cut.elapsed() < Duration::from_secs(20),
            "the connection to a vanished peer is still open after 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "watchdog closed the silent connection after {:?}",
        cut.elapsed()
    );
}
on_both_runtimes!(the_ping_watchdog_closes_a_connection_to_a_vanished_peer);
