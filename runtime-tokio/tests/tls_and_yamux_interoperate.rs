//! Sinew's own TLS upgrade (`shell::tls`, AES-GCM first) and Yamux with 256 KiB frames
//! (`shell::muxer`) speak the same protocols as stock libp2p: a Sinew swarm and a stock
//! libp2p-tls + libp2p-yamux swarm connect both ways and move several MiB each way on
//! one stream; and the handshake picks AES-GCM on a CPU with AES instructions even
//! against a stock client that lists ChaCha20 first. The same exchange runs with the Sinew
//! side on smol: its own TCP over async-io, the shell's upgrades, smol's executor.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test reports failure by panicking

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::upgrade::InboundConnectionUpgrade;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{tcp, Multiaddr, PeerId, StreamProtocol, Swarm};
use sinew_tokio::core::shell::muxer::YamuxConfig;
use sinew_tokio::core::shell::tls::TlsConfig;

const PROTO: StreamProtocol = StreamProtocol::new("/interop-test/1");
const BYTES: usize = 5 * 1024 * 1024 + 123;

/// Who is at one end of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Stock libp2p-tls + libp2p-yamux on tokio.
    Stock,
    /// Sinew's TLS and Yamux on tokio's TCP.
    Sinew,
    /// Sinew's TLS and Yamux on sinew-smol's TCP, connections on smol's executor.
    SinewOnSmol,
}

fn swarm(side: Side) -> Swarm<libp2p_stream::Behaviour> {
    if side == Side::SinewOnSmol {
        use sinew_tokio::core::shell::{Adapter, Runtime};
        let key = Keypair::generate_ed25519();
        let transport = sinew_smol::Smol
            .transports(&key, sinew_smol::Security::TlsOnly)
            .unwrap();
        let config = libp2p::swarm::Config::with_executor(|task| sinew_smol::Smol.spawn(task))
            .with_idle_connection_timeout(Duration::from_secs(30));
        let peer = key.public().to_peer_id();
        return Swarm::new(transport, libp2p_stream::Behaviour::new(), peer, config);
    }
    let ours = side == Side::Sinew;
    let builder = libp2p::SwarmBuilder::with_new_identity().with_tokio();
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(30));
    if ours {
        builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                |k: &Keypair| TlsConfig::new(k),
                YamuxConfig::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(idle)
            .build()
    } else {
        builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                libp2p::tls::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(idle)
            .build()
    }
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..BYTES)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `dialer` opens a stream to `listener`, sends `BYTES`, and the listener answers with
/// `BYTES` of its own: both muxers' send and receive paths, frames larger than 16 KiB.
async fn exchange(listener: Side, dialer: Side) {
    let mut listener = swarm(listener);
    let mut dialer = swarm(dialer);
    listener
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = listener.select_next_some().await {
            break address;
        }
    };
    let listener_id: PeerId = *listener.local_peer_id();
    let mut incoming = listener.behaviour().new_control().accept(PROTO).unwrap();
    let mut control = dialer.behaviour().new_control();
    dialer.dial(addr.with_p2p(listener_id).unwrap()).unwrap();
    let l = tokio::spawn(async move {
        loop {
            listener.select_next_some().await;
        }
    });
    let d = tokio::spawn(async move {
        loop {
            dialer.select_next_some().await;
        }
    });
    let answer = tokio::spawn(async move {
        let (_, mut s) = incoming.next().await.unwrap();
        let mut got = vec![0u8; BYTES];
        s.read_exact(&mut got).await.unwrap();
        assert!(got == pattern(1), "the listener received other bytes");
        s.write_all(&pattern(2)).await.unwrap();
        s.close().await.unwrap();
    });
    let mut s = tokio::time::timeout(
        Duration::from_secs(20),
        control.open_stream(listener_id, PROTO),
    )
    .await
    .expect("stream opened in time")
    .unwrap();
    s.write_all(&pattern(1)).await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut back))
        .await
        .expect("answer in time")
        .unwrap();
    assert_eq!(back.len(), BYTES);
    assert!(back == pattern(2), "the dialer received other bytes");
    answer.await.unwrap();
    l.abort();
    d.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinew_dials_stock_libp2p() {
    exchange(Side::Stock, Side::Sinew).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_libp2p_dials_sinew() {
    exchange(Side::Sinew, Side::Stock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinew_dials_sinew() {
    exchange(Side::Sinew, Side::Sinew).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinew_on_smol_dials_stock_libp2p() {
    exchange(Side::Stock, Side::SinewOnSmol).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_libp2p_dials_sinew_on_smol() {
    exchange(Side::SinewOnSmol, Side::Stock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinew_on_smol_dials_sinew_on_tokio() {
    exchange(Side::Sinew, Side::SinewOnSmol).await;
}

/// A stock libp2p TLS client (ChaCha20 listed first) against our server: the server's
/// preference wins, and the peer ids both sides learn are right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_picks_aes_gcm_against_a_stock_client() {
    let server_key = Keypair::generate_ed25519();
    let client_key = Keypair::generate_ed25519();
    let ours = TlsConfig::new(&server_key).unwrap();
    let expected = ours.preferred_cipher();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let socket = tcp::tokio::TcpStream(socket);
        let (peer, stream) = ours.upgrade_inbound(socket, "/tls/1.0.0").await.unwrap();
        let suite = stream
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .expect("a finished handshake has a suite");
        (peer, format!("{:?}", suite.suite()))
    });
    let stock = libp2p_tls::make_client_config(&client_key, None).unwrap();
    let socket = tcp::tokio::TcpStream(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    let name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
    let client = futures_rustls::TlsConnector::from(Arc::new(stock))
        .connect(name, socket)
        .await
        .expect("a stock libp2p client completes the handshake");
    let server_cert = &client.get_ref().1.peer_certificates().unwrap()[0];
    let server_peer = libp2p_tls::certificate::parse(server_cert)
        .unwrap()
        .peer_id();
    assert_eq!(server_peer, server_key.public().to_peer_id());
    let (client_peer, suite) = server.await.unwrap();
    assert_eq!(client_peer, client_key.public().to_peer_id());
    assert_eq!(suite, expected);
}

/// A client without a certificate is refused: TLS here is mutual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let ours = TlsConfig::new(&Keypair::generate_ed25519()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        ours.upgrade_inbound(tcp::tokio::TcpStream(socket), "/tls/1.0.0")
            .await
            .map(|(peer, _)| peer)
    });
    // A client that trusts anything and presents no certificate.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut anonymous = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"libp2p".to_vec()];
    let socket = tcp::tokio::TcpStream(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    let name = rustls::pki_types::ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
    let client = futures_rustls::TlsConnector::from(Arc::new(anonymous))
        .connect(name, socket)
        .await;
    // TLS 1.3: the client may finish before it learns of the refusal; the server must not.
    let server = server.await.unwrap();
    assert!(server.is_err(), "the server accepted an anonymous client");
    drop(client);
}

#[derive(Debug)]
struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
