//! A node killed with SIGKILL and restarted on the same data directory keeps its peer id,
//! rejoins the mesh, and receives messages again (its subscription is re-announced).
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::time::{Duration, Instant};

use common::{control, spawn_node_on, Rt};
use serde_json::json;

fn wait(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn meshed(dir: &std::path::Path) -> bool {
    control(dir, json!({"cmd": "status", "topic": "t"}))
        .map(|s| s["mesh"].as_u64().unwrap_or(0) >= 1)
        .unwrap_or(false)
}

fn received(dir: &std::path::Path, text: &str) -> bool {
    control(dir, json!({"cmd": "received", "topic": "t"}))
        .map(|list| list.as_array().unwrap().iter().any(|m| m["data"] == text))
        .unwrap_or(false)
}

fn a_killed_node_keeps_its_peer_id_and_rejoins_the_mesh(rt: Rt) {
    let root = tempfile::tempdir().unwrap();
    let a = spawn_node_on(rt, &root.path().join("a"), None, "t");
    let b_dir = root.path().join("b");
    let mut b = spawn_node_on(rt, &b_dir, Some(&a.address), "t");
    let first_id = b.peer_id;
    assert!(wait(Duration::from_secs(20), || meshed(&a.dir) && meshed(&b_dir)));
    control(
        &a.dir,
        json!({"cmd": "publish", "topic": "t", "data": "before"}),
    )
    .unwrap();
    assert!(wait(Duration::from_secs(10), || received(&b_dir, "before")));

    // SIGKILL: no goodbye, no cleanup.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    drop(b);

    let b = spawn_node_on(rt, &b_dir, Some(&a.address), "t");
    assert_eq!(b.peer_id, first_id, "the identity must survive a SIGKILL");
    assert!(
        wait(Duration::from_secs(20), || meshed(&a.dir) && meshed(&b_dir)),
        "the restarted node did not rejoin the mesh"
    );
    assert!(wait(Duration::from_secs(10), || {
        control(
            &a.dir,
            json!({"cmd": "publish", "topic": "t", "data": "after"}),
        )
        .is_ok()
            && received(&b_dir, "after")
    }));
}
on_both_runtimes!(a_killed_node_keeps_its_peer_id_and_rejoins_the_mesh);
