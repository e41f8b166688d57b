//! One rule's `when`: status and source sets, the final flag, and globs over the event's
//! pipeline, branch, stage, task and params. A key that is not given matches anything; a key
//! that is given never matches an event that lacks the field.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::{ConfigError, OneOrMany, WhenConfig};
use crate::event::{Event, Status, Transition};

/// A compiled `[rules.when]`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    sources: Option<Vec<String>>,
    statuses: Option<Vec<Status>>,
    is_final: Option<bool>,
    pipeline: Option<GlobSet>,
    branch: Option<GlobSet>,
    stage: Option<GlobSet>,
    task: Option<GlobSet>,
    params: BTreeMap<String, GlobSet>,
    transitions: Option<Vec<String>>,
    still_failing_every: Option<u32>,
}

impl Matcher {
    /// Compiles `when`; `path` prefixes error locations (e.g. `rules[2].when`).
    pub fn compile(when: &WhenConfig, path: &str) -> Result<Matcher, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut globs = |field: &str, value: &Option<OneOrMany>| {
            value.as_ref().map(|v| {
                glob_set(&v.items(), matches!(v, OneOrMany::Many(_)), &format!("{path}.{field}"), &mut errors)
            })
        };
        let pipeline = globs("pipeline", &when.pipeline);
        let branch = globs("branch", &when.branch);
        let stage = globs("stage", &when.stage);
        let task = globs("task", &when.task);
        let params = when
            .params
            .iter()
            .map(|(k, g)| {
                (
                    k.clone(),
                    glob_set(std::slice::from_ref(g), false, &format!("{path}.params.{k}"), &mut errors),
                )
            })
            .collect();
        let matcher = Matcher {
            sources: when.source.as_ref().map(|s| s.items()),
            // Unknown status words were reported by config::load.
            statuses: when
                .status
                .as_ref()
                .map(|s| s.items().iter().filter_map(|w| Status::parse(w)).collect()),
            is_final: when.is_final,
            pipeline,
            branch,
            stage,
            task,
            params,
            transitions: when.transition.as_ref().map(|t| t.items()),
            still_failing_every: when.still_failing_every,
        };
        if errors.is_empty() {
            Ok(matcher)
        } else {
            Err(errors)
        }
    }

    /// True when every given key matches the event.
    pub fn matches(&self, e: &Event) -> bool {
        fn glob(set: &Option<GlobSet>, value: &Option<String>) -> bool {
            match (set, value) {
                (None, _) => true,
                (Some(set), Some(v)) => set.is_match(v),
                (Some(_), None) => false,
            }
        }
        self.sources.as_ref().is_none_or(|s| s.iter().any(|x| x == &e.source))
            && self.statuses.as_ref().is_none_or(|s| s.contains(&e.status))
            && self.is_final.is_none_or(|f| f == e.is_final)
            && glob(&self.pipeline, &e.pipeline)
            && glob(&self.branch, &e.branch)
            && glob(&self.stage, &e.stage)
            && glob(&self.task, &e.task)
            && self.params.iter().all(|(k, set)| e.params.get(k).is_some_and(|v| set.is_match(v)))
            && self
                .transitions
                .as_ref()
                .is_none_or(|words| e.transition.is_some_and(|t| words.iter().any(|w| t.matches(w))))
            && self.still_failing_every.is_none_or(|n| {
                e.transition != Some(Transition::StillFailing) || e.failure_streak.is_some_and(|s| s % n == 0)
            })
    }
}

fn glob_set(patterns: &[String], indexed: bool, path: &str, errors: &mut Vec<ConfigError>) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        match Glob::new(p) {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => {
                let at = if indexed { format!("{path}[{i}]") } else { path.to_string() };
                errors.push(ConfigError::new(at, format!("invalid glob \"{p}\": {}", e.kind())));
            }
        }
    }
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}
