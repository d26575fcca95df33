//! The local control interface of a running node: a Unix socket at
//! `<data-dir>/control.sock` speaking newline-delimited JSON, one response line per
//! request line.
//!
//! Requests (`cmd` selects the kind):
//! `{"cmd":"status","topic":"t"}` (topic optional: adds the mesh size),
//! `{"cmd":"publish","topic":"t","data":"text"}`, `{"cmd":"subscribe","topic":"t"}`,
//! `{"cmd":"received","topic":"t"}` (the last 10 000 messages, topic optional),
//! `{"cmd":"dial","address":"/ip4/.../p2p/..."}`, `{"cmd":"shutdown"}`, and the blob
//! requests `{"cmd":"blob_add","path":"/abs/file"}`, `{"cmd":"blob_get","id":"<hex>",
//! "from":["/ip4/.../p2p/..."],"output":"/abs/file"}`, `{"cmd":"blob_ls"}`,
//! `{"cmd":"blob_rm","id":"<hex>"}`.
//! Responses: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`. `blob_get`
//! first sends any number of progress lines, `{"progress":{"verified":..,"size":..,
//! "providers":..}}`, then its response.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Request {
    /// The node's status.
    Status {
        /// Also report the mesh size of this topic.
        #[serde(default)]
        topic: Option<String>,
    },
    /// Publish a text message.
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        data: String,
    },
    /// Subscribe to a topic.
    Subscribe {
        /// Topic.
        topic: String,
    },
    /// Messages received so far.
    Received {
        /// Only this topic.
        #[serde(default)]
        topic: Option<String>,
    },
    /// Dial an address.
    Dial {
        /// Multiaddr.
        address: String,
    },
    /// Stop the node.
    Shutdown,
    /// Import a file into the blob store and announce it.
    BlobAdd {
        /// Absolute path of the file (the node reads it).
        path: String,
    },
    /// Download a blob into the store and export it to a file.
    BlobGet {
        /// The blob id (64 hex digits).
        id: String,
        /// Providers' addresses, each ending in /p2p/<peer id>; empty: ask the DHT.
        #[serde(default)]
        from: Vec<String>,
        /// Absolute path of the file to write; none: only download into the store.
        #[serde(default)]
        output: Option<String>,
    },
    /// The blobs in the store.
    BlobLs,
    /// Delete a blob from the store.
    BlobRm {
        /// The blob id.
        id: String,
    },
}

/// A control response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub(crate) fn ok(value: serde_json::Value) -> Self {
        Self {
            ok: true,
            result: Some(value),
            error: None,
        }
    }

    pub(crate) fn error(message: String) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(message),
        }
    }
}

/// A connection to a node's control socket.
pub(crate) struct Control {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Control {
    pub(crate) async fn connect(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("control.sock");
        let stream = UnixStream::connect(&path).await.with_context(|| {
            format!(
                "no node is running with data directory {} (cannot connect to {})",
                data_dir.display(),
                path.display()
            )
        })?;
        let (read, write) = stream.into_split();
        Ok(Self {
            lines: BufReader::new(read).lines(),
            write,
        })
    }

    pub(crate) async fn call(&mut self, request: &Request) -> anyhow::Result<serde_json::Value> {
        self.call_with_progress(request, |_| {}).await
    }

    /// Like [`Control::call`], handing each progress line to `progress` until the response.
    pub(crate) async fn call_with_progress(
        &mut self,
        request: &Request,
        mut progress: impl FnMut(&serde_json::Value),
    ) -> anyhow::Result<serde_json::Value> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.write.write_all(&line).await?;
        loop {
            let Some(reply) = self.lines.next_line().await? else {
                bail!("the node closed its control socket");
            };
            let value: serde_json::Value = serde_json::from_str(&reply)
                .with_context(|| format!("malformed control response: {reply}"))?;
            if let Some(p) = value.get("progress") {
                progress(p);
                continue;
            }
            let response: Response = serde_json::from_value(value)?;
            return match (response.ok, response.result, response.error) {
                (true, Some(result), _) => Ok(result),
                (_, _, Some(error)) => bail!("{error}"),
                _ => bail!("malformed control response: {reply}"),
            };
        }
    }
}

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
