//! The people directory end to end: a config with `[people]`, built into a `Gateway`, and the
//! messages `plan` builds for an event. Each platform must carry the person's own id kind:
//! DingTalk `at.atMobiles` / `at.atUserIds`, WeCom `<@user_id>`, Lark `<at id=open_id>`, email
//! extra recipients, the console the people's keys. `check` warns about missing ids.
//!
//! Nothing is sent: `plan` is pure, and the robots' URLs are never contacted.

use std::sync::Arc;

use herald::channels::MessageBody;
use herald::clock::SystemClock;
use herald::config;
use herald::event::Event;
use herald::gateway::{Built, Gateway, Planned};
use herald::outbox::memory::MemoryOutbox;
use serde_json::{json, Value};

const CONFIG: &str = r#"
[people.alice]
email = "alice@example.com"
git = ["Alice Liu", "alice@example.com"]
dingtalk_mobile = "13800000000"
wecom_user_id = "alice"
lark_open_id = "ou_alice"

[people.bob]
email = "bob@example.com"
git = ["Bob Chen"]
dingtalk_user_id = "bob.dt"
wecom_user_id = "bob"

[people.carol]
git = ["Carol"]

[channels.ding]
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=test-token"
msgtype = "markdown"

[channels.wecom]
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=test-key"
msgtype = "markdown"

[channels.lark]
type = "lark"
url = "https://open.feishu.cn/open-apis/bot/v2/hook/test-hook"
msgtype = "interactive"

[channels.mail]
type = "email"
smtp = "smtp://127.0.0.1:2525"
from = "CI <ci@example.com>"
to = ["dev@example.com"]

[channels.stdout]
type = "console"

[channels.hook]
type = "webhook"
url = "https://audit.example.com/ci"

[[rules]]
name = "failures"
channels = ["ding", "wecom", "lark", "mail", "stdout", "hook"]
[rules.when]
status = "failure"
[rules.mention]
people = ["alice"]
author = true

[[rules]]
name = "carol's pipelines"
channels = ["wecom", "mail", "stdout"]
[rules.when]
pipeline = "carol-*"
[rules.mention]
people = ["carol"]
"#;

fn built() -> Built {
    let cfg = config::parse(CONFIG, &|_| None).expect("test config is valid");
    let built = Gateway::build(&cfg, Arc::new(MemoryOutbox::new()), Arc::new(SystemClock));
    built.unwrap_or_else(|errors| panic!("the gateway builds: {errors:?}"))
}

/// A failed `payments-api` build whose author is `author`.
fn failure(author: &str) -> Event {
    let mut event = Event::sample();
    event.author = Some(author.to_string());
    event
}

fn body<'a>(planned: &'a [Planned], channel: &str) -> &'a MessageBody {
    let p = planned.iter().find(|p| p.route.channel == channel);
    &p.unwrap_or_else(|| panic!("no message for {channel}")).message.body
}

fn json<'a>(planned: &'a [Planned], channel: &str) -> &'a Value {
    match body(planned, channel) {
        MessageBody::Json { json } => json,
        other => panic!("{channel}: not JSON: {other:?}"),
    }
}

fn lark_text(planned: &[Planned]) -> String {
    json(planned, "lark")["card"]["elements"][0]["text"]["content"].as_str().unwrap_or_default().to_string()
}

#[test]
fn people_and_the_author_get_each_platforms_id() {
    // The author is written `Name <email>`; "Bob Chen" is one of bob's git names.
    let planned = built().gateway.plan(&failure("Bob Chen <bob.chen@corp.example>"));
    assert_eq!(planned.len(), 6, "{planned:?}");

    let ding = json(&planned, "ding");
    assert_eq!(ding["at"]["atMobiles"], json!(["13800000000"]));
    assert_eq!(ding["at"]["atUserIds"], json!(["bob.dt"]));
    assert_eq!(ding["at"]["isAtAll"], json!(false));
    let text = ding["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("@13800000000") && text.contains("@bob.dt"), "{text}");

    let wecom = json(&planned, "wecom")["markdown"]["content"].as_str().unwrap();
    assert!(wecom.contains("<@alice><@bob>"), "{wecom}");

    // bob has no Lark id: only alice is mentioned there.
    let lark = lark_text(&planned);
    assert!(lark.contains("<at id=ou_alice></at>") && lark.matches("<at id=").count() == 1, "{lark}");

    let MessageBody::Email { to, .. } = body(&planned, "mail") else { panic!("mail is not an email") };
    assert_eq!(to, &["alice@example.com", "bob@example.com"]);

    let MessageBody::Text { text } = body(&planned, "stdout") else { panic!("stdout is not text") };
    assert!(text.ends_with("mentions: @alice @bob"), "{text}");

    assert!(matches!(body(&planned, "hook"), MessageBody::Raw { .. }));
}

#[test]
fn an_author_is_matched_case_insensitively_by_key_email_or_git_name() {
    let gateway = built().gateway;
    for author in ["bob", "BOB@example.com", "bob chen"] {
        let planned = gateway.plan(&failure(author));
        assert_eq!(json(&planned, "ding")["at"]["atUserIds"], json!(["bob.dt"]), "{author}");
    }
    // alice is both named and the author: mentioned once.
    let planned = gateway.plan(&failure("Alice Liu"));
    assert_eq!(json(&planned, "ding")["at"]["atMobiles"], json!(["13800000000"]));
    let wecom = json(&planned, "wecom")["markdown"]["content"].as_str().unwrap();
    assert_eq!(wecom.matches("<@alice>").count(), 1, "{wecom}");
}

#[test]
fn an_unknown_author_leaves_only_the_named_people() {
    let planned = built().gateway.plan(&failure("Mallory <mallory@example.org>"));
    let ding = json(&planned, "ding");
    assert_eq!(ding["at"]["atMobiles"], json!(["13800000000"]));
    assert_eq!(ding["at"]["atUserIds"], json!([]));
    let MessageBody::Email { to, .. } = body(&planned, "mail") else { panic!("mail is not an email") };
    assert_eq!(to, &["alice@example.com"]);
    let MessageBody::Text { text } = body(&planned, "stdout") else { panic!("stdout is not text") };
    assert!(text.ends_with("mentions: @alice"), "{text}");
}

#[test]
fn a_person_without_an_id_for_a_routed_channel_is_warned_about() {
    let warnings = built().warnings;
    let found: Vec<(&str, &str)> = warnings.iter().map(|w| (w.path.as_str(), w.message.as_str())).collect();
    let about = |needle: &str| {
        found.iter().filter(|(path, m)| *path == "rules[1].mention" && m.contains(needle)).count()
    };
    assert_eq!(
        about(r#"person "carol" has no wecom_user_id or wecom_mobile for channel type wecom"#),
        1,
        "{found:?}"
    );
    assert_eq!(about(r#"person "carol" has no email for channel type email"#), 1, "{found:?}");
    // The console names people by key; alice has every id; someone has an id for the author.
    assert_eq!(found.len(), 2, "{found:?}");

    // carol's own pipeline: she has no id, so she is named on the console only.
    let mut event = failure("Carol");
    event.pipeline = Some("carol-web".into());
    let planned = built().gateway.plan(&event);
    let MessageBody::Text { text } = body(&planned, "stdout") else { panic!("stdout is not text") };
    assert!(text.ends_with("mentions: @alice @carol"), "{text}");
    let MessageBody::Email { to, .. } = body(&planned, "mail") else { panic!("mail is not an email") };
    assert_eq!(to, &["alice@example.com"]);
}
