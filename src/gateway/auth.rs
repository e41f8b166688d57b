//! Inbound authentication, before anything is parsed or stored: an IP allowlist, a shared
//! token (`?token=`, `Authorization: Bearer`, GitLab's `X-Gitlab-Token`), and the sender's
//! HMAC signature over the raw body (GitHub's `X-Hub-Signature-256`). Every comparison runs in
//! constant time, and a failure never echoes what was expected. The admin API checks its token
//! with the same Bearer reading and comparison.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::SourceConfig;
use crate::ingest::{Format, Inbound};

/// Why a request was refused (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// A source's checks, compiled from its config.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Vec<ipnet::IpNet>,
    token: Option<crate::secret::Secret>,
    hmac: Option<crate::secret::Secret>,
}

impl Guard {
    /// The guard for one source. Addresses were validated by `config::load`.
    pub fn new(src: &SourceConfig) -> Guard {
        let allow = src
            .allow_ips
            .iter()
            .filter_map(|s| {
                s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect();
        Guard { allow, token: src.token.clone(), hmac: src.secret.clone() }
    }

    /// Checks the peer's address only (raw TCP/UDP senders carry nothing else).
    pub fn check_peer(&self, name: &str, peer: Option<IpAddr>) -> Result<(), Refused> {
        if self.allow.is_empty() {
            return Ok(());
        }
        match peer {
            Some(ip) if self.allow.iter().any(|net| net.contains(&canonical(ip))) => Ok(()),
            Some(ip) => Err(Refused(format!("{ip} may not post to {name} (allow_ips)"))),
            None => Err(Refused(format!("{name} accepts only allow-listed addresses"))),
        }
    }

    /// Every check for an HTTP request. `raw_query` is the query as received (see
    /// `Gateway::parse`).
    pub fn check(
        &self,
        name: &str,
        format: Format,
        req: &Inbound<'_>,
        raw_query: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), Refused> {
        self.check_peer(name, peer)?;
        if let Some(expected) = &self.token {
            // Every place a token may ride: one that matches is enough (a sender may add a
            // header of its own beside the `?token=` it was given).
            let given: Vec<String> =
                [bearer(req), query_token(raw_query), req.header("x-gitlab-token").map(str::to_string)]
                    .into_iter()
                    .flatten()
                    .collect();
            if given.is_empty() {
                return Err(Refused(format!(
                    "{name} requires a token: ?token=... or Authorization: Bearer ..."
                )));
            }
            // Every one is compared, so the time taken does not say which matched.
            let matched = given.iter().fold(false, |any, g| token_matches(g, expected) | any);
            if !matched {
                return Err(Refused(format!("wrong token for {name}")));
            }
        }
        // Only GitHub signs its body; config refuses `secret` on other sources.
        if let (Some(key), Format::Github) = (&self.hmac, format) {
            verify_github(key.expose().as_bytes(), req)?;
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`) match IPv4 rules.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn bearer(req: &Inbound<'_>) -> Option<String> {
    req.header("authorization").and_then(bearer_token).map(str::to_string)
}

fn query_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
}

/// The token in an `Authorization` header's value when its scheme is Bearer, in any case
/// (`Bearer`, `bearer`, `BEARER`: schemes are case-insensitive, RFC 7235 §2.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether a token given (surrounding blanks ignored) is the expected secret. Constant-time;
/// hashing first hides the lengths too.
pub fn token_matches(given: &str, expected: &crate::secret::Secret) -> bool {
    let (a, b) = (Sha256::digest(given.trim().as_bytes()), Sha256::digest(expected.expose().as_bytes()));
    bool::from(a.ct_eq(&b))
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`.
fn verify_github(key: &[u8], req: &Inbound<'_>) -> Result<(), Refused> {
    let header = req.header("x-hub-signature-256").ok_or_else(|| {
        Refused("missing X-Hub-Signature-256 (the webhook has a secret configured here)".into())
    })?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| Refused("X-Hub-Signature-256 must start with sha256=".into()))?;
    let given = decode_hex(hex).ok_or_else(|| Refused("X-Hub-Signature-256 is not hex".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(req.body);
    mac.verify_slice(&given).map_err(|_| Refused("X-Hub-Signature-256 does not match the body".into()))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn req<'a>(headers: &[(&str, &str)], body: &'a [u8]) -> Inbound<'a> {
        Inbound {
            method: "POST",
            headers: headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect(),
            query: "",
            body,
        }
    }

    #[test]
    fn github_signature_published_vector() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let key = b"It's a Secret to Everybody";
        assert_eq!(verify_github(key, &req(&[("X-Hub-Signature-256", sig)], b"Hello, World!")), Ok(()));
        assert!(verify_github(key, &req(&[("X-Hub-Signature-256", sig)], b"Hello, World?")).is_err());
        assert!(verify_github(b"other", &req(&[("X-Hub-Signature-256", sig)], b"Hello, World!")).is_err());
        assert!(verify_github(key, &req(&[], b"Hello, World!")).is_err());
        assert!(verify_github(key, &req(&[("X-Hub-Signature-256", "sha1=00")], b"x")).is_err());
    }

    #[test]
    fn tokens_from_every_place() {
        let g = Guard { token: Some(Secret::new("t0k")), ..Guard::default() };
        let ok =
            |headers: &[(&str, &str)], q: &str| g.check("x", Format::Flow, &req(headers, b"{}"), q, None);
        assert_eq!(ok(&[("Authorization", "Bearer t0k")], ""), Ok(()));
        assert_eq!(ok(&[("Authorization", "bearer t0k")], ""), Ok(()));
        assert_eq!(ok(&[("Authorization", "BEARER t0k")], ""), Ok(()));
        assert_eq!(ok(&[], "a=1&token=t0k"), Ok(()));
        assert_eq!(ok(&[("X-Gitlab-Token", "t0k")], ""), Ok(()));
        assert!(ok(&[], "").unwrap_err().0.contains("requires a token"));
        let wrong = ok(&[("Authorization", "Bearer nope")], "").unwrap_err().0;
        assert_eq!(wrong, "wrong token for x");
    }

    #[test]
    fn bearer_scheme_in_any_case() {
        for (value, want) in [
            ("Bearer t0k", Some("t0k")),
            ("bearer t0k", Some("t0k")),
            ("BEARER t0k", Some("t0k")),
            ("bEaReR  t0k ", Some("t0k")),
            ("Basic t0k", None),
            ("Bearert0k", None),
            ("t0k", None),
        ] {
            assert_eq!(bearer_token(value), want, "{value:?}");
        }
        let expected = Secret::new("t0k");
        assert!(token_matches(" t0k", &expected));
        assert!(!token_matches("t0", &expected) && !token_matches("", &expected));
    }

    #[test]
    fn allowlist() {
        let src =
            SourceConfig { allow_ips: vec!["10.0.0.0/8".into(), "127.0.0.1".into()], ..Default::default() };
        let g = Guard::new(&src);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(g.check_peer("x", ip("10.1.2.3")), Ok(()));
        assert_eq!(g.check_peer("x", ip("127.0.0.1")), Ok(()));
        assert_eq!(g.check_peer("x", ip("::ffff:10.9.9.9")), Ok(()));
        assert!(g.check_peer("x", ip("192.168.1.1")).is_err());
        assert!(g.check_peer("x", None).is_err());
        assert_eq!(Guard::default().check_peer("x", ip("192.168.1.1")), Ok(()));
    }
}
