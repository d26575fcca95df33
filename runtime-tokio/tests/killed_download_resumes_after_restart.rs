//! A download killed with SIGKILL part way resumes after the node restarts, without
//! fetching again what was verified and committed before the kill.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{b3, control_long, signal, spawn_blob_node_on, write_random, GetInProgress, Rt};
use sinew_tokio::core::shell::MAX_UNCOMMITTED;

fn a_killed_download_resumes_from_its_verified_ranges(rt: Rt) {
    let size: u64 = 160 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let provider = spawn_blob_node_on(rt, &tmp.path().join("provider"), "");
    let file = tmp.path().join("blob");
    write_random(&file, size, 11);
    let id = b3(&file);
    control_long(
        &provider.dir,
        serde_json::json!({"cmd": "blob_add", "path": file.display().to_string()}),
        Duration::from_secs(60),
    )
    .unwrap();

    let req_dir = tmp.path().join("requester");
    let requester = spawn_blob_node_on(rt, &req_dir, "");
    let mut get = GetInProgress::start(
        &req_dir,
        serde_json::json!({"cmd": "blob_get", "id": id, "from": [provider.address]}),
    );
    // Wait until enough is verified that, even with the disk as far behind as the store
    // allows (MAX_UNCOMMITTED), a quarter of the blob is committed; freeze the provider so
    // nothing more arrives, then kill the requester outright.
    let seen = loop {
        match get.next() {
            Ok(p) if p["verified"].as_u64().unwrap_or(0) >= size / 4 + MAX_UNCOMMITTED => {
                break p["verified"].as_u64().unwrap_or(0);
            }
            Ok(_) => {}
            Err(end) => panic!("the download ended before it could be killed: {end}"),
        }
    };
    signal(provider.child.id(), "STOP");
    signal(requester.child.id(), "KILL");
    drop(requester);
    signal(provider.child.id(), "CONT");

    // After the restart the store still holds the committed part, as a partial blob.
    let requester = spawn_blob_node_on(rt, &req_dir, "");
    let list = control_long(
        &req_dir,
        serde_json::json!({"cmd": "blob_ls"}),
        Duration::from_secs(10),
    )
    .unwrap();
    let entry = &list.as_array().unwrap()[0];
    assert_eq!(entry["complete"], false);
    let kept = entry["verified"].as_u64().unwrap();
    // The committed part is at most MAX_UNCOMMITTED behind what was reported verified.
    assert!(
        kept + MAX_UNCOMMITTED >= seen && kept >= size / 4,
        "only {kept} bytes survived the kill, {seen} were verified"
    );

    let out = tmp.path().join("copy");
    let result = control_long(
        &req_dir,
        serde_json::json!({"cmd": "blob_get", "id": id, "from": [provider.address], "output": out.display().to_string()}),
        Duration::from_secs(120),
    )
    .unwrap();
    let received = result["received"].as_u64().unwrap();
    // What was kept is not fetched again: the second download receives the rest, plus
    // proof hashes (64 bytes per 16 KiB) and at most a few groups re-sent at the edges.
    assert!(
        received <= size - kept + (size >> 8) + (1 << 20),
        "received {received} bytes after keeping {kept} of {size}"
    );
    assert_eq!(b3(&out), id);
    drop(requester);
}
on_both_runtimes!(a_killed_download_resumes_from_its_verified_ranges);
