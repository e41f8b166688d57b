//! Table tests for config loading: the SPEC example, every error at once, secrets never echoed.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "DT_TOKEN" => Some("dt-token-value".into()),
        "DT_SECRET" => Some("SECdt-secret-value".into()),
        "WECOM_KEY" => Some("wecom-key-value".into()),
        "LARK_TOKEN" => Some("lark-token-value".into()),
        "LARK_SECRET" => Some("lark-secret-value".into()),
        "AUDIT_TOKEN" => Some("audit-token-value".into()),
        "AUDIT_SIGNING_KEY" => Some("audit-signing-value".into()),
        "JENKINS_HOOK_TOKEN" => Some("jenkins-token-value".into()),
        _ => None,
    }
}

const SPEC_EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "data"
public_url = "https://herald.example.com"
max_body_bytes = 1048576

[sources.jenkins]
token = "${JENKINS_HOOK_TOKEN}"

[channels.team-ding]
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN}"
secret = "${DT_SECRET}"
keyword = "CI"
msgtype = "markdown"

[channels.team-wecom]
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${WECOM_KEY}"
msgtype = "markdown"

[channels.team-lark]
type = "feishu"
url = "https://open.feishu.cn/open-apis/bot/v2/hook/${LARK_TOKEN}"
secret = "${LARK_SECRET}"
msgtype = "interactive"

[channels.team-mail]
type = "email"
smtp = "smtp://user:pass@mail.example.com:587?tls=required"
from = "CI <ci@example.com>"
to = ["dev@example.com"]
cc = []

[channels.audit]
type = "webhook"
url = "https://audit.example.com/ci"
method = "POST"
headers = { Authorization = "Bearer ${AUDIT_TOKEN}" }
secret = "${AUDIT_SIGNING_KEY}"
timeout_ms = 3000

[channels.stdout]
type = "console"

[[rules]]
name = "payments failures"
channels = ["team-ding", "team-mail"]
template = "failure"
content = "Commit: ${CI_COMMIT_TITLE}"
stop = false
[rules.when]
source = ["flow", "jenkins"]
status = ["failure", "aborted"]
final = true
pipeline = "payments-*"
branch = ["main", "release/*"]
params = { DEPLOY_ENV = "prod" }
[rules.mention]
mobiles = ["13800000000"]
user_ids = ["zhangsan"]
all = false
"#;

#[test]
fn the_spec_example_loads() {
    let cfg = parse(SPEC_EXAMPLE, &env).unwrap();
    assert_eq!(cfg.channels.len(), 6);
    let lark = cfg.channels.iter().find(|c| c.name == "team-lark").unwrap();
    assert!(matches!(lark.spec, ChannelSpec::Lark(_)), "feishu is an alias of lark");
    let audit = cfg.channels.iter().find(|c| c.name == "audit").unwrap();
    assert_eq!(audit.common.timeout_ms, 3000);
    let rule = &cfg.rules[0];
    assert_eq!(rule.when.pipeline, Some(OneOrMany::One("payments-*".into())));
    assert_eq!(rule.when.is_final, Some(true));
    assert_eq!(rule.mention.mobiles, vec!["13800000000"]);
    assert_eq!(cfg.sources["jenkins"].token.as_ref().unwrap().expose(), "jenkins-token-value");
    assert_eq!(cfg.server.max_body_bytes, 1048576);
    assert_eq!(rule.content.as_deref(), Some("Commit: ${CI_COMMIT_TITLE}"), "content keeps event references");
}

#[test]
fn an_empty_file_is_valid_with_defaults() {
    let cfg = parse("", &env).unwrap();
    assert_eq!(cfg.server.listen, "127.0.0.1:8080");
    assert_eq!(cfg.server.max_body_bytes, 1024 * 1024);
    assert!(cfg.rules.is_empty());
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let text = r#"
[server]
listen = "nowhere"
colour = "blue"

[delivery]
max_attempts = "many"
max_age = 5

[sources.jenkinz]
token = "x"

[sources.flow]
base_url = "https://flow.example.com/"

[sources.jenkins]
base_url = "ci.example.com"

[channels.a]
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=x"
keywrod = "CI"

[channels.b]
type = "pager"

[channels.c]
type = "wecom"
url = 42
msgtype = 7

[channels.d]
type = "email"
from = 5
smtp = "smtp://mail.example.com"
to = ["dev@example.com", 3]

[[rules]]
name = "r1"
channels = ["team-dingtlk"]
[rules.when]
status = ["failed"]

[[rules]]
name = "r1"
# b and c have errors of their own: naming them here is not one more.
channels = ["a", "b", "c"]
stopp = true

[[rules]]
channels = ["a"]
"#;
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    let want = [
        "server.listen: \"nowhere\" is not an address",
        "server.colour: unknown key",
        "delivery.max_attempts: invalid type",
        "delivery.max_age: invalid type",
        "sources.jenkinz: unknown format",
        "sources.flow.base_url: only the jenkins source takes base_url",
        "sources.jenkins.base_url: \"ci.example.com\" is not an http:// or https:// URL",
        "channels.a.keywrod: unknown key",
        "channels.b.type: unknown channel type \"pager\"",
        "channels.c.url: invalid type",
        "channels.c.msgtype: invalid type",
        "channels.d.from: invalid type",
        "channels.d.to[1]: invalid type",
        "rules[0].channels[0]: unknown channel \"team-dingtlk\"",
        "rules[0].when.status[0]: unknown status \"failed\"",
        "rules[1].name: duplicate rule name \"r1\" (also rules[0])",
        "rules[1].stopp: unknown key",
        "rules[2].name: required: every rule needs a name",
    ];
    for w in want {
        assert!(errors.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
}

#[test]
fn missing_variables_are_all_reported_and_parsing_goes_on() {
    let text = "[channels.a]\ntype = \"wecom\"\nurl = \"https://x/send?key=${NOPE}\"\nbogus = 1\n[server]\nlisten = \"${ALSO_NOPE}\"\n";
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert!(
        errors.iter().any(|e| e.starts_with("channels.a.url: environment variable NOPE is not set (line 3;")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("server.listen: environment variable ALSO_NOPE is not set (line 6;")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.starts_with("channels.a.bogus: unknown key")), "{errors:?}");
}

#[test]
fn syntax_errors_give_a_position_but_not_the_line() {
    let text = "[channels.a]\ntype = \"wecom\"\nurl = \"https://x/send?key=${DT_TOKEN}\" oops\n";
    let errors = parse(text, &env).unwrap_err();
    assert_eq!(errors.len(), 1);
    let msg = errors[0].to_string();
    assert!(msg.starts_with("line 3, column"), "{msg}");
    assert!(!msg.contains("dt-token-value"), "secret echoed: {msg}");
}

#[test]
fn a_syntax_error_is_placed_in_the_config_as_written() {
    let multi_line = |name: &str| match name {
        "LONG" => Some("a much longer value than its reference".to_string()),
        "LINES" => Some("one\ntwo\nthree".to_string()),
        _ => None,
    };
    let at = |text: &str| {
        let errors = parse(text, &multi_line).unwrap_err();
        errors
            .iter()
            .find(|e| e.message.starts_with("TOML syntax error"))
            .expect("a syntax error")
            .path
            .clone()
    };
    // After a value longer than its `${…}`, on the same line: the column as written.
    assert_eq!(at("a = \"${LONG}\" oops\n"), "line 1, column 15");
    // After a value of several lines: the line as written.
    assert_eq!(at("a = '''${LINES}'''\nb = \"${LONG}\"\nc = oops\n"), "line 3, column 5");
    // An unset variable's mark and a literal `$${` are replacements too.
    assert_eq!(at("a = \"${UNSET}$${x}\" oops\n"), "line 1, column 21");
    // Inside a replaced value: its `${`.
    assert_eq!(at("a = ${LINES}\n"), "line 1, column 5");
    // After a rule's content, which is left for each event to fill in.
    assert_eq!(
        at("[[rules]]\ncontent = \"Deploy ${NOTES}\"\nchannels = [\"${LONG}\"]\n[oops\n"),
        "line 4, column 6"
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let text =
        "[channels.a]\ntype = \"email\"\nsmtp = \"http://user:${DT_SECRET}@x\"\nfrom = \"bad\"\nto = []\n\
                [channels.b]\ntype = \"dingtalk\"\nurl = \"not a url ${DT_TOKEN}\"\n";
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    for e in &errors {
        assert!(!e.contains("dt-token-value") && !e.contains("SECdt-secret-value"), "{e}");
    }
    let cfg = parse(SPEC_EXAMPLE, &env).unwrap();
    let debug = format!("{cfg:?}");
    for secret in [
        "dt-token-value",
        "SECdt-secret-value",
        "wecom-key-value",
        "lark-token-value",
        "pass@",
        "audit-token",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug");
    }
}

#[test]
fn channel_values_are_checked() {
    let text =
        "[channels.a]\ntype = \"lark\"\nurl = \"ftp://x/hook/t\"\nmsgtype = \"card\"\ntimeout_ms = -1\n";
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("channels.a.timeout_ms: expected a whole number of milliseconds")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.starts_with("channels.a.msgtype: unknown variant `card`")), "{errors:?}");
}

#[test]
fn delivery_settings_and_rates() {
    let text = "[delivery]\nmax_attempts = 5\nmax_age = \"2h\"\ndedup_window = \"0s\"\nmax_wait = \"90s\"\n\
                [server]\nadmin_token = \"adm\"\n\
                [channels.a]\ntype = \"dingtalk\"\nurl = \"https://x/send?access_token=t\"\nrate = \"10/min\"\n\
                [channels.b]\ntype = \"lark\"\nurl = \"https://x/hook/t\"\n";
    let cfg = parse(text, &env).unwrap();
    assert_eq!(cfg.delivery.max_attempts, 5);
    assert_eq!(cfg.delivery.max_age.0.as_secs(), 7200);
    assert!(cfg.delivery.dedup_window.0.is_zero());
    assert_eq!(cfg.server.admin_token.as_ref().unwrap().expose(), "adm");
    let a = cfg.channels.iter().find(|c| c.name == "a").unwrap();
    assert_eq!(a.rates(), vec![Rate::per_minute(10)]);
    let b = cfg.channels.iter().find(|c| c.name == "b").unwrap();
    assert_eq!(b.rates(), vec![Rate::per_second(5), Rate::per_minute(100)], "Lark's documented limits");
    let defaults = "[channels.d]\ntype = \"dingtalk\"\nurl = \"https://x/send?access_token=t\"\n\
                    [channels.w]\ntype = \"wecom\"\nurl = \"https://x/send?key=k\"\n";
    for c in parse(defaults, &env).unwrap().channels {
        assert_eq!(c.rates(), vec![Rate::per_minute(20)], "{}: 20 a minute by default", c.name);
    }

    let bad = "[delivery]\nmax_age = \"soon\"\nmax_attempts = 0\n[channels.a]\ntype = \"wecom\"\nurl = \"https://x/s?key=k\"\nrate = [\"20/fortnight\"]\n";
    let errors: Vec<String> = parse(bad, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert!(
        errors.iter().any(|e| e.starts_with("delivery.max_age: invalid duration \"soon\"")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("channels.a.rate[0]: invalid rate \"20/fortnight\"")),
        "{errors:?}"
    );
}

#[test]
fn a_mistyped_value_is_one_error_not_a_chain() {
    // The field taken out to find the next type error is not then reported missing.
    for (text, want) in [
        ("[sources.myci]\ntype = \"generic\"\nstatus = 5\n", "sources.myci.status: invalid type"),
        ("[sources.myci]\ntype = 5\nstatus = \"/s\"\n", "sources.myci.type: invalid type"),
    ] {
        let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with(want), "{errors:#?}");
    }
}

#[test]
fn a_table_with_a_mistyped_value_still_has_its_other_fields_checked() {
    let text = r#"
[channels.ding]
type = "dingtalk"
url = "ftp://oapi.dingtalk.com/robot/send?access_token=x"
msgtype = "bogus"

[channels.mail]
type = "email"
smtp = "smtp://mail.example.com"
from = "not an address"
to = []
cc = 5

[channels.mail2]
type = "email"
smtp = "smtp://mail.example.com"
from = "ci@example.com"
to = 5

[[rules]]
name = "r"
channels = ["nope", "ding"]
[rules.when]
final = "yes"
status = "failed"
"#;
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    let want = [
        "channels.ding.msgtype: unknown variant `bogus`",
        "channels.ding.url: expected an http:// or https:// URL",
        "channels.mail.cc: invalid type",
        "channels.mail.to: at least one recipient is required",
        "channels.mail.from: invalid address \"not an address\"",
        // Taken out as mistyped, `to` is then empty: that is not a second error.
        "channels.mail2.to: invalid type",
        "rules[0].when.final: invalid type",
        "rules[0].channels[0]: unknown channel \"nope\"",
        "rules[0].when.status[0]: unknown status \"failed\"",
    ];
    for w in want {
        assert!(errors.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
}

#[test]
fn what_was_read_is_kept_alongside_the_errors() {
    let text = "rules = [5, { name = \"b\", channels = [\"c\"], template = \"mine\" }]\n\
                [server]\nbogus = 1\n[channels.c]\ntype = \"console\"\n";
    let read = read_text(text, &env).unwrap();
    assert_eq!(read.errors.len(), 2, "{:#?}", read.errors);
    assert!(read.templates_read);
    assert_eq!(read.config.channels.len(), 1);
    let rules: Vec<(usize, &str)> = read.config.rules.iter().map(|r| (r.at, r.name.as_str())).collect();
    assert_eq!(rules, [(1, "b")], "the rule read keeps its index in the file");

    let read =
        read_text("[channels.a]\ntype = \"webhook\"\nurl = \"https://h/\"\nsecret = \"k-${NOPE}\"\n", &env)
            .unwrap();
    assert_eq!(read.reported, ["channels.a.secret"], "the value holding the unset variable");
    let ChannelSpec::Webhook(hook) = &read.config.channels[0].spec else { panic!("a webhook") };
    assert_eq!(hook.secret.as_ref().map(|s| s.expose()), Some("k-"), "read as if the variable were empty");

    let read = read_text("[templates]\ndir = \"/no/such/dir\"\n", &env).unwrap();
    assert!(!read.templates_read, "without its templates, a rule's template cannot be looked for");
    assert!(read_text("[server\n", &env).is_err(), "nothing to read in a file that is not TOML");
}

#[test]
fn no_error_echoes_a_value_from_the_environment_a_quoted_string_or_a_mark() {
    let text = r#"
[channels.a]
type = "webhook"
url = "https://h/"
headers = "Authorization: Bearer ${AUDIT_TOKEN}"
timeout_ms = 9223372036854775807
[channels.b]
type = "dingtalk"
url = "https://h/"
msgtype = "${DT_SECRET}"
[channels."${NOPE_NAME}"]
type = "console"
keyword = "literal-secret-in-the-file"
[sources]
jenkins = "literal-token-in-the-file"
[people.bob]
mobiles = 5
[[rules]]
name = "r"
channels = ["a"]
[rules.mention]
people = ["bob"]
[rules.quiet]
from = 2200
to = "08:00"
bypas = ["failure"]
"#;
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    let want = [
        "channels.${NOPE_NAME}: environment variable NOPE_NAME is not set (line 11;",
        "channels.${NOPE_NAME}.keyword: unknown key",
        "channels.a.timeout_ms: expected a whole number of milliseconds from 1 to 600000",
        "channels.a.headers: invalid type: string, expected a map",
        "channels.b.msgtype: unknown variant `***`",
        "people.bob.mobiles: unknown key",
        // Taken out with its table, whose `from` is mistyped; `bypas` is still found, at its path.
        "rules[0].quiet.from: invalid type",
        "rules[0].quiet.bypas: unknown key",
        "sources.jenkins: invalid type: string, expected struct SourceConfig",
    ];
    for w in want {
        assert!(errors.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), want.len(), "bob is declared, so not an unknown person: {errors:#?}");
    for e in &errors {
        for leak in ["audit-token-value", "SECdt-secret-value", "literal-", "\u{e000}", "\u{e001}", "?"] {
            assert!(!e.contains(leak), "{leak:?} in {e}");
        }
    }
}

#[test]
fn a_config_cannot_forge_the_mark_of_an_unset_variable() {
    let mark = "\\uE0000.0\\uE001";
    let text = format!(
        "[server]\nlisten = \"{mark}\"\nadmin_token = 98765432101\n[channels.c]\ntype = \"${{NOPE}}\"\n"
    );
    let read = read_text(&text, &env).unwrap();
    let errors: Vec<String> = read.errors.iter().map(|e| e.to_string()).collect();
    assert!(
        errors[0].starts_with("channels.c.type: environment variable NOPE is not set (line 5;"),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e == "server.admin_token: invalid type: integer, expected a string"),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("server.listen: ")),
        "the forged mark is just text: {errors:#?}"
    );
}

#[test]
fn an_unset_variable_hides_neither_an_unknown_key_nor_a_secret_holding_another() {
    let env = |name: &str| match name {
        "SHORT" => Some("deploy".to_string()),
        "LONG" => Some("deploy-Pass-9876".to_string()),
        "FLOAT" => Some("98765.43210".to_string()),
        _ => None,
    };
    let text = "[server]\ndata_dir = \"${SHORT}\"\nlisten = \"${LONG}\"\n\
                [delivery]\nmax_attempts = ${FLOAT}\n\
                [channels.c]\ntype = \"console\"\nsecert = \"${NOPE}\"\n";
    let errors: Vec<String> = read_text(text, &env).unwrap().errors.iter().map(|e| e.to_string()).collect();
    let want = [
        "channels.c.secert: environment variable NOPE is not set (line 8;",
        "channels.c.secert: unknown key",
        "delivery.max_attempts: invalid type: floating point, expected u32",
        "server.listen: \"***\" is not an address",
    ];
    for w in want {
        assert!(errors.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    assert!(!errors.iter().any(|e| e.contains("Pass") || e.contains("98765")), "{errors:#?}");
}

#[test]
fn a_rule_after_a_rejected_one_keeps_its_path() {
    let text = "[channels.c]\ntype = \"console\"\n\
                [[rules]]\nname = 5\nchannels = [\"c\"]\n\
                [[rules]]\nname = \"b\"\nchannels = [\"nope\"]\n";
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert!(errors.iter().any(|e| e.starts_with("rules[0].name: invalid type")), "{errors:#?}");
    assert!(
        errors.iter().any(|e| e.starts_with("rules[1].channels[0]: unknown channel \"nope\"")),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn only_the_github_source_takes_a_secret() {
    let text = "[sources.jenkins]\ntoken = \"a\"\nsecret = \"b\"\n[sources.github]\nsecret = \"c\"\n";
    let errors: Vec<String> = parse(text, &env).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("sources.jenkins.secret: only the github source takes secret"),
        "{errors:?}"
    );
}

#[test]
fn a_rules_content_written_inline_is_left_for_each_event() {
    let text = "rules = [{ name = \"r\", channels = [\"c\"], content = \"Commit: ${CI_COMMIT_TITLE}\" }]\n\
                [channels.c]\ntype = \"console\"\n";
    let cfg = parse(text, &env).expect("CI_COMMIT_TITLE is the event's, not the environment's");
    assert_eq!(cfg.rules[0].content.as_deref(), Some("Commit: ${CI_COMMIT_TITLE}"));
}
