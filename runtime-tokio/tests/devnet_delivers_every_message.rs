//! `sinew devnet --nodes 5` starts five real node processes on loopback; every node
//! receives every other node's message, and the four others each fetch node 0's 64 MiB
//! blob with an identical copy — with every node on tokio, every node on smol, and mixed.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::process::Command;

use common::Rt;

fn five_node_devnet_delivers_every_message(rt: Rt) {
    devnet(rt.name());
}
on_both_runtimes!(five_node_devnet_delivers_every_message);

#[test]
fn a_mixed_devnet_of_tokio_and_smol_nodes_delivers_every_message_and_identical_blobs() {
    let stderr = devnet("mixed");
    assert!(stderr.contains("(tokio: 3, smol: 2)"), "{stderr}");
}

/// Runs a 5-node devnet on `runtime` and checks its summaries; returns its stderr.
fn devnet(runtime: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["devnet", "--nodes", "5", "--json", "--timeout", "30"])
        .args(["--runtime", runtime])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("devnet runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "devnet failed:\n{stdout}\n{stderr}");
    let mut lines = stdout.lines();
    let summary: serde_json::Value =
        serde_json::from_str(lines.next().unwrap()).expect("JSON gossip summary");
    assert_eq!(summary["expected"], 20);
    assert_eq!(summary["delivered"], 20);
    for node in summary["nodes"].as_array().unwrap() {
        assert_eq!(node["received"], 4, "{node}");
        assert!(node["peers"].as_u64().unwrap() >= 1, "{node}");
    }
    let blob: serde_json::Value =
        serde_json::from_str(lines.next().unwrap()).expect("JSON blob summary");
    assert_eq!(blob["blob"]["mib"], 64);
    assert_eq!(blob["blob"]["fetched"], 4, "{blob}");
    for node in blob["blob"]["nodes"].as_array().unwrap() {
        assert_eq!(node["ok"], true, "{node}");
        assert_eq!(node["copy_b3"], blob["blob"]["id"], "{node}");
    }
    stderr.into_owned()
}
