//! Two providers, one bad: a provider serving corrupt data is caught by the requester
//! and dropped, a provider that stalls is dropped or overtaken by the other (the endgame); either
//! way the download completes from the honest one, byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use common::{b3, control_long, signal, spawn_blob_node_on, write_random, GetInProgress, Rt};

fn setup(
    rt: Rt,
    tmp: &std::path::Path,
    size: u64,
    bad_config: &str,
) -> (common::NodeProc, common::NodeProc, String) {
    let bad = spawn_blob_node_on(rt, &tmp.join("bad"), bad_config);
    let good = spawn_blob_node_on(rt, &tmp.join("good"), "");
    let file = tmp.join("blob");
    write_random(&file, size, 3);
    let id = b3(&file);
    for n in [&bad, &good] {
        control_long(
            &n.dir,
            serde_json::json!({"cmd": "blob_add", "path": file.display().to_string()}),
            Duration::from_secs(60),
        )
        .unwrap();
    }
    (bad, good, id)
}

fn a_provider_serving_corrupt_data_is_dropped_and_the_download_completes(rt: Rt) {
    let size: u64 = 32 << 20;
    let tmp = tempfile::tempdir().unwrap();
    // The bad provider does not check its own copy before serving, so corruption reaches
    // the requester.
    let (bad, good, id) = setup(rt, tmp.path(), size, "validate_on_serve = false\n");
    let data = bad.dir.join(format!("store/blobs/{id}.data"));
    let mut f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    for mib in 0..(size >> 20) {
        f.seek(SeekFrom::Start((mib << 20) + 12_345)).unwrap();
        f.write_all(&[0xFF, 0x00, 0xFF]).unwrap();
    }
    drop(f);

    let req = spawn_blob_node_on(rt, &tmp.path().join("requester"), "");
    let out = tmp.path().join("copy");
    let result = control_long(
        &req.dir,
        serde_json::json!({"cmd": "blob_get", "id": id, "from": [bad.address, good.address], "output": out.display().to_string()}),
        Duration::from_secs(120),
    )
    .unwrap();
    assert_eq!(result["size"].as_u64(), Some(size));
    assert_eq!(b3(&out), id);
    let log = std::fs::read_to_string(req.dir.join("node.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("misbehaved") && l.contains(&bad.peer_id.to_string())),
        "the corrupt provider was not reported:\n{log}"
    );
}
on_both_runtimes!(a_provider_serving_corrupt_data_is_dropped_and_the_download_completes);

fn a_provider_that_stalls_does_not_stop_the_download(rt: Rt) {
    let size: u64 = 48 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let (bad, good, id) = setup(rt, tmp.path(), size, "");
    let req = spawn_blob_node_on(
        rt,
        &tmp.path().join("requester"),
        "blob_request_timeout = 2\n",
    );
    let out = tmp.path().join("copy");
    let mut get = GetInProgress::start(
        &req.dir,
        serde_json::json!({"cmd": "blob_get", "id": id, "from": [bad.address, good.address], "output": out.display().to_string()}),
    );
    // Once bytes flow, the bad provider freezes (its connection stays open: a stall, not
    // a disconnect).
    match get.next() {
        Ok(_) => signal(bad.child.id(), "STOP"),
        Err(end) => panic!("the download ended before the provider could be frozen: {end}"),
    }
    let result = loop {
        match get.next() {
            Ok(_) => {}
            Err(end) => break end,
        }
    };
    signal(bad.child.id(), "CONT");
    // Whatever the frozen provider still owed came from the other one: either its
    // requests timed out and it was dropped as stalled, or (usually, and sooner) the
    // endgame asked the idle provider for the same ranges. The core's virtual-time tests
    // pin each path down (`a_silent_provider_is_dropped_as_stalled`,
    // `a_stalled_provider_is_covered_by_the_endgame_before_its_timeout`).
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(b3(&out), id);
}
on_both_runtimes!(a_provider_that_stalls_does_not_stop_the_download);
