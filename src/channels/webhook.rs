//! The generic webhook channel: the rendered template is the whole request body, sent with the
//! configured method and headers, and optionally signed the Standard Webhooks way.
//!
//! Signing (<https://www.standardwebhooks.com/>) happens per attempt: `webhook-id` is the
//! delivery id, the same on every retry so the receiver can deduplicate; `webhook-timestamp` is
//! the attempt's clock in seconds; `webhook-signature` is `v1,` and the base64 HMAC-SHA256 of
//! `{id}.{timestamp}.{body}`. Any 2xx answer is success; everything else is classified by
//! `channels::http`.
//!
//! A `GET` carries no body, and nothing is moved into the query string: the URL is sent as
//! configured, so a GET only tells the receiver that something happened (and, when signed,
//! which delivery it was). `PUT` and `DELETE` carry the body like `POST`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::http::{self, HttpRequest};
use super::{Attempt, Channel, ChannelDeps, ChannelKind, Message, MessageBody, Outcome, Prepare};
use super::{BuildError, RequestPreview};
use crate::config::{HttpMethod, Mention, WebhookConfig};
use crate::render::Renderer;
use crate::secret::{Secret, SecretUrl};

/// The Content-Type used when the config names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// The Standard Webhooks key prefix marking a base64-encoded key.
const WHSEC_PREFIX: &str = "whsec_";

/// A configured `type = "webhook"` channel.
pub struct Webhook {
    name: String,
    url: SecretUrl,
    method: HttpMethod,
    /// Configured headers; every value is treated as a secret.
    headers: Vec<(String, Secret)>,
    /// The Standard Webhooks signing key, decoded.
    key: Option<Vec<u8>>,
    content_type: String,
    timeout: Duration,
    renderer: Arc<Renderer>,
    client: reqwest::Client,
    /// Every credential that an error or an echoed answer could contain.
    secrets: Vec<String>,
}

impl Webhook {
    /// Validates the URL, the headers and the signing key, each error at its key. An error
    /// never shows a secret.
    pub fn new(
        name: &str,
        cfg: WebhookConfig,
        timeout: Duration,
        deps: &ChannelDeps,
    ) -> Result<Self, Vec<BuildError>> {
        let mut errors = Vec::new();
        let url = cfg.url.expose();
        if !matches!(url.scheme(), "http" | "https") {
            errors.push(BuildError::new("url", format!("scheme {:?} is not http or https", url.scheme())));
        }
        let mut secrets = crate::secret::url_secrets(url);

        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                errors.push(BuildError::new("headers", format!("{k:?} is not a valid header name")));
            } else if reqwest::header::HeaderValue::from_str(v.expose()).is_err() {
                errors.push(BuildError::new(format!("headers.{k}"), "the value is not a valid header value"));
            }
            secrets.extend(crate::secret::header_secrets(v.expose()));
            headers.push((k.clone(), v.clone()));
        }

        let key = cfg.secret.as_ref().and_then(|s| {
            secrets.push(s.expose().to_string());
            decode_key(s.expose()).map_err(|e| errors.push(e)).ok()
        });
        if !errors.is_empty() {
            return Err(errors);
        }

        Ok(Webhook {
            name: name.to_string(),
            url: cfg.url,
            method: cfg.method,
            headers,
            key,
            content_type: cfg.content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
            timeout,
            renderer: deps.renderer.clone(),
            client: deps.http.clone(),
            secrets,
        })
    }

    fn secret_refs(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    /// The request for one attempt, signed when a key is configured.
    fn request(&self, msg: &Message, attempt: &Attempt) -> Result<HttpRequest, Outcome> {
        let MessageBody::Raw { body, content_type } = &msg.body else {
            return Err(Outcome::permanent("the stored message is not a webhook body"));
        };
        let body = if self.method == HttpMethod::Get { Vec::new() } else { body.clone().into_bytes() };
        let mut headers: Vec<(String, String)> = Vec::new();
        let overrides_type = self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !overrides_type {
            headers.push(("Content-Type".into(), content_type.clone()));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.expose().to_string())));
        if let Some(key) = &self.key {
            let ts = attempt.now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let signature = sign(key, &attempt.delivery_id, ts, &body);
            headers.push(("webhook-id".into(), attempt.delivery_id.clone()));
            headers.push(("webhook-timestamp".into(), ts.to_string()));
            headers.push(("webhook-signature".into(), signature));
        }
        let method = reqwest::Method::from_bytes(self.method.as_str().as_bytes())
            .expect("the configured methods are valid HTTP methods");
        Ok(HttpRequest { method, url: self.url.expose().clone(), headers, body })
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("signed", &self.key.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The key bytes: a `whsec_` key is base64 after the prefix; any other key is used as written.
fn decode_key(secret: &str) -> Result<Vec<u8>, BuildError> {
    let key = match secret.strip_prefix(WHSEC_PREFIX) {
        Some(b64) => BASE64
            .decode(b64)
            .map_err(|_| BuildError::new("secret", "the part after \"whsec_\" is not valid base64"))?,
        None => secret.as_bytes().to_vec(),
    };
    if key.is_empty() {
        return Err(BuildError::new("secret", "the signing key is empty"));
    }
    Ok(key)
}

/// The `webhook-signature` value: `v1,` and base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Channel for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn prepare(&self, input: &Prepare<'_>) -> Message {
        if self.renderer.is_event_json(input.template) {
            let body = MessageBody::Raw {
                body: input.event_json().into_owned(),
                content_type: self.content_type.clone(),
            };
            return Message { body, template_errors: Vec::new() };
        }
        let r = self.renderer.render(input.template, "webhook", "body", input.ctx());
        Message {
            body: MessageBody::Raw { body: r.text, content_type: self.content_type.clone() },
            template_errors: r.error.map(|e| format!("body: {e}")).into_iter().collect(),
        }
    }

    fn preview(&self, msg: &Message, attempt: &Attempt) -> RequestPreview {
        match self.request(msg, attempt) {
            Ok(req) => {
                let mut hidden: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
                hidden.push("webhook-signature");
                req.preview(&hidden)
            }
            Err(o) => RequestPreview {
                method: self.method.as_str().into(),
                url: self.url.redacted(),
                headers: vec![],
                body: o.detail,
            },
        }
    }

    async fn send(&self, msg: &Message, attempt: &Attempt) -> Outcome {
        let req = match self.request(msg, attempt) {
            Ok(r) => r,
            Err(o) => return o,
        };
        let secrets = self.secret_refs();
        match http::send(&self.client, req, self.timeout, &secrets).await {
            Err(outcome) => outcome,
            Ok(resp) if (200..300).contains(&resp.status) => {
                Outcome::delivered(Some(resp.status), None, format!("HTTP {}", resp.status))
            }
            Ok(resp) => http::non_success(&resp, &secrets),
        }
    }

    fn check_templates(&self, template: &str, ctx: &serde_json::Value) -> Vec<String> {
        match self.renderer.try_render(template, "webhook", "body", ctx) {
            Ok(_) => vec![],
            Err(e) => vec![format!("body: {e}")],
        }
    }

    fn check_mention(&self, mention: &Mention) -> Vec<String> {
        if mention.is_empty() {
            return vec![];
        }
        vec!["a webhook has no mention field; the mention is ignored".to_string()]
    }

    fn rate_key(&self) -> &str {
        self.url.expose().as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        // The example from the Standard Webhooks specification's reference libraries.
        let key = decode_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn keys_decode() {
        assert_eq!(decode_key("plain-key").unwrap(), b"plain-key");
        assert_eq!(decode_key("whsec_aGk=").unwrap(), b"hi");
        let err = decode_key("whsec_%%%not-base64").unwrap_err();
        assert!(!err.to_string().contains("%%%"), "{err}");
        assert_eq!(err.field, "secret");
        assert!(decode_key("whsec_").is_err());
    }
}
