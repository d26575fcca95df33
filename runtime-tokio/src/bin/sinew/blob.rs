//! `sinew blob add | get | ls | rm`: blobs of a running node, over its control socket (the
//! node's side of those requests is the shell's `control` server).
//!
//! A **ticket** is one line another machine pastes into `sinew blob get`: the blob id, `@`,
//! and the providing node's addresses separated by commas, each ending in `/p2p/<peer id>`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use libp2p::Multiaddr;
use serde_json::{json, Value};
use sinew_tokio::core::blob::BlobId;

use crate::control::{Control, Request};
#[cfg(test)]
use sinew_tokio::core::shell::control::{ticket, TICKET_ADDRESSES};

/// `sinew blob ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct BlobArgs {
    /// The node's data directory.
    #[arg(long, env = "SINEW_DATA_DIR", default_value = ".sinew", global = true)]
    data_dir: PathBuf,
    /// Print JSON (for `get`: one JSON line per progress update, then the result).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: BlobCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BlobCommand {
    /// Import a file; print its id (what `b3sum` prints) and a ticket for other machines.
    Add {
        /// The file.
        file: PathBuf,
    },
    /// Download a blob (verified, resumable) and write it to a file.
    Get {
        /// The blob id, or a ticket printed by `sinew blob add`.
        blob: String,
        /// A provider's address ending in /p2p/<peer id> (repeatable); without one, and
        /// without a ticket, providers are looked up in the DHT.
        #[arg(long)]
        from: Vec<Multiaddr>,
        /// Where to write the blob.
        #[arg(short, long)]
        output: PathBuf,
        /// No progress bar (it is hidden anyway when stderr is not a terminal).
        #[arg(long)]
        no_progress: bool,
    },
    /// List the blobs in the store.
    Ls,
    /// Delete a blob from the store and stop providing it.
    Rm {
        /// The blob id.
        id: BlobId,
    },
}

/// Parses an id or a ticket into the id and the ticket's addresses.
pub(crate) fn parse_blob(text: &str) -> anyhow::Result<(BlobId, Vec<Multiaddr>)> {
    let (id, addresses) = match text.split_once('@') {
        Some((id, rest)) => (id, rest),
        None => (text, ""),
    };
    let id: BlobId = id
        .trim()
        .parse()
        .with_context(|| format!("{id:?} is neither a blob id (64 hex digits) nor a ticket"))?;
    let addresses = addresses
        .split(',')
        .filter(|a| !a.trim().is_empty())
        .map(|a| {
            a.trim()
                .parse::<Multiaddr>()
                .with_context(|| format!("invalid address {a:?} in the ticket"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((id, addresses))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

pub(crate) async fn run(args: BlobArgs) -> anyhow::Result<()> {
    let mut control = Control::connect(&args.data_dir).await?;
    match args.command {
        BlobCommand::Add { file } => {
            let path = absolute(&file)?;
            if !path.is_file() {
                bail!("{} is not a readable file", path.display());
            }
            let result = control
                .call(&Request::BlobAdd {
                    path: path.display().to_string(),
                })
                .await?;
            if args.json {
                println!("{result}");
            } else {
                println!("{}", result["id"].as_str().unwrap_or_default());
                println!("{}", result["ticket"].as_str().unwrap_or_default());
                eprintln!(
                    "added {} ({}); on another machine: sinew blob get <the second line> -o <file>",
                    file.display(),
                    human_bytes(result["size"].as_u64().unwrap_or(0))
                );
            }
        }
        BlobCommand::Get {
            blob,
            from,
            output,
            no_progress,
        } => {
            let (id, mut addresses) = parse_blob(&blob)?;
            addresses.extend(from);
            let output = absolute(&output)?;
            let bar = progress_bar(no_progress || args.json);
            let started = Instant::now();
            let json = args.json;
            let result = control
                .call_with_progress(
                    &Request::BlobGet {
                        id: id.to_string(),
                        from: addresses.iter().map(|a| a.to_string()).collect(),
                        output: Some(output.display().to_string()),
                    },
                    |p| {
                        if json {
                            println!("{}", json!({ "event": "progress", "progress": p }));
                        } else {
                            show(&bar, p);
                        }
                    },
                )
                .await;
            bar.finish_and_clear();
            let result = result?;
            if json {
                println!("{}", json!({ "event": "done", "result": result }));
            } else {
                let size = result["size"].as_u64().unwrap_or(0);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "{} verified, {} received from the network in {secs:.1} s ({}/s)",
                    human_bytes(size),
                    human_bytes(result["received"].as_u64().unwrap_or(0)),
                    human_bytes((result["received"].as_u64().unwrap_or(0) as f64 / secs) as u64),
                );
                println!("{}", result["output"].as_str().unwrap_or_default());
            }
        }
        BlobCommand::Ls => {
            let list = control.call(&Request::BlobLs).await?;
            if args.json {
                println!("{list}");
                return Ok(());
            }
            let entries = list.as_array().cloned().unwrap_or_default();
            for e in &entries {
                let size = e["size"].as_u64().unwrap_or(0);
                let verified = e["verified"].as_u64().unwrap_or(0);
                let state = if e["complete"].as_bool() == Some(true) {
                    "complete".to_string()
                } else {
                    format!("partial {:.0}%", percent(verified, size))
                };
                println!(
                    "{}  {:>10}  {state}",
                    e["id"].as_str().unwrap_or_default(),
                    human_bytes(size)
                );
            }
            eprintln!("{} blob(s)", entries.len());
        }
        BlobCommand::Rm { id } => {
            let result = control
                .call(&Request::BlobRm { id: id.to_string() })
                .await?;
            if args.json {
                println!("{result}");
            } else if result["existed"].as_bool() == Some(true) {
                eprintln!("removed {id}");
            } else {
                bail!("blob {id} is not in the store");
            }
        }
    }
    Ok(())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// A bar on stderr (bytes, rate, ETA, providers), hidden when stderr is not a terminal or
/// when `hidden`.
fn progress_bar(hidden: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        None,
        if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    let style = ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message("looking for providers");
    bar
}

fn show(bar: &ProgressBar, p: &Value) {
    if let Some(size) = p["size"].as_u64() {
        bar.set_length(size);
    }
    bar.set_position(p["verified"].as_u64().unwrap_or(0));
    bar.set_message(format!(
        "{} provider(s)",
        p["providers"].as_u64().unwrap_or(0)
    ));
}

// --- the node's side ---

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_round_trips() {
        let id = BlobId::of(b"hello");
        let addrs = vec![
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
                .to_string(),
            "/ip4/10.0.0.2/udp/4001/quic-v1/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
                .to_string(),
        ];
        let t = ticket(&id, &addrs);
        let (parsed, addresses) = parse_blob(&t).unwrap();
        assert_eq!(parsed, id);
        assert_eq!(addresses.len(), 2);
        assert_eq!(addresses[0].to_string(), addrs[0]);
        let (plain, none) = parse_blob(&id.to_string()).unwrap();
        assert_eq!(plain, id);
        assert!(none.is_empty());
    }

    #[test]
    fn a_ticket_carries_at_most_its_limit_of_addresses() {
        let id = BlobId::of(b"x");
        let addrs: Vec<String> = (0..TICKET_ADDRESSES + 1)
            .map(|i| format!("/ip4/127.0.0.1/tcp/{}", 1000 + i))
            .collect();
        let (_, parsed) = parse_blob(&ticket(&id, &addrs)).unwrap();
        assert_eq!(parsed.len(), TICKET_ADDRESSES);
        let (_, parsed) = parse_blob(&ticket(&id, &addrs[..TICKET_ADDRESSES])).unwrap();
        assert_eq!(parsed.len(), TICKET_ADDRESSES);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = parse_blob("not-an-id").unwrap_err().to_string();
        assert!(err.contains("neither a blob id"), "{err}");
        let id = BlobId::of(b"x");
        let err = parse_blob(&format!("{id}@nonsense"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid address"), "{err}");
    }
}
