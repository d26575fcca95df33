//! Experimental: raw libp2p stream throughput.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, tls, yamux, Multiaddr, StreamProtocol, Swarm};

const PROTO: StreamProtocol = StreamProtocol::new("/raw-bench/1");

fn swarm(tls_: bool) -> Swarm<libp2p_stream::Behaviour> {
    let b = libp2p::SwarmBuilder::with_new_identity().with_tokio();
    if tls_ {
        b.with_tcp(
            tcp::Config::default().nodelay(true),
            tls::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .build()
    } else {
        b.with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .build()
    }
}

async fn raw(mib: usize, tls_: bool, write: usize) -> f64 {
    let mut a = swarm(tls_);
    let mut b = swarm(tls_);
    a.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = a.select_next_some().await {
            break address;
        }
    };
    let a_id = *a.local_peer_id();
    let mut incoming = a.behaviour().new_control().accept(PROTO).unwrap();
    let mut control = b.behaviour().new_control();
    b.dial(addr.with_p2p(a_id).unwrap()).unwrap();
    tokio::spawn(async move {
        loop {
            a.select_next_some().await;
        }
    });
    tokio::spawn(async move {
        loop {
            b.select_next_some().await;
        }
    });
    let mut s = control.open_stream(a_id, PROTO).await.unwrap();
    let sender = tokio::spawn(async move {
        let chunk = vec![0xA5u8; write];
        for _ in 0..(mib << 20) / write {
            s.write_all(&chunk).await.unwrap();
        }
        s.close().await.unwrap();
    });
    let (_, mut r) = incoming.next().await.unwrap();
    let t0 = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    let el = t0.elapsed();
    sender.await.unwrap();
    assert_eq!(got, mib << 20);
    mib as f64 / el.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib = 512;
    for _ in 0..2 {
        println!("noise 1MiB writes: {:.0}", raw(mib, false, 1 << 20).await);
        println!("tls   1MiB writes: {:.0}", raw(mib, true, 1 << 20).await);
        println!("noise 64K writes: {:.0}", raw(mib, false, 64 << 10).await);
    }
}
