//! Rules: compiled matchers that turn an event into routes, one per (event, channel).
//!
//! Rules are evaluated in order; every matching rule fires unless an earlier matching rule has
//! `stop = true`. When two rules route an event to the same channel it is sent there once: the
//! first matching rule's template and content win, and the mentions of all of them are merged.

mod matcher;
pub mod quiet;

use std::time::Duration;

use crate::config::{ConfigError, Mention, RuleConfig};
use crate::event::Event;

pub use matcher::Matcher;

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub channels: Vec<String>,
    pub template: Option<String>,
    pub content: Option<String>,
    pub stop: bool,
    pub mention: Mention,
    pub hold: HoldRules,
    matcher: Matcher,
}

/// What a rule holds back: quiet hours, repeats, and grouping of one run's events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HoldRules {
    pub quiet: Option<quiet::Quiet>,
    pub repeat_interval: Option<Duration>,
    /// Event fields that identify a run, and how long to gather its events.
    pub group: Option<(Vec<String>, Duration)>,
}

/// Where one event goes: a channel, and the rule(s) that sent it there.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The first matching rule that named this channel.
    pub rule: String,
    pub channel: String,
    /// The rule's template; `None` means the channel's, then `default`.
    pub template: Option<String>,
    pub content: Option<String>,
    /// The union of the mentions of every matching rule that named this channel.
    pub mention: Mention,
    /// The first matching rule's quiet hours, repeat interval and grouping.
    pub hold: HoldRules,
}

/// The ordered, compiled rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Compiles every rule; reports every bad glob with its path.
    pub fn compile(configs: &[RuleConfig]) -> Result<RuleSet, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut rules = Vec::new();
        for cfg in configs {
            let i = cfg.at;
            let matcher = Matcher::compile(&cfg.when, &format!("rules[{i}].when"));
            let hold = hold_rules(cfg, &format!("rules[{i}]"));
            match (matcher, hold) {
                (Ok(matcher), Ok(hold)) => rules.push(Rule {
                    name: cfg.name.clone(),
                    channels: cfg.channels.clone(),
                    template: cfg.template.clone(),
                    content: cfg.content.clone(),
                    stop: cfg.stop,
                    mention: cfg.mention.clone(),
                    hold,
                    matcher,
                }),
                (m, h) => {
                    errors.extend(m.err().into_iter().flatten());
                    errors.extend(h.err().into_iter().flatten());
                }
            }
        }
        if errors.is_empty() {
            Ok(RuleSet { rules })
        } else {
            Err(errors)
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules that match one event, in order, up to the first matching rule with `stop`.
    pub fn matching<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Rule> + 'a {
        let mut stopped = false;
        self.rules.iter().filter(|r| r.matcher.matches(event)).take_while(move |r| {
            let go = !stopped;
            stopped |= r.stop;
            go
        })
    }

    /// The routes for one event, in rule order, at most one per channel.
    pub fn route(&self, event: &Event) -> Vec<Route> {
        let mut routes: Vec<Route> = Vec::new();
        for rule in self.matching(event) {
            for channel in &rule.channels {
                match routes.iter_mut().find(|r| &r.channel == channel) {
                    Some(existing) => existing.mention.merge(&rule.mention),
                    None => routes.push(Route {
                        rule: rule.name.clone(),
                        channel: channel.clone(),
                        template: rule.template.clone(),
                        content: rule.content.clone(),
                        mention: rule.mention.clone(),
                        hold: rule.hold.clone(),
                    }),
                }
            }
        }
        routes
    }
}

/// The event fields `group_by` may name.
pub const GROUP_FIELDS: &[&str] =
    &["source", "pipeline", "pipeline_id", "build_number", "branch", "commit", "repo", "stage", "task"];

fn hold_rules(cfg: &RuleConfig, path: &str) -> Result<HoldRules, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let quiet = match &cfg.quiet {
        Some(q) => {
            quiet::Quiet::compile(q, &format!("{path}.quiet")).map_err(|mut e| errors.append(&mut e)).ok()
        }
        None => None,
    };
    for (j, f) in cfg.group_by.iter().enumerate() {
        if !GROUP_FIELDS.contains(&f.as_str()) {
            errors.push(ConfigError::new(
                format!("{path}.group_by[{j}]"),
                format!("\"{f}\" is not a field to group by (one of {})", GROUP_FIELDS.join(", ")),
            ));
        }
    }
    let group = match (cfg.group_by.is_empty(), cfg.group_wait) {
        (true, None) => None,
        (false, Some(w)) => Some((cfg.group_by.clone(), w.0)),
        (false, None) => {
            errors.push(ConfigError::new(
                format!("{path}.group_wait"),
                "group_by needs a group_wait, e.g. \"30s\"",
            ));
            None
        }
        (true, Some(_)) => {
            errors.push(ConfigError::new(
                format!("{path}.group_by"),
                "group_wait needs group_by, e.g. [\"pipeline\", \"build_number\"]",
            ));
            None
        }
    };
    if errors.is_empty() {
        Ok(HoldRules { quiet, repeat_interval: cfg.repeat_interval.map(|d| d.0), group })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
