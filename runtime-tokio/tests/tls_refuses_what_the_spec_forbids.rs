//! Sinew's TLS upgrade (`shell::tls`) refuses, as server and as client, what the libp2p TLS
//! spec forbids: a certificate without the libp2p extension, an extension whose host-key
//! signature is not over the certificate's key, a chain of two certificates, and a peer
//! that speaks TLS 1.2 only. A certificate crafted the same way but signed right is
//! accepted (so the refusals come from the flaw, not the crafting). A dial naming another
//! peer id fails with the swarm's wrong-peer error, and two default Sinew nodes negotiate
//! TLS, not Noise (seen on the wire).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test reports failure by panicking

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::{tcp, PeerId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sinew_tokio::core::shell::tls::TlsConfig;
use sinew_tokio::Security;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The libp2p TLS extension's OID (the spec's 1.3.6.1.4.1.53594.1.1).
const LIBP2P_EXTENSION: [u64; 9] = [1, 3, 6, 1, 4, 1, 53594, 1, 1];

/// A certificate chain and the private key of its first certificate.
type Chain = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// One DER element (definite length; contents shorter than 64 KiB).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = vec![tag];
    match n {
        0..128 => out.push(n as u8),
        128..256 => out.extend([0x81, n as u8]),
        _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A self-signed certificate with the libp2p extension for `host`: the spec's
/// `SignedKey { publicKey, signature }`, where the signature is the host key's over
/// "libp2p-tls-handshake:" and the certificate's SubjectPublicKeyInfo, or (when not
/// `signed_right`) the host key's valid signature over another message.
fn libp2p_certificate(host: &Keypair, signed_right: bool) -> Chain {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut message = b"libp2p-tls-handshake:".to_vec();
    message.extend(key.public_key_der());
    if !signed_right {
        message.push(0);
    }
    let signature = host.sign(&message).unwrap();
    let mut signed_key = der(0x04, &host.public().encode_protobuf());
    signed_key.extend(der(0x04, &signature));
    let mut extension =
        rcgen::CustomExtension::from_oid_content(&LIBP2P_EXTENSION, der(0x30, &signed_key));
    extension.set_criticality(true);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.custom_extensions.push(extension);
    let cert = params.self_signed(&key).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// An ordinary self-signed certificate: no libp2p extension.
fn plain_certificate() -> Chain {
    let certified = rcgen::generate_simple_self_signed(vec!["peer.example".to_string()]).unwrap();
    (
        vec![certified.cert.der().clone()],
        PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into()),
    )
}

/// A valid libp2p certificate for `host` followed by a second certificate.
fn two_certificates(host: &Keypair) -> Chain {
    let (cert, key) = libp2p_tls::certificate::generate(host).unwrap();
    let (extra, _) = plain_certificate();
    (vec![cert, extra[0].clone()], key)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(tls12: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    if tls12 {
        &TLS12
    } else {
        &TLS13
    }
}

/// Presents a chain as it is. (rustls's own `with_client_auth_cert`/`with_single_cert`
/// parse the certificate and refuse the libp2p extension, which is marked critical.)
#[derive(Debug)]
struct Present(Arc<rustls::sign::CertifiedKey>);

impl Present {
    fn new((chain, key): Chain) -> Arc<Self> {
        let key = provider().key_provider.load_private_key(key).unwrap();
        Arc::new(Self(Arc::new(rustls::sign::CertifiedKey::new(chain, key))))
    }
}

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for Present {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A client that trusts any server and presents `chain`.
fn client_presenting(chain: Chain, tls12: bool) -> rustls::ClientConfig {
    let p = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(versions(tls12))
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything(p)))
        .with_client_cert_resolver(Present::new(chain));
    config.alpn_protocols = vec![b"libp2p".to_vec()];
    config
}

/// A server that asks for no client certificate and presents `chain`.
fn server_presenting(chain: Chain, tls12: bool) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(tls12))
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Present::new(chain));
    config.alpn_protocols = vec![b"libp2p".to_vec()];
    config
}

fn no_sni() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into())
}

/// Sinew as the server against `client`: the peer id Sinew's upgrade accepted, or its error.
async fn sinew_server_against(client: rustls::ClientConfig) -> Result<PeerId, String> {
    let ours = TlsConfig::new(&Keypair::generate_ed25519()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        ours.upgrade_inbound(tcp::tokio::TcpStream(socket), "/tls/1.0.0")
            .await
            .map(|(peer, _)| peer)
            .map_err(|e| e.to_string())
    });
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // TLS 1.3: the client may finish before it learns of a refusal; the server decides.
    let client = futures_rustls::TlsConnector::from(Arc::new(client))
        .connect(no_sni(), tcp::tokio::TcpStream(socket))
        .await;
    let result = server.await.unwrap();
    drop(client);
    result
}

/// Sinew as the client against `server`: the peer id Sinew's upgrade accepted, or its error.
async fn sinew_client_against(server: rustls::ServerConfig) -> Result<PeerId, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        futures_rustls::TlsAcceptor::from(Arc::new(server))
            .accept(tcp::tokio::TcpStream(socket))
            .await
    });
    let ours = TlsConfig::new(&Keypair::generate_ed25519()).unwrap();
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let result = ours
        .upgrade_outbound(tcp::tokio::TcpStream(socket), "/tls/1.0.0")
        .await
        .map(|(peer, _)| peer)
        .map_err(|e| e.to_string());
    let _ = server.await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_certificate_signed_right_is_accepted_both_ways() {
    let host = Keypair::generate_ed25519();
    let peer = host.public().to_peer_id();
    let got = sinew_server_against(client_presenting(libp2p_certificate(&host, true), false));
    assert_eq!(got.await, Ok(peer));
    let got = sinew_client_against(server_presenting(libp2p_certificate(&host, true), false));
    assert_eq!(got.await, Ok(peer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_the_libp2p_extension_is_refused_both_ways() {
    let err = sinew_server_against(client_presenting(plain_certificate(), false))
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake failed (inbound)"), "{err}");
    let err = sinew_client_against(server_presenting(plain_certificate(), false))
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake failed (outbound)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_signature_over_the_wrong_message_is_refused_both_ways() {
    let host = Keypair::generate_ed25519();
    let err = sinew_server_against(client_presenting(libp2p_certificate(&host, false), false))
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake failed (inbound)"), "{err}");
    let err = sinew_client_against(server_presenting(libp2p_certificate(&host, false), false))
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake failed (outbound)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_certificates_in_the_chain_are_refused_both_ways() {
    let host = Keypair::generate_ed25519();
    let err = sinew_server_against(client_presenting(two_certificates(&host), false))
        .await
        .unwrap_err();
    assert!(err.contains("exactly one certificate"), "{err}");
    let err = sinew_client_against(server_presenting(two_certificates(&host), false))
        .await
        .unwrap_err();
    assert!(err.contains("exactly one certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_2_only_peer_is_refused_both_ways() {
    // A valid libp2p certificate: only the protocol version is wrong.
    let host = Keypair::generate_ed25519();
    let chain = || {
        let (cert, key) = libp2p_tls::certificate::generate(&host).unwrap();
        (vec![cert], key)
    };
    let err = sinew_server_against(client_presenting(chain(), true))
        .await
        .unwrap_err();
    assert!(
        err.contains("TLS handshake failed (inbound): peer is incompatible"),
        "{err}"
    );
    let err = sinew_client_against(server_presenting(chain(), true))
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake failed (outbound)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_naming_another_peer_id_fails_and_leaves_no_connection() {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (a, _a_events, a_addr) = common::node(tcp, Security::TlsOnly).await;
    let (b, _b_events, _) = common::node(tcp, Security::TlsOnly).await;
    let (c, _c_events, _) = common::node(tcp, Security::TlsOnly).await;
    // a's address, b's peer id.
    let mut wrong = a_addr.clone();
    wrong.pop();
    let wrong = wrong.with_p2p(b.local_peer_id()).unwrap();
    let err = c.dial(wrong).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("Unexpected peer ID {}", a.local_peer_id())),
        "{err}"
    );
    let peers = c.network_status().await.unwrap().connected_peers;
    assert!(!peers.contains(&a.local_peer_id()), "{peers:?}");
    assert!(!peers.contains(&b.local_peer_id()), "{peers:?}");
    // The right id at the same address works.
    assert_eq!(c.dial(a_addr).await.unwrap(), a.local_peer_id());
}

/// The multistream-select message accepting `protocol`: its length (varint), the name and a
/// newline.
fn multistream_message(protocol: &str) -> Vec<u8> {
    let mut m = vec![(protocol.len() + 1) as u8];
    m.extend_from_slice(protocol.as_bytes());
    m.push(b'\n');
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_default_sinew_nodes_negotiate_tls_not_noise() {
    let tcp = "/ip4/127.0.0.1/tcp/0";
    let (a, _a_events, a_addr) = common::node(tcp, Security::default()).await;
    let (b, _b_events, _) = common::node(tcp, Security::default()).await;
    let a_port = a_addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    // A TCP relay between b and a that keeps the first bytes a sends back: the
    // listener's multistream-select answers, in the clear before the handshake.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (from_b, _) = relay.accept().await.unwrap();
        let to_a = tokio::net::TcpStream::connect(("127.0.0.1", a_port))
            .await
            .unwrap();
        let (mut b_read, mut b_write) = from_b.into_split();
        let (mut a_read, mut a_write) = to_a.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut b_read, &mut a_write).await;
        });
        let mut seen = Vec::new();
        let mut seen_tx = Some(seen_tx);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match a_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if seen.len() < 256 {
                seen.extend_from_slice(&buf[..n.min(256 - seen.len())]);
                if seen.len() >= 64 {
                    if let Some(tx) = seen_tx.take() {
                        let _ = tx.send(seen.clone());
                    }
                }
            }
            if b_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        if let Some(tx) = seen_tx.take() {
            let _ = tx.send(seen);
        }
    });
    let through_relay = format!("/ip4/127.0.0.1/tcp/{relay_port}/p2p/{}", a.local_peer_id());
    assert_eq!(
        b.dial(through_relay.parse().unwrap()).await.unwrap(),
        a.local_peer_id()
    );
    let seen = seen_rx.await.unwrap();
    let accepted = |protocol: &str| {
        let m = multistream_message(protocol);
        seen.windows(m.len()).any(|w| w == m)
    };
    assert!(
        accepted("/tls/1.0.0"),
        "a did not accept TLS: {:?}",
        String::from_utf8_lossy(&seen)
    );
    assert!(!accepted("/noise"), "a accepted Noise");
}

#[derive(Debug)]
struct TrustAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
