//! [`TlsConfig`]: libp2p's TLS 1.3 handshake (`/tls/1.0.0`, the libp2p TLS spec) with the
//! bulk cipher chosen for speed.
//!
//! `libp2p-tls` hard-codes ChaCha20-Poly1305 as its first choice. On a CPU with AES
//! instructions AES-GCM costs about half as much per byte (measured on a blob transfer),
//! and the cipher runs over every byte on both ends. This upgrade speaks the same protocol — same
//! certificate with the libp2p extension, same ALPN, TLS 1.3 only, mutual authentication —
//! so it interoperates with every libp2p TLS peer, but:
//!
//! - it prefers AES-128-GCM when the CPU has AES instructions (ChaCha20 first otherwise),
//!   and as a server it picks by its own preference, so a stock libp2p client that lists
//!   ChaCha20 first still gets AES-GCM from us;
//! - it reads the socket through a 64 KiB buffer ([`READ_BUFFER`]): rustls asks its
//!   transport for 4 KiB at a time, which costs four system calls per 16 KiB record.
//!
//! All cryptography is ring's (see [`TlsConfig::new`]'s notes on the key exchange).
//! The certificate is generated and parsed by `libp2p_tls::certificate`; the verifiers are
//! ours: exactly one certificate, whose libp2p extension proves the host key, and
//! handshake signatures checked against it.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;
use libp2p::PeerId;
use libp2p_tls::certificate;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring::cipher_suite;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Bytes read from the socket at once beneath TLS.
pub const READ_BUFFER: usize = 64 * 1024;

/// The ALPN protocol id the libp2p TLS spec requires.
const ALPN: &[u8] = b"libp2p";

/// Why the TLS configuration could not be built or a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate for our key could not be generated.
    #[error("cannot generate the TLS certificate: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The handshake failed (as a server when `inbound`).
    #[error("TLS handshake failed ({}): {source}", if *.inbound { "inbound" } else { "outbound" })]
    Handshake {
        /// Whether we were the server.
        inbound: bool,
        /// What went wrong.
        source: io::Error,
    },
    /// The peer's certificate is not a valid libp2p certificate.
    #[error("the peer's certificate is invalid: {0}")]
    BadCertificate(String),
}

/// The TLS security upgrade. Cheap to clone (the rustls configurations are shared).
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cipher", &preferred_suite_name())
            .finish()
    }
}

/// Whether this CPU has AES instructions (then AES-GCM beats ChaCha20 by a wide margin).
fn has_aes_instructions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn preferred_suite_name() -> &'static str {
    if has_aes_instructions() {
        "TLS13_AES_128_GCM_SHA256"
    } else {
        "TLS13_CHACHA20_POLY1305_SHA256"
    }
}

/// ring for everything: on x86-64 ring has AES-GCM with 256-bit VAES/VPCLMULQDQ (about
/// twice aws-lc's AES-NI code there), and its random numbers come from the OS. aws-lc-rs
/// (libp2p-tls's choice) seeds its generator from CPU jitter on first use — about 60 ms
/// of CPU inside the first handshake of a process, and it aborts the process if that
/// source fails its health tests. The cost: the key exchange is X25519 (as with Noise),
/// not the post-quantum hybrid X25519MLKEM768; stock peers agree on X25519 with us.
/// The suites are in our order of preference.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = if has_aes_instructions() {
        vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ]
    } else {
        vec![
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ]
    };
    Arc::new(provider)
}

impl TlsConfig {
    /// A configuration presenting a fresh certificate for `keypair`.
    ///
    /// Everything is ring's: AES-GCM (VAES/AVX2 where the CPU has it), X25519 key
    /// exchange, random numbers from the OS. aws-lc-rs, which libp2p-tls uses, would add
    /// the post-quantum X25519MLKEM768 exchange but seeds its generator from CPU jitter:
    /// ~60 ms of CPU in the first handshake of a process, and an abort if that source
    /// fails its health tests.
    pub fn new(keypair: &Keypair) -> Result<Self, TlsError> {
        let (cert, key) =
            certificate::generate(keypair).map_err(|e| TlsError::Certificate(e.to_string()))?;
        let provider = provider();
        let signing_key = provider.key_provider.load_private_key(key)?;
        let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signing_key));
        let resolver = Arc::new(OwnCertificate(certified));
        let verifier = Arc::new(Libp2pVerifier {
            schemes: provider
                .signature_verification_algorithms
                .supported_schemes(),
        });

        let mut client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)
            .with_client_cert_resolver(Arc::clone(&resolver) as _);
        client.alpn_protocols = vec![ALPN.to_vec()];

        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver);
        server.alpn_protocols = vec![ALPN.to_vec()];
        // Our preference, not the client's: stock libp2p clients list ChaCha20 first.
        server.ignore_client_order = true;

        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The cipher suite two Sinew nodes on this CPU use.
    pub fn preferred_cipher(&self) -> &'static str {
        preferred_suite_name()
    }
}

/// A TLS stream as this upgrade produces it.
pub type TlsStream<C> = futures_rustls::TlsStream<ReadBuffered<C>>;

impl UpgradeInfo for TlsConfig {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/tls/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for TlsConfig
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let stream = futures_rustls::TlsAcceptor::from(self.server)
                .accept(ReadBuffered::new(socket))
                .await
                .map_err(|source| TlsError::Handshake {
                    inbound: true,
                    source,
                })?;
            let peer = peer_of(stream.get_ref().1.peer_certificates())?;
            Ok((peer, stream.into()))
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for TlsConfig
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The spec: no server name indication. An unspecified IP address disables SNI.
            let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
            let stream = futures_rustls::TlsConnector::from(self.client)
                .connect(name, ReadBuffered::new(socket))
                .await
                .map_err(|source| TlsError::Handshake {
                    inbound: false,
                    source,
                })?;
            let peer = peer_of(stream.get_ref().1.peer_certificates())?;
            Ok((peer, stream.into()))
        }
        .boxed()
    }
}

/// The peer id proven by the (already verified) certificate chain of a handshake.
fn peer_of(chain: Option<&[CertificateDer<'static>]>) -> Result<PeerId, TlsError> {
    match chain {
        Some([cert]) => certificate::parse(cert)
            .map(|c| c.peer_id())
            .map_err(|e| TlsError::BadCertificate(e.to_string())),
        _ => Err(TlsError::BadCertificate(
            "expected exactly one certificate".into(),
        )),
    }
}

/// Presents our one certificate, as client and as server.
#[derive(Debug)]
struct OwnCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OwnCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for OwnCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Verifies the peer's certificate the libp2p way: one self-signed certificate whose
/// extension carries the host key and its signature over the certificate key; no CA.
#[derive(Debug)]
struct Libp2pVerifier {
    schemes: Vec<SignatureScheme>,
}

impl Libp2pVerifier {
    fn check_chain(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "libp2p TLS: exactly one certificate expected".into(),
            ));
        }
        certificate::parse(end_entity)
            .map(|_| ())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }

    fn check_signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let cert = certificate::parse(cert).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        cert.verify_signature(dss.scheme, message, dss.signature())
            .map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
            })?;
        Ok(HandshakeSignatureValid::assertion())
    }

    /// The TLS 1.2 hooks' answer. Our configurations allow TLS 1.3 alone, so rustls never
    /// calls them; should it, the error says what the spec requires.
    fn tls12() -> rustls::Error {
        rustls::Error::General("libp2p TLS requires TLS 1.3; TLS 1.2 is refused".into())
    }
}

impl ServerCertVerifier for Libp2pVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Self::check_chain(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(Self::tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

impl ClientCertVerifier for Libp2pVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::check_chain(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(Self::tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// A transport read through a [`READ_BUFFER`]-byte buffer; writes pass straight through.
///
/// Reads at least as large as the buffer bypass it.
#[derive(Debug)]
pub struct ReadBuffered<C> {
    inner: C,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<C> ReadBuffered<C> {
    fn new(inner: C) -> Self {
        Self {
            inner,
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for ReadBuffered<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.start == this.end {
            if out.len() >= this.buf.len() {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            let n = futures::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut this.buf))?;
            this.start = 0;
            this.end = n;
        }
        let n = out.len().min(this.end - this.start);
        out[..n].copy_from_slice(&this.buf[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(n))
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for ReadBuffered<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::AsyncReadExt;

    use super::*;

    /// A reader over `data` that records the size of every read asked of it.
    struct Counting {
        data: Vec<u8>,
        at: usize,
        asks: Vec<usize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.asks.push(out.len());
            let n = out.len().min(this.data.len() - this.at);
            out[..n].copy_from_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn the_tls_1_2_hooks_say_tls_1_3_is_required() {
        let text = Libp2pVerifier::tls12().to_string();
        assert!(text.contains("requires TLS 1.3"), "{text}");
        assert!(!text.contains("QUIC"), "{text}");
    }

    #[test]
    fn small_reads_come_from_the_buffer_and_large_ones_bypass_it() {
        let data: Vec<u8> = (0..(1usize << 20) + 77).map(|i| (i * 7) as u8).collect();
        let inner = Counting {
            data: data.clone(),
            at: 0,
            asks: Vec::new(),
        };
        let mut reader = ReadBuffered::new(inner);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        // Half the stream in 4 KiB reads (what rustls asks for)...
        while got.len() < data.len() / 2 {
            let n = block_on(reader.read(&mut small)).unwrap();
            got.extend_from_slice(&small[..n]);
        }
        let asks_so_far = reader.inner.asks.len();
        assert!(
            asks_so_far <= data.len() / 2 / READ_BUFFER + 1,
            "{asks_so_far} socket reads for {} bytes",
            got.len()
        );
        assert!(reader.inner.asks.iter().all(|&a| a == READ_BUFFER));
        // ...then the rest in reads of the buffer's size: once the buffer is drained they
        // go to the socket directly.
        let mut large = vec![0u8; READ_BUFFER];
        loop {
            let n = block_on(reader.read(&mut large)).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&large[..n]);
        }
        assert_eq!(got, data);
        assert!(reader.inner.asks[asks_so_far..]
            .iter()
            .all(|&a| a == READ_BUFFER));
        // The end stays the end.
        assert_eq!(block_on(reader.read(&mut small)).unwrap(), 0);
    }
}
