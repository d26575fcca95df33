//! Five node processes: one adds a 64 MiB blob, the other four fetch it at the same time
//! by its id alone (providers from the DHT), and every copy's BLAKE3 hash equals the id.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{b3, control_long, spawn_blob_node_on, write_random, Rt};

fn four_nodes_fetch_a_64_mib_blob_and_every_copy_matches(rt: Rt) {
    let mib: u64 = std::env::var("SINEW_TEST_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let tmp = tempfile::tempdir().unwrap();
    let first = spawn_blob_node_on(rt, &tmp.path().join("n0"), "");
    let boot = format!("bootstrap = [{:?}]\n", first.address);
    let others: Vec<_> = (1..5)
        .map(|i| spawn_blob_node_on(rt, &tmp.path().join(format!("n{i}")), &boot))
        .collect();
    let file = tmp.path().join("blob");
    write_random(&file, mib << 20, 5);
    let id = b3(&file);
    let added = control_long(
        &first.dir,
        serde_json::json!({"cmd": "blob_add", "path": file.display().to_string()}),
        Duration::from_secs(120),
    )
    .unwrap();
    assert_eq!(added["id"].as_str().unwrap(), id);

    let started = Instant::now();
    let handles: Vec<_> = others
        .iter()
        .map(|n| {
            let dir = n.dir.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                let out = dir.join("copy");
                let deadline = Instant::now() + Duration::from_secs(20);
                // Until the announcement has reached the DHT, a lookup may find nobody.
                loop {
                    match control_long(
                        &dir,
                        serde_json::json!({"cmd": "blob_get", "id": id, "output": out.display().to_string()}),
                        Duration::from_secs(300),
                    ) {
                        Ok(result) => return (out, result),
                        Err(e) if e.contains("no provider") && Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Err(e) => panic!("blob_get failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let (out, result) = h.join().unwrap();
        assert_eq!(result["size"].as_u64(), Some(mib << 20));
        assert_eq!(b3(&out), id, "{}", out.display());
    }
    eprintln!(
        "4 nodes fetched {mib} MiB each in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
on_both_runtimes!(four_nodes_fetch_a_64_mib_blob_and_every_copy_matches);
