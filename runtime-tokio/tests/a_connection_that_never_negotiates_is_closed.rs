//! A peer that opens a TCP connection and never says anything (or trickles without ever
//! finishing the security handshake) holds the connection only until the upgrade timeout
//! (`shell::transport::UPGRADE_TIMEOUT`, 10 s), on either runtime.
#![allow(clippy::unwrap_used)] // a test reports failure by panicking

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{node_on, Rt};
use sinew_tokio::core::shell::transport::UPGRADE_TIMEOUT;
use sinew_tokio::Security;

async fn a_silent_connection_is_closed_after_the_upgrade_timeout(rt: Rt) {
    let (_node, _events, addr) = node_on(rt, "/ip4/127.0.0.1/tcp/0", Security::default()).await;
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(UPGRADE_TIMEOUT + Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1024];
        // The node may send its side of multistream-select; read until it closes.
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(closed, "the connection was still open after {took:?}");
    assert!(
        took >= UPGRADE_TIMEOUT - Duration::from_secs(1),
        "closed after {took:?}"
    );
    assert!(
        took <= UPGRADE_TIMEOUT + Duration::from_secs(5),
        "closed after {took:?}"
    );
}
on_both_runtimes!(async a_silent_connection_is_closed_after_the_upgrade_timeout);
