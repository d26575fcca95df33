//! `sinew context create | invite | join | tx | log | heads | members | status | sync`:
//! contexts of a running node, over its control socket. A node writes in contexts with its
//! identity key, so it is invited by its peer id (`sinew id`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::control::Control;

/// `sinew context ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct ContextArgs {
    /// The node's data directory.
    #[arg(long, env = "SINEW_DATA_DIR", default_value = ".sinew", global = true)]
    data_dir: PathBuf,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ContextCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ContextCommand {
    /// Found a context with this node as its admin; print its id.
    Create,
    /// Add a node (by peer id, or a member key) and print the invitation token for it.
    Invite {
        /// The context id.
        context: String,
        /// The invitee's peer id (`sinew id` on its machine) or member key.
        member: String,
        /// Make it an admin (default: writer).
        #[arg(long)]
        admin: bool,
    },
    /// Join a context with an invitation token; waits for the catch-up (with a progress
    /// bar) unless `--no-wait`.
    Join {
        /// The token `sinew context invite` printed.
        invite: String,
        /// Return once joined, without waiting for the history.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the catch-up, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Write a transaction with a text payload; prints its id once durable.
    Tx {
        /// The context id.
        context: String,
        /// The payload.
        data: String,
    },
    /// The transactions, in the order this node applied them (causal).
    Log {
        /// The context id.
        context: String,
        /// From this position.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The heads (what nothing here builds on yet): equal heads, same history.
    Heads {
        /// The context id.
        context: String,
    },
    /// The members and their roles.
    Members {
        /// The context id.
        context: String,
    },
    /// Size, heads digest and catch-up state of one context, or of all.
    Status {
        /// The context id; none: every context.
        context: Option<String>,
    },
    /// Catch up now from every member seen on the context's topic.
    Sync {
        /// The context id.
        context: String,
    },
}

pub(crate) async fn run(args: ContextArgs) -> anyhow::Result<()> {
    let mut control = Control::connect(&args.data_dir).await?;
    let json_out = args.json;
    let print = |value: &Value, text: String| {
        if json_out {
            println!("{value}");
        } else {
            println!("{text}");
        }
    };
    match args.command {
        ContextCommand::Create => {
            let r = control.call_json(&json!({"cmd": "context_create"})).await?;
            print(&r, r["context"].as_str().unwrap_or_default().to_string());
        }
        ContextCommand::Invite {
            context,
            member,
            admin,
        } => {
            let role = if admin { "admin" } else { "writer" };
            let r = control
                .call_json(&json!({"cmd": "context_invite", "context": context, "member": member, "role": role}))
                .await?;
            print(&r, r["invite"].as_str().unwrap_or_default().to_string());
        }
        ContextCommand::Join {
            invite,
            no_wait,
            timeout,
        } => {
            let r = control
                .call_json(&json!({"cmd": "context_join", "invite": invite}))
                .await?;
            let context = r["context"].as_str().unwrap_or_default().to_string();
            if !no_wait {
                wait_synced(
                    &mut control,
                    &context,
                    Duration::from_secs(timeout),
                    json_out,
                )
                .await?;
            }
            let status = control
                .call_json(&json!({"cmd": "context_status", "context": context}))
                .await?;
            print(
                &status,
                format!("joined {context}: {} transactions", status["txs"]),
            );
        }
        ContextCommand::Tx { context, data } => {
            let r = control
                .call_json(&json!({"cmd": "context_tx", "context": context, "data": data}))
                .await?;
            print(&r, r["id"].as_str().unwrap_or_default().to_string());
        }
        ContextCommand::Log {
            context,
            offset,
            limit,
        } => {
            let r = control
                .call_json(&json!({"cmd": "context_log", "context": context, "offset": offset, "limit": limit}))
                .await?;
            let mut text = String::new();
            for e in r.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "{}  {}#{}  {:<13} {}\n",
                    &e["id"].as_str().unwrap_or_default()
                        [..16.min(e["id"].as_str().unwrap_or_default().len())],
                    &e["author"].as_str().unwrap_or_default()
                        [..8.min(e["author"].as_str().unwrap_or_default().len())],
                    e["seq"],
                    e["kind"].as_str().unwrap_or_default(),
                    e["data"],
                ));
            }
            print(&r, text.trim_end().to_string());
        }
        ContextCommand::Heads { context } => {
            let s = control
                .call_json(&json!({"cmd": "context_status", "context": context}))
                .await?;
            let heads = &s["heads"];
            let text = heads
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| h.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n");
            print(heads, text);
        }
        ContextCommand::Members { context } => {
            let s = control
                .call_json(&json!({"cmd": "context_status", "context": context}))
                .await?;
            let members = &s["members"];
            let text = members
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{}  {}",
                        m["member"].as_str().unwrap_or_default(),
                        m["role"].as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(members, text);
        }
        ContextCommand::Status { context } => {
            let s = control
                .call_json(&json!({"cmd": "context_status", "context": context}))
                .await?;
            let list = match &s {
                Value::Array(list) => list.clone(),
                one => vec![one.clone()],
            };
            let text = list
                .iter()
                .map(|c| {
                    format!(
                        "{}  {} txs  {} head(s)  digest {}  {}",
                        c["context"].as_str().unwrap_or_default(),
                        c["txs"],
                        c["heads"].as_array().map_or(0, Vec::len),
                        &c["heads_digest"].as_str().unwrap_or("-")
                            [..16.min(c["heads_digest"].as_str().unwrap_or("-").len())],
                        if c["syncing"] == true {
                            "syncing"
                        } else {
                            "idle"
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(&s, text);
        }
        ContextCommand::Sync { context } => {
            let r = control
                .call_json(&json!({"cmd": "context_sync", "context": context}))
                .await?;
            print(&r, "catch-up started".into());
        }
    }
    Ok(())
}

/// Polls the context's status until its history is here and no catch-up runs, drawing a
/// progress bar (transactions received of those announced) on a terminal.
async fn wait_synced(
    control: &mut Control,
    context: &str,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_draw_target(
        if json_out || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("catching up {bar:40} {pos}/{len} transactions ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + timeout;
    loop {
        let s = control
            .call_json(&json!({"cmd": "context_status", "context": context}))
            .await?;
        if let Some(p) = s.get("catch_up").filter(|p| !p.is_null()) {
            bar.set_length(p["planned"].as_u64().unwrap_or(0));
            bar.set_position(p["received"].as_u64().unwrap_or(0));
        }
        if s["txs"].as_u64().unwrap_or(0) > 0 && s["syncing"] == false {
            bar.finish_and_clear();
            return Ok(());
        }
        if Instant::now() >= deadline {
            bar.abandon();
            bail!("the catch-up of {context} did not finish within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
