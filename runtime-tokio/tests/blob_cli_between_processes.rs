//! `sinew blob add` on one node process and `sinew blob get` on another produce a file
//! whose BLAKE3 hash (what `b3sum` prints) equals the printed id — for 0-byte, 1-byte and
//! multi-group blobs, by ticket and by DHT lookup; `ls` and `rm` see the store. And the
//! control socket's `shutdown` is answered before the node exits.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{b3, control, sinew, spawn_blob_node_on, write_random, Rt};
use serde_json::json;

fn add_then_get_gives_the_same_bytes_and_the_b3sum_id(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let a = spawn_blob_node_on(rt, &tmp.path().join("a"), "");
    let b = spawn_blob_node_on(
        rt,
        &tmp.path().join("b"),
        &format!("bootstrap = [{:?}]\n", a.address),
    );
    let a_dir = a.dir.to_str().unwrap();
    let b_dir = b.dir.to_str().unwrap();
    for (i, len) in [0u64, 1, 16 * 1024 + 1, (1 << 20) + 7]
        .into_iter()
        .enumerate()
    {
        let file = tmp.path().join(format!("in{i}"));
        write_random(&file, len, 7 + i as u64);
        let expected = b3(&file);
        let (ok, out, err) = sinew(&["blob", "add", file.to_str().unwrap(), "--data-dir", a_dir]);
        assert!(ok, "blob add failed: {err}");
        let mut lines = out.lines();
        let id = lines.next().unwrap();
        let ticket = lines.next().unwrap();
        assert_eq!(
            id, expected,
            "the printed id is the b3sum of the file ({len} bytes)"
        );
        assert!(
            ticket.starts_with(&format!("{id}@/ip4/127.0.0.1/tcp/")),
            "{ticket}"
        );

        let got = tmp.path().join(format!("out{i}"));
        let (ok, _, err) = sinew(&[
            "blob",
            "get",
            ticket,
            "-o",
            got.to_str().unwrap(),
            "--data-dir",
            b_dir,
        ]);
        assert!(ok, "blob get of {len} bytes failed: {err}");
        assert_eq!(b3(&got), expected, "{len} bytes");
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&file).unwrap());
    }
    let (ok, out, _) = sinew(&["blob", "ls", "--data-dir", b_dir, "--json"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["complete"] == true));
}
on_both_runtimes!(add_then_get_gives_the_same_bytes_and_the_b3sum_id);

fn get_by_id_alone_finds_the_provider_in_the_dht_and_rm_removes_it(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let a = spawn_blob_node_on(rt, &tmp.path().join("a"), "");
    let b = spawn_blob_node_on(
        rt,
        &tmp.path().join("b"),
        &format!("bootstrap = [{:?}]\n", a.address),
    );
    let (a_dir, b_dir) = (a.dir.to_str().unwrap(), b.dir.to_str().unwrap());
    let file = tmp.path().join("in");
    write_random(&file, 300_000, 99);
    let (ok, out, err) = sinew(&["blob", "add", file.to_str().unwrap(), "--data-dir", a_dir]);
    assert!(ok, "{err}");
    let id = out.lines().next().unwrap().to_string();
    // The announcement runs in the background: retry the lookup for a little while.
    let got = tmp.path().join("out");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, _, err) = sinew(&[
            "blob",
            "get",
            &id,
            "-o",
            got.to_str().unwrap(),
            "--data-dir",
            b_dir,
            "--no-progress",
        ]);
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "DHT lookup never found the provider: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(b3(&got), id);

    let (ok, _, err) = sinew(&["blob", "rm", &id, "--data-dir", b_dir]);
    assert!(ok, "{err}");
    let (ok, _, err) = sinew(&["blob", "rm", &id, "--data-dir", b_dir]);
    assert!(!ok);
    assert!(err.contains("not in the store"), "{err}");
    let (ok, out, _) = sinew(&["blob", "ls", "--data-dir", b_dir, "--json"]);
    assert!(ok);
    assert_eq!(out.trim(), "[]");
}
on_both_runtimes!(get_by_id_alone_finds_the_provider_in_the_dht_and_rm_removes_it);

fn bad_requests_fail_with_errors_a_user_can_act_on(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let a = spawn_blob_node_on(rt, &tmp.path().join("a"), "");
    let a_dir = a.dir.to_str().unwrap();
    let out = tmp.path().join("x");
    let (ok, _, err) = sinew(&[
        "blob",
        "get",
        "zz",
        "-o",
        out.to_str().unwrap(),
        "--data-dir",
        a_dir,
    ]);
    assert!(!ok);
    assert!(err.contains("neither a blob id"), "{err}");
    let nobody = "00".repeat(32);
    let (ok, _, err) = sinew(&[
        "blob",
        "get",
        &nobody,
        "-o",
        out.to_str().unwrap(),
        "--data-dir",
        a_dir,
    ]);
    assert!(!ok);
    assert!(err.contains("no provider"), "{err}");
    let (ok, _, err) = sinew(&["blob", "add", "/nonexistent/file", "--data-dir", a_dir]);
    assert!(!ok);
    assert!(err.contains("not a readable file"), "{err}");
    let (ok, _, err) = sinew(&[
        "blob",
        "get",
        &nobody,
        "--from",
        "/ip4/127.0.0.1/tcp/1",
        "-o",
        out.to_str().unwrap(),
        "--data-dir",
        a_dir,
    ]);
    assert!(!ok);
    assert!(err.contains("/p2p/<peer id>"), "{err}");
    assert!(!out.exists(), "nothing is written on failure");
    let none = tmp.path().join("no-node");
    let (ok, _, err) = sinew(&["blob", "ls", "--data-dir", none.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("no node is running"), "{err}");
}
on_both_runtimes!(bad_requests_fail_with_errors_a_user_can_act_on);

/// `{"cmd":"shutdown"}` is answered, then the node stops and exits cleanly: the answer
/// is written before the network (and with it the process) goes away.
fn shutdown_is_answered_then_the_node_exits(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let dir = tmp.path().join(format!("n{round}"));
        let mut node = spawn_blob_node_on(rt, &dir, "");
        assert_eq!(control(&dir, json!({"cmd": "shutdown"})), Ok(json!({})));
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the node did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status}");
        assert!(
            !dir.join("control.sock").exists(),
            "control socket left behind"
        );
    }
}
on_both_runtimes!(shutdown_is_answered_then_the_node_exits);
