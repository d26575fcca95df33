//! A large blob streams from one node process to another with bounded memory: neither
//! process's peak resident memory grows more than 64 MiB above its idle size.
//!
//! `SINEW_BIG_BLOB_MIB` sets the size: CI runs 256 MiB; the full run is 2048 MiB
//! (`SINEW_BIG_BLOB_MIB=2048 cargo nextest run -p sinew-tokio --test large_blob_streams_with_bounded_memory`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{b3, control_long, proc_kib, spawn_blob_node_on, write_random, Rt};

/// How far above idle a node's peak RSS may go while it moves a blob of any size.
const RSS_BOUND_KIB: u64 = 64 * 1024;

fn a_large_blob_moves_with_bounded_memory(rt: Rt) {
    let mib: u64 = std::env::var("SINEW_BIG_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let tmp = tempfile::tempdir().unwrap();
    let provider = spawn_blob_node_on(rt, &tmp.path().join("provider"), "");
    let requester = spawn_blob_node_on(rt, &tmp.path().join("requester"), "");
    std::thread::sleep(Duration::from_millis(300));
    let idle_p = proc_kib(provider.child.id(), "VmRSS:");
    let idle_r = proc_kib(requester.child.id(), "VmRSS:");

    let file = tmp.path().join("blob");
    write_random(&file, size, 2);
    let id = b3(&file);
    let added = control_long(
        &provider.dir,
        serde_json::json!({"cmd": "blob_add", "path": file.display().to_string()}),
        Duration::from_secs(600),
    )
    .unwrap();
    assert_eq!(added["id"].as_str().unwrap(), id);
    std::fs::remove_file(&file).unwrap();

    let t0 = Instant::now();
    let result = control_long(
        &requester.dir,
        serde_json::json!({"cmd": "blob_get", "id": id, "from": [provider.address]}),
        Duration::from_secs(1200),
    )
    .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(result["size"].as_u64(), Some(size));
    let peak_p = proc_kib(provider.child.id(), "VmHWM:");
    let peak_r = proc_kib(requester.child.id(), "VmHWM:");
    eprintln!(
        "{mib} MiB in {secs:.1} s; provider RSS idle {} MiB peak {} MiB; requester idle {} MiB peak {} MiB",
        idle_p / 1024,
        peak_p / 1024,
        idle_r / 1024,
        peak_r / 1024
    );
    assert!(
        peak_p <= idle_p + RSS_BOUND_KIB,
        "provider peak {peak_p} KiB vs idle {idle_p} KiB"
    );
    assert!(
        peak_r <= idle_r + RSS_BOUND_KIB,
        "requester peak {peak_r} KiB vs idle {idle_r} KiB"
    );
    let stored = requester.dir.join(format!("store/blobs/{id}.data"));
    assert_eq!(b3(&stored), id, "the requester's stored copy is the blob");
}
on_both_runtimes!(a_large_blob_moves_with_bounded_memory);
