//! Table tests for rule matching and routing.

use super::*;
use crate::config::{OneOrMany, WhenConfig};
use crate::event::Status;

fn rule(name: &str, channels: &[&str], when: WhenConfig) -> RuleConfig {
    RuleConfig {
        at: 0,
        name: name.into(),
        channels: channels.iter().map(|s| s.to_string()).collect(),
        template: None,
        content: None,
        stop: false,
        when,
        mention: Mention::default(),
        quiet: None,
        repeat_interval: None,
        group_by: vec![],
        group_wait: None,
    }
}

fn many(v: &[&str]) -> Option<OneOrMany> {
    Some(OneOrMany::Many(v.iter().map(|s| s.to_string()).collect()))
}

fn one(v: &str) -> Option<OneOrMany> {
    Some(OneOrMany::One(v.into()))
}

#[test]
fn matcher_table() {
    let e = Event::sample(); // flow, failure, final, payments-api, main, test / unit tests, DEPLOY_ENV=staging
    let cases: Vec<(&str, WhenConfig, bool)> = vec![
        ("empty when matches all", WhenConfig::default(), true),
        ("source in list", WhenConfig { source: many(&["jenkins", "flow"]), ..Default::default() }, true),
        ("source not in list", WhenConfig { source: one("buildbot"), ..Default::default() }, false),
        ("status", WhenConfig { status: many(&["failure", "aborted"]), ..Default::default() }, true),
        ("status miss", WhenConfig { status: one("success"), ..Default::default() }, false),
        ("final true", WhenConfig { is_final: Some(true), ..Default::default() }, true),
        ("final false", WhenConfig { is_final: Some(false), ..Default::default() }, false),
        ("pipeline glob", WhenConfig { pipeline: one("payments-*"), ..Default::default() }, true),
        ("pipeline glob miss", WhenConfig { pipeline: one("orders-*"), ..Default::default() }, false),
        ("branch list", WhenConfig { branch: many(&["release/*", "main"]), ..Default::default() }, true),
        ("stage", WhenConfig { stage: one("te?t"), ..Default::default() }, true),
        ("task", WhenConfig { task: one("unit*"), ..Default::default() }, true),
        (
            "params glob",
            WhenConfig { params: [("DEPLOY_ENV".into(), "stag*".into())].into(), ..Default::default() },
            true,
        ),
        (
            "params miss",
            WhenConfig { params: [("DEPLOY_ENV".into(), "prod".into())].into(), ..Default::default() },
            false,
        ),
        (
            "params absent key",
            WhenConfig { params: [("NOPE".into(), "*".into())].into(), ..Default::default() },
            false,
        ),
    ];
    for (name, when, want) in cases {
        let m = Matcher::compile(&when, "w").unwrap();
        assert_eq!(m.matches(&e), want, "{name}");
    }
}

#[test]
fn a_given_key_never_matches_an_absent_field() {
    let e = Event::new("flow", Status::Running, "RUNNING", false);
    let m = Matcher::compile(&WhenConfig { branch: one("*"), ..Default::default() }, "w").unwrap();
    assert!(!m.matches(&e));
}

#[test]
fn routes_dedupe_per_channel_and_merge_mentions() {
    let mut a = rule("a", &["ding", "mail"], WhenConfig::default());
    a.mention.mobiles = vec!["1".into()];
    a.template = Some("failure".into());
    let mut b = rule("b", &["ding", "lark"], WhenConfig::default());
    b.mention.mobiles = vec!["2".into(), "1".into()];
    b.mention.all = true;
    let set = RuleSet::compile(&[a, b]).unwrap();
    let routes = set.route(&Event::sample());
    let chans: Vec<&str> = routes.iter().map(|r| r.channel.as_str()).collect();
    assert_eq!(chans, ["ding", "mail", "lark"]);
    assert_eq!(routes[0].rule, "a");
    assert_eq!(routes[0].template.as_deref(), Some("failure"));
    assert_eq!(routes[0].mention.mobiles, ["1", "2"]);
    assert!(routes[0].mention.all);
    assert_eq!(routes[2].rule, "b");
}

#[test]
fn stop_ends_evaluation_only_when_its_rule_matches() {
    let mut miss = rule("miss", &["x"], WhenConfig { status: one("success"), ..Default::default() });
    miss.stop = true;
    let mut hit = rule("hit", &["y"], WhenConfig::default());
    hit.stop = true;
    let after = rule("after", &["z"], WhenConfig::default());
    let set = RuleSet::compile(&[miss, hit, after]).unwrap();
    let chans: Vec<String> = set.route(&Event::sample()).into_iter().map(|r| r.channel).collect();
    assert_eq!(chans, ["y"]);
}

#[test]
fn bad_globs_are_reported_with_paths() {
    let bad = rule(
        "bad",
        &["x"],
        WhenConfig { branch: many(&["main", "[oops"]), pipeline: one("{a"), ..Default::default() },
    );
    let errors: Vec<String> = RuleSet::compile(&[bad]).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert!(
        errors.iter().any(|e| e.starts_with("rules[0].when.branch[1]: invalid glob \"[oops\"")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.starts_with("rules[0].when.pipeline: invalid glob")), "{errors:?}");
}
