//! `cargo bench -p sinew-tokio --bench network`: connection set-up latency and stream
//! throughput on loopback, each next to its baseline in the same process.
//!
//! - `dial-first-byte`: from `dial` on a fresh node to the first frame of a new stream
//!   arriving at the other node (TCP + TLS + Yamux, multistream negotiation included);
//!   baseline: a raw tokio TCP connect and one byte. Median of `SINEW_BENCH_DIALS` (50).
//! - `tls-vs-noise`: one stream carrying `SINEW_BENCH_MIB` (256) MiB in 1 MiB frames over
//!   TCP + TLS and over TCP + Noise; the ratio decides which protocol Sinew prefers.
#![allow(missing_docs, clippy::unwrap_used)] // a benchmark fails loudly

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::StreamProtocol;
use sinew_tokio::{Client, Config, Event, Options, Security};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROTO: StreamProtocol = StreamProtocol::new("/sinew-bench/1");

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn start(security: Security) -> (Client, sinew_tokio::EventStream, libp2p::Multiaddr) {
    let (c, e) = sinew_tokio::start(
        Config::default(),
        Options {
            security,
            ..Options::default()
        },
    )
    .expect("starts");
    let addr = c
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .unwrap();
    let addr = addr.with_p2p(c.local_peer_id()).unwrap();
    (c, e, addr)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn dial_first_byte(rounds: usize) {
    let (a, mut a_events, a_addr) = start(Security::default()).await;
    a.accept_streams(PROTO).await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let mut sinew = Vec::new();
    let mut raw = Vec::new();
    let (mut dials, mut opens) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Sinew: a fresh node each round, so every dial is a new connection.
        let (b, _b_events, _) = start(Security::default()).await;
        let t0 = Instant::now();
        b.dial(a_addr.clone()).await.unwrap();
        dials.push(t0.elapsed());
        let mut s = b.open_stream(a.local_peer_id(), PROTO).await.unwrap();
        opens.push(t0.elapsed());
        s.send(b"x").await.unwrap();
        let mut incoming = loop {
            if let Some(Event::StreamOpened { stream }) = a_events.next().await {
                break stream;
            }
        };
        let frame = incoming.recv().await.unwrap().unwrap();
        sinew.push(t0.elapsed());
        assert_eq!(&frame[..], b"x");
        b.shutdown().await.unwrap();
        // Baseline: raw TCP.
        let t0 = Instant::now();
        let (mut c, accepted) = tokio::join!(
            async { tokio::net::TcpStream::connect(tcp_addr).await.unwrap() },
            async { tcp.accept().await.unwrap().0 }
        );
        let mut accepted = accepted;
        c.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).await.unwrap();
        raw.push(t0.elapsed());
    }
    println!(
        "  of which: connection established {:.3} ms, stream open {:.3} ms (medians, cumulative)",
        median(dials).as_secs_f64() * 1e3,
        median(opens).as_secs_f64() * 1e3
    );
    let (s, r) = (median(sinew), median(raw));
    println!(
        "  dial -> first stream byte: median {:.3} ms; raw TCP connect + byte: {:.3} ms",
        s.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3
    );
    println!(
        "bench dial-first-byte: {:.3} ms ({:.1}x raw-tcp)",
        s.as_secs_f64() * 1e3,
        s.as_secs_f64() / r.as_secs_f64()
    );
}

async fn throughput(security: Security, mib: usize) -> f64 {
    let (a, mut a_events, a_addr) = start(security).await;
    let (b, _b_events, _) = start(security).await;
    a.accept_streams(PROTO).await.unwrap();
    b.dial(a_addr).await.unwrap();
    let mut s = b.open_stream(a.local_peer_id(), PROTO).await.unwrap();
    let sender = tokio::spawn(async move {
        let chunk = vec![0xA5u8; 1 << 20];
        for _ in 0..mib {
            s.send(&chunk).await.unwrap();
        }
        s.close().await.unwrap();
    });
    let mut incoming = loop {
        if let Some(Event::StreamOpened { stream }) = a_events.next().await {
            break stream;
        }
    };
    let t0 = Instant::now();
    let mut got = 0usize;
    while let Some(frame) = incoming.recv().await.unwrap() {
        got += frame.len();
    }
    let elapsed = t0.elapsed();
    sender.await.unwrap();
    assert_eq!(got, mib << 20);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    mib as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    dial_first_byte(env("SINEW_BENCH_DIALS", 50)).await;
    let mib = env("SINEW_BENCH_MIB", 256);
    // Interleaved, best of three each.
    let (mut tls, mut noise) = (0f64, 0f64);
    for _ in 0..3 {
        tls = tls.max(throughput(Security::TlsOnly, mib).await);
        noise = noise.max(throughput(Security::NoiseOnly, mib).await);
    }
    println!("  {mib} MiB over one stream: TLS {tls:.0} MiB/s, Noise {noise:.0} MiB/s");
    println!(
        "bench tls-vs-noise: {tls:.0} MiB/s ({:.2}x noise)",
        tls / noise
    );
}
