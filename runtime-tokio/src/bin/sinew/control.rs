//! The local control interface of a running node: a Unix socket at
//! `<data-dir>/control.sock` speaking newline-delimited JSON, one response line per
//! request line.
//!
//! Requests (`cmd` selects the kind):
//! `{"cmd":"status","topic":"t"}` (topic optional: adds the mesh size),
//! `{"cmd":"publish","topic":"t","data":"text"}`, `{"cmd":"subscribe","topic":"t"}`,
//! `{"cmd":"received","topic":"t"}` (the last 10 000 messages and 16 MiB at most, topic
//! optional),
//! `{"cmd":"dial","address":"/ip4/.../p2p/..."}`, `{"cmd":"shutdown"}`, and the blob
//! requests `{"cmd":"blob_add","path":"/abs/file"}`, `{"cmd":"blob_get","id":"<hex>",
//! "from":["/ip4/.../p2p/..."],"output":"/abs/file"}`, `{"cmd":"blob_ls"}`,
//! `{"cmd":"blob_rm","id":"<hex>"}`.
//! Responses: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`. `blob_get`
//! first sends any number of progress lines, `{"progress":{"verified":..,"size":..,
//! "providers":..}}`, then its response.
//!
//! Paths in requests must be absolute: the node does not resolve them against its own
//! working directory. A request line longer than
//! `sinew_core::shell::control::MAX_REQUEST_LINE` is answered with an error and the
//! connection closed. The server and the client are the shell's (`shell::control`); this
//! file has the CLI's `peers` and `status` commands.

use std::path::Path;

pub(crate) use sinew_tokio::control::{Control, Request};

pub(crate) async fn peers(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let status = Control::connect(data_dir)
        .await?
        .call(&Request::Status { topic: None })
        .await?;
    if json {
        println!("{}", status["peers"]);
    } else if let Some(peers) = status["peers"].as_array() {
        for peer in peers {
            println!("{}", peer.as_str().unwrap_or_default());
        }
        eprintln!("{} peer(s)", peers.len());
    }
    Ok(())
}

pub(crate) async fn status(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let status = Control::connect(data_dir)
        .await?
        .call(&Request::Status { topic: None })
        .await?;
    if json {
        println!("{status}");
    } else {
        println!(
            "peer id:    {}",
            status["peer_id"].as_str().unwrap_or_default()
        );
        for address in status["listen"].as_array().into_iter().flatten() {
            println!("listening:  {}", address.as_str().unwrap_or_default());
        }
        println!(
            "peers:      {}",
            status["peers"].as_array().map_or(0, Vec::len)
        );
        println!("topics:     {}", status["topics"]);
        println!(
            "kademlia:   {} mode, {} peers in the routing table",
            if status["kad_server"].as_bool() == Some(true) {
                "server"
            } else {
                "client"
            },
            status["kad_peers"]
        );
    }
    Ok(())
}
