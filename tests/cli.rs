//! The `herald` binary as users run it: `check` on every example, every error at once,
//! `render` dry runs, `serve` refusing a bad config before it opens the port, and
//! `herald deliveries` answering as the admin API does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn herald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HERALD_LOG")
        .output()
        .expect("the herald binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn check_passes_on_every_example_config() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = herald(&["check", "--config", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}{}",
                path.display(),
                stdout(&out),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = stdout(&out);
            assert_eq!(text.lines().count(), 1, "one summary line, warnings on stderr: {text}");
            assert!(text.contains(": OK ("), "{text}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected the quickstart and the multi-team example");
}

#[test]
fn check_passes_on_the_spec_example_as_written() {
    // SPEC §2's example, verbatim: its variables set, and a templates dir where it says.
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec-example.toml");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    let vars = ["DT_TOKEN", "WECOM_KEY", "LARK_TOKEN", "LARK_SECRET", "AUDIT_TOKEN", "AUDIT_SIGNING_KEY"];
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check", "--config", spec.to_str().unwrap()])
        .current_dir(dir.path())
        .envs(vars.iter().map(|v| (*v, "value")))
        .env("DT_SECRET", "SECvalue")
        .env("JENKINS_HOOK_TOKEN", "value")
        .env_remove("HERALD_LOG")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(": OK (6 channels, 1 rules, 1 sources"), "{text}");
}

#[test]
fn check_lists_every_error_with_its_location_and_exits_1() {
    let (_dir, path) = write_config(
        r#"
[channels.team-ding]
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=tok-secret-123"

[channels.team-wecom]
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
msgtype = "markdown_v2"

[[rules]]
name = "a"
channels = ["team-ding", "team-wecom", "team-dingtlk"]
template = "nope"

[[rules]]
name = "b"
channels = ["team-wecom"]
[rules.when]
status = "broken"
"#,
    );
    let out = herald(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("rules[0].channels[2]: unknown channel \"team-dingtlk\""), "{text}");
    assert!(text.contains("rules[1].when.status[0]: unknown status \"broken\""), "{text}");
    assert!(text.contains("rules[0].template: template \"nope\" not found"), "{text}");
    assert!(!text.contains("tok-secret-123"), "{text}");
}

#[test]
fn check_reports_what_reading_and_compiling_find_in_one_run() {
    let (_dir, path) = write_config(
        r#"
[server]
bogus = 1

[channels.c]
type = "console"

[channels.d]
type = "dingtalk"
url = "ftp://oapi.dingtalk.com/robot/send?access_token=x"
msgtype = "bogus"

[[rules]]
name = "a"
channels = ["c"]
template = "missing-tpl"
[rules.when]
pipeline = "a[b"

[[rules]]
name = 5
channels = ["c"]

[[rules]]
name = "b"
channels = ["c", "d", "nope"]
template = "also-missing"
[rules.when]
final = "yes"
status = "failed"
"#,
    );
    let out = herald(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let want = [
        "server.bogus: unknown key",
        "channels.d.msgtype: unknown variant `bogus`",
        "channels.d.url: expected an http:// or https:// URL",
        "rules[1].name: invalid type",
        "rules[2].when.final: invalid type",
        "rules[2].when.status[0]: unknown status \"failed\"",
        "rules[2].channels[2]: unknown channel \"nope\"",
        // Found by compiling what was read, in the same run; a rule keeps its index.
        "rules[0].when.pipeline: invalid glob \"a[b\"",
        "rules[0].template: template \"missing-tpl\" not found",
        "rules[2].template: template \"also-missing\" not found",
    ];
    for w in want {
        assert!(text.lines().any(|l| l.starts_with(w)), "missing {w:?} in\n{text}");
    }
    assert_eq!(text.lines().count(), want.len(), "each error once:\n{text}");
}

#[test]
fn check_reports_missing_templates_and_mention_warnings() {
    let (_dir, path) = write_config(
        r#"
[channels.team-wecom]
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
msgtype = "markdown_v2"

[[rules]]
name = "a"
channels = ["team-wecom"]
[rules.mention]
user_ids = ["zhangsan"]
"#,
    );
    let out = herald(&["check", "--config", path.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().count(), 1, "only the summary line on stdout: {text}");
    assert!(text.contains(": OK (") && text.contains(", 1 warning)"), "{text}");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        warnings.lines().any(|l| l.starts_with("warning: rules[0].mention: channel \"team-wecom\"")),
        "{warnings}"
    );

    let (_dir2, path2) = write_config(
        "[channels.c]\ntype = \"console\"\n[[rules]]\nname = \"a\"\nchannels = [\"c\"]\ntemplate = \"nope\"\n",
    );
    let out = herald(&["check", "--config", path2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("rules[0].template: template \"nope\" not found"), "{}", stdout(&out));
}

#[test]
fn a_mistyped_required_value_does_not_keep_the_rest_of_its_table_from_being_checked() {
    let (_dir, path) = write_config(
        r#"
[channels.ding]
type = "dingtalk"
url = 5
msgtype = "markdwn"
template = "no-such-template"

[channels.mail]
type = "email"
smtp = 7
from = "not an address"
to = []

[[rules]]
name = "a"
channels = ["ding", "mail"]
[rules.when]
status = 5
"#,
    );
    let out = herald(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let want = [
        "channels.ding.url: invalid type: integer, expected a string",
        "channels.ding.msgtype: unknown variant `markdwn`",
        "channels.ding.template: template \"no-such-template\" not found",
        "channels.mail.smtp: invalid type: integer, expected a string",
        "channels.mail.from: invalid address \"not an address\"",
        "channels.mail.to: at least one recipient is required",
        "rules[0].when.status: invalid type",
    ];
    for w in want {
        assert!(text.lines().any(|l| l.starts_with(w)), "missing {w:?} in\n{text}");
    }
    assert_eq!(text.lines().count(), want.len(), "each error once, and nothing about the stand-ins:\n{text}");
}

#[test]
fn check_warns_about_an_author_mention_a_message_type_would_drop() {
    let (_dir, path) = write_config(
        r#"
[channels.card]
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"
msgtype = "actionCard"

[channels.wecom-md]
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"

[channels.wecom-text]
type = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k2"
msgtype = "text"

[people.li]
email = "li@example.com"
dingtalk_mobile = "13800000000"
wecom_mobile = "13900000000"

[[rules]]
name = "a"
channels = ["card", "wecom-md", "wecom-text"]
[rules.mention]
author = true
"#,
    );
    let out = herald(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let warnings = String::from_utf8_lossy(&out.stderr);
    let wanted = [
        "warning: rules[0].mention: channel \"card\": mention.author: dingtalk actionCard messages cannot mention",
        "warning: rules[0].mention: channel \"wecom-md\": mention.author: wecom markdown messages cannot mention by mobile",
    ];
    for w in wanted {
        assert!(warnings.lines().any(|l| l.starts_with(w)), "missing {w:?} in\n{warnings}");
    }
    assert_eq!(warnings.lines().count(), 2, "WeCom text carries mobiles:\n{warnings}");
}

#[test]
fn check_reports_template_typos_found_by_rendering() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.hbs"), "{{pipline}} {{#if status}}x{{/if}}").unwrap();
    let config = format!(
        "[templates]\ndir = \"{}\"\n[channels.c]\ntype = \"console\"\n[[rules]]\nname = \"a\"\nchannels = [\"c\"]\ntemplate = \"broken\"\n",
        dir.path().display()
    );
    let (_d, path) = write_config(&config);
    let out = herald(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.starts_with("rules[0].channels[0]: "), "{text}");
    assert!(text.contains("pipline"), "{text}");
}

#[test]
fn render_prints_the_exact_signed_request_with_secrets_redacted() {
    let (_dir, path) = write_config(
        r#"
[channels.ding]
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=tok-secret-123"
secret = "SECsigning-secret"
keyword = "CI"

[[rules]]
name = "failures"
channels = ["ding"]
[rules.when]
status = "failure"
[rules.mention]
mobiles = ["13800000000"]
"#,
    );
    let fixture = "tests/fixtures/inbound/flow-task-fail.json";
    let out = herald(&["render", "--config", path.to_str().unwrap(), "--source", "flow", fixture, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(v["event"]["status"], "failure");
    assert_eq!(v["event"]["pipeline"], "payments-api 发布");
    assert_eq!(v["rules"], serde_json::json!(["failures"]));
    let req = &v["deliveries"][0]["request"];
    assert_eq!(req["method"], "POST");
    let url = req["url"].as_str().unwrap();
    assert!(url.starts_with("https://oapi.dingtalk.com/robot/send?access_token=***"), "{url}");
    assert!(url.contains("&timestamp=") && url.contains("&sign="), "{url}");
    let body: serde_json::Value = serde_json::from_str(req["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["at"]["atMobiles"], serde_json::json!(["13800000000"]));
    assert!(body["markdown"]["text"].as_str().unwrap().contains("@13800000000"));
    let all = stdout(&out);
    assert!(!all.contains("tok-secret-123") && !all.contains("SECsigning-secret"), "secret leaked");

    let human = herald(&["render", "--config", path.to_str().unwrap(), "--source", "flow", fixture]);
    assert!(human.status.success());
    let text = stdout(&human);
    assert!(text.contains("== rule \"failures\" → channel \"ding\""), "{text}");
    assert!(!text.contains("tok-secret-123"), "{text}");
}

#[test]
fn render_lists_every_matching_rule_even_one_with_nothing_of_its_own_to_send() {
    let (_dir, path) = write_config(
        r#"
[channels.out]
type = "console"
[channels.log]
type = "console"

[[rules]]
name = "A"
channels = ["out"]

[[rules]]
name = "never"
channels = ["log"]
[rules.when]
status = "success"

[[rules]]
name = "B"
channels = ["out"]
[rules.when]
status = "failure"

[[rules]]
name = "C"
channels = ["log"]
stop = true

[[rules]]
name = "after the stop"
channels = ["log"]
"#,
    );
    let fixture = "tests/fixtures/inbound/flow-task-fail.json";
    let out = herald(&["render", "--config", path.to_str().unwrap(), "--source", "flow", fixture, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rules"], serde_json::json!(["A", "B", "C"]), "B matched: its channel is A's");
    let sent: Vec<&str> =
        v["deliveries"].as_array().unwrap().iter().map(|d| d["rule"].as_str().unwrap()).collect();
    assert_eq!(sent, ["A", "C"], "one message per channel");

    let human = herald(&["render", "--config", path.to_str().unwrap(), "--source", "flow", fixture]);
    let text = stdout(&human);
    assert!(text.contains("== matching rules: A, B, C\n"), "{text}");
    assert!(text.contains("== rule \"B\": nothing of its own"), "{text}");
}

#[test]
fn check_renders_the_summary_template_of_every_channel_that_can_merge_messages() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(templates.path().join("summary.hbs"), "{{summary.titel}}\n").unwrap();
    let (_dir, path) = write_config(&format!(
        r#"
[templates]
dir = "{}"

[channels.ding]
type = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=t"

[channels.quiet-hook]
type = "webhook"
url = "https://hooks.example.com/ci"

[channels.hook]
type = "webhook"
url = "https://hooks.example.com/other"

[[rules]]
name = "a"
channels = ["ding", "hook"]

[[rules]]
name = "nights"
channels = ["quiet-hook"]
[rules.quiet]
from = "22:00"
to = "07:00"
"#,
        templates.path().display()
    ));
    let out = herald(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    // A robot with limits, and a channel a rule holds messages for; a webhook without limits
    // or holds never sends a summary.
    for name in ["ding", "quiet-hook"] {
        let prefix = format!("channels.{name}: summary: ");
        assert!(text.lines().any(|l| l.starts_with(&prefix) && l.contains("titel")), "{name}:\n{text}");
    }
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn render_routes_as_a_gateway_with_no_history_would() {
    let (_dir, path) = write_config(
        r#"
[channels.out]
type = "console"

[[rules]]
name = "first failure"
channels = ["out"]
[rules.when]
transition = "first_failure"
"#,
    );
    let fixture = "tests/fixtures/inbound/flow-task-fail.json";
    let out = herald(&["render", "--config", path.to_str().unwrap(), "--source", "flow", fixture, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rules"], serde_json::json!(["first failure"]), "{v}");
    assert_eq!(v["event"]["transition"], "first_failure", "{}", v["event"]);
    assert_eq!(v["event"]["failure_streak"], 1, "{}", v["event"]);
}

#[test]
fn check_without_a_config_checks_the_embedded_one_serve_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = herald_in(dir.path(), &["check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("the embedded quickstart config (no herald.toml here): OK ("),
        "{}",
        stdout(&out)
    );
    let out = herald_in(dir.path(), &["check", "--config", "missing.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("missing.toml: cannot read"), "{}", stdout(&out));
}

#[test]
fn render_reads_the_jenkins_status_query_form_and_refuses_bad_input() {
    let (_dir, path) =
        write_config("[channels.c]\ntype = \"console\"\n[[rules]]\nname = \"a\"\nchannels = [\"c\"]\n");
    let cfg = path.to_str().unwrap();
    let out = herald(&[
        "render",
        "--config",
        cfg,
        "--source",
        "jenkins-status",
        "tests/fixtures/inbound/jenkins-jobstatus-start-get.query.txt",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["event"]["status"], "started");
    assert_eq!(v["event"]["build_number"], 214);

    let out = herald(&[
        "render",
        "--config",
        cfg,
        "--source",
        "nope",
        "tests/fixtures/inbound/flow-task-fail.json",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format \"nope\""));
    let out = herald(&[
        "render",
        "--config",
        cfg,
        "--source",
        "buildbot",
        "tests/fixtures/inbound/flow-task-fail.json",
    ]);
    assert!(!out.status.success(), "a Flow payload is not a Buildbot one");
}

#[test]
fn serve_refuses_a_bad_config_before_opening_the_port() {
    // The port is held here throughout: a serve that tried to bind it before checking the
    // config would fail on the bind instead, with another exit code and message.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_dir, path) = write_config(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[channels.c]\ntype = \"pager\"\n[[rules]]\nname = \"a\"\nchannels = [\"x\"]\n"
    ));
    let out = herald(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("channels.c.type: unknown channel type \"pager\""), "{text}");
    assert!(text.contains("rules[0].channels[0]: unknown channel \"x\""), "{text}");
    assert!(!stderr(&out).contains("cannot listen"), "it tried the port: {}", stderr(&out));
    drop(listener);
}

#[test]
fn check_reports_each_problem_once_and_none_that_only_follows_from_another() {
    // (config, the lines `check` prints, in order)
    let cases: [(&str, &[&str]); 7] = [
        // An unset variable empties its value: the empty signing key is not a second error.
        (
            "[channels.audit]\ntype = \"webhook\"\nurl = \"https://audit.example.com/ci\"\n\
             secret = \"${HERALD_TEST_UNSET_SECRET}\"\n[[rules]]\nname = \"r\"\nchannels = [\"audit\"]\n",
            &["channels.audit.secret: environment variable HERALD_TEST_UNSET_SECRET is not set (line 4;"],
        ),
        // A mistyped group_wait or group_by is not also reported as missing.
        (
            "[channels.c]\ntype = \"console\"\n\
             [[rules]]\nname = \"r\"\nchannels = [\"c\"]\ngroup_by = [\"pipeline\"]\ngroup_wait = 30\n\
             [[rules]]\nname = \"s\"\nchannels = [\"c\"]\ngroup_by = \"pipeline\"\ngroup_wait = \"30s\"\n",
            &["rules[0].group_wait: invalid type", "rules[1].group_by: invalid type"],
        ),
        // What a channel cannot be built with is found beside its other errors, each at its
        // own key; a channel whose name has a dot is not confused with another.
        (
            r#"
[channels.hook]
type = "webhook"
url = "https://h.example.com/"
method = "PATCH"
headers = { "Bad Header" = "x" }
[channels.mail]
type = "email"
smtp = "smtp://mail.example.com?tls=required"
from = "not an address"
to = []
ca_file = "/no/such.pem"
[channels.team]
type = "webhook"
url = "https://h.example.com/"
headers = { "Bad Header" = "x" }
[channels."team.ding"]
type = "dingtalk"
url = "ftp://oapi.dingtalk.com/robot/send?access_token=x"
"#,
            &[
                "channels.hook.method: unknown variant `PATCH`",
                "channels.mail.to: at least one recipient is required",
                "channels.mail.from: invalid address \"not an address\"",
                "channels.team.ding.url: expected an http:// or https:// URL",
                "channels.hook.headers: \"Bad Header\" is not a valid header name",
                "channels.mail.ca_file: /no/such.pem: ",
                "channels.team.headers: \"Bad Header\" is not a valid header name",
            ],
        ),
        // A bad [templates] still lets the globs be checked.
        (
            "[templates]\ndir = \"/no/such/dir\"\n[channels.c]\ntype = \"console\"\n\
             [[rules]]\nname = \"r\"\nchannels = [\"c\"]\ntemplate = \"mine\"\n[rules.when]\npipeline = \"a[b\"\n",
            &["templates.dir: /no/such/dir is not a directory", "rules[0].when.pipeline: invalid glob \"a[b\""],
        ),
        // A mistyped value inside an optional table, or a required list given as a string,
        // leaves the rest of the rule checked; a source with an error is still a source.
        (
            r#"
[sources.myci]
type = "Generic"
[channels.c]
type = "console"
[[rules]]
name = "r"
channels = ["c", "nope"]
[rules.when]
status = "failed"
source = "myci"
[rules.quiet]
from = 2200
to = "07:00"
[[rules]]
name = "s"
channels = "c"
[rules.when]
status = "failed"
"#,
            &[
                "rules[0].quiet.from: invalid type",
                "rules[1].channels: invalid type",
                "sources.myci.type: unknown type \"Generic\"",
                "rules[0].channels[1]: unknown channel \"nope\"",
                "rules[0].when.status[0]: unknown status \"failed\"",
                "rules[1].when.status[0]: unknown status \"failed\"",
            ],
        ),
        // A channel that cannot be built says everything that is wrong with it at once.
        (
            r#"
[channels.hook]
type = "webhook"
url = "https://h.example.com/"
headers = { "Bad Header" = "v", X-Ok = "a\nb" }
secret = "whsec_!!"
[channels.mail]
type = "email"
smtp = "smtp://mail.example.com?tls=required"
from = "ci@example.com"
to = ["dev@example.com"]
ca_file = "/no/such.pem"
[channels.mail2]
type = "email"
smtp = "smtp://mail.example.com?tls=bogus"
from = "ci@example.com"
to = ["dev@example.com"]
"#,
            &[
                "channels.hook.headers: \"Bad Header\" is not a valid header name",
                "channels.hook.headers.X-Ok: the value is not a valid header value",
                "channels.hook.secret: the part after \"whsec_\" is not valid base64",
                "channels.mail.ca_file: /no/such.pem: ",
                "channels.mail2.smtp: invalid URL: ",
            ],
        ),
        // A channel's missing template is reported with the channel, not again per rule.
        (
            "[channels.c]\ntype = \"console\"\ntemplate = \"nosuch\"\n[[rules]]\nname = \"r\"\nchannels = [\"c\"]\n",
            &["channels.c.template: template \"nosuch\" not found"],
        ),
    ];
    for (config, want) in cases {
        let (_dir, path) = write_config(config);
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["check", "--config", path.to_str().unwrap()])
            .env_remove("HERALD_TEST_UNSET_SECRET")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{config}");
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), want.len(), "{config}\n{text}");
        for (line, w) in lines.iter().zip(want) {
            assert!(line.starts_with(w), "{w:?} expected, got {line:?}\n{text}");
        }
    }
}

#[test]
fn a_template_that_does_not_compile_leaves_the_rest_checked_and_a_failing_one_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.hbs"), "{{#if status}}never closed").unwrap();
    std::fs::write(dir.path().join("rt.hbs"), "{{nohelper status}}").unwrap();
    let config = format!(
        "[templates]\ndir = \"{}\"\n[channels.c]\ntype = \"console\"\ntemplate = \"rt\"\n\
         [[rules]]\nname = \"a\"\nchannels = [\"c\"]\n\
         [[rules]]\nname = \"b\"\nchannels = [\"c\"]\n[rules.when]\npipeline = \"a[b\"\n",
        dir.path().display()
    );
    let (_d, path) = write_config(&config);
    let text = stdout(&herald(&["check", "--config", path.to_str().unwrap()]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("templates: ") && lines[0].contains("broken.hbs"), "{text}");
    assert!(lines[1].starts_with("rules[1].when.pipeline: invalid glob"), "{text}");

    std::fs::remove_file(dir.path().join("broken.hbs")).unwrap();
    let text = stdout(&herald(&["check", "--config", path.to_str().unwrap()]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "rt fails the same way for both rules: once\n{text}");
    assert!(lines[0].starts_with("rules[1].when.pipeline: invalid glob"), "{text}");
    assert!(lines[1].starts_with("rules[0].channels[0]: ") && lines[1].contains("nohelper"), "{text}");
}

#[test]
fn check_never_prints_a_value_from_the_environment() {
    let (_dir, path) = write_config(
        "[channels.c]\ntype = \"console\"\n[channels.h]\ntype = \"webhook\"\nurl = \"https://h/\"\n\
         headers = { \"${HEADER_NAME}\" = \"v\" }\n\
         [[rules]]\nname = \"r\"\nchannels = [\"c\"]\ntemplate = \"${TEMPLATE}\"\n[rules.when]\npipeline = \"${PIPELINE}\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env("TEMPLATE", "secret-template-name")
        .env("PIPELINE", "secret-pipeline[")
        .env("HEADER_NAME", "Secret Header Name")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("rules[0].template: template \"***\" not found"), "{text}");
    for secret in ["secret-template-name", "secret-pipeline", "Secret Header Name"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
}

#[test]
fn serve_finds_every_error_before_it_touches_the_store() {
    let (dir, path) = write_config(
        "[server]\ndata_dir = \"data\"\n[channels.c]\ntype = \"console\"\n\
         [[rules]]\nname = \"a\"\nchannels = [\"c\"]\ntemplate = \"nope\"\n",
    );
    let out = herald_in(dir.path(), &["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("rules[0].template: template \"nope\" not found"), "{}", stdout(&out));
    assert!(!dir.path().join("data").exists(), "the store was created for a config that cannot run");
}

#[tokio::test]
async fn deliveries_without_a_config_read_the_store_of_the_embedded_quickstart() {
    use herald::channels::{Message, MessageBody};
    use herald::event::Event;
    use herald::outbox::sqlite::SqliteOutbox;
    use herald::outbox::{EnqueueWith, Headline, NewDelivery, Outbox};

    let dir = tempfile::tempdir().unwrap();
    let in_dir = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("HERALD_LOG")
            .env_remove("HERALD_DATA_DIR")
            .output()
            .expect("the herald binary runs")
    };
    let out = in_dir(&["deliveries", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no store at data/herald.db"), "{err}");

    // What `herald serve` leaves in ./data when it runs on the embedded config.
    {
        let store = SqliteOutbox::open(&dir.path().join("data")).unwrap();
        let delivery = NewDelivery {
            id: "d1".into(),
            rule: "everything to the console".into(),
            channel: "stdout".into(),
            message: Message { body: MessageBody::Text { text: "hello".into() }, template_errors: vec![] },
            headline: Headline {
                text: "build 22 failed".into(),
                url: None,
                status: "failure".into(),
                covers: None,
                ..Default::default()
            },
            hold: None,
            due_at: None,
            repeat: None,
        };
        store.enqueue(&Event::sample(), &[delivery], 1, &EnqueueWith::default()).await.unwrap();
        store.flush().await.unwrap();
    }
    let out = in_dir(&["deliveries", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["deliveries"][0]["id"], "d1", "{listed}");
    assert_eq!(listed["deliveries"][0]["channel"], "stdout", "{listed}");
}

#[tokio::test]
async fn deliveries_need_only_the_store_s_directory_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), &[("d1", None)]).await;
    // The service's secrets are not in an operator's shell; other errors do not matter here.
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[server]\ndata_dir = \"data\"\n[channels.ding]\ntype = \"dingtalk\"\n\
         url = \"https://oapi.dingtalk.com/robot/send?access_token=${DT_TOKEN_NOT_SET_HERE}\"\n\
         [[rules]]\nname = \"all\"\nchannels = [\"ding\"]\n",
    )
    .unwrap();
    let out = herald_in(dir.path(), &["deliveries", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["deliveries"][0]["id"], "d1", "{listed}");
    // An error in data_dir itself still stops it, with the error.
    std::fs::write(&config, "[server]\ndata_dir = \"${DATA_DIR_NOT_SET_HERE}\"\n").unwrap();
    let out = herald_in(dir.path(), &["deliveries", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.data_dir: environment variable DATA_DIR_NOT_SET_HERE is not set"), "{err}");
}

/// A store in `dir/data` (where the embedded quickstart config keeps it) holding one delivery
/// per (id, what its one attempt led to); `None` leaves it pending.
async fn store_with(dir: &Path, deliveries: &[(&str, Option<herald::outbox::Next>)]) {
    use herald::channels::{Message, MessageBody};
    use herald::event::Event;
    use herald::outbox::sqlite::SqliteOutbox;
    use herald::outbox::{AttemptRecord, EnqueueWith, Headline, NewDelivery, Outbox};

    let store = SqliteOutbox::open(&dir.join("data")).unwrap();
    let new: Vec<NewDelivery> = deliveries
        .iter()
        .map(|(id, _)| NewDelivery {
            id: id.to_string(),
            rule: "everything to the console".into(),
            channel: "stdout".into(),
            message: Message { body: MessageBody::Text { text: "hello".into() }, template_errors: vec![] },
            headline: Headline {
                text: format!("{id} failed"),
                url: None,
                status: "failure".into(),
                covers: None,
                ..Default::default()
            },
            hold: None,
            due_at: None,
            repeat: None,
        })
        .collect();
    store.enqueue(&Event::sample(), &new, 1, &EnqueueWith::default()).await.unwrap();
    for (id, next) in deliveries {
        if let Some(next) = next {
            let attempt = AttemptRecord {
                at: 2,
                outcome: "permanent".into(),
                http_status: Some(400),
                code: None,
                detail: "refused".into(),
                latency_ms: 1,
                pause_ms: None,
            };
            store.finish(id, attempt, next.clone()).await.unwrap();
        }
    }
    store.flush().await.unwrap();
}

/// Runs `herald` in `dir`, on the embedded quickstart config. Logging at `warn` leaves only
/// the error on stderr (the quickstart's notice is an `info` line).
fn herald_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .current_dir(dir)
        .env("HERALD_LOG", "warn")
        .env_remove("HERALD_DATA_DIR")
        .output()
        .expect("the herald binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn deliveries_retry_refuses_unknown_and_unfinished_ids_as_the_api_does() {
    use herald::outbox::Next;
    let dir = tempfile::tempdir().unwrap();
    store_with(
        dir.path(),
        &[("d-dead", Some(Next::Dead("refused".into()))), ("d-done", Some(Next::Delivered)), ("d-new", None)],
    )
    .await;
    let only = "only dead or retrying deliveries can be retried";
    for (ids, want) in [
        (vec!["nope"], "error: no delivery \"nope\"".to_string()),
        (vec!["d-done"], format!("error: delivery \"d-done\" is delivered: {only}")),
        (vec!["d-new"], format!("error: delivery \"d-new\" is pending: {only}")),
        // Every id is checked before any is replayed.
        (vec!["d-dead", "nope"], "error: no delivery \"nope\"".to_string()),
    ] {
        let out = herald_in(dir.path(), &[&["deliveries", "retry"], ids.as_slice()].concat());
        assert_eq!(out.status.code(), Some(1), "{ids:?}: {}", stdout(&out));
        assert_eq!(stderr(&out).trim(), want, "{ids:?}");
        assert!(!stdout(&out).contains("retried"), "{ids:?}: {}", stdout(&out));
    }
    let shown = herald_in(dir.path(), &["deliveries", "show", "d-dead"]);
    let detail: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(detail["state"], "dead", "a refused retry replayed nothing");

    let out = herald_in(dir.path(), &["deliveries", "retry", "d-dead"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "retried 1 deliveries");
    let shown = herald_in(dir.path(), &["deliveries", "show", "d-dead"]);
    let detail: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(detail["state"], "pending");

    let out = herald_in(dir.path(), &["deliveries", "show", "nope"]);
    assert_eq!((out.status.code(), stderr(&out).trim()), (Some(1), "error: no delivery \"nope\""));
}

#[tokio::test]
async fn deliveries_options_follow_the_api_rules_at_their_edges() {
    use herald::outbox::Next;
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), &[("d1", Some(Next::Delivered)), ("d2", Some(Next::Delivered)), ("d3", None)])
        .await;
    let listed = |args: &[&str]| {
        let out = herald_in(dir.path(), &[&["deliveries", "list", "--json"], args].concat());
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["deliveries"].as_array().unwrap().len()
    };
    assert_eq!(listed(&[]), 3);
    assert_eq!(listed(&["--limit", "1"]), 1);
    assert_eq!(listed(&["--limit", "1000"]), 3);
    assert_eq!(listed(&["--state", "delivered"]), 2);
    assert_eq!(listed(&["--channel", "stdout", "--state", "pending"]), 1);
    assert_eq!(listed(&["--channel", "nowhere"]), 0);
    // An empty value is the same as none, as in the API.
    assert_eq!(listed(&["--state", "", "--channel", "", "--limit", ""]), 3);

    let range = "limit must be a whole number from 1 to 1000";
    let states = "state must be one of pending, retrying, delivered, dead, merged";
    for (args, want) in [
        (&["list", "--limit", "0"][..], format!("{range}, not \"0\"")),
        (&["list", "--limit", "-1"], format!("{range}, not \"-1\"")),
        (&["list", "--limit", "1.5"], format!("{range}, not \"1.5\"")),
        (&["list", "--limit", "abc"], format!("{range}, not \"abc\"")),
        (&["list", "--limit", "1001"], format!("{range}, not \"1001\"")),
        (
            &["list", "--limit", "99999999999999999999999"],
            format!("{range}, not \"99999999999999999999999\""),
        ),
        (&["list", "--state", "gone"], format!("{states}, not \"gone\"")),
        (&["retry", "--state", "delivered"], "state must be dead or retrying, not \"delivered\"".to_string()),
    ] {
        let out = herald_in(dir.path(), &[&["deliveries"], args].concat());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert_eq!(stderr(&out).trim(), format!("error: {want}"), "{args:?}");
    }
    // --state and --channel choose what a bulk retry takes; with IDs they would be ignored.
    let out = herald_in(dir.path(), &["deliveries", "retry", "d1", "--state", "dead"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn render_parses_as_serve_does_with_the_jenkins_base_url() {
    let (dir, path) = write_config(
        "[sources.jenkins]\nbase_url = \"https://jenkins.example.com/ci\"\n\
         [channels.c]\ntype = \"console\"\n[[rules]]\nname = \"all\"\nchannels = [\"c\"]\n",
    );
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inbound/jenkins-tikal-completed-success.json");
    let payload = std::fs::read_to_string(fixture)
        .unwrap()
        .replace("\"full_url\":\"https://ci.example.com/job/acme-api/128/\",", "");
    let file = dir.path().join("no-full-url.json");
    std::fs::write(&file, payload).unwrap();
    let out = herald(&[
        "render",
        "--config",
        path.to_str().unwrap(),
        "--source",
        "jenkins",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["event"]["build_url"], "https://jenkins.example.com/ci/job/acme-api/128/", "{v}");
}
