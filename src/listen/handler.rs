//! One raw message into the gateway: the peer check, the empty and oversize cases, the content
//! type by sniffing, and [`Gateway::receive`], with every outcome logged.
//!
//! Logs name the source, the transport, the peer and the reason (the parser's message, the
//! refusal, the limit). They never include the payload: a build log may hold secrets.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Transport;
use crate::config::{Config, SourceConfig};
use crate::gateway::{Gateway, HookError};
use crate::ingest::Inbound;

/// Turns raw messages of one source into [`Gateway::receive`] calls.
pub(super) struct Handler {
    pub(super) gateway: Arc<Gateway>,
    pub(super) source: String,
    pub(super) transport: Transport,
    pub(super) max_body_bytes: usize,
}

impl Handler {
    pub(super) fn new(
        gateway: &Arc<Gateway>,
        source: &str,
        transport: Transport,
        config: &Config,
    ) -> Arc<Handler> {
        Arc::new(Handler {
            gateway: gateway.clone(),
            source: source.to_string(),
            transport,
            max_body_bytes: config.server.max_body_bytes,
        })
    }

    /// Checks the sender's address against `allow_ips`; a refusal is logged.
    pub(super) fn admit(&self, peer: SocketAddr) -> bool {
        match self.gateway.check_peer(&self.source, Some(peer.ip())) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(source = %self.source, transport = %self.transport, %peer, "refused: {e}");
                false
            }
        }
    }

    /// Parses, routes and stores one message; every failure is logged and dropped.
    pub(super) async fn handle(&self, peer: SocketAddr, body: &[u8]) {
        let (source, transport) = (&self.source, self.transport);
        if body.iter().all(u8::is_ascii_whitespace) {
            tracing::debug!(%source, %transport, %peer, "empty message ignored");
            return;
        }
        if body.len() > self.max_body_bytes {
            let e = HookError::TooLarge(self.max_body_bytes);
            tracing::warn!(%source, %transport, %peer, "dropped: {e}");
            return;
        }
        let inbound = Inbound {
            method: "POST",
            headers: vec![("content-type".to_string(), content_type(body).to_string())],
            query: "",
            body,
        };
        match self.gateway.receive_raw(source, &inbound, peer.ip()).await {
            Ok(accepted) => {
                tracing::debug!(%source, %transport, %peer, events = accepted.len(), "raw message accepted");
            }
            Err(HookError::Unauthorized(e)) => tracing::warn!(%source, %transport, %peer, "refused: {e}"),
            Err(e @ HookError::Unavailable(_)) => {
                tracing::error!(%source, %transport, %peer, "message lost: {e}");
            }
            Err(e) => tracing::warn!(%source, %transport, %peer, "dropped: {e}"),
        }
    }
}

/// Says once, at start-up, that a raw listener without `allow_ips` takes messages from anyone
/// who can reach it: raw messages carry no token.
pub(super) fn warn_if_open(name: &str, src: &SourceConfig) {
    if src.allow_ips.is_empty() {
        tracing::warn!(source = %name, "[sources.{name}] listens on raw TCP/UDP without allow_ips: \
            raw messages carry no token, so anyone who can reach the port can post");
    }
}

/// The content type the bytes declare by their first meaningful byte: `<` is XML (XStream),
/// anything else is given to the JSON parser (Gson), whose error then names the problem.
fn content_type(body: &[u8]) -> &'static str {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => "application/xml",
        _ => "application/json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_follows_the_first_meaningful_byte() {
        assert_eq!(content_type(b"{\"name\":\"x\"}"), "application/json");
        assert_eq!(content_type(b" \r\n\t<job>\n</job>"), "application/xml");
        assert_eq!(content_type(b"\xEF\xBB\xBF<job/>"), "application/xml");
        assert_eq!(content_type(b"garbage"), "application/json");
        assert_eq!(content_type(b""), "application/json");
    }
}
