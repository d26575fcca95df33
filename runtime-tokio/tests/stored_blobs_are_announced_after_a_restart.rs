//! A provider that restarts announces the blobs of its store again: after both the
//! provider and the DHT node that held its record restart (so no record survives), a new
//! node still finds the provider by the blob id alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{b3, control_long, spawn_blob_node_on, write_random, Rt};

fn a_restarted_provider_is_found_again(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let (hub_dir, prov_dir) = (tmp.path().join("hub"), tmp.path().join("provider"));
    let file = tmp.path().join("blob");
    write_random(&file, 200_000, 21);
    let id = b3(&file);
    {
        let hub = spawn_blob_node_on(rt, &hub_dir, "");
        let provider =
            spawn_blob_node_on(rt, &prov_dir, &format!("bootstrap = [{:?}]\n", hub.address));
        control_long(
            &provider.dir,
            serde_json::json!({"cmd": "blob_add", "path": file.display().to_string()}),
            Duration::from_secs(30),
        )
        .unwrap();
        // Both go away: the hub's in-memory provider record with them.
    }
    let hub = spawn_blob_node_on(rt, &hub_dir, "");
    let boot = format!("bootstrap = [{:?}]\n", hub.address);
    let _provider = spawn_blob_node_on(rt, &prov_dir, &boot);
    let newcomer = spawn_blob_node_on(rt, &tmp.path().join("newcomer"), &boot);
    let out = tmp.path().join("copy");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match control_long(
            &newcomer.dir,
            serde_json::json!({"cmd": "blob_get", "id": id, "output": out.display().to_string()}),
            Duration::from_secs(30),
        ) {
            Ok(_) => break,
            Err(e) if e.contains("no provider") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the restarted provider was not found: {e}"),
        }
    }
    assert_eq!(b3(&out), id);
}
on_both_runtimes!(a_restarted_provider_is_found_again);
