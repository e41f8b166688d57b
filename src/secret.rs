//! Secrets as a type: values that must never reach a log, an error or API output.
//!
//! `Secret` holds a signing key, token or password; `SecretUrl` holds a URL that carries a
//! credential (a robot's `access_token=` or `key=`, Lark's hook token in the path, userinfo).
//! Both print redacted through `Debug` and `Display`; code that needs the value calls `expose()`.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Printed in place of a secret.
pub const REDACTED: &str = "***";

/// A secret string with a redacting `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value. Only signing code and transports call this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Query parameters whose values are credentials.
const SECRET_QUERY_KEYS: &[&str] =
    &["access_token", "key", "token", "sign", "secret", "password", "apikey", "api_key"];

/// A URL that may carry credentials. It is shown only in redacted form.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(url::Url);

impl SecretUrl {
    pub fn parse(s: &str) -> Result<SecretUrl, url::ParseError> {
        url::Url::parse(s).map(SecretUrl)
    }

    /// The full URL, credentials included. Only transports call this.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }

    /// The URL with credentials replaced by `***`: userinfo password, secret query values, and
    /// the token segment of a Lark/Feishu hook path.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Redacts the credentials of any URL (see [`SecretUrl::redacted`]).
pub fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some(REDACTED));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_QUERY_KEYS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (k.into_owned(), if secret { REDACTED.to_string() } else { v.into_owned() })
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // Lark/Feishu: /open-apis/bot/v2/hook/<token>; whatever follows the token is masked too.
    let segments: Option<Vec<String>> = u.path_segments().map(|s| s.map(str::to_string).collect());
    if let Some(segs) = segments {
        if let Some(pos) = segs.iter().position(|s| s == "hook") {
            if pos + 1 < segs.len() {
                let mut new = segs.clone();
                new[pos + 1..].iter_mut().for_each(|s| *s = REDACTED.to_string());
                u.set_path(&new.join("/"));
            }
        }
    }
    // `***` in a query is percent-encoded by the serializer; keep it readable.
    u.to_string().replace("%2A%2A%2A", REDACTED)
}

/// What to scrub from text that may echo `url`: the URL itself, its password, every value in
/// its query (`access_token`, `KEY`, whatever else it carries) and every path segment after a
/// Lark `hook`, each as written and percent-decoded, since an echo may show either.
pub fn url_secrets(url: &url::Url) -> Vec<String> {
    let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let mut out = vec![url.to_string()];
    if let Some(p) = url.password() {
        out.extend([p.to_string(), decoded(p)]);
    }
    for pair in url.query().unwrap_or_default().split('&') {
        let raw = pair.split_once('=').map_or("", |(_, v)| v);
        out.extend([raw.to_string(), decoded(raw), decoded(&raw.replace('+', " "))]);
    }
    if let Some(segs) = url.path_segments() {
        for seg in segs.skip_while(|s| *s != "hook").skip(1) {
            out.extend([seg.to_string(), decoded(seg)]);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What to scrub from text that may echo a header value: the value, and the credential in it
/// without its scheme (`Bearer <token>`: an echo may show the token alone), and for `Basic`
/// the decoded `user:password` and the password.
pub fn header_secrets(value: &str) -> Vec<String> {
    use base64::Engine;
    const SCHEMES: [&str; 4] = ["bearer", "basic", "token", "apikey"];
    let value = value.trim();
    let mut out = vec![value.to_string()];
    let split =
        value.split_once(' ').filter(|(scheme, _)| SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s)));
    if let Some((scheme, credential)) = split {
        let credential = credential.trim();
        out.push(credential.to_string());
        let decoded = scheme
            .eq_ignore_ascii_case("basic")
            .then(|| base64::engine::general_purpose::STANDARD.decode(credential).ok())
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some(pair) = decoded {
            if let Some((_, password)) = pair.split_once(':') {
                out.push(password.to_string());
            }
            out.push(pair);
        }
    }
    out
}

/// Replaces every occurrence of each secret in `text` with `***`.
///
/// Used on text that comes back from a platform or a transport (error messages, response
/// bodies), which may echo a URL or key we sent.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, REDACTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_s_credential_is_scrubbed_without_its_scheme_too() {
        let secrets = header_secrets("Bearer s3cr3t-token");
        let echoed = "invalid token s3cr3t-token (sent: Bearer s3cr3t-token)";
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_eq!(scrub(echoed, &refs), "invalid token *** (sent: ***)");
        // Basic: user:password, base64; an echo may show the password alone.
        let secrets = header_secrets("Basic YWxpY2U6cGFzc3dvcmQtMQ==");
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_eq!(scrub("bad password password-1 for alice", &refs), "bad password *** for alice");
        assert_eq!(header_secrets("plain-key-value"), ["plain-key-value"]);
        assert_eq!(header_secrets("payments team"), ["payments team"], "not a credential scheme");
    }

    #[test]
    fn secrets_print_redacted() {
        let s = Secret::new("SEC123");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "SEC123");
    }

    #[test]
    fn urls_are_redacted() {
        let cases = [
            (
                "https://oapi.dingtalk.com/robot/send?access_token=abc123",
                "https://oapi.dingtalk.com/robot/send?access_token=***",
            ),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1&debug=1",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&debug=1",
            ),
            (
                "https://open.feishu.cn/open-apis/bot/v2/hook/uuid-token",
                "https://open.feishu.cn/open-apis/bot/v2/hook/***",
            ),
            (
                "https://open.feishu.cn/open-apis/bot/v2/hook/uuid-token/extra",
                "https://open.feishu.cn/open-apis/bot/v2/hook/***/***",
            ),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?KEY=k-1",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?KEY=***",
            ),
            ("smtp://user:pass@mail.example.com:587", "smtp://user:***@mail.example.com:587"),
            ("https://audit.example.com/ci", "https://audit.example.com/ci"),
        ];
        for (input, want) in cases {
            let u = SecretUrl::parse(input).unwrap();
            assert_eq!(u.redacted(), want);
            assert_eq!(format!("{u}"), want);
        }
    }

    #[test]
    fn scrub_removes_secret_values() {
        assert_eq!(scrub("bad token abc123 here", &["abc123"]), "bad token *** here");
    }
}
