//! The devnet's blob phase: node 0 adds a random blob, every other node fetches it at the
//! same time by its id alone (providers from the DHT; nodes that finish become providers
//! too), and each copy's BLAKE3 hash — what `b3sum` prints — must equal the id.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use sinew_tokio::core::blob::BlobId;

use super::procs::Proc;
use crate::control::{Control, Request};

/// Writes `mib` MiB of pseudo-random bytes (seeded by the process id) to `path`.
fn write_random(path: &Path, mib: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut x = u64::from(std::process::id()) | 0x9E37_79B9_0000_0001;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    f.flush()?;
    Ok(())
}

/// BLAKE3 of a file, streamed.
fn hash_file(path: &Path) -> anyhow::Result<BlobId> {
    let mut hasher = blake3::Hasher::new();
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    std::io::copy(&mut f, &mut hasher)?;
    Ok(BlobId::from_bytes(*hasher.finalize().as_bytes()))
}

pub(crate) async fn run(
    procs: &[Proc],
    base: &Path,
    mib: u64,
    json_out: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let source = base.join("devnet-blob.bin");
    write_random(&source, mib)?;
    let added = Control::connect(&procs[0].dir)
        .await?
        .call(&Request::BlobAdd {
            path: source.display().to_string(),
        })
        .await?;
    let id: BlobId = added["id"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .context("blob_add returned no id")?;
    if !json_out {
        eprintln!("devnet: node 0 added a {mib} MiB blob {id}; the others fetch it by id");
    }
    // A lookup right after the add may not find the announcement yet: retry briefly.
    let started = Instant::now();
    let fetches = procs[1..].iter().map(|p| {
        let dir = p.dir.clone();
        let output = dir.join("devnet-blob.copy");
        async move {
            let deadline = Instant::now() + timeout;
            loop {
                let t0 = Instant::now();
                let result = async {
                    Control::connect(&dir)
                        .await?
                        .call(&Request::BlobGet {
                            id: id.to_string(),
                            from: Vec::new(),
                            output: Some(output.display().to_string()),
                        })
                        .await
                }
                .await;
                match result {
                    Ok(v) => return Ok::<_, anyhow::Error>((v, t0.elapsed(), output)),
                    Err(e)
                        if e.to_string().contains("no provider") && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    });
    let results = futures::future::join_all(fetches).await;
    let wall = started.elapsed();
    let mut rows = Vec::new();
    let mut ok = 0;
    for (p, r) in procs[1..].iter().zip(results) {
        match r {
            Ok((v, took, output)) => {
                let copy = tokio::task::spawn_blocking(move || hash_file(&output))
                    .await
                    .context("hashing task failed")??;
                let matches = copy == id;
                ok += usize::from(matches);
                rows.push(json!({
                    "node": p.index, "ok": matches, "copy_b3": copy.to_string(),
                    "seconds": took.as_secs_f64(),
                    "mib_per_s": mib as f64 / v["seconds"].as_f64().unwrap_or(f64::NAN),
                    "received_mib": v["received"].as_u64().unwrap_or(0) as f64 / (1u64 << 20) as f64,
                }));
            }
            Err(e) => rows.push(json!({ "node": p.index, "ok": false, "error": format!("{e:#}") })),
        }
    }
    let _ = std::fs::remove_file(&source);
    if json_out {
        println!(
            "{}",
            json!({ "blob": { "id": id.to_string(), "mib": mib, "fetched": ok,
                "expected": procs.len() - 1, "seconds": wall.as_secs_f64(), "nodes": rows } })
        );
    } else {
        println!("node  fetched  seconds  MiB/s  copy's b3sum");
        for r in &rows {
            match r.get("error") {
                Some(e) => println!(
                    "{:>4}  FAILED   {}",
                    r["node"].as_u64().unwrap_or(0),
                    e.as_str().unwrap_or_default()
                ),
                None => println!(
                    "{:>4}  {:>7}  {:>7.2}  {:>5.0}  {}{}",
                    r["node"].as_u64().unwrap_or(0),
                    format!("{mib} MiB"),
                    r["seconds"].as_f64().unwrap_or(0.0),
                    r["mib_per_s"].as_f64().unwrap_or(0.0),
                    &r["copy_b3"].as_str().unwrap_or_default()[..16],
                    if r["ok"] == true {
                        "…  = id"
                    } else {
                        "…  DIFFERS"
                    },
                ),
            }
        }
        println!(
            "blob {id}: {ok}/{} nodes hold an identical copy; all done in {:.2} s",
            procs.len() - 1,
            wall.as_secs_f64()
        );
    }
    if ok < procs.len() - 1 {
        bail!(
            "only {ok} of {} nodes fetched the blob intact",
            procs.len() - 1
        );
    }
    Ok(())
}
