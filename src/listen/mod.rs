//! Raw-socket listeners: Jenkins' Notification plugin (Tikal) over TCP and UDP.
//!
//! Besides HTTP, the plugin can send a build notification as raw bytes (ci-payloads.md §1):
//!
//! * **TCP** (`[sources.jenkins] tcp = "0.0.0.0:9000"`): one new connection per message. The
//!   plugin writes the serialized JSON or XML, flushes and closes; there is no length prefix, no
//!   newline and no reply, so a message is everything up to EOF. Each connection gets its own
//!   task, at most [`Limits::max_connections`] at once (further clients wait in the kernel's
//!   accept queue). A connection must reach EOF within [`Limits::read_timeout`] (30 s, the
//!   plugin's own default timeout) and within `server.max_body_bytes`, or it is dropped.
//!   Nothing is ever written back; the connection is closed once the message has been handled.
//! * **UDP** (`udp = "0.0.0.0:9001"`): one datagram per message, read into a 65535-byte buffer.
//!
//! A message takes the same path as an HTTP `POST /hooks/jenkins`: the bytes become an
//! [`Inbound`](crate::ingest::Inbound) whose content type is picked by the first meaningful
//! byte (`<` XML, otherwise JSON), then [`Gateway::receive`] parses, routes and stores it. The
//! sender's address is checked against the source's `allow_ips` first
//! ([`Gateway::check_peer`]), before anything is read. Refused, malformed, oversize or foreign
//! messages are logged (`tracing::warn!` with the peer and the reason, never the payload) and
//! dropped; the listener keeps serving. An empty TCP connection (a port probe or a load
//! balancer's health check) is ignored quietly.
//!
//! # Authentication
//!
//! A raw message carries no header and no query string, so it cannot carry the source's `token`
//! (or `secret`). Raw listeners rely on `allow_ips` and on network placement (bind to an
//! internal interface, firewall the port): they go through [`Gateway::receive_raw`], which checks
//! `allow_ips` but not the token that guards the source's HTTP endpoint.
//!
//! # Stopping
//!
//! The listeners stop when the `shutdown` channel given to [`spawn`] turns `true` (or its sender
//! is dropped), when [`Listeners::stop`] is called, or when the [`Listeners`] value is dropped.
//! The sockets are closed at once; connections still being read get [`Limits::drain`] to reach
//! EOF, and messages already read are stored before `stop` returns.
//!
//! # Files
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the API: [`spawn`], [`Listeners`], [`Limits`]; binding; the stop signals |
//! | `sockets.rs` | the TCP accept loop and connections, the UDP receive loop |
//! | `handler.rs` | one message: peer check, size, content type, `receive`, the logs |

mod handler;
mod sockets;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::gateway::Gateway;
use handler::Handler;

/// The largest UDP payload; one datagram is one message.
pub const UDP_BUFFER_BYTES: usize = 65535;

/// How long `stop` waits, after the drain, for messages already read to be stored.
const STORE_GRACE: Duration = Duration::from_secs(5);

/// Resource bounds of the raw listeners. `Default` is production.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A TCP connection must reach EOF within this time (the plugin's default timeout).
    pub read_timeout: Duration,
    /// Connections (TCP) or datagrams (UDP) handled at once, per listener.
    pub max_connections: usize,
    /// At shutdown, how long connections still being read may continue.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { read_timeout: Duration::from_secs(30), max_connections: 256, drain: Duration::from_secs(2) }
    }
}

/// A raw transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

/// One bound socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The `[sources.<name>]` the socket feeds.
    pub source: String,
    pub transport: Transport,
    /// The address actually bound (the real port when the config says port 0).
    pub local_addr: SocketAddr,
}

/// The running raw listeners. Dropping this value stops them too.
#[must_use = "dropping Listeners stops them"]
pub struct Listeners {
    bound: Vec<Bound>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Every bound socket, in config order (TCP before UDP within a source).
    pub fn bound(&self) -> &[Bound] {
        &self.bound
    }

    /// The bound address of one source's listener.
    pub fn local_addr(&self, source: &str, transport: Transport) -> Option<SocketAddr> {
        self.bound.iter().find(|b| b.source == source && b.transport == transport).map(|b| b.local_addr)
    }

    /// True when the config asked for no raw listener.
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty()
    }

    /// Closes every socket, lets connections being read finish within [`Limits::drain`], and
    /// returns once the messages already read are stored.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds every `tcp` and `udp` socket the sources configure and starts serving them with the
/// default [`Limits`]. A socket that cannot be bound fails the whole call, naming its address.
pub async fn spawn(
    config: &Config,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) -> Result<Listeners, io::Error> {
    spawn_with(config, gateway, shutdown, Limits::default()).await
}

/// [`spawn`] with explicit limits (tests shorten the timeouts).
pub async fn spawn_with(
    config: &Config,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
    limits: Limits,
) -> Result<Listeners, io::Error> {
    // Bind everything first: a failure then leaves nothing running.
    let mut tcp_sockets = Vec::new();
    let mut udp_sockets = Vec::new();
    let mut bound = Vec::new();
    for (name, src) in &config.sources {
        if src.tcp.is_none() && src.udp.is_none() {
            continue;
        }
        handler::warn_if_open(name, src);
        if let Some(addr) = &src.tcp {
            let (socket, local_addr) = sockets::bind_tcp(name, addr).await?;
            tcp_sockets.push((Handler::new(&gateway, name, Transport::Tcp, config), socket));
            bound.push(Bound { source: name.clone(), transport: Transport::Tcp, local_addr });
        }
        if let Some(addr) = &src.udp {
            let (socket, local_addr) = sockets::bind_udp(name, addr).await?;
            udp_sockets.push((Handler::new(&gateway, name, Transport::Udp, config), socket));
            bound.push(Bound { source: name.clone(), transport: Transport::Udp, local_addr });
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop { outer: shutdown, inner: stop_rx };
    let mut tasks = Vec::new();
    for (handler, socket) in tcp_sockets {
        tasks.push(tokio::spawn(sockets::serve_tcp(socket, handler, limits, stop.clone())));
    }
    for (handler, socket) in udp_sockets {
        tasks.push(tokio::spawn(sockets::serve_udp(socket, handler, limits, stop.clone())));
    }
    for b in &bound {
        tracing::info!(source = %b.source, transport = %b.transport, addr = %b.local_addr,
            "listening for raw messages");
    }
    Ok(Listeners { bound, stop: stop_tx, tasks })
}

/// The error for a socket that cannot be bound: it names the address and the config key.
fn bind_error(e: io::Error, name: &str, transport: Transport, addr: &str) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot listen on {transport} {addr} ([sources.{name}].{transport}): {e}"),
    )
}

/// The shutdown signals a listener obeys: the caller's channel and [`Listeners`]' own.
#[derive(Clone)]
struct Stop {
    outer: watch::Receiver<bool>,
    inner: watch::Receiver<bool>,
}

impl Stop {
    /// Resolves once either signal is `true` or its sender is gone.
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.outer.wait_for(|s| *s) => {}
            _ = self.inner.wait_for(|s| *s) => {}
        }
    }
}

/// Waits for every in-flight message (each holds one permit) to be handled, within
/// `drain` plus [`STORE_GRACE`].
async fn settle(permits: &Semaphore, limits: &Limits, handler: &Handler) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let wait = limits.drain + STORE_GRACE;
    if tokio::time::timeout(wait, permits.acquire_many(all)).await.is_err() {
        tracing::warn!(source = %handler.source, transport = %handler.transport,
            "messages were still being handled {}s after shutdown", wait.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_name_the_address_and_key() {
        let e =
            bind_error(io::Error::from(io::ErrorKind::AddrInUse), "jenkins", Transport::Udp, "0.0.0.0:9001");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().starts_with("cannot listen on udp 0.0.0.0:9001 ([sources.jenkins].udp): "));
    }
}
