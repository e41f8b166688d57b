//! The email channel against a real SMTP server process (`tests/support/smtp_sink.py`):
//! plain with AUTH, STARTTLS and implicit TLS with a private CA, and every failure class. The
//! received bytes are read back and checked with Python's MIME parser.
//!
//! Needs python3 with aiosmtpd and the openssl CLI; without them these tests fail, never skip.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald::channels::email::Email;
use herald::channels::{Attempt, Channel, ChannelDeps, Message, MessageBody, Outcome, Prepare, Verdict};
use herald::config::{EmailConfig, Mention, Person};
use herald::event::Event;
use herald::people::Directory;
use herald::render::{self, ContextExtras, Renderer};
use herald::secret::SecretUrl;
use support::smtp::{Mode, SmtpSink, TestCa};

const USER: &str = "ci-bot";
const PASSWORD: &str = "Pa55-w0rd-9f1c";
const TIMEOUT: Duration = Duration::from_secs(10);

fn deps() -> ChannelDeps {
    ChannelDeps {
        renderer: Arc::new(Renderer::new(None).expect("built-in templates")),
        http: reqwest::Client::new(),
    }
}

fn config(smtp: &str, ca_file: Option<&Path>) -> EmailConfig {
    EmailConfig {
        smtp: SecretUrl::parse(smtp).unwrap(),
        from: "Herald CI <ci@example.com>".into(),
        to: vec!["dev@example.com".into(), "测试组 <qa@example.com>".into()],
        cc: vec!["lead@example.com".into()],
        ca_file: ca_file.map(Path::to_path_buf),
    }
}

fn channel(smtp: &str, ca_file: Option<&Path>, timeout: Duration) -> Email {
    Email::new("team-mail", config(smtp, ca_file), timeout, &deps()).expect("valid email config")
}

fn url(scheme: &str, password: &str, port: u16, query: &str) -> String {
    format!("{scheme}://{USER}:{password}@127.0.0.1:{port}{query}")
}

fn mail() -> Message {
    Message {
        body: MessageBody::Email {
            subject: "构建失败: payments-api #42".into(),
            text: "流水线 payments-api 失败\nplain part".into(),
            html: "<p>流水线 payments-api 失败 <b>html part</b></p>".into(),
            to: vec![],
        },
        template_errors: vec![],
    }
}

fn assert_no_password(o: &Outcome) {
    let all = format!("{o:?} {}", o.detail);
    assert!(!all.contains(PASSWORD) && !all.contains("wrong-Pa55"), "a password leaked: {all}");
}

#[tokio::test]
async fn plain_with_auth_delivers_multipart_alternative() {
    let sink = SmtpSink::start(Mode::Plain, Some((USER, PASSWORD)), None);
    let ch = channel(&url("smtp", PASSWORD, sink.port, ""), None, TIMEOUT);
    let out = ch.send(&mail(), &Attempt::first("d-plain-1")).await;
    assert!(out.is_delivered(), "{out:?}");
    assert_eq!(out.code, Some(250));

    let got = sink.messages();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.auth_user.as_deref(), Some(USER));
    assert_eq!(m.mail_from, "ci@example.com");
    assert_eq!(m.rcpt_tos, ["dev@example.com", "qa@example.com", "lead@example.com"]);

    let p = &m.parsed;
    let h = &p["headers"];
    assert_eq!(p["content_type"], "multipart/alternative");
    assert_eq!(h["subject"], "构建失败: payments-api #42");
    assert_eq!(h["from"], "Herald CI <ci@example.com>");
    assert_eq!(h["to"], "dev@example.com, 测试组 <qa@example.com>");
    assert_eq!(h["cc"], "lead@example.com");
    assert_eq!(h["auto-submitted"], "auto-generated");
    assert_eq!(h["message-id"], "<herald.d-plain-1@example.com>");
    assert!(h["date"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(h["mime-version"], "1.0");

    let parts = p["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(
        (parts[0]["type"].as_str(), parts[0]["charset"].as_str()),
        (Some("text/plain"), Some("utf-8"))
    );
    assert_eq!((parts[1]["type"].as_str(), parts[1]["charset"].as_str()), (Some("text/html"), Some("utf-8")));
    assert!(parts[0]["text"].as_str().unwrap().contains("流水线 payments-api 失败\r\nplain part"));
    assert!(parts[1]["text"].as_str().unwrap().contains("<b>html part</b>"));

    // The raw bytes: headers are 7-bit (RFC 2047 words), the plain part comes first.
    assert!(m.raw.is_ascii(), "non-ASCII bytes on the wire");
    let (plain, html) =
        (m.raw.find("Content-Type: text/plain").unwrap(), m.raw.find("Content-Type: text/html").unwrap());
    assert!(plain < html);
    assert!(m.raw.contains("Auto-Submitted: auto-generated\r\n"));
}

#[tokio::test]
async fn starttls_required_trusts_the_ca_file() {
    let ca = TestCa::generate();
    let sink = SmtpSink::start(Mode::StartTls, Some((USER, PASSWORD)), Some(&ca));
    let smtp = url("smtp", PASSWORD, sink.port, "?tls=required");

    let ch = channel(&smtp, Some(&ca.ca_pem), TIMEOUT);
    let out = ch.send(&mail(), &Attempt::first("d-starttls")).await;
    assert!(out.is_delivered(), "{out:?}");
    assert_eq!(sink.messages()[0].auth_user.as_deref(), Some(USER));

    // Without the CA the certificate is not trusted, and nothing is sent in the clear.
    let untrusting = channel(&smtp, None, TIMEOUT);
    let out = untrusting.send(&mail(), &Attempt::first("d-starttls-2")).await;
    assert!(!out.is_delivered(), "{out:?}");
    assert!(out.detail.contains("certificate"), "{}", out.detail);
    assert_no_password(&out);
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn implicit_tls_smtps() {
    let ca = TestCa::generate();
    let sink = SmtpSink::start(Mode::Smtps, Some((USER, PASSWORD)), Some(&ca));
    let ch = channel(&url("smtps", PASSWORD, sink.port, ""), Some(&ca.ca_pem), TIMEOUT);
    let out = ch.send(&mail(), &Attempt::first("d-smtps")).await;
    assert!(out.is_delivered(), "{out:?}");
    let got = sink.messages();
    assert_eq!(got[0].auth_user.as_deref(), Some(USER));
    assert_eq!(got[0].parsed["headers"]["subject"], "构建失败: payments-api #42");
}

#[tokio::test]
async fn wrong_password_is_permanent_535() {
    let sink = SmtpSink::start(Mode::Plain, Some((USER, PASSWORD)), None);
    let ch = channel(&url("smtp", "wrong-Pa55", sink.port, ""), None, TIMEOUT);
    let out = ch.send(&mail(), &Attempt::first("d-auth")).await;
    assert_eq!(out.verdict, Verdict::Permanent, "{out:?}");
    assert_eq!(out.code, Some(535));
    assert_no_password(&out);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn reply_451_is_transient_and_the_retry_delivers() {
    let mut sink = SmtpSink::start(Mode::Plain, Some((USER, PASSWORD)), None);
    sink.fail_next(451, 1);
    let ch = channel(&url("smtp", PASSWORD, sink.port, ""), None, TIMEOUT);
    let first = Attempt::first("d-451");
    let out = ch.send(&mail(), &first).await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: None }, "{out:?}");
    assert_eq!(out.code, Some(451));
    assert_no_password(&out);

    let retry = Attempt { number: 2, ..first };
    let out = ch.send(&mail(), &retry).await;
    assert!(out.is_delivered(), "{out:?}");
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].parsed["headers"]["message-id"], "<herald.d-451@example.com>");
}

#[tokio::test]
async fn reply_550_is_permanent() {
    let mut sink = SmtpSink::start(Mode::Plain, None, None);
    sink.fail_next(550, 1);
    let ch = channel(&format!("smtp://127.0.0.1:{}", sink.port), None, TIMEOUT);
    let out = ch.send(&mail(), &Attempt::first("d-550")).await;
    assert_eq!(out.verdict, Verdict::Permanent, "{out:?}");
    assert_eq!(out.code, Some(550));
    assert!(out.detail.contains("scripted permanent failure"), "{}", out.detail);
}

#[tokio::test]
async fn server_down_is_transient() {
    // Bound but not listening, for the whole test: a connection is refused, and no other
    // test's server can take the port meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let ch = channel(&url("smtp", PASSWORD, port, ""), None, TIMEOUT);
    let out = ch.send(&mail(), &Attempt::first("d-down")).await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: None }, "{out:?}");
    assert_eq!(out.code, None);
    assert_no_password(&out);
}

#[tokio::test]
async fn a_stalled_server_times_out_and_the_next_attempt_starts_fresh() {
    let mut sink = SmtpSink::start(Mode::Plain, None, None);
    // The stall is at DATA: a timeout long enough for the greeting and envelope on a loaded
    // machine, and a stall far longer than it.
    sink.stall_next(20.0, 1);
    let ch = channel(&format!("smtp://127.0.0.1:{}", sink.port), None, Duration::from_secs(2));
    let out = ch.send(&mail(), &Attempt::first("d-stall")).await;
    assert_eq!(out.verdict, Verdict::Transient { retry_after: None }, "{out:?}");
    assert!(out.detail.contains("timed out"), "{}", out.detail);

    let out = ch.send(&mail(), &Attempt::first("d-after-stall")).await;
    assert!(out.is_delivered(), "{out:?}");
}

#[tokio::test]
async fn prepare_renders_the_built_in_templates_and_they_arrive() {
    let sink = SmtpSink::start(Mode::Plain, None, None);
    let ch = channel(&format!("smtp://127.0.0.1:{}", sink.port), None, TIMEOUT);
    let mut event = Event::sample();
    event.pipeline = Some("支付服务".into());
    let ctx = render::context(&event, &ContextExtras::default());
    let none = Mention::default();
    let input = Prepare::new(&event, ContextExtras::default(), "default", &none);
    let msg = ch.prepare(&input);
    assert!(msg.template_errors.is_empty(), "{:?}", msg.template_errors);
    let MessageBody::Email { subject, text, html, .. } = &msg.body else { panic!("{msg:?}") };
    assert!(subject.contains("支付服务") && !subject.contains('\n'), "{subject:?}");
    assert!(text.contains("支付服务") && html.contains("支付服务"));

    assert!(ch.send(&msg, &Attempt::first("d-rendered")).await.is_delivered());
    let got = sink.messages();
    assert_eq!(got[0].parsed["headers"]["subject"], subject.as_str());

    assert!(ch.check_templates("default", &ctx).is_empty());
    let errors = ch.check_templates("no-such-template", &ctx);
    let parts: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
    assert_eq!(parts, ["subject", "text", "html"], "{errors:?}");
}

#[tokio::test]
async fn a_user_template_without_html_makes_a_plain_text_mail_of_its_own_words() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("release.email.hbs"), "Released {{pipeline}} #{{build_number}}\n")
        .unwrap();
    // `default` overridden the same way: its text is the user's, and so is the whole mail.
    std::fs::write(dir.path().join("default.email.hbs"), "Our own default for {{pipeline}}\n").unwrap();
    std::fs::write(dir.path().join("styled.email.hbs"), "Styled {{pipeline}}\n").unwrap();
    std::fs::write(dir.path().join("styled.html.hbs"), "<p>Styled <b>{{pipeline}}</b></p>").unwrap();
    let deps = ChannelDeps {
        renderer: Arc::new(Renderer::new(Some(dir.path())).expect("templates")),
        http: reqwest::Client::new(),
    };
    let sink = SmtpSink::start(Mode::Plain, None, None);
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let ch = Email::new("team-mail", config(&smtp, None), TIMEOUT, &deps).expect("valid email config");
    let event = Event::sample();
    let none = Mention::default();
    let ctx = render::context(&event, &ContextExtras::default());
    // `failure` is built around `default`: around the user's, its text is the user's too.
    let plain = [
        ("release", "Released payments-api #42"),
        ("default", "Our own default for payments-api"),
        ("failure", "Our own default for payments-api"),
    ];
    for (i, (template, words)) in plain.into_iter().enumerate() {
        let msg = ch.prepare(&Prepare::new(&event, ContextExtras::default(), template, &none));
        assert!(msg.template_errors.is_empty(), "{:?}", msg.template_errors);
        assert!(ch.send(&msg, &Attempt::first(format!("d-{template}"))).await.is_delivered());
        let got = &sink.messages()[i].parsed;
        assert_eq!(got["content_type"], "text/plain", "{template}: no built-in HTML beside the user's text");
        let parts = got["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1, "{parts:?}");
        assert_eq!(parts[0]["charset"], "utf-8");
        assert!(parts[0]["text"].as_str().unwrap().contains(words), "{parts:?}");
        assert!(ch.check_templates(template, &ctx).is_empty());
    }
    // With an HTML part of the user's own, the mail has both.
    let msg = ch.prepare(&Prepare::new(&event, ContextExtras::default(), "styled", &none));
    assert!(ch.send(&msg, &Attempt::first("d-styled")).await.is_delivered());
    let got = &sink.messages()[3].parsed;
    assert_eq!(got["content_type"], "multipart/alternative");
    assert!(got["parts"][1]["text"].as_str().unwrap().contains("<b>payments-api</b>"));
}

#[tokio::test]
async fn preview_mentions_and_rate_key() {
    let ch = channel(&url("smtp", PASSWORD, 2525, "?tls=opportunistic"), None, TIMEOUT);
    let p = ch.preview(&mail(), &Attempt::first("d-preview"));
    assert_eq!(p.method, "SMTP");
    assert_eq!(p.url, "smtp://ci-bot:***@127.0.0.1:2525?tls=opportunistic");
    let names: Vec<&str> = p.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["From", "To", "Cc", "Subject"]);
    assert_eq!(p.headers[3].1, "构建失败: payments-api #42");
    let (text, html) = (p.body.find("plain part").unwrap(), p.body.find("<b>html part</b>").unwrap());
    assert!(text < html);

    assert!(ch.check_mention(&Mention::default()).is_empty());
    let mention = Mention { mobiles: vec!["13800000000".into()], ..Mention::default() };
    assert_eq!(ch.check_mention(&mention).len(), 1);
    let people = Mention { people: vec!["alice".into()], author: true, ..Mention::default() };
    assert!(ch.check_mention(&people).is_empty(), "people are addressed by email");
    let emails = Mention { emails: vec!["alice@example.com".into()], ..Mention::default() };
    assert!(ch.check_mention(&emails).is_empty());
    let key = ch.rate_key();
    assert!(key.contains("127.0.0.1:2525") && key.contains("ci@example.com") && !key.contains(PASSWORD));
}

fn person(email: &str, git: &[&str]) -> Person {
    Person {
        email: Some(email.into()),
        git: git.iter().map(|g| g.to_string()).collect(),
        ..Person::default()
    }
}

#[tokio::test]
async fn a_resolved_mentions_emails_receive_the_mail() {
    let sink = SmtpSink::start(Mode::Plain, None, None);
    let ch = channel(&format!("smtp://127.0.0.1:{}", sink.port), None, TIMEOUT);
    let people = BTreeMap::from([
        ("alice".to_string(), person("alice@example.com", &[])),
        ("bob".to_string(), person("bob@example.com", &["Bob Chen"])),
        // Already a configured recipient, in another case: not added twice.
        ("dev".to_string(), person("DEV@example.com", &[])),
        ("lead".to_string(), person("lead@example.com", &[])),
    ]);
    let rule = Mention {
        people: vec!["alice".into(), "dev".into(), "lead".into()],
        author: true,
        ..Default::default()
    };
    let mut event = Event::sample();
    event.author = Some("bob chen".into());
    let mention = Directory::new(&people).resolve(&rule, ch.kind(), &event);
    assert_eq!(
        mention.emails,
        ["alice@example.com", "DEV@example.com", "lead@example.com", "bob@example.com"]
    );
    assert!(ch.check_mention(&rule).is_empty() && ch.check_mention(&mention).is_empty());

    let msg = ch.prepare(&Prepare::new(&event, ContextExtras::default(), "default", &mention));
    let MessageBody::Email { to, .. } = &msg.body else { panic!("{msg:?}") };
    assert_eq!(to, &mention.emails);
    let to_header = ch.preview(&msg, &Attempt::first("d-people")).headers[1].clone();
    let want = "dev@example.com, 测试组 <qa@example.com>, alice@example.com, bob@example.com";
    assert_eq!(to_header, ("To".to_string(), want.to_string()));

    assert!(ch.send(&msg, &Attempt::first("d-people")).await.is_delivered());
    let got = sink.messages();
    let envelope =
        ["dev@example.com", "qa@example.com", "alice@example.com", "bob@example.com", "lead@example.com"];
    assert_eq!(got[0].rcpt_tos, envelope);
    assert_eq!(got[0].parsed["headers"]["to"], want);
    assert_eq!(got[0].parsed["headers"]["cc"], "lead@example.com");

    // An address that does not parse is skipped; everyone else still gets the mail.
    let mut bad = mail();
    if let MessageBody::Email { to, .. } = &mut bad.body {
        *to = vec!["not an address".into(), "carol@example.com".into()];
    }
    assert!(ch.send(&bad, &Attempt::first("d-bad-address")).await.is_delivered());
    assert_eq!(
        sink.messages()[1].rcpt_tos,
        ["dev@example.com", "qa@example.com", "carol@example.com", "lead@example.com"]
    );
}

#[test]
fn stored_emails_without_recipients_still_load() {
    let old = r#"{"body":{"kind":"email","subject":"S","text":"T","html":"H"}}"#;
    let msg: Message = serde_json::from_str(old).expect("a message stored before people");
    assert_eq!(
        msg.body,
        MessageBody::Email { subject: "S".into(), text: "T".into(), html: "H".into(), to: vec![] }
    );
    assert_eq!(serde_json::to_string(&msg).unwrap(), old, "an empty `to` is not written");

    let with = MessageBody::Email {
        subject: "S".into(),
        text: "T".into(),
        html: "H".into(),
        to: vec!["alice@example.com".into()],
    };
    let json = serde_json::to_value(&with).unwrap();
    assert_eq!(json["to"], serde_json::json!(["alice@example.com"]));
    assert_eq!(serde_json::from_value::<MessageBody>(json).unwrap(), with);
}

#[tokio::test]
async fn the_password_never_reaches_debug_display_or_errors() {
    let smtp = url("smtp", PASSWORD, 2525, "?tls=required");
    let cfg = config(&smtp, None);
    let ch = channel(&smtp, None, TIMEOUT);
    let preview = ch.preview(&mail(), &Attempt::first("d-secret"));
    let mut printed =
        vec![format!("{cfg:?}"), format!("{}", cfg.smtp), format!("{ch:?}"), format!("{preview:?}")];

    let missing_ca = config(&smtp, Some(Path::new("/nonexistent/ca.pem")));
    let bad_from = EmailConfig { from: "not an address".into(), ..config(&smtp, None) };
    let no_tls = config(&url("smtp", PASSWORD, 2525, ""), Some(Path::new("/nonexistent/ca.pem")));
    let bad_scheme = config(&url("smtpx", PASSWORD, 2525, ""), None);
    for bad in [missing_ca, bad_from, no_tls, bad_scheme] {
        let err = Email::new("m", bad, TIMEOUT, &deps())
            .expect_err("invalid config")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        printed.push(err);
    }
    for text in &printed {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
    assert!(printed[4].contains("ca_file"), "{}", printed[4]);
}

#[test]
fn the_channel_can_be_built_and_dropped_outside_a_runtime() {
    // `herald check` builds channels without sending; `main` may drop them after its runtime.
    let ch = channel("smtp://127.0.0.1:9", None, Duration::from_secs(2));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt.block_on(ch.send(&mail(), &Attempt::first("d-runtime")));
    assert!(!out.is_delivered(), "{out:?}");
    drop(rt);
    drop(ch);
}
