//! TCP over async-io, as a libp2p [`Transport`]: libp2p 0.57 has no smol TCP transport
//! (and keeps the provider traits of its own private), so Sinew brings one.
//!
//! - **Listen** on `/ip4|ip6/<addr>/tcp/<port>`: the socket gets `SO_REUSEADDR` and
//!   `SO_REUSEPORT` (so dials can leave from the listening port, which hole punching
//!   needs); a listener on an unspecified address reports one address per interface and
//!   follows interfaces coming and going (if-watch).
//! - **Dial**: nodelay; with [`PortUse::Reuse`] the socket is bound to the port of a
//!   listener of the same family and scope (loopback or not), and dials again from a fresh
//!   port if that four-tuple is taken.
//! - Streams are [`Async<TcpStream>`](smol::Async): futures' `AsyncRead`/`AsyncWrite`.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::future::{BoxFuture, FutureExt, Ready};
use if_watch::IfEvent;
use libp2p::core::multiaddr::{Multiaddr, Protocol};
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::Transport;
use smol::Async;
use socket2::{Domain, Socket, Type};

/// Connections waiting to be accepted by the kernel, per listener.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A TCP stream on async-io.
pub type Stream = Async<TcpStream>;

/// TCP over async-io. See the module docs.
#[derive(Default)]
pub struct Tcp {
    listeners: Vec<Listener>,
    events: VecDeque<TransportEvent<Ready<io::Result<Stream>>, io::Error>>,
    /// To wake `poll` after `listen_on` or `remove_listener`.
    waker: Option<Waker>,
}

impl std::fmt::Debug for Tcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<SocketAddr> = self.listeners.iter().map(|l| l.local).collect();
        f.debug_struct("Tcp").field("listening", &addrs).finish()
    }
}

struct Listener {
    id: ListenerId,
    socket: Async<TcpListener>,
    local: SocketAddr,
    /// Interfaces, when bound to an unspecified address.
    interfaces: Option<if_watch::smol::IfWatcher>,
    closing: bool,
}

impl Tcp {
    /// A transport with no listener yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Where a dial to `remote` should leave from to reuse a listening port: the first
    /// listener of the same family whose address has the same scope (an unspecified one
    /// serves both).
    fn reuse_addr(&self, remote: &SocketAddr) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .filter(|l| !l.closing && l.local.is_ipv4() == remote.is_ipv4())
            .find(|l| {
                let ip = l.local.ip();
                ip.is_unspecified() || ip.is_loopback() == remote.ip().is_loopback()
            })
            .map(|l| l.local)
    }
}

/// `/ip4|ip6/<addr>/tcp/<port>` (a trailing `/p2p/…` is allowed) as a socket address.
pub fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut iter = addr.iter();
    let ip: IpAddr = match iter.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Protocol::Tcp(port) = iter.next()? else {
        return None;
    };
    match iter.next() {
        None | Some(Protocol::P2p(_)) if iter.next().is_none() => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// A socket address as `/ip4|ip6/<addr>/tcp/<port>`.
pub fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Tcp(addr.port()))
}

fn new_socket(addr: &SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn reusable(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)
}

/// Starts connecting `socket` to `remote` without blocking.
fn connect(socket: &Socket, remote: SocketAddr) -> io::Result<()> {
    match socket.connect(&remote.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

impl Transport for Tcp {
    type Output = Stream;
    type Error = io::Error;
    type ListenerUpgrade = Ready<io::Result<Stream>>;
    type Dial = BoxFuture<'static, io::Result<Stream>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let Some(at) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let listen = || -> io::Result<(TcpListener, SocketAddr)> {
            let socket = new_socket(&at)?;
            reusable(&socket)?;
            socket.bind(&at.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            let listener: TcpListener = socket.into();
            let local = listener.local_addr()?;
            Ok((listener, local))
        };
        let (listener, local) = listen().map_err(TransportError::Other)?;
        let interfaces = if local.ip().is_unspecified() {
            Some(if_watch::smol::IfWatcher::new().map_err(TransportError::Other)?)
        } else {
            self.events.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr: multiaddr(local),
            });
            None
        };
        let socket = Async::new(listener).map_err(TransportError::Other)?;
        self.listeners.push(Listener {
            id,
            socket,
            local,
            interfaces,
            closing: false,
        });
        self.wake();
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let Some(listener) = self.listeners.iter_mut().find(|l| l.id == id) else {
            return false;
        };
        listener.closing = true;
        self.wake();
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let remote = match socket_addr(&addr) {
            Some(remote) if remote.port() != 0 && !remote.ip().is_unspecified() => remote,
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        let reuse = match opts.port_use {
            PortUse::Reuse => self.reuse_addr(&remote),
            PortUse::New => None,
        };
        Ok(async move {
            let fresh = || -> io::Result<Socket> {
                let socket = new_socket(&remote)?;
                connect(&socket, remote)?;
                Ok(socket)
            };
            let socket = match reuse {
                Some(local) => {
                    let bound = new_socket(&remote).and_then(|socket| {
                        reusable(&socket)?;
                        socket.bind(&local.into())?;
                        connect(&socket, remote)?;
                        Ok(socket)
                    });
                    match bound {
                        Ok(socket) => socket,
                        // The four-tuple is taken (or the port is gone): a fresh port.
                        Err(_) => fresh()?,
                    }
                }
                None => fresh()?,
            };
            socket.set_tcp_nodelay(true)?;
            let stream = Async::new(TcpStream::from(socket))?;
            stream.writable().await?;
            if let Some(err) = stream.get_ref().take_error()? {
                return Err(err);
            }
            Ok(stream)
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        let mut i = 0;
        while i < self.listeners.len() {
            if self.listeners[i].closing {
                let listener = self.listeners.remove(i);
                return Poll::Ready(TransportEvent::ListenerClosed {
                    listener_id: listener.id,
                    reason: Ok(()),
                });
            }
            if let Some(event) = poll_listener(&mut self.listeners[i], cx) {
                if let TransportEvent::ListenerClosed { .. } = &event {
                    self.listeners.remove(i);
                }
                return Poll::Ready(event);
            }
            i += 1;
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The next event of one listener: an interface change, an accepted connection, an error.
fn poll_listener(
    listener: &mut Listener,
    cx: &mut Context<'_>,
) -> Option<TransportEvent<Ready<io::Result<Stream>>, io::Error>> {
    let id = listener.id;
    let port = listener.local.port();
    let v4 = listener.local.is_ipv4();
    if let Some(interfaces) = &mut listener.interfaces {
        while let Poll::Ready(event) = interfaces.poll_if_event(cx) {
            match event {
                Ok(IfEvent::Up(net)) if net.addr().is_ipv4() == v4 => {
                    let listen_addr = multiaddr(SocketAddr::new(net.addr(), port));
                    return Some(TransportEvent::NewAddress {
                        listener_id: id,
                        listen_addr,
                    });
                }
                Ok(IfEvent::Down(net)) if net.addr().is_ipv4() == v4 => {
                    let listen_addr = multiaddr(SocketAddr::new(net.addr(), port));
                    return Some(TransportEvent::AddressExpired {
                        listener_id: id,
                        listen_addr,
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    return Some(TransportEvent::ListenerError {
                        listener_id: id,
                        error,
                    })
                }
            }
        }
    }
    loop {
        match listener.socket.poll_readable(cx) {
            Poll::Pending => return None,
            Poll::Ready(Err(error)) => {
                return Some(TransportEvent::ListenerClosed {
                    listener_id: id,
                    reason: Err(error),
                })
            }
            Poll::Ready(Ok(())) => {}
        }
        match listener.socket.get_ref().accept() {
            Ok((stream, remote)) => {
                let accepted = (|| {
                    stream.set_nodelay(true)?;
                    let local = stream.local_addr()?;
                    Ok::<_, io::Error>((Async::new(stream)?, local))
                })();
                return Some(match accepted {
                    Ok((stream, local)) => TransportEvent::Incoming {
                        listener_id: id,
                        upgrade: futures::future::ready(Ok(stream)),
                        local_addr: multiaddr(local),
                        send_back_addr: multiaddr(remote),
                    },
                    Err(error) => TransportEvent::ListenerError {
                        listener_id: id,
                        error,
                    },
                });
            }
            // Readiness was stale: ask again (which registers the waker).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                return Some(TransportEvent::ListenerError {
                    listener_id: id,
                    error,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::core::transport::ListenerId;
    use libp2p::core::Endpoint;

    use super::*;

    fn dial_opts(port_use: PortUse) -> DialOpts {
        DialOpts {
            role: Endpoint::Dialer,
            port_use,
        }
    }

    /// The listener's first address and a way to poll it.
    async fn listen(tcp: &mut Tcp, addr: &str) -> Multiaddr {
        tcp.listen_on(ListenerId::next(), addr.parse().unwrap())
            .unwrap();
        loop {
            let event = futures::future::poll_fn(|cx| Pin::new(&mut *tcp).poll(cx)).await;
            if let TransportEvent::NewAddress { listen_addr, .. } = event {
                return listen_addr;
            }
        }
    }

    #[test]
    fn bytes_cross_a_connection_both_ways() {
        smol::block_on(async {
            let mut server = Tcp::new();
            let addr = listen(&mut server, "/ip4/127.0.0.1/tcp/0").await;
            let mut client = Tcp::new();
            let dial = client.dial(addr, dial_opts(PortUse::New)).unwrap();
            let accept = async {
                loop {
                    let event = futures::future::poll_fn(|cx| Pin::new(&mut server).poll(cx)).await;
                    if let TransportEvent::Incoming { upgrade, .. } = event {
                        return upgrade.await.unwrap();
                    }
                }
            };
            let (mut out, mut inn) = futures::join!(async { dial.await.unwrap() }, accept);
            out.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            inn.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            inn.write_all(b"pong").await.unwrap();
            out.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
            assert!(out.get_ref().nodelay().unwrap());
        });
    }

    #[test]
    fn a_dial_with_port_reuse_leaves_from_the_listening_port() {
        smol::block_on(async {
            let mut server = Tcp::new();
            let server_addr = listen(&mut server, "/ip4/127.0.0.1/tcp/0").await;
            let mut client = Tcp::new();
            let client_addr = listen(&mut client, "/ip4/127.0.0.1/tcp/0").await;
            let stream = client
                .dial(server_addr, dial_opts(PortUse::Reuse))
                .unwrap()
                .await
                .unwrap();
            let local = stream.get_ref().local_addr().unwrap();
            assert_eq!(Some(local), socket_addr(&client_addr));
            // Without reuse, a fresh port.
            let mut client2 = Tcp::new();
            let _ = listen(&mut client2, "/ip4/127.0.0.1/tcp/0").await;
            let addr = multiaddr(server.listeners[0].local);
            let fresh = client2
                .dial(addr, dial_opts(PortUse::New))
                .unwrap()
                .await
                .unwrap();
            assert_ne!(
                fresh.get_ref().local_addr().unwrap().port(),
                client2.listeners[0].local.port()
            );
        });
    }

    #[test]
    fn a_listener_on_every_interface_reports_loopback_and_closes_when_removed() {
        smol::block_on(async {
            let mut tcp = Tcp::new();
            let id = ListenerId::next();
            tcp.listen_on(id, "/ip4/0.0.0.0/tcp/0".parse().unwrap())
                .unwrap();
            let mut seen = Vec::new();
            while !seen
                .iter()
                .any(|a: &Multiaddr| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
            {
                let event = futures::future::poll_fn(|cx| Pin::new(&mut tcp).poll(cx)).await;
                if let TransportEvent::NewAddress { listen_addr, .. } = event {
                    seen.push(listen_addr);
                }
            }
            assert!(tcp.remove_listener(id));
            loop {
                let event = futures::future::poll_fn(|cx| Pin::new(&mut tcp).poll(cx)).await;
                if let TransportEvent::ListenerClosed {
                    listener_id,
                    reason,
                } = event
                {
                    assert_eq!(listener_id, id);
                    assert!(reason.is_ok());
                    break;
                }
            }
            assert!(!tcp.remove_listener(id));
        });
    }

    #[test]
    fn addresses_other_than_ip_tcp_are_refused_not_misread() {
        let mut tcp = Tcp::new();
        for bad in [
            "/ip4/127.0.0.1/udp/1",
            "/dns4/localhost/tcp/1",
            "/ip4/127.0.0.1/tcp/1/ws",
        ] {
            let addr: Multiaddr = bad.parse().unwrap();
            assert!(matches!(
                tcp.dial(addr.clone(), dial_opts(PortUse::New)),
                Err(TransportError::MultiaddrNotSupported(_))
            ));
        }
        let unspecified: Multiaddr = "/ip4/0.0.0.0/tcp/1".parse().unwrap();
        assert!(tcp.dial(unspecified, dial_opts(PortUse::New)).is_err());
    }
}
