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
//! working directory. A request line longer than [`MAX_REQUEST_LINE`] is answered with an
//! error and the connection closed.

use std::path::Path;

#[cfg(test)]
use tokio::io::BufReader;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

pub(crate) use sinew_tokio::control::{Control, Request, Response};

/// Longest control request line the node reads, in bytes, its newline not counted. A
/// longer line gets an error response and the connection is closed without reading the
/// rest. 4 MiB: a `publish` of the largest gossip message (1 MiB) fits even when JSON
/// escapes triple it.
pub(crate) const MAX_REQUEST_LINE: usize = 4 << 20;

/// Why a request line could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestLineError {
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
pub(crate) async fn read_request_line<R: AsyncBufRead + Unpin>(
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

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
        let at = read_all(b"12345\nabc\n", 5).await;
        assert_eq!(at, [Ok(b"12345".to_vec()), Ok(b"abc".to_vec())]);
        let over = read_all(b"123456\nabc\n", 5).await;
        assert_eq!(over.len(), 1, "nothing is read after an overlong line");
        let err = over[0].clone().unwrap_err();
        assert!(err.contains("longer than 5 bytes"), "{err}");
    }

    #[tokio::test]
    async fn a_last_line_without_newline_is_read_within_the_limit_only() {
        assert_eq!(read_all(b"12345", 5).await, [Ok(b"12345".to_vec())]);
        assert!(read_all(b"123456", 5).await[0].is_err());
        assert!(read_all(b"", 5).await.is_empty());
    }
}
