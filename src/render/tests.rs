//! Renderer tests: lookup and overrides, escaping, strict mode, helpers through Handlebars,
//! run-time fallback, and every built-in against a full and a minimal event.

use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::event::Status;

fn minimal() -> Event {
    Event::new("flow", Status::Running, "RUNNING", false)
}

fn ctx(event: &Event) -> Value {
    context(event, &ContextExtras::default())
}

fn full_ctx() -> Value {
    let extras = ContextExtras {
        rule: Some("payments failures"),
        channel: Some("team-ding"),
        content: Some("Deploy to ${DEPLOY_ENV} blocked".into()),
        public_url: Some("https://herald.example.com"),
    };
    context(&Event::sample(), &extras)
}

/// A renderer with the given user templates, written to a fresh directory.
fn with_user(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Renderer, Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let r = Renderer::new(Some(dir.path()));
    (dir, r)
}

fn user(files: &[(&str, &str)]) -> Renderer {
    let (_dir, r) = with_user(files);
    r.unwrap()
}

/// Renders one inline template, as user template `t`, for a console body.
fn one(template: &str, ctx: &Value) -> Result<String, RenderError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.hbs"), template).unwrap();
    let r = Renderer::without_builtins(dir.path()).unwrap_or_else(|e| panic!("{template}: {e:?}"));
    r.try_render("t", "console", "text", ctx)
}

/// (channel type, message type or part) for every output a channel can ask for.
const OUTPUTS: &[(&str, &str)] = &[
    ("dingtalk", "markdown"),
    ("dingtalk", "text"),
    ("dingtalk", "actionCard"),
    ("dingtalk", "title"),
    ("wecom", "markdown"),
    ("wecom", "text"),
    ("wecom", "markdown_v2"),
    ("lark", "interactive"),
    ("lark", "post"),
    ("lark", "text"),
    ("lark", "title"),
    ("email", "subject"),
    ("email", "text"),
    ("email", "html"),
    ("webhook", "body"),
    ("console", "text"),
];

#[test]
fn every_builtin_renders_for_full_and_minimal_events() {
    let r = Renderer::new(None).unwrap();
    for event_ctx in [full_ctx(), ctx(&minimal())] {
        for (t, part) in OUTPUTS {
            let text =
                r.try_render("default", t, part, &event_ctx).unwrap_or_else(|e| panic!("{t}/{part}: {e}"));
            assert!(!text.trim().is_empty(), "{t}/{part} is empty");
            for bad in ["null", "undefined", "&amp;", "&quot;", "&#x"] {
                if *part != "html" {
                    assert!(!text.contains(bad), "{t}/{part} shows {bad:?}:\n{text}");
                }
            }
            assert_eq!(text.trim_end(), text, "{t}/{part} ends with whitespace");
            if *part == "title" || *part == "subject" {
                assert!(!text.contains('\n'), "{t}/{part} is not one line: {text:?}");
            }
        }
    }
}

#[test]
fn builtins_show_the_important_fields() {
    let r = Renderer::new(None).unwrap();
    let c = full_ctx();
    for (t, part) in OUTPUTS.iter().filter(|(t, p)| *t != "webhook" && !["title", "subject"].contains(p)) {
        let text = r.try_render("default", t, part, &c).unwrap();
        for want in ["payments-api", "42", "main", "c0ffee12", "Lin Wei", "3m 12s", "2 tests failed"] {
            assert!(text.contains(want), "{t}/{part} lacks {want:?}:\n{text}");
        }
        assert!(text.contains("Deploy to ${DEPLOY_ENV} blocked"), "{t}/{part} lacks content:\n{text}");
    }
    let title = r.try_render("default", "dingtalk", "title", &c).unwrap();
    assert_eq!(title, "❌ payments-api #42 failure");
    let subject = r.try_render("default", "email", "subject", &c).unwrap();
    assert_eq!(subject, "❌ payments-api #42 failure in test › unit tests [main]");
}

#[test]
fn a_sender_s_multi_line_message_stays_inside_its_quote() {
    let r = Renderer::new(None).unwrap();
    let mut e = Event::sample();
    e.message = Some("Deploy failed\n\n# Rollback\n---".into());
    let c = context(&e, &ContextExtras::default());
    for (t, part) in [
        ("dingtalk", "markdown"),
        ("dingtalk", "actionCard"),
        ("wecom", "markdown"),
        ("wecom", "markdown_v2"),
    ] {
        let text = r.try_render("default", t, part, &c).unwrap();
        assert!(text.contains("> Deploy failed\n>\n> # Rollback\n> ---"), "{t}/{part}:\n{text}");
    }
}

#[test]
fn a_job_without_a_stage_is_named_and_a_title_without_a_commit_is_labelled() {
    // A GitHub workflow_job: a task, no stage, no build number, no commit id.
    let r = Renderer::new(None).unwrap();
    let mut e = Event::new("github", Status::Failure, "failure", true);
    e.pipeline = Some("CI".into());
    e.task = Some("lint".into());
    e.commit_title = Some("Fix the flaky test".into());
    e.pipeline_url = Some("https://github.com/acme/app/actions/runs/1".into());
    let c = context(&e, &ContextExtras::default());
    let console = r.try_render("default", "console", "text", &c).unwrap();
    assert!(console.starts_with("❌ CI failure [lint]"), "{console}");
    let subject = r.try_render("default", "email", "subject", &c).unwrap();
    assert_eq!(subject, "❌ CI failure in lint");
    let text = r.try_render("default", "email", "text", &c).unwrap();
    assert!(text.contains("\nCommit:       Fix the flaky test\n"), "{text}");
    assert!(text.contains("\n\nPipeline page: https://github.com/acme/app/actions/runs/1\n"), "{text}");
}

#[test]
fn webhook_default_is_the_event_as_json() {
    let r = Renderer::new(None).unwrap();
    let body = r.try_render("default", "webhook", "body", &full_ctx()).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["pipeline"], "payments-api");
    assert_eq!(v["test_summary"]["failed"], 2);
    assert_eq!(v, serde_json::to_value(Event::sample()).unwrap(), "the event, and only the event");
    let body = r.try_render("default", "webhook", "body", &ctx(&minimal())).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("branch").is_none(), "absent fields stay absent: {body}");
    assert_eq!(v["status"], "running");
}

#[test]
fn lookup_prefers_the_most_specific_then_the_user_dir() {
    let r = user(&[
        ("ops.hbs", "generic"),
        ("ops.dingtalk.hbs", "ding"),
        ("ops.dingtalk.text.hbs", "ding text"),
        ("ops.email.subject.hbs", "mail subject"),
        ("ops.title.hbs", "any title"),
        ("default.lark.hbs", "user lark default"),
    ]);
    let c = full_ctx();
    let cases = [
        ("dingtalk", "text", "ding text"),
        ("dingtalk", "markdown", "ding"),
        ("wecom", "markdown", "generic"),
        ("email", "subject", "mail subject"),
        ("lark", "title", "any title"),
    ];
    for (t, part, want) in cases {
        assert_eq!(r.try_render("ops", t, part, &c).unwrap(), want, "{t}/{part}");
    }
    assert_eq!(r.try_render("default", "lark", "interactive", &c).unwrap(), "user lark default");
    // A part the named template lacks comes from default.
    assert!(r.try_render("ops", "email", "html", &c).unwrap().contains("<html"));
    assert!(r.has_template("ops") && r.has_template("default") && !r.has_template("op"));
    assert_eq!(r.try_render("nope", "dingtalk", "markdown", &c), Err(RenderError::NotFound("nope".into())));
    assert_eq!(r.try_render("nope", "dingtalk", "title", &c), Err(RenderError::NotFound("nope".into())));
}

#[test]
fn syntax_errors_are_all_reported_with_their_files() {
    let (dir, r) = with_user(&[("a.hbs", "{{#if x}}open"), ("b.hbs", "fine"), ("c.hbs", "{{/with}}")]);
    let errors = r.expect_err("errors");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with(&dir.path().join("a.hbs").display().to_string()), "{errors:?}");
    assert!(errors[1].contains("c.hbs"), "{errors:?}");
    let missing = Renderer::new(Some(Path::new("/nonexistent/herald-templates"))).unwrap_err();
    assert!(missing[0].contains("/nonexistent/herald-templates"), "{missing:?}");
}

#[test]
fn chat_output_is_not_escaped_but_html_is() {
    let mut e = Event::sample();
    e.commit_title = Some("fix: <b> & \"quotes\"".into());
    let c = ctx(&e);
    let r = user(&[("t.hbs", "{{commit_title}}"), ("t.html.hbs", "<p>{{commit_title}}</p>")]);
    assert_eq!(r.try_render("t", "dingtalk", "markdown", &c).unwrap(), "fix: <b> & \"quotes\"");
    assert_eq!(
        r.try_render("t", "email", "html", &c).unwrap(),
        "<p>fix: &lt;b&gt; &amp; &quot;quotes&quot;</p>"
    );
    let html = Renderer::new(None).unwrap().try_render("default", "email", "html", &c).unwrap();
    assert!(html.contains("fix: &lt;b&gt; &amp;") && !html.contains("<b>"), "{html}");
}

#[test]
fn strict_mode_rejects_typos_and_accepts_absent_fields() {
    let m = ctx(&minimal());
    let typos = [
        "{{pipline}}",
        "{{#if pipline}}x{{/if}}",
        "{{#unless pipline}}x{{/unless}}",
        "{{#with pipline}}x{{/with}}",
        "{{#each artifcats}}x{{/each}}",
        "{{default pipline \"-\"}}",
        "{{duration duraton_ms}}",
        "{{status_emoji stauts}}",
        // An absent value before it does not hide a typo, nor does a path below one.
        "{{params.DEPLOY_ENV}} {{test_summary.failed}} {{pipline}}",
        "{{pipline.name}}",
    ];
    for t in typos {
        let err = one(t, &m).expect_err(t).to_string();
        assert!(
            err.contains("pipline")
                || err.contains("artifcats")
                || err.contains("duraton_ms")
                || err.contains("stauts"),
            "{t}: {err}"
        );
    }
    // A path through a value that is there but is not an object is an error, not absent.
    let err = one("{{status.name}}", &m).expect_err("status.name").to_string();
    assert!(err.contains("status.name"), "{err}");
    let absent = [
        ("{{#if branch}}on {{branch}}{{/if}}", ""),
        ("{{#if branch}}x{{else}}no branch{{/if}}", "no branch"),
        ("{{#unless branch}}no branch{{/unless}}", "no branch"),
        ("{{#with test_summary}}{{failed}} failed{{/with}}", ""),
        ("{{#with test_summary}}x{{else}}no tests{{/with}}", "no tests"),
        ("{{#each artifacts}}{{name}}{{/each}}", ""),
        ("{{#each params}}{{@key}}{{/each}}", ""),
        ("{{default branch \"-\"}}", "-"),
        ("{{default params.NOPE \"-\"}}", "-"),
        ("{{#if params.NOPE}}x{{/if}}", ""),
        ("{{#if test_summary.failed}}x{{/if}}", ""),
        ("{{#if failing_since}}x{{/if}}{{#if transition}}y{{/if}}[{{failure_streak}}]", "[]"),
        ("{{#if previous_status}}x{{/if}}{{#if delivery_id}}y{{/if}}", ""),
        ("[{{params.DEPLOY_ENV}}]", "[]"),
        ("[{{params.[DEPLOY-ENV]}}|{{params/ZONE}}|{{@root.params.X}}]", "[||]"),
        ("[{{test_summary.failed}}/{{test_summary.total}}]", "[/]"),
        ("[{{raw.build.full_url}}] {{status}}", "[] running"),
        ("[{{branch}}]", "[]"),
        ("[{{duration duration_ms}}]", "[]"),
        ("{{#if rule}}{{rule}}{{/if}}", ""),
    ];
    for (t, want) in absent {
        assert_eq!(one(t, &m).unwrap_or_else(|e| panic!("{t}: {e}")), want, "{t}");
    }
}

#[test]
fn nested_scopes_work() {
    let c = full_ctx();
    let cases = [
        ("{{#with test_summary}}{{failed}}/{{total}}{{/with}}", "2/412"),
        ("{{#with test_summary as |t|}}{{t.passed}}{{/with}}", "407"),
        ("{{#each artifacts}}{{#if url}}{{name}}{{/if}}{{/each}}", "payments-api.jar"),
        ("{{#each artifacts}}{{@index}}:{{../pipeline}}{{/each}}", "0:payments-api"),
        ("{{#if (eq status \"failure\")}}red{{else}}green{{/if}}", "red"),
        ("{{#if build_number}}#{{build_number}}{{/if}}", "#42"),
        ("{{#if @root.branch}}{{@root.branch}}{{/if}}", "main"),
    ];
    for (t, want) in cases {
        assert_eq!(one(t, &c).unwrap_or_else(|e| panic!("{t}: {e}")), want, "{t}");
    }
}

#[test]
fn helpers_through_handlebars() {
    let c = full_ctx();
    let cases = [
        ("{{status_emoji status}}", "❌"),
        ("{{status_emoji}}", "❌"),
        ("{{status_emoji \"SUCCESS\"}}", "✅"),
        ("{{status_emoji \"nonsense\"}}", "❔"),
        ("{{status_color status}}", "warning"),
        ("{{status_color \"success\"}}", "info"),
        ("{{duration duration_ms}}", "3m 12s"),
        ("{{duration 3720000}}", "1h 2m"),
        ("{{duration \"45000\"}}", "45s"),
        ("{{duration 1500.7}}", "1s"),
        ("{{truncate commit_title 10}}", "fix: roun…"),
        ("{{truncate commit_title 10 \"...\"}}", "fix: ro..."),
        ("{{truncate pipeline 100}}", "payments-api"),
        ("{{truncate build_number 1}}", "4"),
        ("{{default branch \"-\"}}", "main"),
        ("{{default message \"\"}}", "2 tests failed"),
        ("{{json test_summary}}", r#"{"total":412,"failed":2,"passed":407,"skipped":3}"#),
        ("{{json pipeline}}", r#""payments-api""#),
        ("{{json \"a\\\"b\"}}", r#""a\"b""#),
        ("{{eq status \"failure\"}}", "true"),
        ("{{upper status}}", "FAILURE"),
    ];
    for (t, want) in cases {
        assert_eq!(one(t, &c).unwrap_or_else(|e| panic!("{t}: {e}")), want, "{t}");
    }
    assert!(one("{{duration \"soon\"}}", &c).is_err());
    assert!(one("{{truncate pipeline}}", &c).is_err());
}

#[test]
fn a_bare_serialized_event_is_completed() {
    let r = Renderer::new(None).unwrap();
    let bare = serde_json::to_value(minimal()).unwrap();
    for (t, part) in OUTPUTS {
        r.try_render("default", t, part, &bare).unwrap_or_else(|e| panic!("{t}/{part}: {e}"));
    }
}

#[test]
fn render_falls_back_to_the_builtin_default() {
    let r = user(&[("bad.hbs", "{{pipline}}"), ("default.dingtalk.hbs", "{{nope}}")]);
    let c = full_ctx();
    let out = r.render("bad", "dingtalk", "markdown", &c);
    let want = Renderer::new(None).unwrap().try_render("default", "dingtalk", "markdown", &c).unwrap();
    assert_eq!(out.text, want, "the built-in, not the user's broken default");
    let err = out.error.unwrap();
    assert!(err.contains("bad.hbs") && err.contains("pipline"), "{err}");
    let missing = r.render("ghost", "wecom", "markdown", &c);
    assert!(missing.text.contains("payments-api") && missing.error.unwrap().contains("ghost"));
    let ok = r.render("default", "console", "text", &c);
    assert_eq!(ok.error, None);
}

#[test]
fn render_never_returns_empty() {
    let r = Renderer::new(None).unwrap();
    let odd = json!({"status": "failure", "pipeline": "p", "build_number": 7, "artifacts": "not a list"});
    for (t, part) in OUTPUTS {
        let out = r.render("default", t, part, &odd);
        assert!(!out.text.trim().is_empty(), "{t}/{part}");
    }
    let out = r.render("default", "unknown-type", "weird", &json!("not an object"));
    assert!(!out.text.is_empty());
    assert!(last_resort("dingtalk", "markdown", &odd).contains("❌ p #7 failure"));
    assert!(last_resort("email", "html", &json!({"pipeline": "<x>"})).contains("&lt;x&gt;"));
    let body: Value = serde_json::from_str(&last_resort("webhook", "body", &odd)).unwrap();
    assert_eq!(body["pipeline"], "p");
}

#[test]
fn a_template_that_renders_nothing_for_an_event_falls_back_and_says_so() {
    let r = user(&[("ops.hbs", "{{#if (eq status \"failure\")}}Broken: {{pipeline}}{{/if}}\n")]);
    let success = json!({"status": "success", "pipeline": "p", "build_number": 7});
    for (t, part) in [("wecom", "markdown"), ("dingtalk", "markdown"), ("email", "text"), ("console", "text")]
    {
        let out = r.render("ops", t, part, &success);
        assert!(!out.text.trim().is_empty(), "{t}/{part}: an empty message");
        assert_eq!(
            out.error.as_deref(),
            Some("template \"ops\" rendered nothing for this event"),
            "{t}/{part}"
        );
    }
    let failure = json!({"status": "failure", "pipeline": "p"});
    assert_eq!(r.render("ops", "wecom", "markdown", &failure).text, "Broken: p");
    // A webhook's body may be empty: the request itself is the message.
    let out = r.render("ops", "webhook", "body", &success);
    assert_eq!((out.text.as_str(), out.error), ("", None));
}

#[test]
fn public_interpolation_and_context() {
    let e = Event::sample();
    assert_eq!(interpolate_content("${pipeline}@${DEPLOY_ENV} $${x}", &e), "payments-api@staging ${x}");
    let c = context(&e, &ContextExtras { content: Some(String::new()), ..Default::default() });
    assert_eq!(c["content"], Value::Null, "empty content counts as absent");
}

#[test]
fn renderer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Renderer>();
    let r = std::sync::Arc::new(Renderer::new(None).unwrap());
    let c = full_ctx();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (r, c) = (r.clone(), c.clone());
            std::thread::spawn(move || r.render("default", "dingtalk", "markdown", &c))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().error, None);
    }
}

#[test]
fn the_event_json_fast_path_writes_what_the_built_in_webhook_template_writes() {
    let r = Renderer::new(None).unwrap();
    let mut odd = Event::sample();
    odd.raw = json!({"task": {"n": 1.5, "s": "引号 \" \\ \n\t\u{1}", "none": null}, "list": [1, "x"]});
    odd.message = Some("</script> & \"quotes\"".into());
    odd.previous_status = Some(Status::Success);
    odd.transition = Some(crate::event::Transition::FirstFailure);
    let events = [Event::sample(), minimal(), odd];
    let extras = [
        ContextExtras::default(),
        ContextExtras {
            rule: Some("payments failures"),
            channel: Some("audit"),
            content: Some("Deploy ${X}".into()),
            public_url: Some("https://herald.example.com"),
        },
        ContextExtras { rule: Some("r"), channel: Some("c"), content: Some(String::new()), public_url: None },
    ];
    for event in &events {
        for extra in &extras {
            let fast = serde_json::to_string(event).unwrap();
            assert!(r.is_event_json("default"), "the built-in default is used");
            let slow = r.try_render("default", "webhook", "body", &context(event, extra)).unwrap();
            assert_eq!(fast, slow);
        }
    }
    assert!(!r.is_event_json("failure"));
}

#[test]
fn a_user_webhook_template_turns_the_fast_path_off() {
    for file in ["default.webhook.hbs", "default.webhook.body.hbs"] {
        let r = user(&[(file, "{{status}}")]);
        assert!(!r.is_event_json("default"), "{file}");
    }
    // The dir is searched before the built-ins (SPEC §5), so a user `default.hbs` is the
    // webhook body too.
    let r = user(&[("default.hbs", "{{status}}")]);
    assert!(!r.is_event_json("default"));
    assert!(user(&[("default.dingtalk.hbs", "{{status}}")]).is_event_json("default"));
}

#[test]
fn every_name_in_the_dir_comes_before_any_built_in() {
    let r = user(&[("default.hbs", "user default"), ("default.dingtalk.hbs", "user ding")]);
    let c = full_ctx();
    let cases = [
        // `N.T.hbs` in the dir beats the built-in `N.T.M.hbs`...
        ("dingtalk", "text", "user ding"),
        ("dingtalk", "actionCard", "user ding"),
        ("dingtalk", "markdown", "user ding"),
        // ...and `N.hbs` in the dir beats the built-in `N.T.hbs`.
        ("lark", "interactive", "user default"),
        ("lark", "post", "user default"),
        ("wecom", "text", "user default"),
        ("email", "text", "user default"),
        ("console", "text", "user default"),
        ("webhook", "body", "user default"),
    ];
    for (t, part, want) in cases {
        assert_eq!(r.try_render("default", t, part, &c).unwrap(), want, "{t}/{part}");
    }
    // Parts the dir does not provide still come from the built-ins.
    assert_eq!(r.try_render("default", "dingtalk", "title", &c).unwrap(), "❌ payments-api #42 failure");
    assert!(r.try_render("default", "email", "html", &c).unwrap().contains("<html"));
}

/// A failure after three in a row since build 40.
fn still_failing() -> Event {
    let mut still = Event::sample();
    still.transition = Some(crate::event::Transition::StillFailing);
    still.failing_since = Some(crate::event::FailingSince { build_number: Some(40), at: "t".into() });
    still.failure_streak = Some(3);
    still
}

#[test]
fn the_built_in_failure_template_is_the_default_and_where_the_streak_stands() {
    let r = Renderer::new(None).unwrap();
    let bodies = [
        ("dingtalk", "markdown"),
        ("dingtalk", "text"),
        ("dingtalk", "actionCard"),
        ("wecom", "markdown"),
        ("wecom", "text"),
        ("wecom", "markdown_v2"),
        ("lark", "interactive"),
        ("lark", "post"),
        ("lark", "text"),
        ("email", "text"),
        ("console", "text"),
    ];
    let still = still_failing();
    let mut first = Event::sample();
    first.transition = Some(crate::event::Transition::FirstFailure);
    first.previous_status = Some(Status::Success);
    for (t, part) in bodies {
        let render = |name: &str, e: &Event| r.try_render(name, t, part, &ctx(e)).unwrap();
        let default = render("default", &still);
        let failure = render("failure", &still);
        assert!(failure.starts_with(&default), "{t}/{part}: {failure}");
        let tail = failure[default.len()..].trim().replace("**", "");
        assert_eq!(tail, "Still failing since #40 (3 in a row)", "{t}/{part}");
        let failure = render("failure", &first);
        assert_eq!(
            failure[render("default", &first).len()..].trim().replace("**", ""),
            "First failure after success"
        );
        assert_eq!(render("failure", &Event::sample()), render("default", &Event::sample()), "{t}/{part}");
    }
    // The HTML part, which a mail client shows instead of the text, says it too.
    let html = |e: &Event| r.try_render("failure", "email", "html", &ctx(e)).unwrap();
    assert!(html(&still).contains(">Still failing since #40 (3 in a row)</td>"), "{}", html(&still));
    assert!(html(&first).contains(">First failure after success</td>"), "{}", html(&first));
    assert!(!html(&Event::sample()).contains(">History<"));
    // The webhook body stays the event as JSON; titles, subjects and the HTML part are the default's.
    let c = ctx(&still);
    for (t, part) in [("webhook", "body"), ("dingtalk", "title"), ("email", "subject"), ("email", "html")] {
        assert_eq!(r.try_render("failure", t, part, &c), r.try_render("default", t, part, &c), "{t}/{part}");
    }
}

#[test]
fn at_run_time_an_absent_value_renders_empty_and_the_event_is_seen_as_sent() {
    let r = user(&[("t.hbs", "{{#each params}}{{@key}};{{/each}}{{#if test_summary}}tests {{/if}}[{{params.DEPLOY_ENV}}|{{test_summary.failed}}]")]);
    let mut e = minimal();
    e.params.insert("VERSION".into(), "1.2".into());
    let out = r.render("t", "console", "text", &ctx(&e));
    assert_eq!(out, Rendered { text: "VERSION;[|]".into(), error: None });
}

#[test]
fn the_built_in_failure_template_follows_a_user_default_wherever_default_would() {
    let r = user(&[
        ("default.hbs", "mine: {{pipeline}}\n"),
        ("default.lark.post.hbs", "my post: {{pipeline}}"),
        ("failure.streak.text.hbs", "my streak: {{failure_streak}}\n"),
    ]);
    let still = still_failing();
    let c = ctx(&still);
    let cases = [
        // Built-ins `default.dingtalk.hbs` and `default.dingtalk.text.hbs` exist, and the user's
        // `default.hbs` beats both, for `default` and so for `failure`.
        ("dingtalk", "markdown", "mine: payments-api\n\n**Still failing** since #40 (3 in a row)"),
        ("dingtalk", "text", "mine: payments-api\nmy streak: 3"),
        ("wecom", "markdown_v2", "mine: payments-api\n\n**Still failing** since #40 (3 in a row)"),
        ("lark", "post", "my post: payments-api\nmy streak: 3"),
        ("email", "text", "mine: payments-api\nmy streak: 3"),
        ("console", "text", "mine: payments-api\nmy streak: 3"),
    ];
    for (t, part, want) in cases {
        assert_eq!(r.try_render("default", t, part, &c).unwrap(), want.lines().next().unwrap(), "{t}/{part}");
        assert_eq!(r.try_render("failure", t, part, &c).unwrap(), want, "{t}/{part}");
        assert_eq!(
            r.render("failure", t, part, &c),
            Rendered { text: want.into(), error: None },
            "{t}/{part}"
        );
    }
    // The parts the user gave no template for stay the built-in default's.
    assert_eq!(
        r.try_render("failure", "dingtalk", "title", &c),
        r.try_render("default", "dingtalk", "title", &c)
    );

    // A typo in a user partial is reported against that partial, not the default around it.
    let r = user(&[("default.hbs", "fine\n"), ("failure.streak.md.hbs", "ok\n{{streek}}\n")]);
    let err = r.try_render("failure", "dingtalk", "markdown", &c).unwrap_err();
    assert_eq!(
        err,
        RenderError::Failed {
            template: "failure.streak.md.hbs".into(),
            message: "line 2, col 1: unknown field \"streek\"".into()
        }
    );

    // A typo in the user's default is reported against the user's file, by `failure` too.
    let r = user(&[("default.hbs", "ok\n{{pipline}}\n")]);
    for name in ["default", "failure"] {
        let err = r.try_render(name, "dingtalk", "markdown", &c).unwrap_err();
        assert_eq!(
            err,
            RenderError::Failed {
                template: "default.hbs".into(),
                message: "line 2, col 1: unknown field \"pipline\"".into()
            },
            "{name}"
        );
    }
}

#[test]
fn a_user_default_that_trims_its_own_end_keeps_the_failure_streak_apart() {
    // `{{pipeline~}}` trims the white space after it: in the user's file, its last line break.
    let r = user(&[("default.hbs", "mine: {{pipeline~}}\n"), ("default.email.hbs", "mail: {{pipeline~}}")]);
    let c = ctx(&still_failing());
    assert_eq!(r.try_render("default", "dingtalk", "markdown", &c).unwrap(), "mine: payments-api");
    assert_eq!(
        r.try_render("failure", "dingtalk", "markdown", &c).unwrap(),
        "mine: payments-api\n\n**Still failing** since #40 (3 in a row)"
    );
    assert_eq!(
        r.try_render("failure", "email", "text", &c).unwrap(),
        "mail: payments-api\nStill failing since #40 (3 in a row)"
    );
}
