//! State-aware triggers: transitions, still-failing throttling and the template context,
//! remembered in the durable store across a restart.

use std::sync::Arc;

use herald::channels::MessageBody;
use herald::clock::SystemClock;
use herald::config;
use herald::event::{Event, Status};
use herald::gateway::Gateway;
use herald::outbox::sqlite::SqliteOutbox;
use herald::outbox::{ListFilter, Outbox};
use serde_json::Value;

const CONFIG: &str = r#"
[delivery]
dedup_window = "0s"

[channels.audit]
type = "webhook"
url = "http://127.0.0.1:9/audit"

[channels.chat]
type = "console"

[[rules]]
name = "first failure"
channels = ["chat"]
[rules.when]
transition = "first_failure"

[[rules]]
name = "every 2nd failure in a row"
channels = ["chat"]
[rules.when]
transition = "still_failing"
still_failing_every = 2

[[rules]]
name = "fixed"
channels = ["chat"]
[rules.when]
transition = ["fixed"]

[[rules]]
name = "audit"
channels = ["audit"]
"#;

fn event(status: Status, build: u64) -> Event {
    let mut e = Event::new("jenkins", status, status.as_str().to_uppercase(), true);
    e.pipeline = Some("payments-api".into());
    e.branch = Some("main".into());
    e.build_number = Some(build);
    e
}

struct Step {
    status: Status,
    build: u64,
    rules: &'static [&'static str],
    transition: &'static str,
    previous: Option<&'static str>,
    failing_since: Option<u64>,
}

async fn run(dir: &std::path::Path, steps: &[Step]) {
    let cfg = config::parse(CONFIG, &|_| None).unwrap();
    let store = Arc::new(SqliteOutbox::open(dir).unwrap());
    let built =
        Gateway::build(&cfg, store.clone(), Arc::new(SystemClock)).map_err(|e| format!("{e:?}")).unwrap();
    for step in steps {
        let accepted = built.gateway.accept(event(step.status, step.build)).await.unwrap();
        let mut rules: Vec<&str> =
            accepted.routes.iter().map(|r| r.rule.as_str()).filter(|r| *r != "audit").collect();
        rules.sort();
        assert_eq!(rules, step.rules, "build #{}", step.build);
        // The audit webhook's body is the event as the templates see it.
        let audit = ListFilter { channel: Some("audit".into()), limit: 1, ..Default::default() };
        let newest = store.list(&audit).await.unwrap();
        let d = &newest[0];
        let MessageBody::Raw { body, .. } = &d.message.body else { panic!("webhook body") };
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["build_number"], step.build);
        assert_eq!(v["transition"], step.transition, "build #{}", step.build);
        assert_eq!(v["previous_status"].as_str(), step.previous, "build #{}", step.build);
        assert_eq!(v["failing_since"]["build_number"].as_u64(), step.failing_since, "build #{}", step.build);
    }
}

#[tokio::test]
async fn transitions_are_remembered_across_a_restart() {
    use Status::*;
    let dir = tempfile::tempdir().unwrap();
    let step = |status, build, rules, transition, previous, failing_since| Step {
        status,
        build,
        rules,
        transition,
        previous,
        failing_since,
    };
    run(
        dir.path(),
        &[
            step(Success, 1, &[], "changed", None, None),
            step(Failure, 2, &["first failure"], "first_failure", Some("success"), Some(2)),
            step(Failure, 3, &["every 2nd failure in a row"], "still_failing", Some("failure"), Some(2)),
        ],
    )
    .await;
    // A new process on the same store.
    run(
        dir.path(),
        &[
            step(Failure, 4, &[], "still_failing", Some("failure"), Some(2)),
            step(Failure, 5, &["every 2nd failure in a row"], "still_failing", Some("failure"), Some(2)),
            step(Success, 6, &["fixed"], "fixed", Some("failure"), None),
            step(Success, 7, &[], "unchanged", Some("success"), None),
        ],
    )
    .await;
}

#[tokio::test]
async fn units_of_work_are_tracked_apart_and_open_events_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::parse(CONFIG, &|_| None).unwrap();
    let store = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    let gw =
        Gateway::build(&cfg, store, Arc::new(SystemClock)).map_err(|e| format!("{e:?}")).unwrap().gateway;
    let rules = |a: herald::gateway::Accepted| a.routes.into_iter().map(|r| r.rule).collect::<Vec<_>>();
    assert_eq!(rules(gw.accept(event(Status::Failure, 1)).await.unwrap()), ["first failure", "audit"]);
    // Another branch is another unit of work: its first failure is news too.
    let mut other = event(Status::Failure, 1);
    other.branch = Some("release/1.2".into());
    assert_eq!(rules(gw.accept(other).await.unwrap()), ["first failure", "audit"]);
    // A running (not final) event neither matches a transition nor moves the streak.
    let mut running = event(Status::Running, 2);
    running.is_final = false;
    assert_eq!(rules(gw.accept(running).await.unwrap()), ["audit"]);
    assert_eq!(
        rules(gw.accept(event(Status::Failure, 2)).await.unwrap()),
        ["every 2nd failure in a row", "audit"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_of_one_unit_accepted_together_each_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config::parse(CONFIG, &|_| None).unwrap();
    let store = Arc::new(SqliteOutbox::open(dir.path()).unwrap());
    let gw = Arc::new(
        Gateway::build(&cfg, store.clone(), Arc::new(SystemClock))
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .gateway,
    );
    // Another process holds the store's lock, so both results read the unit's state, and are
    // stored, together.
    let other = rusqlite::Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; UPDATE tracks SET version = version;").unwrap();
    let accept = |build| {
        let gw = gw.clone();
        tokio::spawn(async move { gw.accept(event(Status::Failure, build)).await })
    };
    let (first, second) = (accept(1), accept(2));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    other.execute_batch("COMMIT").unwrap();
    let rules = |a: herald::gateway::Accepted| a.routes.into_iter().map(|r| r.rule).collect::<Vec<_>>();
    let mut got = vec![rules(first.await.unwrap().unwrap()), rules(second.await.unwrap().unwrap())];
    got.sort();
    assert_eq!(
        got,
        [vec!["every 2nd failure in a row", "audit"], vec!["first failure", "audit"]],
        "one first failure, then a second in a row"
    );
    drop(store);
    drop(gw);
    // The stored streak is two, whichever committed last.
    let gw = Gateway::build(&cfg, Arc::new(SqliteOutbox::open(dir.path()).unwrap()), Arc::new(SystemClock))
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .gateway;
    assert_eq!(rules(gw.accept(event(Status::Failure, 3)).await.unwrap()), ["audit"], "third in a row");
    assert_eq!(
        rules(gw.accept(event(Status::Failure, 4)).await.unwrap()),
        ["every 2nd failure in a row", "audit"],
        "fourth in a row"
    );
}
