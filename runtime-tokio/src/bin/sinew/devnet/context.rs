//! The devnet's context phase: node 0 founds a context and invites every other node by
//! its peer id; each joins with its token and catches up. Then the last node is stopped,
//! the others write while it is down, it is restarted on its store, catches up on its own
//! (heads digests on the context's topic), and every node must end with the same heads.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::procs::{spawn, Launch, Proc};
use crate::control::Control;

/// Transactions each running node writes while one node is down.
const WRITES_WHILE_DOWN: usize = 20;

async fn call(proc: &Proc, request: Value) -> anyhow::Result<Value> {
    Control::connect(&proc.dir)
        .await?
        .call_json(&request)
        .await
        .with_context(|| format!("node {}", proc.index))
}

async fn status(proc: &Proc, context: &str) -> anyhow::Result<Value> {
    call(proc, json!({"cmd": "context_status", "context": context})).await
}

/// Waits until every node holds `expected` transactions (if given) with node 0's heads.
async fn wait_converged(
    procs: &[Proc],
    context: &str,
    expected: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = Vec::new();
        for p in procs {
            all.push(status(p, context).await?);
        }
        let heads0 = all[0]["heads"].clone();
        let done = all
            .iter()
            .all(|s| s["heads"] == heads0 && expected.is_none_or(|n| s["txs"].as_u64() == Some(n)));
        if done {
            return Ok(all);
        }
        if Instant::now() > deadline {
            let counts: Vec<String> = all.iter().map(|s| s["txs"].to_string()).collect();
            bail!(
                "the context did not converge within {timeout:?}: transactions per node {}",
                counts.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn run(
    procs: &mut [Proc],
    launch: &Launch<'_>,
    json_out: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let n = procs.len();
    let created = call(&procs[0], json!({"cmd": "context_create"})).await?;
    let context = created["context"]
        .as_str()
        .context("context_create returned no id")?
        .to_string();
    if !json_out {
        eprintln!("devnet: node 0 founded context {context}; inviting the others");
    }
    for i in 1..n {
        let invite = call(
            &procs[0],
            json!({"cmd": "context_invite", "context": context, "member": procs[i].peer_id}),
        )
        .await?;
        let token = invite["invite"].as_str().context("no invitation token")?;
        call(&procs[i], json!({"cmd": "context_join", "invite": token})).await?;
    }
    // The genesis and its key, then per other node an invitation and a new key.
    let members = 2 + 2 * (n as u64 - 1);
    wait_converged(procs, &context, Some(members), timeout).await?;

    // One node goes down; the others write.
    let down = n - 1;
    call(&procs[down], json!({"cmd": "shutdown"})).await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), procs[down].child.wait()).await;
    let writers = &procs[..down];
    let ctx = context.as_str();
    let writes = writers.iter().map(|p| async move {
        for k in 0..WRITES_WHILE_DOWN {
            let data = format!("node {} write {k}", p.index);
            call(
                p,
                json!({"cmd": "context_tx", "context": ctx, "data": data}),
            )
            .await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    for result in futures::future::join_all(writes).await {
        result?;
    }
    let expected = members + (down * WRITES_WHILE_DOWN) as u64;
    if !json_out {
        eprintln!(
            "devnet: node {down} stopped; the others wrote {} transactions; restarting it",
            down * WRITES_WHILE_DOWN
        );
    }
    // Back on its store: it must catch up by itself.
    let restarted = Instant::now();
    let runtime = procs[down].runtime;
    let bootstrap = procs[0].address.clone();
    procs[down] = spawn(launch, down, runtime, Some(&bootstrap)).await?;
    let kept = status(&procs[down], &context).await?["txs"]
        .as_u64()
        .unwrap_or(0);
    let all = wait_converged(procs, &context, Some(expected), timeout).await?;
    let caught_up = restarted.elapsed();

    if json_out {
        println!(
            "{}",
            json!({ "context": { "id": context, "txs": expected, "restarted": down,
                "kept_across_restart": kept, "caught_up_seconds": caught_up.as_secs_f64(),
                "heads": all[0]["heads"], "nodes": all } })
        );
    } else {
        println!("node  transactions  heads digest");
        for (p, s) in procs.iter().zip(&all) {
            println!(
                "{:>4}  {:>12}  {}{}",
                p.index,
                s["txs"].as_u64().unwrap_or(0),
                &s["heads_digest"].as_str().unwrap_or_default()[..16],
                if p.index == down {
                    "…  (restarted)"
                } else {
                    "…"
                },
            );
        }
        println!(
            "context {}…: {n}/{n} nodes have the same heads over {expected} transactions; node {down} kept {kept} across its restart and caught up in {:.2} s",
            &context[..16],
            caught_up.as_secs_f64()
        );
    }
    Ok(())
}
