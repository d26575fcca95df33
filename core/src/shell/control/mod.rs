//! The control interface of a running node: a Unix socket at `<data-dir>/control.sock`
//! speaking newline-delimited JSON, one response line per request line — its protocol
//! ([`Request`], [`Response`]), its client ([`Control`]) and its server ([`serve`]). The
//! socket is served on async-io's reactor whatever the node's runtime, so the same code
//! serves a node on tokio and on smol.
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
//! working directory. A request line longer than [`MAX_REQUEST_LINE`] is answered with an
//! error and the connection closed.

mod contexts;
mod received;
mod server;

use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context};
use async_io::Async;
use futures::io::{BufReader, Lines, ReadHalf, WriteHalf};
use futures::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
use serde::{Deserialize, Serialize};

pub use received::{Received, ReceivedLog, RECEIVED_LOG, RECEIVED_LOG_BYTES};
pub use server::{serve, ticket, ControlServer, TICKET_ADDRESSES};

/// Longest control request line the node reads, in bytes, its newline not counted. A
/// longer line gets an error response and the connection is closed without reading the
/// rest. 4 MiB: a `publish` of the largest gossip message (1 MiB) fits even when JSON
/// escapes triple it.
pub const MAX_REQUEST_LINE: usize = 4 << 20;

/// Why a request line could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestLineError {
    /// The line is longer than the limit.
    #[error("request line longer than {max} bytes: send one JSON request per line, each at most {max} bytes")]
    TooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one line of at most `max` bytes (newline excluded, and not returned); `Ok(None)`
/// at the end of input. A last line without a newline is returned as it is. Reads at most
/// `max + 1` bytes, so a longer line never allocates past the limit.
pub async fn read_request_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, RequestLineError> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(RequestLineError::TooLong { max });
    }
    Ok(Some(line))
}

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
        /// Providers' addresses, each ending in `/p2p/<peer id>`; empty: ask the DHT.
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
    /// Found a context with this node as its admin (its member key is the node's identity).
    ContextCreate,
    /// Add a member to a context and return an invitation token for it.
    ContextInvite {
        /// The context (64 hex digits).
        context: String,
        /// The invitee: a member key (64 hex digits) or a peer id (its node's key).
        member: String,
        /// `writer` (default) or `admin`.
        #[serde(default)]
        role: Option<String>,
    },
    /// Join a context with an invitation token (catch-up starts at once).
    ContextJoin {
        /// The token `sinew context invite` printed.
        invite: String,
    },
    /// Write a transaction (text payload) in a context; answered once durable.
    ContextTx {
        /// The context.
        context: String,
        /// The payload (UTF-8 text).
        data: String,
    },
    /// Transactions of a context in applied (causal) order.
    ContextLog {
        /// The context.
        context: String,
        /// From this position.
        #[serde(default)]
        offset: usize,
        /// At most this many (default 100, at most `MAX_LOG_ENTRIES`).
        #[serde(default)]
        limit: Option<usize>,
    },
    /// The state of one context (heads, members, size, catch-up), or of every one.
    ContextStatus {
        /// The context; none: every context.
        #[serde(default)]
        context: Option<String>,
    },
    /// Catch a context up now from every member seen on its topic.
    ContextSync {
        /// The context.
        context: String,
    },
}

/// Transactions one `context_log` request returns at most.
pub const MAX_LOG_ENTRIES: usize = 10_000;

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

/// A connection to a node's control socket (the client the `sinew` CLI, the tests and the
/// benchmarks use).
pub struct Control {
    lines: Lines<BufReader<ReadHalf<Async<UnixStream>>>>,
    write: WriteHalf<Async<UnixStream>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    /// Connects to the node whose data directory is `data_dir`.
    pub async fn connect(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("control.sock");
        let stream = Async::<UnixStream>::connect(&path).await.with_context(|| {
            format!(
                "no node is running with data directory {} (cannot connect to {})",
                data_dir.display(),
                path.display()
            )
        })?;
        let (read, write) = stream.split();
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
        let Some(line) = self.lines.next().await.transpose()? else {
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

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    async fn read_all(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut reader = BufReader::new(input);
        let mut out = Vec::new();
        loop {
            match read_request_line(&mut reader, max).await {
                Ok(Some(line)) => out.push(Ok(line)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
        let at = block_on(read_all(b"12345\nabc\n", 5));
        assert_eq!(at, [Ok(b"12345".to_vec()), Ok(b"abc".to_vec())]);
        let over = block_on(read_all(b"123456\nabc\n", 5));
        assert_eq!(over.len(), 1, "nothing is read after an overlong line");
        let err = over[0].clone().unwrap_err();
        assert!(err.contains("longer than 5 bytes"), "{err}");
    }

    #[test]
    fn a_last_line_without_newline_is_read_within_the_limit_only() {
        assert_eq!(block_on(read_all(b"12345", 5)), [Ok(b"12345".to_vec())]);
        assert!(block_on(read_all(b"123456", 5))[0].is_err());
        assert!(block_on(read_all(b"", 5)).is_empty());
    }
}
