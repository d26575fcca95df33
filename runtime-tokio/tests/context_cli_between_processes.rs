//! Contexts between `sinew node` processes over loopback TCP, on both runtimes: invite
//! and join from the CLI, writes that cross both ways, errors a user can act on; a
//! transaction whose `sinew context tx` returned survives a SIGKILL right after; a node
//! killed with SIGKILL in the middle of a catch-up keeps what it made durable and, once
//! restarted, catches up the rest to the same heads.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{control, signal, sinew, spawn_blob_node_on, Rt};
use serde_json::{json, Value};
use sinew_tokio::core::sync::{AuthorKey, Invite};

fn status(dir: &Path, ctx: &str) -> Value {
    control(dir, json!({"cmd": "context_status", "context": ctx})).unwrap()
}

/// Runs the CLI, which must succeed; its trimmed stdout.
fn cli(args: &[&str]) -> String {
    let (ok, out, err) = sinew(args);
    assert!(ok, "sinew {args:?} failed: {err}");
    out.trim().to_string()
}

/// Waits until `check` holds, polling every 50 ms for at most `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// The value of metric `name` on the node serving metrics on `port`.
fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn invite_join_and_writes_from_the_cli_give_both_nodes_the_same_heads(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let a = spawn_blob_node_on(rt, &tmp.path().join("a"), "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = spawn_blob_node_on(
        rt,
        &tmp.path().join("b"),
        &format!(
            "bootstrap = [{:?}]\nmetrics = \"127.0.0.1:{port}\"\n",
            a.address
        ),
    );
    let (a_dir, b_dir) = (a.dir.to_str().unwrap(), b.dir.to_str().unwrap());

    let ctx = cli(&["context", "create", "--data-dir", a_dir]);
    assert_eq!(ctx.len(), 64, "a context id is 32 bytes in hex: {ctx}");
    for k in 0..20 {
        cli(&[
            "context",
            "tx",
            &ctx,
            &format!("before {k}"),
            "--data-dir",
            a_dir,
        ]);
    }
    let b_id = cli(&["id", "--data-dir", b_dir]);
    assert_eq!(b_id, b.peer_id.to_string());
    let token = cli(&["context", "invite", &ctx, &b_id, "--data-dir", a_dir]);
    assert!(token.starts_with("sinew-invite1:"), "{token}");

    // Genesis, its key, 20 writes, the invitation and the new key: 24 transactions arrive
    // by catch-up.
    let joined = cli(&[
        "context",
        "join",
        &token,
        "--timeout",
        "60",
        "--data-dir",
        b_dir,
    ]);
    assert_eq!(joined, format!("joined {ctx}: 24 transactions"));
    // The catch-up shows in b's metrics.
    assert_eq!(
        metric(port, "sinew_sync_transactions_applied_total"),
        Some(24.0)
    );
    assert!(metric(port, "sinew_sync_sessions_synced_total") >= Some(1.0));
    assert!(metric(port, "sinew_sync_bytes_received_total") > Some(20.0 * 8.0));
    assert_eq!(metric(port, "sinew_sync_sessions_failed_total"), Some(0.0));
    assert_eq!(metric(port, "sinew_sync_equivocations_total"), Some(0.0));
    let heads_a = cli(&["context", "heads", &ctx, "--data-dir", a_dir]);
    assert_eq!(
        cli(&["context", "heads", &ctx, "--data-dir", b_dir]),
        heads_a
    );

    // The invited node writes; the founder receives it live (or by its next digest).
    let id = cli(&["context", "tx", &ctx, "from b", "--data-dir", b_dir]);
    assert!(
        eventually(Duration::from_secs(30), || status(&a.dir, &ctx)["txs"]
            == 25),
        "the founder never got b's write: {}",
        status(&a.dir, &ctx)
    );
    assert_eq!(status(&a.dir, &ctx)["heads"], json!([id]));
    assert_eq!(
        cli(&["context", "heads", &ctx, "--data-dir", a_dir]),
        cli(&["context", "heads", &ctx, "--data-dir", b_dir])
    );
    let log = cli(&["context", "log", &ctx, "--json", "--data-dir", a_dir]);
    let log: Value = serde_json::from_str(&log).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 25);
    assert_eq!(
        log[24]["id"],
        json!(id),
        "b's write comes last, after its parents"
    );
    // Payloads travel encrypted; each member's log shows them decrypted.
    for dir in [a_dir, b_dir] {
        let log = cli(&["context", "log", &ctx, "--json", "--data-dir", dir]);
        let log: Value = serde_json::from_str(&log).unwrap();
        assert_eq!(log[1]["kind"], "keys");
        assert_eq!(log[2]["kind"], "payload");
        assert_eq!(log[2]["data"], "before 0");
        assert_eq!(log[24]["data"], "from b");
    }

    let members = cli(&["context", "members", &ctx, "--data-dir", a_dir]);
    assert_eq!(members.lines().count(), 2, "{members}");

    // Errors a user can act on.
    let unknown = "00".repeat(32);
    let (ok, _, err) = sinew(&["context", "tx", &unknown, "x", "--data-dir", a_dir]);
    assert!(!ok && err.contains("unknown context"), "{err}");
    let (ok, _, err) = sinew(&["context", "join", "sinew-invite1:zz", "--data-dir", b_dir]);
    assert!(!ok && err.contains("invit"), "{err}");
    let (ok, _, err) = sinew(&["context", "tx", "not-hex", "x", "--data-dir", a_dir]);
    assert!(!ok && err.contains("context"), "{err}");
}
on_both_runtimes!(invite_join_and_writes_from_the_cli_give_both_nodes_the_same_heads);

fn a_transaction_acknowledged_by_the_cli_survives_a_sigkill(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let a = spawn_blob_node_on(rt, &dir, "");
    let a_dir = dir.to_str().unwrap();
    let ctx = cli(&["context", "create", "--data-dir", a_dir]);
    let mut ids = Vec::new();
    for k in 0..5 {
        ids.push(cli(&[
            "context",
            "tx",
            &ctx,
            &format!("{k}"),
            "--data-dir",
            a_dir,
        ]));
    }
    // Killed the moment the last `tx` returned: no shutdown, no flush.
    signal(a.child.id(), "KILL");
    drop(a);
    let _a = spawn_blob_node_on(rt, &dir, "");
    let log = cli(&["context", "log", &ctx, "--json", "--data-dir", a_dir]);
    let log: Value = serde_json::from_str(&log).unwrap();
    let kept: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    for id in &ids {
        assert!(kept.contains(&id.as_str()), "acknowledged {id} was lost");
    }
}
on_both_runtimes!(a_transaction_acknowledged_by_the_cli_survives_a_sigkill);

/// Transactions in the responder's store for the kill test: enough that the catch-up
/// takes a while even on a fast machine (the responder is frozen mid-way anyway).
const KILL_TXS: usize = 40_000;
const KILL_PAYLOAD: usize = 256;

fn a_node_killed_during_catch_up_keeps_what_was_durable_and_finishes_after_restart(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let req_dir = tmp.path().join("requester");
    std::fs::create_dir_all(&req_dir).unwrap();
    let identity = sinew_tokio::load_or_create_identity(&req_dir.join("identity")).unwrap();
    let member = AuthorKey::from(&identity.clone().try_into_ed25519().unwrap().public());
    let resp_dir = tmp.path().join("responder");
    let (ctx, admin) = sinew_tokio::fixtures::write_context(
        &resp_dir.join("store"),
        KILL_TXS,
        KILL_PAYLOAD,
        member,
    )
    .unwrap();
    // The genesis, its key, then the payloads.
    let total = KILL_TXS as u64 + 2;
    let ctx_hex = hex::encode(ctx.0);

    let responder = spawn_blob_node_on(rt, &resp_dir, "");
    let bootstrap = format!("bootstrap = [{:?}]\n", responder.address);
    let requester = spawn_blob_node_on(rt, &req_dir, &bootstrap);
    let invite = Invite::new(
        &admin,
        ctx,
        member,
        responder.peer_id,
        vec![responder.address.parse().unwrap()],
    );
    control(
        &req_dir,
        json!({"cmd": "context_join", "invite": invite.to_string()}),
    )
    .unwrap();
    // A quarter in, the responder is frozen (nothing more arrives), then the requester
    // is killed outright.
    let mut seen = 0;
    assert!(
        eventually(Duration::from_secs(120), || {
            seen = status(&req_dir, &ctx_hex)["txs"].as_u64().unwrap_or(0);
            seen >= total / 4
        }),
        "the catch-up never got a quarter in"
    );
    signal(responder.child.id(), "STOP");
    let seen = status(&req_dir, &ctx_hex)["txs"].as_u64().unwrap();
    assert!(
        seen < total,
        "the catch-up finished before it could be killed"
    );
    signal(requester.child.id(), "KILL");
    drop(requester);
    signal(responder.child.id(), "CONT");

    // What was acknowledged durable is kept: the responder could only run ahead of the
    // requester's durable point by the credit it was granted.
    let requester = spawn_blob_node_on(rt, &req_dir, &bootstrap);
    let kept = status(&req_dir, &ctx_hex)["txs"].as_u64().unwrap();
    let tx_len = 32 + 32 + 8 + 4 + 32 + 1 + 4 + KILL_PAYLOAD as u64 + 64;
    let credit_txs = sinew_tokio::core::sync::CREDIT / tx_len + 1;
    assert!(
        kept + credit_txs >= seen && kept > 0,
        "only {kept} transactions survived the kill, {seen} were applied"
    );
    assert!(kept <= total);

    // The restarted node resumes (its membership and the responder are remembered) and
    // ends with every transaction and the responder's heads.
    assert!(
        eventually(Duration::from_secs(120), || {
            let s = status(&req_dir, &ctx_hex);
            s["txs"].as_u64() == Some(total) && s["syncing"] == false
        }),
        "the restarted node never caught up: {}",
        status(&req_dir, &ctx_hex)
    );
    assert_eq!(
        status(&req_dir, &ctx_hex)["heads"],
        status(&resp_dir, &ctx_hex)["heads"]
    );
    drop(requester);
}
on_both_runtimes!(a_node_killed_during_catch_up_keeps_what_was_durable_and_finishes_after_restart);
