//! DNS names in dialed addresses, resolved on smol: `/dns/…`, `/dns4/…` and `/dns6/…`
//! followed by `/tcp/<port>` are resolved with the system resolver (`getaddrinfo`, on
//! smol's blocking pool) and each address found is dialed in turn until one connects.
//! libp2p-dns resolves only on tokio. `/dnsaddr` (TXT records) is not supported here:
//! such an address is refused as unsupported, clearly.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use libp2p::core::multiaddr::{Multiaddr, Protocol};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::Transport;

/// Addresses of one name that are dialed at most, in the order the resolver gave them.
pub const MAX_DIAL_ATTEMPTS: usize = 8;

/// A transport that resolves DNS names before `inner` dials. See the module docs.
#[derive(Debug)]
pub struct Dns<T> {
    inner: Arc<Mutex<T>>,
}

impl<T> Dns<T> {
    /// Resolves names for `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }
}

/// Which addresses a name may resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

/// The name, family, port and the rest of `addr` if it starts with a DNS name and a TCP
/// port.
fn split(addr: &Multiaddr) -> Option<(String, Family, u16, Vec<Protocol<'static>>)> {
    let mut iter = addr.iter();
    let (name, family) = match iter.next()? {
        Protocol::Dns(name) => (name.to_string(), Family::Any),
        Protocol::Dns4(name) => (name.to_string(), Family::V4),
        Protocol::Dns6(name) => (name.to_string(), Family::V6),
        _ => return None,
    };
    let Protocol::Tcp(port) = iter.next()? else {
        return None;
    };
    Some((name, family, port, iter.map(|p| p.acquire()).collect()))
}

fn lock<T>(inner: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Transport for Dns<T>
where
    T: Transport<Error = io::Error> + Send + Unpin + 'static,
    T::Dial: Send + 'static,
{
    type Output = T::Output;
    type Error = io::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = BoxFuture<'static, io::Result<T::Output>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        lock(&self.inner).listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        lock(&self.inner).remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some((name, family, port, rest)) = split(&addr) else {
            return lock(&self.inner).dial(addr, opts).map(|dial| dial.boxed());
        };
        let inner = self.inner.clone();
        Ok(async move {
            let found = smol::net::resolve((name.as_str(), port)).await?;
            let wanted = found.into_iter().filter(|a: &SocketAddr| match family {
                Family::Any => true,
                Family::V4 => a.is_ipv4(),
                Family::V6 => a.is_ipv6(),
            });
            let mut last = io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} has no address to dial"),
            );
            for address in wanted.take(MAX_DIAL_ATTEMPTS) {
                let mut dialed = Multiaddr::empty()
                    .with(address.ip().into())
                    .with(Protocol::Tcp(address.port()));
                for p in &rest {
                    dialed.push(p.clone());
                }
                let dial = match lock(&inner).dial(dialed, opts) {
                    Ok(dial) => dial,
                    Err(TransportError::Other(e)) => {
                        last = e;
                        continue;
                    }
                    Err(TransportError::MultiaddrNotSupported(a)) => {
                        last = io::Error::new(io::ErrorKind::Unsupported, format!("{a}"));
                        continue;
                    }
                };
                match dial.await {
                    Ok(output) => return Ok(output),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut *lock(&self.inner)).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use libp2p::core::transport::PortUse;
    use libp2p::core::Endpoint;

    use super::*;
    use crate::tcp::{socket_addr, Tcp};

    #[test]
    fn localhost_is_resolved_and_dialed() {
        smol::block_on(async {
            let mut server = Tcp::new();
            server
                .listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap())
                .unwrap();
            let listen = loop {
                let event = futures::future::poll_fn(|cx| Pin::new(&mut server).poll(cx)).await;
                if let TransportEvent::NewAddress { listen_addr, .. } = event {
                    break listen_addr;
                }
            };
            let port = socket_addr(&listen).unwrap().port();
            let mut dns = Dns::new(Tcp::new());
            let opts = DialOpts {
                role: Endpoint::Dialer,
                port_use: PortUse::New,
            };
            let addr: Multiaddr = format!("/dns4/localhost/tcp/{port}").parse().unwrap();
            let stream = dns.dial(addr, opts).unwrap().await.unwrap();
            assert_eq!(stream.get_ref().peer_addr().unwrap().port(), port);
        });
    }

    #[test]
    fn dnsaddr_is_refused_as_unsupported() {
        let mut dns = Dns::new(Tcp::new());
        let opts = DialOpts {
            role: Endpoint::Dialer,
            port_use: PortUse::New,
        };
        let addr: Multiaddr = "/dnsaddr/bootstrap.example".parse().unwrap();
        assert!(matches!(
            dns.dial(addr, opts),
            Err(TransportError::MultiaddrNotSupported(_))
        ));
    }
}
