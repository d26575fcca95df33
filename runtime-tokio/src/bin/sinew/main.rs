//! `sinew`: run a Sinew node, inspect it, or start a local devnet.
//!
//! ```text
//! sinew node   [--config sinew.toml] [--data-dir DIR] [--listen ADDR].. [--bootstrap ADDR]..
//! sinew id     [--data-dir DIR]
//! sinew peers  [--data-dir DIR] [--json]
//! sinew status [--data-dir DIR] [--json]
//! sinew devnet [--nodes 5] [--keep] [--dir DIR]
//! sinew blob add <file>                       [--data-dir DIR] [--json]
//! sinew blob get <id|ticket> [--from ADDR].. -o <file> [--no-progress] [--json]
//! sinew blob ls | rm <id>                     [--data-dir DIR] [--json]
//! sinew context create | status [<ctx>]         [--data-dir DIR] [--json]
//! sinew context invite <ctx> <peer-id> [--admin] | join <token> [--no-wait]
//! sinew context tx <ctx> <text> | log <ctx> | heads <ctx> | members <ctx> | sync <ctx>
//! ```
//!
//! Commands that act on a running node talk to it over its control socket,
//! `<data-dir>/control.sock` (newline-delimited JSON; see the README). Logs go to stderr
//! through `tracing`, filtered by `RUST_LOG` (default `info` for `sinew node`).

mod allocator;
mod blob;
mod context;
mod control;
mod devnet;
mod node;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sinew: peer-to-peer networking and replication.
#[derive(Debug, Parser)]
#[command(name = "sinew", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node until interrupted (SIGINT/SIGTERM).
    Node(node::NodeArgs),
    /// Print this node's peer id (creating its identity if there is none).
    Id {
        /// The node's data directory.
        #[arg(long, env = "SINEW_DATA_DIR", default_value = ".sinew")]
        data_dir: PathBuf,
    },
    /// List the peers a running node is connected to.
    Peers {
        /// The node's data directory.
        #[arg(long, env = "SINEW_DATA_DIR", default_value = ".sinew")]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a running node's status.
    Status {
        /// The node's data directory.
        #[arg(long, env = "SINEW_DATA_DIR", default_value = ".sinew")]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start N node processes on loopback, run the demo, print a summary.
    Devnet(devnet::DevnetArgs),
    /// Blobs of a running node: add, get, ls, rm.
    Blob(blob::BlobArgs),
    /// Contexts of a running node: create, invite, join, tx, log, heads, members, status.
    Context(context::ContextArgs),
}

fn main() -> ExitCode {
    // Before any thread starts (see the module's docs for why and what it measured).
    let pinned = allocator::pin_mmap_threshold();
    let cli = Cli::parse();
    let default_level = match &cli.command {
        Command::Node(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    tracing::debug!(
        ?pinned,
        bytes = allocator::MMAP_THRESHOLD,
        "glibc's mmap threshold"
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => node::run(args).await,
            Command::Id { data_dir } => {
                let key = sinew_tokio::load_or_create_identity(&data_dir.join("identity"))?;
                println!("{}", key.public().to_peer_id());
                Ok(())
            }
            Command::Peers { data_dir, json } => control::peers(&data_dir, json).await,
            Command::Status { data_dir, json } => control::status(&data_dir, json).await,
            Command::Devnet(args) => devnet::run(args).await,
            Command::Blob(args) => blob::run(args).await,
            Command::Context(args) => context::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
