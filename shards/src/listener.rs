//! Per-shard `SO_REUSEPORT` TCP listeners: every shard binds the same address and the kernel
//! spreads incoming connections across them.
//!
//! We build the socket ourselves instead of calling `glommio::net::TcpListener::bind`, which
//! panics on an unresolvable address and fixes the backlog at 1024; every failure here is an
//! `io::Error`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The smallest backlog we accept: short queues stall clients for seconds under bursts.
pub const MIN_BACKLOG: u32 = 1024;

/// Binds a listening socket on `addr` for the calling shard, with `SO_REUSEPORT` (and
/// `SO_REUSEADDR`), a backlog of at least [`MIN_BACKLOG`], and `TCP_NODELAY` set on the listener
/// so accepted sockets inherit it (Linux copies it; [`accept_nodelay`] sets it again anyway).
///
/// IPv6 sockets are `IPV6_V6ONLY`, so `[::]` and `0.0.0.0` can be bound side by side.
///
/// Port 0 gives every shard a *different* port: resolve it first with [`reserve_port`].
///
/// Must be called on a glommio executor thread (a shard); glommio panics otherwise, as its own
/// constructors do. Because `SO_REUSEPORT` lets a second process share the port silently,
/// servers must also hold the data directory's [`DirLock`](crate::DirLock).
pub fn bind_listener(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    Ok(adopt_listener(bind_std_listener(addr, backlog)?))
}

/// Binds the same kind of listening socket as [`bind_listener`], on any thread, as a std
/// listener to hand to a shard later ([`adopt_listener`]).
///
/// This is how a server started as root binds privileged ports for every shard *before* it
/// drops its privileges and starts the shards: the kernel queues connections on the socket
/// from now on, but nothing reads them until a shard accepts.
pub fn bind_std_listener(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = reuseport_socket(addr)?;
    socket.set_nodelay(true)?;
    let backlog = backlog.max(MIN_BACKLOG).min(i32::MAX as u32) as i32;
    socket.listen(backlog)?;
    Ok(std::net::TcpListener::from(socket))
}

/// Makes a listening std socket (from [`bind_std_listener`]) the calling shard's glommio
/// listener. Must be called on a glommio executor thread (a shard).
pub fn adopt_listener(listener: std::net::TcpListener) -> TcpListener {
    let fd = listener.into_raw_fd();
    // SAFETY: `into_raw_fd` gave us sole ownership of a bound, listening TCP socket, which we
    // hand over exactly once; glommio closes it when its listener drops.
    unsafe { TcpListener::from_raw_fd(fd) }
}

/// Accepts one connection and turns Nagle off on it (Nagle plus delayed ACK costs ~40 ms per
/// small write exchange). Failing to set `TCP_NODELAY` is logged, not fatal.
pub async fn accept_nodelay(listener: &TcpListener) -> io::Result<TcpStream> {
    let stream = listener.accept().await.map_err(io::Error::from)?;
    if let Err(e) = stream.set_nodelay(true) {
        log::warn!("cannot set TCP_NODELAY on an accepted socket: {e}");
    }
    Ok(stream)
}

/// A port held open (bound with `SO_REUSEPORT`, not listening) so that shards can all bind it.
///
/// It never receives connections: only listening sockets join the kernel's reuseport group.
/// Drop it once every shard has bound its listener.
#[derive(Debug)]
pub struct ReservedPort {
    _socket: Socket,
    addr: SocketAddr,
}

impl ReservedPort {
    /// The concrete address, port 0 resolved.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Resolves `addr` (typically port 0) to a concrete free port the shards can then bind.
/// Works off the shards, on any thread.
pub fn reserve_port(addr: SocketAddr) -> io::Result<ReservedPort> {
    let socket = reuseport_socket(addr)?;
    let addr = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
    Ok(ReservedPort {
        _socket: socket,
        addr,
    })
}

fn reuseport_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}
