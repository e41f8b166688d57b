//! The HTTP transport shared by the robot and webhook channels: send one request, and turn
//! transport-level failures (connect errors, timeouts, 5xx, 429) into an `Outcome`.
//!
//! A channel builds the `HttpRequest` and judges a 2xx/4xx answer by its own rules; this module
//! only moves bytes and classifies what is platform-independent.

use std::time::Duration;

use super::{Outcome, RequestPreview, Verdict};
use crate::secret::{redact_url, scrub};

/// One outbound HTTP request. `url` holds credentials: never print it unredacted.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A JSON POST.
    pub fn post_json(url: url::Url, json: &serde_json::Value) -> HttpRequest {
        HttpRequest {
            method: reqwest::Method::POST,
            url,
            headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
            body: serde_json::to_vec(json).expect("a JSON value always serializes"),
        }
    }

    /// The request for `herald render`: the URL redacted, and the values of the headers named
    /// in `secret_headers` replaced by `***`.
    pub fn preview(&self, secret_headers: &[&str]) -> RequestPreview {
        RequestPreview {
            method: self.method.to_string(),
            url: redact_url(&self.url),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| {
                    let hide = secret_headers.iter().any(|s| s.eq_ignore_ascii_case(k));
                    (k.clone(), if hide { crate::secret::REDACTED.to_string() } else { v.clone() })
                })
                .collect(),
            body: String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

/// An answer that reached us.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text, cut to a length fit for a log line.
    pub fn body_snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut end = text.len().min(300);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    }
}

/// The most of an answer that is read. A robot answers with a few hundred bytes of JSON, and a
/// webhook's answer only feeds the attempt's detail; the rest of a larger one is dropped unread,
/// so a receiver that answers with megabytes cannot exhaust Herald's memory.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends one request. `Err` holds the `Outcome` for a failure that happened before any answer
/// (always transient); any answer, whatever its status, is `Ok`, for the caller to judge (a
/// robot's body says more than its status). `secrets` are scrubbed from every message.
pub async fn send(
    client: &reqwest::Client,
    req: HttpRequest,
    timeout: Duration,
    secrets: &[&str],
) -> Result<HttpResponse, Outcome> {
    let mut builder = client.request(req.method.clone(), req.url.clone()).timeout(timeout);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    // What errors must not show: the channel's secrets and the URL (it may carry a token).
    let all_secrets = || secrets.iter().copied().chain([req.url.as_str()]).collect::<Vec<&str>>();
    let resp = match builder.body(req.body).send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "connection failed".to_string()
            } else {
                "request failed".to_string()
            };
            // reqwest's Display includes the URL; print only its source chain without it.
            let detail = format!("{what}: {}", scrub(&error_chain(&e), &all_secrets()));
            return Err(Outcome::transient(detail));
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = match read_capped(resp, MAX_ANSWER_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let detail = format!("reading the answer failed: {}", scrub(&error_chain(&e), &all_secrets()));
            return Err(Outcome { http_status: Some(status), ..Outcome::transient(detail) });
        }
    };
    Ok(HttpResponse { status, retry_after, body })
}

/// The answer's body, up to `max` bytes; the connection is dropped rather than read further.
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == max {
            break;
        }
    }
    Ok(body)
}

/// The error's sources, without reqwest's own top-level message (which names the URL).
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        "no further detail".to_string()
    } else {
        parts.join(": ")
    }
}

/// The longest `Retry-After` honoured: a larger one (a misconfigured proxy's, say) is read as
/// this, so a delivery is not parked for days, nor its due time overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After` as delay-seconds, at most [`MAX_RETRY_AFTER`] (the HTTP-date form is rare from
/// robots and ignored).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// The verdict for a non-2xx answer by its status alone: 5xx, 429 and 408 are worth retrying
/// (after `Retry-After`, when given), and so is a redirect (DingTalk answers throttled senders
/// with one; a redirect is never success); any other 4xx is permanent.
pub fn non_success(resp: &HttpResponse, secrets: &[&str]) -> Outcome {
    let detail = format!("HTTP {}: {}", resp.status, scrub(&resp.body_snippet(), secrets));
    let status = resp.status;
    let verdict = if status == 429 || status == 408 || (500..=599).contains(&status) {
        Verdict::Transient { retry_after: resp.retry_after }
    } else if (300..400).contains(&status) {
        Verdict::Transient { retry_after: None }
    } else {
        Verdict::Permanent
    };
    Outcome { verdict, http_status: Some(status), code: None, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(MAX_RETRY_AFTER),
            "capped, not overflowed"
        );
    }

    #[tokio::test]
    async fn an_answer_is_read_up_to_the_cap() {
        let answer = |len: usize| reqwest::Response::from(http::Response::new(vec![b'x'; len]));
        assert_eq!(read_capped(answer(10), 64).await.unwrap().len(), 10);
        assert_eq!(read_capped(answer(64), 64).await.unwrap().len(), 64);
        assert_eq!(read_capped(answer(1 << 20), 64).await.unwrap().len(), 64);
        assert!(read_capped(answer(0), 64).await.unwrap().is_empty());
    }

    #[test]
    fn non_success_classification() {
        let r = |status| HttpResponse { status, retry_after: None, body: b"nope".to_vec() };
        assert_eq!(non_success(&r(404), &[]).verdict, Verdict::Permanent);
        assert!(matches!(non_success(&r(302), &[]).verdict, Verdict::Transient { .. }));
        for status in [408, 429, 500, 503] {
            assert!(matches!(non_success(&r(status), &[]).verdict, Verdict::Transient { .. }), "{status}");
        }
        let later = HttpResponse { retry_after: Some(Duration::from_secs(30)), ..r(429) };
        assert_eq!(
            non_success(&later, &[]).verdict,
            Verdict::Transient { retry_after: Some(Duration::from_secs(30)) }
        );
        assert_eq!(non_success(&r(400), &[]).verdict, Verdict::Permanent);
    }
}
