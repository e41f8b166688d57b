//! Rules: compiled matchers that turn an event into routes, one per (event, channel).
//!
//! Rules are evaluated in order; every matching rule fires unless an earlier matching rule has
//! `stop = true`. When two rules route an event to the same channel it is sent there once: the
//! first matching rule's template and content win, and the mentions of all of them are merged.

mod matcher;

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
    matcher: Matcher,
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
        for (i, cfg) in configs.iter().enumerate() {
            match Matcher::compile(&cfg.when, &format!("rules[{i}].when")) {
                Ok(matcher) => rules.push(Rule {
                    name: cfg.name.clone(),
                    channels: cfg.channels.clone(),
                    template: cfg.template.clone(),
                    content: cfg.content.clone(),
                    stop: cfg.stop,
                    mention: cfg.mention.clone(),
                    matcher,
                }),
                Err(mut e) => errors.append(&mut e),
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

    /// The routes for one event, in rule order, at most one per channel.
    pub fn route(&self, event: &Event) -> Vec<Route> {
        let mut routes: Vec<Route> = Vec::new();
        for rule in &self.rules {
            if !rule.matcher.matches(event) {
                continue;
            }
            for channel in &rule.channels {
                match routes.iter_mut().find(|r| &r.channel == channel) {
                    Some(existing) => existing.mention.merge(&rule.mention),
                    None => routes.push(Route {
                        rule: rule.name.clone(),
                        channel: channel.clone(),
                        template: rule.template.clone(),
                        content: rule.content.clone(),
                        mention: rule.mention.clone(),
                    }),
                }
            }
            if rule.stop {
                break;
            }
        }
        routes
    }
}

#[cfg(test)]
mod tests;
