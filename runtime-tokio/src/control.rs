//! A client of a running `sinew node`'s control socket (`<data-dir>/control.sock`,
//! newline-delimited JSON, one response line per request line, `blob_get` progress lines
//! before its response). The `sinew` CLI, the integration tests and the benchmarks all
//! talk to nodes through it; the request kinds are in the README's "control interface".

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A control request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
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
pub struct Response {
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
    /// A success carrying `value`.
    pub fn ok(value: serde_json::Value) -> Self {
        Self {
            ok: true,
            result: Some(value),
            error: None,
        }
    }

    /// A failure saying `message`.
    pub fn error(message: String) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(message),
        }
    }
}

/// A connection to a node's control socket.
pub struct Control {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    write: tokio::net::unix::OwnedWriteHalf,
}

impl Control {
    /// Connects to the node whose data directory is `data_dir`.
    pub async fn connect(data_dir: &Path) -> anyhow::Result<Self> {
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

    /// Sends `request` and returns its result (progress lines are skipped), or the
    /// node's error.
    pub async fn call(&mut self, request: &Request) -> anyhow::Result<serde_json::Value> {
        self.call_with_progress(request, |_| {}).await
    }

    /// [`Control::call`] with a request written as JSON (`{"cmd": ...}`): for tests and
    /// tools that build requests by hand, including malformed ones.
    pub async fn call_json(
        &mut self,
        request: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        self.call_json_with_progress(request, |_| {}).await
    }

    /// Like [`Control::call`], handing each progress line to `progress` until the response.
    pub async fn call_with_progress(
        &mut self,
        request: &Request,
        progress: impl FnMut(&serde_json::Value),
    ) -> anyhow::Result<serde_json::Value> {
        let request = serde_json::to_value(request)?;
        self.call_json_with_progress(&request, progress).await
    }

    /// Sends one request written as JSON, without waiting for its response (read it with
    /// [`Control::next_line`]).
    pub async fn send_json(&mut self, request: &serde_json::Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.write.write_all(&line).await?;
        Ok(())
    }

    /// The next line from the node, parsed (a progress line or a response); `None` once
    /// the node closed the socket.
    pub async fn next_line(&mut self) -> anyhow::Result<Option<serde_json::Value>> {
        let Some(line) = self.lines.next_line().await? else {
            return Ok(None);
        };
        let value = serde_json::from_str(&line)
            .with_context(|| format!("malformed control line: {line}"))?;
        Ok(Some(value))
    }

    /// [`Control::call_with_progress`] with a request written as JSON.
    pub async fn call_json_with_progress(
        &mut self,
        request: &serde_json::Value,
        mut progress: impl FnMut(&serde_json::Value),
    ) -> anyhow::Result<serde_json::Value> {
        self.send_json(request).await?;
        loop {
            let Some(value) = self.next_line().await? else {
                bail!("the node closed its control socket");
            };
            let reply = value.to_string();
            if let Some(p) = value.get("progress") {
                progress(p);
                continue;
            }
            let response: Response = serde_json::from_value(value)?;
            return match (response.ok, response.result, response.error) {
                (true, result, _) => Ok(result.unwrap_or(serde_json::Value::Null)),
                (_, _, Some(error)) => bail!("{error}"),
                _ => bail!("malformed control response: {reply}"),
            };
        }
    }
}
