//! The quick-start example really talks to another node, and `--metrics` serves
//! Prometheus text with libp2p's and Sinew's metrics.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{control, spawn_node, Rt};
use serde_json::json;

#[test]
fn the_quickstart_example_exchanges_messages() {
    let build = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "sinew-tokio",
            "--example",
            "quickstart",
        ])
        .status()
        .unwrap();
    assert!(build.success());
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_sinew"))
        .parent()
        .unwrap()
        .join("examples/quickstart");
    let mut first = std::process::Command::new(&exe)
        .arg("--once")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first stderr line is its address.
    let mut stderr = first.stderr.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stderr.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let address = line
        .strip_prefix("listening on ")
        .expect("address line")
        .to_string();
    let second = std::process::Command::new(&exe)
        .args(["--once", &address])
        .output()
        .unwrap();
    let out = first.wait_with_output().unwrap();
    let got_first = String::from_utf8_lossy(&out.stdout);
    let got_second = String::from_utf8_lossy(&second.stdout);
    assert!(got_first.contains("hello from"), "first got: {got_first}");
    assert!(
        got_second.contains("hello from"),
        "second got: {got_second}"
    );
}

fn metrics_are_served_on_loopback(rt: Rt) {
    let root = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = root.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args([
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--topic",
            "t",
            "--runtime",
            rt.name(),
            "--metrics",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let body = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            let mut body = String::new();
            conn.read_to_string(&mut body).ok()?;
            Some(body)
        })
        .expect("metrics endpoint answers");
    let _ = control(&dir, json!({"cmd": "status"}));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("sinew_messages_published"), "{body}");
    assert!(body.contains("libp2p_"), "{body}");

    // A non-loopback metrics address is refused with a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["node", "--metrics", "0.0.0.0:9464"])
        .arg("--data-dir")
        .arg(root.path().join("n"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not on loopback"));
    let _ = spawn_node; // shared helpers
}
on_both_runtimes!(metrics_are_served_on_loopback);

/// The quick start is the same API on both runtimes: a node on tokio and one on smol
/// exchange messages on their topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_nodes_on_tokio_and_on_smol_talk() {
    use sinew_tokio::QuickStart;
    let listen: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
    let mut a = QuickStart::new(sinew_tokio::Tokio, "quick")
        .listen(listen.clone())
        .start()
        .await
        .unwrap();
    let a_addr = a
        .client()
        .listen_on(listen.clone())
        .await
        .unwrap()
        .with_p2p(a.client().local_peer_id())
        .unwrap();
    let mut b = QuickStart::new(sinew_smol::Smol, "quick")
        .listen(listen)
        .bootstrap(vec![a_addr])
        .start()
        .await
        .unwrap();
    pass(&a, &mut b, "from tokio").await;
    pass(&b, &mut a, "from smol").await;
    a.shutdown().await;
    b.shutdown().await;
}

/// `from` publishes `text` (once the mesh has formed); `to` receives it from `from`.
async fn pass(from: &sinew_tokio::QuickNode, to: &mut sinew_tokio::QuickNode, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while from.publish(text.to_string()).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no mesh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(20), to.next_message())
        .await
        .expect("a message in time")
        .expect("the node runs");
    assert_eq!(&got.data[..], text.as_bytes());
    assert_eq!(got.from, from.client().local_peer_id());
}
