//! The email channel: one SMTP relay, a fixed sender and fixed recipients, plus, per message,
//! the addresses a rule's resolved mention carries (its people's `email`, see `people`).
//!
//! It owns the mail's shape (a `multipart/alternative` with the plain-text part first and the
//! HTML part last, `Auto-Submitted: auto-generated`, a `Message-ID` that stays the same across
//! retries, the rule's people added to `To` after the configured recipients, never twice) and
//! the SMTP verdict: only a 2xx reply is success, a 4xx reply or a network failure is
//! transient, a 5xx reply is permanent. It does not render templates itself (that is `render`)
//! and it never retries.
//!
//! The transport is configured from lettre's URL form (`smtp://user:pass@host:587?tls=required`,
//! `smtps://…`) and validated in [`Email::new`]. Its connection pool is created on the first
//! send, because lettre's pool needs a running Tokio runtime, and dropped after a timed-out
//! attempt, because a connection abandoned mid-command cannot be reused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, AsyncSmtpTransportBuilder};
use lettre::{AsyncTransport, Tokio1Executor};

use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, MessageBody, Outcome, Prepare};
use super::{BuildError, RequestPreview, Verdict};
use crate::config::{EmailConfig, Mention};
use crate::render::Renderer;
use crate::secret::{scrub, SecretUrl};

/// The template parts an email uses, in the order they are rendered.
const PARTS: [&str; 3] = ["subject", "text", "html"];

/// RFC 3834: tells auto-responders not to answer.
const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// A configured `type = "email"` channel.
pub struct Email {
    name: String,
    smtp: SecretUrl,
    /// The relay and the sender (`smtp host:port from address`), for rate limiting.
    rate_key: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    builder: AsyncSmtpTransportBuilder,
    transport: Mutex<Option<Transport>>,
    timeout: Duration,
    renderer: Arc<Renderer>,
    /// Every form of the credentials, scrubbed from transport errors.
    secrets: Vec<String>,
}

impl Email {
    /// Validates the SMTP URL, the addresses and the CA file, each error at its key. An error
    /// never shows the password.
    pub fn new(
        name: &str,
        cfg: EmailConfig,
        timeout: Duration,
        deps: &ChannelDeps,
    ) -> Result<Self, Vec<BuildError>> {
        let url = cfg.smtp.expose();
        let secrets = crate::secret::url_secrets(url);
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let fail = |field: &str, what: &str, e: &dyn std::fmt::Display| {
            BuildError::new(field, format!("{what}{}", scrub(&e.to_string(), &refs)))
        };
        let mut errors = Vec::new();

        let mode = keep(TlsMode::of(url), &mut errors);
        // One error for the URL: lettre is asked only about one whose scheme and TLS are known.
        let builder = mode.and_then(|_| {
            let built = Transport::from_url(url.as_str()).map_err(|e| fail("smtp", "invalid URL: ", &e));
            keep(built, &mut errors)
        });
        let host = url.host_str().unwrap_or_default().to_string();
        let tls = match (&cfg.ca_file, mode) {
            (Some(path), Some(mode)) => keep(tls_trusting(path, &host, mode, &fail), &mut errors),
            _ => None,
        };

        let mailbox = |field: String, s: &str| -> Result<Mailbox, BuildError> {
            s.parse::<Mailbox>().map_err(|e| BuildError::new(field, format!("invalid address {s:?}: {e}")))
        };
        let from = keep(mailbox("from".into(), &cfg.from), &mut errors);
        let mut list = |field: &str, list: &[String]| -> Vec<Mailbox> {
            let parsed = list.iter().enumerate().map(|(i, s)| mailbox(format!("{field}[{i}]"), s));
            parsed.filter_map(|r| keep(r, &mut errors)).collect()
        };
        let to = list("to", &cfg.to);
        let cc = list("cc", &cfg.cc);
        if cfg.to.is_empty() && cfg.cc.is_empty() {
            errors.push(BuildError::new("to", "at least one recipient is required"));
        }
        let (Some(builder), Some(mode), Some(from), true) = (builder, mode, from, errors.is_empty()) else {
            return Err(errors);
        };
        let mut builder = builder.timeout(Some(timeout));
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
        let port = url.port().unwrap_or(mode.default_port());

        Ok(Email {
            name: name.to_string(),
            smtp: cfg.smtp,
            rate_key: format!("smtp {host}:{port} from {}", from.email),
            from,
            to,
            cc,
            builder,
            transport: Mutex::new(None),
            timeout,
            renderer: deps.renderer.clone(),
            secrets,
        })
    }

    fn secret_refs(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    /// The shared transport, created on first use (inside the runtime).
    fn transport(&self) -> Transport {
        let mut slot = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| self.builder.clone().build()).clone()
    }

    /// Forgets the pool so the next attempt opens fresh connections.
    fn reset_transport(&self) {
        self.transport.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The mention's addresses that are not already a configured `to` or `cc` (compared
    /// case-insensitively), each once. An address that does not parse is skipped: the
    /// configured recipients still get the mail.
    fn extra_recipients(&self, extra: &[String]) -> Vec<Mailbox> {
        let mut seen: Vec<String> =
            self.to.iter().chain(&self.cc).map(|m| m.email.to_string().to_lowercase()).collect();
        let mut out = Vec::new();
        for s in extra {
            match s.parse::<Mailbox>() {
                Ok(m) => {
                    let addr = m.email.to_string().to_lowercase();
                    if !seen.contains(&addr) {
                        seen.push(addr);
                        out.push(m);
                    }
                }
                Err(e) => tracing::warn!(channel = %self.name, "skipping the invalid address {s:?}: {e}"),
            }
        }
        out
    }

    /// The RFC 5322 message for one attempt, to the configured recipients and `extra`.
    fn build(
        &self,
        subject: &str,
        text: &str,
        html: &str,
        extra: &[String],
        attempt: &Attempt,
    ) -> Result<lettre::Message, String> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .date(attempt.now)
            .message_id(Some(message_id(&attempt.delivery_id, self.from.email.domain())))
            .raw_header(HeaderValue::new(AUTO_SUBMITTED, "auto-generated".into()));
        for m in self.to.iter().cloned().chain(self.extra_recipients(extra)) {
            b = b.to(m);
        }
        for m in &self.cc {
            b = b.cc(m.clone());
        }
        // A template with a text body and no HTML of its own makes a plain-text mail.
        let built = if html.is_empty() {
            b.singlepart(SinglePart::plain(text.to_string()))
        } else {
            b.multipart(MultiPart::alternative_plain_html(text.to_string(), html.to_string()))
        };
        built.map_err(|e| format!("building the message failed: {e}"))
    }
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("name", &self.name)
            .field("smtp", &self.smtp)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for Email {
    fn drop(&mut self) {
        // lettre's pool spawns a task when dropped, which panics outside a Tokio runtime (say,
        // after `main` has left it). The process is ending then; leaking the pool is harmless.
        if tokio::runtime::Handle::try_current().is_err() {
            if let Some(t) = self.transport.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
                std::mem::forget(t);
            }
        }
    }
}

/// How the SMTP URL asks for TLS, mirroring lettre's reading of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    None,
    Opportunistic,
    Required,
    Implicit,
}

/// `r`'s value, or `None` with its error kept.
fn keep<T>(r: Result<T, BuildError>, errors: &mut Vec<BuildError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

/// TLS that trusts the CA certificate in `path` for `host`.
fn tls_trusting(
    path: &std::path::Path,
    host: &str,
    mode: TlsMode,
    fail: &dyn Fn(&str, &str, &dyn std::fmt::Display) -> BuildError,
) -> Result<Tls, BuildError> {
    let pem = std::fs::read(path).map_err(|e| fail("ca_file", &format!("{}: ", path.display()), &e))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(BuildError::new("ca_file", format!("{}: no PEM certificate found", path.display())));
    }
    let cert = Certificate::from_pem(&pem).map_err(|e| fail("ca_file", "", &e))?;
    let params = TlsParameters::builder(host.to_string())
        .add_root_certificate(cert)
        .build()
        .map_err(|e| fail("ca_file", "", &e))?;
    Ok(match mode {
        TlsMode::Required => Tls::Required(params),
        TlsMode::Opportunistic => Tls::Opportunistic(params),
        TlsMode::Implicit => Tls::Wrapper(params),
        TlsMode::None => {
            return Err(BuildError::new(
                "ca_file",
                "set, but the smtp URL uses no TLS (add ?tls=required or use smtps://)",
            ))
        }
    })
}

impl TlsMode {
    fn of(url: &url::Url) -> Result<TlsMode, BuildError> {
        let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        match (url.scheme(), tls.as_deref()) {
            ("smtps", _) => Ok(TlsMode::Implicit),
            ("smtp", None) => Ok(TlsMode::None),
            ("smtp", Some("required")) => Ok(TlsMode::Required),
            ("smtp", Some("opportunistic")) => Ok(TlsMode::Opportunistic),
            (scheme, tls) => {
                Err(BuildError::new("smtp", format!("invalid URL: scheme {scheme:?} with tls={tls:?}")))
            }
        }
    }

    fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Opportunistic | TlsMode::Required => 587,
            TlsMode::Implicit => 465,
        }
    }
}

/// A Message-ID derived from the delivery, so a retried mail keeps its identity.
fn message_id(delivery_id: &str, domain: &str) -> String {
    let local: String =
        delivery_id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).collect();
    format!("<herald.{local}@{domain}>")
}

/// The verdict for a failed SMTP exchange.
fn classify(e: &lettre::transport::smtp::Error, secrets: &[&str]) -> Outcome {
    // A 5xx reply, or a client-side refusal (no common auth mechanism, no STARTTLS, no
    // SMTPUTF8), will fail the same way next time; network, TLS and 4xx failures may not.
    let verdict = if e.is_permanent() || e.is_client() {
        Verdict::Permanent
    } else {
        Verdict::Transient { retry_after: None }
    };
    let what = if e.is_timeout() { "timed out: " } else { "" };
    Outcome {
        verdict,
        http_status: None,
        code: e.status().map(|c| i64::from(u16::from(c))),
        detail: format!("{what}{}", scrub(&e.to_string(), secrets)),
    }
}

#[async_trait]
impl Channel for Email {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn prepare(&self, input: &Prepare<'_>) -> Message {
        let mut errors = Vec::new();
        let mut render = |part: &str| {
            let r = self.renderer.render(input.template, "email", part, input.ctx());
            if let Some(e) = r.error {
                errors.push(format!("{part}: {e}"));
            }
            r.text
        };
        // A subject is one line: a template's line breaks must not end the header.
        let subject = render("subject").split_whitespace().collect::<Vec<_>>().join(" ");
        let text = render("text");
        let html = if self.renderer.has_part(input.template, "email", "text", "html") {
            render("html")
        } else {
            String::new()
        };
        let body = MessageBody::Email { subject, text, html, to: input.mention.emails.clone() };
        Message { body, template_errors: errors }
    }

    fn preview(&self, msg: &Message, _attempt: &Attempt) -> RequestPreview {
        let (subject, body, extra) = match &msg.body {
            MessageBody::Email { subject, text, html, to } => {
                (subject.clone(), format!("{text}\n\n{html}"), self.extra_recipients(to))
            }
            other => (String::new(), format!("{other:?}"), vec![]),
        };
        let list = |v: &[Mailbox]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let to: Vec<Mailbox> = self.to.iter().cloned().chain(extra).collect();
        let mut headers = vec![("From".to_string(), self.from.to_string()), ("To".to_string(), list(&to))];
        if !self.cc.is_empty() {
            headers.push(("Cc".to_string(), list(&self.cc)));
        }
        headers.push(("Subject".to_string(), subject));
        RequestPreview { method: "SMTP".into(), url: self.smtp.redacted(), headers, body }
    }

    async fn send(&self, msg: &Message, attempt: &Attempt) -> Outcome {
        let MessageBody::Email { subject, text, html, to } = &msg.body else {
            return Outcome::permanent("the stored message is not an email");
        };
        let mail = match self.build(subject, text, html, to, attempt) {
            Ok(m) => m,
            Err(e) => return Outcome::permanent(e),
        };
        // lettre bounds only the TCP connect; this bounds the whole exchange.
        match tokio::time::timeout(self.timeout, self.transport().send(mail)).await {
            Ok(Ok(resp)) => {
                let code = u16::from(resp.code());
                let text = resp.message().collect::<Vec<_>>().join(" ");
                let detail = format!("{code} {}", scrub(&text, &self.secret_refs()));
                Outcome::delivered(None, Some(i64::from(code)), detail)
            }
            Ok(Err(e)) => classify(&e, &self.secret_refs()),
            Err(_) => {
                self.reset_transport();
                Outcome::transient(format!("timed out after {} ms", self.timeout.as_millis()))
            }
        }
    }

    fn check_templates(&self, template: &str, ctx: &serde_json::Value) -> Vec<String> {
        PARTS
            .iter()
            .filter(|part| **part != "html" || self.renderer.has_part(template, "email", "text", "html"))
            .filter_map(|part| {
                self.renderer.try_render(template, "email", part, ctx).err().map(|e| (part, e))
            })
            .map(|(part, e)| format!("{part}: {e}"))
            .collect()
    }

    /// People (and the author) are addressed by their `email`; only phone numbers, user ids
    /// and `all` have no meaning in a mail.
    fn check_mention(&self, mention: &Mention) -> Vec<String> {
        if mention.mobiles.is_empty() && mention.user_ids.is_empty() && !mention.all {
            return vec![];
        }
        vec!["email cannot @mention by mobile or user id, nor everyone; those are ignored \
              (people are added as recipients by their email)"
            .to_string()]
    }

    fn rate_key(&self) -> &str {
        &self.rate_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_follow_lettre() {
        let cases = [
            ("smtp://h", TlsMode::None, 25),
            ("smtp://h?tls=required", TlsMode::Required, 587),
            ("smtp://h?tls=opportunistic", TlsMode::Opportunistic, 587),
            ("smtps://h", TlsMode::Implicit, 465),
        ];
        for (url, mode, port) in cases {
            let got = TlsMode::of(&url::Url::parse(url).unwrap()).unwrap();
            assert_eq!((got, got.default_port()), (mode, port), "{url}");
        }
        assert!(TlsMode::of(&url::Url::parse("smtp://h?tls=maybe").unwrap()).is_err());
        assert!(TlsMode::of(&url::Url::parse("http://h").unwrap()).is_err());
    }

    #[test]
    fn message_ids_are_stable_and_safe() {
        assert_eq!(message_id("d-1", "example.com"), "<herald.d-1@example.com>");
        assert_eq!(message_id("a b<c>@", "x.org"), "<herald.abc@x.org>");
    }
}
