//! The two receive loops: TCP (one message per connection, read to EOF) and UDP (one message
//! per datagram). Neither ever writes a byte back: the plugin reads no reply.
//!
//! Both loops take a permit before each `accept` or `recv_from`, so at most `max_connections`
//! messages are in flight per socket. Past that, TCP clients wait in the kernel's accept queue
//! and datagrams in the socket buffer. When stopped, a loop closes its socket first and then
//! waits for the messages in flight ([`settle`]).
//!
//! A TCP connection is its own task. It checks the peer, then reads at most
//! `max_body_bytes + 1` bytes (one more than allowed, to tell "exactly the limit" from "too
//! large") under one deadline for the whole message. It hands the bytes to the [`Handler`] and
//! then closes. A UDP datagram is admitted in the receive loop itself, in arrival order, then
//! handled in its own task.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::{bind_error, settle, Handler, Limits, Stop, Transport, UDP_BUFFER_BYTES};

/// How long to pause after a failed `accept` or `recv_from` (out of file descriptors, say),
/// so the loop neither spins nor gives up.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a TCP listener on `addr` (`ip:port`, validated by `config::load`).
pub(super) async fn bind_tcp(name: &str, addr: &str) -> io::Result<(TcpListener, SocketAddr)> {
    let named = |e| bind_error(e, name, Transport::Tcp, addr);
    let listener = TcpListener::bind(parse(addr).map_err(named)?).await.map_err(named)?;
    let local = listener.local_addr().map_err(named)?;
    Ok((listener, local))
}

/// Binds a UDP socket on `addr` (`ip:port`, validated by `config::load`).
pub(super) async fn bind_udp(name: &str, addr: &str) -> io::Result<(UdpSocket, SocketAddr)> {
    let named = |e| bind_error(e, name, Transport::Udp, addr);
    let socket = UdpSocket::bind(parse(addr).map_err(named)?).await.map_err(named)?;
    let local = socket.local_addr().map_err(named)?;
    Ok((socket, local))
}

/// An `ip:port` literal; no name lookups.
fn parse(addr: &str) -> io::Result<SocketAddr> {
    addr.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))
}

/// Accepts connections until stopped.
pub(super) async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, limits: Limits, mut stop: Stop) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(source = %handler.source, transport = %Transport::Tcp,
                        "accept failed: {e}");
                    drop(permit);
                    tokio::select! {
                        _ = stop.wait() => break,
                        _ = tokio::time::sleep(ERROR_BACKOFF) => continue,
                    }
                }
            },
        };
        let handler = handler.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, peer, &handler, &limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::debug!(source = %handler.source, transport = %Transport::Tcp, "listener closed");
    settle(&permits, &limits, &handler).await;
}

/// One connection: admit, read to EOF within the deadline and the size cap, handle, close.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &Handler,
    limits: &Limits,
    mut stop: Stop,
) {
    if !handler.admit(peer) {
        return;
    }
    let (source, transport) = (&handler.source, Transport::Tcp);
    let cap = u64::try_from(handler.max_body_bytes).unwrap_or(u64::MAX).saturating_add(1);
    let mut body = Vec::new();
    let mut reader = (&mut stream).take(cap);
    let read = tokio::select! {
        read = tokio::time::timeout(limits.read_timeout, reader.read_to_end(&mut body)) => read,
        _ = async { stop.wait().await; tokio::time::sleep(limits.drain).await } => {
            tracing::warn!(%source, %transport, %peer,
                "dropped: the message was still incomplete at shutdown");
            return;
        }
    };
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(%source, %transport, %peer,
                "dropped: read failed after {} bytes: {e}", body.len());
            return;
        }
        Err(_) => {
            tracing::warn!(%source, %transport, %peer,
                "dropped: no EOF within {}s (read timeout), {} bytes read",
                limits.read_timeout.as_secs_f32(), body.len());
            return;
        }
    }
    handler.handle(peer, &body).await;
    // The stream closes here, once the message is handled (the plugin has long since closed
    // its side and reads nothing).
}

/// Receives datagrams until stopped.
pub(super) async fn serve_udp(socket: UdpSocket, handler: Arc<Handler>, limits: Limits, mut stop: Stop) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut buf = vec![0u8; UDP_BUFFER_BYTES];
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (len, peer) = tokio::select! {
            biased;
            _ = stop.wait() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(got) => got,
                Err(e) => {
                    tracing::warn!(source = %handler.source, transport = %Transport::Udp,
                        "receive failed: {e}");
                    drop(permit);
                    tokio::select! {
                        _ = stop.wait() => break,
                        _ = tokio::time::sleep(ERROR_BACKOFF) => continue,
                    }
                }
            },
        };
        if !handler.admit(peer) {
            continue;
        }
        let body = buf[..len].to_vec();
        let handler = handler.clone();
        tokio::spawn(async move {
            handler.handle(peer, &body).await;
            drop(permit);
        });
    }
    drop(socket);
    tracing::debug!(source = %handler.source, transport = %Transport::Udp, "listener closed");
    settle(&permits, &limits, &handler).await;
}
