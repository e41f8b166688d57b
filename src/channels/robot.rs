//! What the three chat-robot channels (DingTalk, WeCom, Lark) share: rendering the template
//! parts, the keyword rule, the attempt clock, and judging a robot's JSON answer by its code.
//!
//! Each platform keeps its own wire format, signature and code table in its own file; this
//! module only holds the steps that are the same for all three.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::http::{self, HttpRequest, HttpResponse};
use super::{ChannelKind, Message, MessageBody, Outcome, Prepare, Verdict};
use crate::render::Renderer;
use crate::secret::scrub;

/// The platform's answer to one message: its code and its message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub code: i64,
    pub msg: String,
}

/// The build's URL when a robot can link to it: absolute, http or https. Lark refuses a whole
/// message whose link is not valid, and DingTalk's card button needs a URL it can open, so a
/// relative or malformed one a sender supplied gets no button or link (the text still carries
/// it, as the template writes it).
pub(crate) fn link_target(url: Option<&str>) -> Option<&str> {
    url.filter(|u| {
        url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some())
    })
}

/// A robot message's button or link: where it goes, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link<'a> {
    pub url: &'a str,
    pub title: &'static str,
}

impl<'a> Link<'a> {
    /// A link to a build.
    pub fn build(url: &'a str) -> Link<'a> {
        Link { url, title: "View build" }
    }

    /// A link to a pipeline (a job), for an event without a build page of its own.
    pub fn pipeline(url: &'a str) -> Link<'a> {
        Link { url, title: "View pipeline" }
    }
}

/// Where a robot's button or link for an event goes: the build, else the pipeline (a Job
/// Status sender with `JOB_URL` but no `BUILD_URL`, say), each only when [`link_target`]
/// takes it.
pub(crate) fn event_link(event: &crate::event::Event) -> Option<Link<'_>> {
    link_target(event.build_url.as_deref())
        .map(Link::build)
        .or_else(|| link_target(event.pipeline_url.as_deref()).map(Link::pipeline))
}

/// Renders one part for a prepared event; a template failure is added to `errors`.
pub(crate) fn render_part(
    renderer: &Renderer,
    input: &Prepare<'_>,
    kind: ChannelKind,
    part: &str,
    errors: &mut Vec<String>,
) -> String {
    let rendered = renderer.render(input.template, kind.as_str(), part, input.ctx());
    errors.extend(rendered.error);
    rendered.text
}

/// Strictly renders every part in `parts`; the errors, one line each.
pub(crate) fn check_parts(
    renderer: &Renderer,
    template: &str,
    kind: ChannelKind,
    parts: &[&str],
    ctx: &serde_json::Value,
) -> Vec<String> {
    parts
        .iter()
        .filter_map(|part| renderer.try_render(template, kind.as_str(), part, ctx).err())
        .map(|e| e.to_string())
        .collect()
}

/// The keyword, when one is configured and not blank.
pub(crate) fn keyword(configured: &Option<String>) -> Option<&str> {
    configured.as_deref().map(str::trim).filter(|k| !k.is_empty())
}

/// A title that contains `keyword`: unchanged when it already does, else `"<keyword> <title>"`.
pub(crate) fn title_with_keyword(title: &str, keyword: Option<&str>) -> String {
    match keyword {
        Some(k) if !title.contains(k) => format!("{k} {title}"),
        _ => title.to_string(),
    }
}

/// A text that contains `keyword`: unchanged when it already does, else with the keyword as its
/// last paragraph.
pub(crate) fn text_with_keyword(text: &str, keyword: Option<&str>) -> String {
    match keyword {
        Some(k) if !text.contains(k) => join_paragraph(text, k),
        _ => text.to_string(),
    }
}

/// `text`, then a blank line, then `tail` (just `tail` when `text` is blank).
pub(crate) fn join_paragraph(text: &str, tail: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() {
        tail.to_string()
    } else {
        format!("{text}\n\n{tail}")
    }
}

/// Milliseconds since the Unix epoch on the attempt's clock.
pub(crate) fn unix_millis(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The strings to scrub from anything a robot answers: the URL's credentials (see
/// [`crate::secret::url_secrets`]) and the signing secret.
pub(crate) fn url_secrets(url: &url::Url, secret: Option<&crate::secret::Secret>) -> Vec<String> {
    let mut out = crate::secret::url_secrets(url);
    out.extend(secret.map(|s| s.expose().to_string()));
    out
}

/// The stored JSON body of a robot message; `None` for any other kind of message.
pub(crate) fn json_body(msg: &Message) -> Option<&serde_json::Value> {
    match &msg.body {
        MessageBody::Json { json } => Some(json),
        _ => None,
    }
}

/// Sends one robot request and judges the answer: the transport's verdict when no usable answer
/// came back, else [`judge`]'s. `secrets` are scrubbed from every detail.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    req: HttpRequest,
    timeout: Duration,
    secrets: &[String],
    read: fn(&serde_json::Value) -> Option<Answer>,
    classify: fn(i64, &str) -> Verdict,
) -> Outcome {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    match http::send(client, req, timeout, &secrets).await {
        Ok(resp) => judge(&resp, read, classify, &secrets),
        Err(out) => out,
    }
}

/// Judges a robot's answer that `http::send` passed through.
///
/// - 2xx: the platform's code decides (`read` finds it, `classify` maps it). A 2xx without a
///   readable code is **transient**: it is not proof of delivery, and the message is resent.
///   DingTalk's `msgUuid` makes such a resend safe there.
/// - Any other status: `http::non_success` decides by the status, unless the body has a
///   platform code that [`classify`] says is worth retrying (a Lark 11232 under HTTP 429, a
///   DingTalk -1 under a 4xx): then it is retried, after the longer of the two waits. The
///   platform's code and message are kept when present.
pub(crate) fn judge(
    resp: &HttpResponse,
    read: fn(&serde_json::Value) -> Option<Answer>,
    classify: fn(i64, &str) -> Verdict,
    secrets: &[&str],
) -> Outcome {
    let answer = serde_json::from_slice::<serde_json::Value>(&resp.body).ok().as_ref().and_then(read);
    if !(200..300).contains(&resp.status) {
        let mut out = http::non_success(resp, secrets);
        if let Some(a) = answer {
            if let Verdict::Transient { retry_after: by_code } = classify(a.code, &a.msg) {
                let by_status = match out.verdict {
                    Verdict::Transient { retry_after } => retry_after,
                    _ => None,
                };
                out.verdict = Verdict::Transient { retry_after: by_code.max(by_status) };
            }
            out.code = Some(a.code);
            out.detail = format!("HTTP {}: {}", resp.status, scrub(&a.msg, secrets));
        }
        return out;
    }
    match answer {
        Some(a) => Outcome {
            verdict: classify(a.code, &a.msg),
            http_status: Some(resp.status),
            code: Some(a.code),
            detail: scrub(&a.msg, secrets),
        },
        None => Outcome {
            http_status: Some(resp.status),
            ..Outcome::transient(format!(
                "HTTP {} without a readable code: {}",
                resp.status,
                scrub(&resp.body_snippet(), secrets)
            ))
        },
    }
}

/// Reads DingTalk's and WeCom's `{"errcode": …, "errmsg": …}`.
pub(crate) fn read_errcode(v: &serde_json::Value) -> Option<Answer> {
    let code = v.get("errcode")?.as_i64()?;
    let msg = v.get("errmsg").and_then(|m| m.as_str()).unwrap_or_default().to_string();
    Some(Answer { code, msg })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_event_links_to_its_build_else_its_pipeline() {
        let mut event = crate::event::Event::sample();
        event.build_url = Some("https://ci.example.com/job/x/42/".into());
        event.pipeline_url = Some("https://ci.example.com/job/x/".into());
        assert_eq!(event_link(&event), Some(Link::build("https://ci.example.com/job/x/42/")));
        event.build_url = Some("job/x/42/".into());
        let pipeline = Some(Link { url: "https://ci.example.com/job/x/", title: "View pipeline" });
        assert_eq!(event_link(&event), pipeline, "a relative build URL");
        event.build_url = None;
        assert_eq!(event_link(&event), pipeline);
        event.pipeline_url = None;
        assert_eq!(event_link(&event), None);
    }

    #[test]
    fn only_absolute_web_urls_are_linked() {
        for good in ["https://ci.example.com/job/x/42/", "http://10.0.0.5:8080/build?id=1"] {
            assert_eq!(link_target(Some(good)), Some(good));
        }
        for bad in
            ["job/x/42/", "/job/x/42", "ci.example.com/x", "javascript:alert(1)", "ftp://x/y", "", "http://"]
        {
            assert_eq!(link_target(Some(bad)), None, "{bad}");
        }
        assert_eq!(link_target(None), None);
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, retry_after: None, body: body.as_bytes().to_vec() }
    }

    fn classify(code: i64, _msg: &str) -> Verdict {
        match code {
            0 => Verdict::Delivered,
            7 => Verdict::Transient { retry_after: Some(Duration::from_secs(7)) },
            _ => Verdict::Permanent,
        }
    }

    #[test]
    fn judge_table() {
        // (status, body, verdict, code)
        let transient = Verdict::Transient { retry_after: None };
        let cases = [
            (200, r#"{"errcode":0,"errmsg":"ok"}"#, Verdict::Delivered, Some(0)),
            (200, r#"{"errcode":9,"errmsg":"bad tok-secret-1"}"#, Verdict::Permanent, Some(9)),
            (200, r#"{"errcode":7,"errmsg":"slow"}"#, classify(7, ""), Some(7)),
            (200, "<html>proxy</html>", transient.clone(), None),
            (200, r#"{"ok":true}"#, transient.clone(), None),
            (400, r#"{"errcode":9,"errmsg":"nope"}"#, Verdict::Permanent, Some(9)),
            (404, "not found", Verdict::Permanent, None),
            (302, "", transient.clone(), None),
            // The body's code counts whatever the status: a code worth retrying is retried
            // after its own wait, and a 5xx stays worth retrying whatever its code says.
            (400, r#"{"errcode":7,"errmsg":"slow"}"#, classify(7, ""), Some(7)),
            (429, r#"{"errcode":7,"errmsg":"slow"}"#, classify(7, ""), Some(7)),
            (503, r#"{"errcode":9,"errmsg":"nope"}"#, transient.clone(), Some(9)),
            (503, "busy", transient, None),
        ];
        for (status, body, verdict, code) in cases {
            let out = judge(&resp(status, body), read_errcode, classify, &["tok-secret-1"]);
            assert_eq!((out.verdict, out.code, out.http_status), (verdict, code, Some(status)), "{body}");
            assert!(!out.detail.contains("tok-secret-1"), "{}", out.detail);
        }
    }

    #[test]
    fn keyword_is_added_once() {
        assert_eq!(title_with_keyword("Build failed", Some("CI")), "CI Build failed");
        assert_eq!(title_with_keyword("CI: Build failed", Some("CI")), "CI: Build failed");
        assert_eq!(text_with_keyword("body\n", Some("CI")), "body\n\nCI");
        assert_eq!(text_with_keyword("CI body", Some("CI")), "CI body");
        assert_eq!(text_with_keyword("body", None), "body");
        assert_eq!(keyword(&Some("  ".into())), None);
        assert_eq!(keyword(&Some(" CI ".into())), Some("CI"));
    }

    #[test]
    fn url_secrets_name_every_credential() {
        let has = |url: &str, want: &[&str]| {
            let got = url_secrets(&url::Url::parse(url).unwrap(), None);
            for w in want {
                assert!(got.iter().any(|g| g == w), "{url}: {w} missing from {got:?}");
            }
        };
        has("https://oapi.dingtalk.com/robot/send?access_token=abc123", &["abc123"]);
        has("https://open.feishu.cn/open-apis/bot/v2/hook/tok-1", &["tok-1"]);
        // As written and decoded, whatever the key's case, and every segment after `hook`.
        has(
            "https://oapi.dingtalk.com/robot/send?access_token=DT%2BENC-SEKRIT",
            &["DT%2BENC-SEKRIT", "DT+ENC-SEKRIT"],
        );
        has("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?KEY=k-upper-1", &["k-upper-1"]);
        has("https://open.feishu.cn/open-apis/bot/v2/hook/tok-2/extra-9", &["tok-2", "extra-9"]);
        has("https://x.example/hook/a%20b%2Fc", &["a%20b%2Fc", "a b/c"]);
        let echoed = "refused /robot/send?access_token=DT+ENC-SEKRIT and KEY=k-upper-1";
        let dt =
            url_secrets(&url::Url::parse("https://d/robot/send?access_token=DT%2BENC-SEKRIT").unwrap(), None);
        let wc = url_secrets(&url::Url::parse("https://w/send?KEY=k-upper-1").unwrap(), None);
        let all: Vec<&str> = dt.iter().chain(&wc).map(String::as_str).collect();
        let scrubbed = crate::secret::scrub(echoed, &all);
        assert!(!scrubbed.contains("SEKRIT") && !scrubbed.contains("k-upper-1"), "{scrubbed}");
    }
}
