//! Discovery's decisions, on a node driven by hand in virtual time.

use std::time::{Duration, Instant};

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use super::{Config, KadMode};
use crate::blob::store::MemStore;
use crate::node::{self, Input, Node, Output};
use crate::testing::{epoch, peer_id};
use crate::{dht, peer};

fn node(discovery: Config) -> (Node<MemStore>, Instant) {
    let now = epoch();
    let config = node::Config {
        discovery,
        ..node::Config::default()
    };
    (Node::new(peer_id(1, 0), config, MemStore::new(), now), now)
}

fn drain(node: &mut Node<MemStore>) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

fn addr(s: &str) -> Multiaddr {
    s.parse().expect("a valid address")
}

fn disconnects(out: &[Output]) -> Vec<PeerId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Peer(peer::Output::Disconnect {
                peer,
                cause: peer::Cause::Unresponsive,
                ..
            }) => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn bootstrap_peers_are_dialed_at_start_and_the_dht_bootstrapped_once_one_connects() {
    let boot = peer_id(1, 1);
    let address = addr(&format!("/ip4/10.0.0.1/tcp/4001/p2p/{boot}"));
    let (mut node, now) = node(Config {
        bootstrap: vec![address.clone(), addr("/ip4/10.0.0.2/tcp/4001")],
        ..Config::default()
    });
    let out = drain(&mut node);
    assert!(out.contains(&Output::Dht(dht::Output::AddAddress {
        peer: boot,
        address: address.clone()
    })));
    let dials = out
        .iter()
        .filter(|o| matches!(o, Output::Peer(peer::Output::Dial { .. })))
        .count();
    assert_eq!(dials, 2);
    // Another peer connecting is not a reason to bootstrap; the bootstrap peer is, once.
    node.handle_input(
        now,
        peer::Input::Connected {
            peer: peer_id(1, 2),
        }
        .into(),
    );
    assert!(!drain(&mut node).contains(&Output::Dht(dht::Output::Bootstrap)));
    for _ in 0..2 {
        node.handle_input(now, peer::Input::Connected { peer: boot }.into());
        let bootstraps = drain(&mut node)
            .into_iter()
            .filter(|o| *o == Output::Dht(dht::Output::Bootstrap))
            .count();
        assert!(bootstraps <= 1);
        node.handle_input(now, peer::Input::Disconnected { peer: boot }.into());
        drain(&mut node);
    }
}

#[test]
fn auto_mode_is_server_on_loopback_only_and_kademlias_rule_elsewhere() {
    let (mut node, now) = node(Config::default());
    assert!(drain(&mut node).is_empty(), "no mode before any address");
    let listen = |node: &mut Node<MemStore>, a: &str, up: bool| {
        let input = dht::Input::ListenAddress {
            address: addr(a),
            up,
        };
        node.handle_input(now, input.into());
        drain(node)
    };
    let server = Output::Dht(dht::Output::SetMode(dht::Mode::Server));
    let auto = Output::Dht(dht::Output::SetMode(dht::Mode::Auto));
    assert_eq!(
        listen(&mut node, "/ip4/127.0.0.1/tcp/1", true),
        vec![server.clone()]
    );
    assert!(
        listen(&mut node, "/ip6/::1/tcp/1", true).is_empty(),
        "no change, no output"
    );
    assert_eq!(listen(&mut node, "/ip4/192.0.2.7/tcp/1", true), vec![auto]);
    assert_eq!(
        listen(&mut node, "/ip4/192.0.2.7/tcp/1", false),
        vec![server]
    );
    // A fixed mode is set at start and never changed.
    let (mut fixed, _) = self::node(Config {
        kad_mode: KadMode::Client,
        ..Config::default()
    });
    assert_eq!(
        drain(&mut fixed),
        vec![Output::Dht(dht::Output::SetMode(dht::Mode::Client))]
    );
    let input = dht::Input::ListenAddress {
        address: addr("/ip4/127.0.0.1/tcp/1"),
        up: true,
    };
    fixed.handle_input(now, input.into());
    assert!(drain(&mut fixed).is_empty());
}

#[test]
fn only_kademlia_peers_enter_the_routing_table_and_loopback_only_on_a_loopback_devnet() {
    let (mut node, now) = node(Config::default());
    let listen = dht::Input::ListenAddress {
        address: addr("/ip4/192.0.2.1/tcp/1"),
        up: true,
    };
    node.handle_input(now, listen.into());
    drain(&mut node);
    let kad = Config::default().kad_protocol;
    let identified = |peer, protocols: Vec<String>| peer::Input::Identified {
        peer,
        listen_addrs: vec![addr("/ip4/127.0.0.1/tcp/9"), addr("/ip4/192.0.2.9/tcp/9")],
        protocols,
    };
    // A peer without our Kademlia protocol: nothing.
    node.handle_input(now, identified(peer_id(1, 5), vec!["/other".into()]).into());
    assert!(drain(&mut node).is_empty());
    // One with it: its public address only (we are not on a loopback devnet).
    node.handle_input(now, identified(peer_id(1, 6), vec![kad]).into());
    let added: Vec<Multiaddr> = drain(&mut node)
        .into_iter()
        .filter_map(|o| match o {
            Output::Dht(dht::Output::AddAddress { address, .. }) => Some(address),
            _ => None,
        })
        .collect();
    assert_eq!(added, vec![addr("/ip4/192.0.2.9/tcp/9")]);
}

#[test]
fn stored_blobs_are_announced_once_the_routing_table_has_a_peer() {
    let (mut node, now) = node(Config::default());
    let id = node.add_blob(bytes::Bytes::from_static(b"stored")).unwrap();
    assert!(drain(&mut node).is_empty(), "nobody to announce to yet");
    let kad = Config::default().kad_protocol;
    for n in 0..2 {
        let identified = peer::Input::Identified {
            peer: peer_id(1, 7 + n),
            listen_addrs: vec![],
            protocols: vec![kad.clone()],
        };
        node.handle_input(now, identified.into());
        let provides = drain(&mut node)
            .into_iter()
            .filter(|o| *o == Output::Dht(dht::Output::Provide { key: id.into() }))
            .count();
        assert_eq!(
            provides,
            usize::from(n == 0),
            "announced once, at the first peer"
        );
    }
    assert_eq!(node.announced().copied().collect::<Vec<_>>(), vec![id]);
}

#[test]
fn a_peer_without_an_answered_ping_for_the_watchdog_is_disconnected() {
    let watchdog = Duration::from_secs(15);
    let (mut node, now) = node(Config {
        watchdog,
        ..Config::default()
    });
    let (quiet, chatty, never) = (peer_id(1, 1), peer_id(1, 2), peer_id(1, 3));
    for peer in [quiet, chatty, never] {
        node.handle_input(now, peer::Input::Connected { peer }.into());
        drain(&mut node);
    }
    for peer in [quiet, chatty] {
        node.handle_input(now, peer::Input::Pinged { peer }.into());
        drain(&mut node);
    }
    assert!(node.is_idle(), "the watchdog is housekeeping, not work");
    let mut t = now;
    let mut gone = Vec::new();
    while t < now + watchdog * 3 {
        t += Duration::from_secs(1);
        node.handle_input(t, peer::Input::Pinged { peer: chatty }.into());
        drain(&mut node);
        node.handle_input(t, Input::Timeout);
        for peer in disconnects(&drain(&mut node)) {
            gone.push((peer, t - now));
        }
    }
    // The quiet one at exactly its watchdog; the chatty one never; one that never
    // answered a ping is not watched (a driver may not report pings at all).
    assert_eq!(gone, vec![(quiet, watchdog)]);
    // A failed ping disconnects at once.
    let reason = "timeout".to_string();
    node.handle_input(
        t,
        peer::Input::PingFailed {
            peer: chatty,
            reason,
        }
        .into(),
    );
    assert_eq!(disconnects(&drain(&mut node)), vec![chatty]);
    let _ = never;
}
