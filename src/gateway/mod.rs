//! Accepting an event: authenticate, parse, route, render each (rule, channel) message, store.
//!
//! This is the pipeline behind `POST /hooks` and `herald render`; it is built once from the
//! config, and building it is the validation `serve` and `check` share (channels, rules,
//! templates rendered against a sample event, mention warnings).

mod auth;
mod observing;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::net::IpAddr;

pub use auth::{bearer_token, token_matches, Guard};
use observing::Observing;

use crate::channels::{self, Channel, ChannelDeps, Message, Prepare};
use crate::clock::{Clock, Millis};
use crate::config::{Config, ConfigError, GenericSpec, SourceConfig};
use crate::delivery::handoff::Handoff;
use crate::delivery::hold::Hold;
use crate::delivery::summary::{self, SUMMARY_TEMPLATE};
use crate::event::{self, Event, Status};
use crate::ingest::{self, Format, Inbound, IngestError};
use crate::outbox::{
    Dedup, Delivery, EnqueueWith, Headline, Mentioned, NewDelivery, Outbox, OutboxError, Repeat,
};
use crate::people::Directory;
use crate::render::{self, ContextExtras, Renderer};
use crate::rules::{Route, RuleSet};
use crate::state;

/// Why a webhook was refused. Each maps to one HTTP status (SPEC §3).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A source name this gateway does not accept, and the names it does.
    #[error("unknown format \"{name}\" (this gateway accepts: {known}; a generic source is posted to /hooks/<its name in [sources]>)")]
    UnknownFormat { name: String, known: String },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the body is larger than {0} bytes (server.max_body_bytes)")]
    TooLarge(usize),
    #[error("the body did not arrive within {} s of the headers", .0.as_secs_f64())]
    BodyTimeout(std::time::Duration),
    #[error("Content-Encoding {0:?} is not accepted: send the body uncompressed")]
    Encoded(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot store the event: {0}")]
    Unavailable(String),
}

impl HookError {
    pub fn status(&self) -> u16 {
        match self {
            HookError::Malformed(_) => 400,
            HookError::Unauthorized(_) => 401,
            HookError::UnknownFormat { .. } => 404,
            HookError::MethodNotAllowed(_) => 405,
            HookError::TooLarge(_) => 413,
            HookError::BodyTimeout(_) => 408,
            HookError::Encoded(_) => 415,
            HookError::Invalid(_) => 422,
            HookError::Unavailable(_) => 503,
        }
    }
}

impl From<IngestError> for HookError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Malformed(m) => HookError::Malformed(m),
            other => HookError::Invalid(other.to_string()),
        }
    }
}

/// One message an event produces.
#[derive(Debug, Clone)]
pub struct Planned {
    pub route: Route,
    pub delivery_id: String,
    pub message: Message,
    /// Whom the message mentions, resolved for its channel.
    pub mentions: Mentioned,
}

/// What `accept` stored.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub event_id: String,
    pub status: Status,
    pub routes: Vec<Route>,
    /// Set when the event repeats one accepted within the dedup window: it was stored, but
    /// nothing was sent again.
    pub duplicate_of: Option<String>,
}

/// A source requests can name: a built-in format, or a named generic source.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub format: Format,
    pub guard: Guard,
    pub generic: Option<GenericSpec>,
    /// Jenkins (Tikal): the root URL that relative links are resolved against.
    pub base_url: Option<url::Url>,
}

impl SourceEntry {
    /// What the parsers need of this source, under the name requests use for it.
    pub fn source<'a>(&'a self, name: &'a str) -> ingest::Source<'a> {
        ingest::Source {
            name,
            format: self.format,
            generic: self.generic.as_ref(),
            base_url: self.base_url.as_ref(),
        }
    }
}

/// Every source requests can name: each built-in format (with its settings, if configured)
/// and each configured generic source.
fn sources(config: &BTreeMap<String, SourceConfig>) -> BTreeMap<String, SourceEntry> {
    let mut out: BTreeMap<String, SourceEntry> = Format::ALL
        .into_iter()
        .filter(|f| *f != Format::Generic)
        .map(|f| {
            (
                f.name().to_string(),
                SourceEntry { format: f, guard: Guard::default(), generic: None, base_url: None },
            )
        })
        .collect();
    for (name, src) in config {
        let format = if src.kind.as_deref() == Some("generic") {
            Some(Format::Generic)
        } else {
            Format::from_name(name)
        };
        let Some(format) = format else { continue };
        let generic = (format == Format::Generic).then(|| src.generic_spec());
        let base_url = src.base_url.as_deref().and_then(ingest::jenkins_base);
        out.insert(name.clone(), SourceEntry { format, guard: Guard::new(src), generic, base_url });
    }
    out
}

/// The accept pipeline, built from a config.
pub struct Gateway {
    pub sources: BTreeMap<String, SourceEntry>,
    pub rules: RuleSet,
    pub channels: Arc<HashMap<String, Arc<dyn Channel>>>,
    channel_templates: HashMap<String, String>,
    pub public_url: Option<String>,
    /// `[people]`: resolves each route's `mention.people` / `mention.author` per channel type.
    pub directory: Directory,
    /// Identical events within this window are stored but not sent again; 0 turns it off.
    pub dedup_window_ms: i64,
    pub outbox: Arc<dyn Outbox>,
    pub clock: Arc<dyn Clock>,
    /// Hands stored deliveries to the delivery worker, and tells it when the store has more.
    pub handoff: Arc<Handoff>,
    /// The latest state of each unit of work, ahead of the store.
    observing: Observing,
}

/// Deliveries the hand-off queue holds at most; beyond that the worker reads them back from the
/// store. About 2 KB each: a few MB at most.
const HANDOFF_CAPACITY: usize = 1024;

/// The result of building a gateway: it, and the warnings `check` prints.
pub struct Built {
    pub gateway: Gateway,
    pub warnings: Vec<ConfigError>,
}

/// A config compiled and checked: every part of a gateway but its store and clock, so a bad
/// config is found before the store is opened.
pub struct Compiled {
    sources: BTreeMap<String, SourceEntry>,
    rules: RuleSet,
    channels: HashMap<String, Arc<dyn Channel>>,
    channel_templates: HashMap<String, String>,
    public_url: Option<String>,
    directory: Directory,
    dedup_window_ms: i64,
    lease_ms: i64,
    pub warnings: Vec<ConfigError>,
}

impl Compiled {
    /// The gateway, with its store and clock.
    pub fn assemble(self, outbox: Arc<dyn Outbox>, clock: Arc<dyn Clock>) -> Built {
        let gateway = Gateway {
            sources: self.sources,
            rules: self.rules,
            channels: Arc::new(self.channels),
            channel_templates: self.channel_templates,
            public_url: self.public_url,
            directory: self.directory,
            dedup_window_ms: self.dedup_window_ms,
            outbox,
            clock,
            handoff: Arc::new(Handoff::new(HANDOFF_CAPACITY, self.lease_ms)),
            observing: Observing::default(),
        };
        Built { gateway, warnings: self.warnings }
    }
}

impl Gateway {
    /// Compiles every part and validates the whole config, then adds the store and clock.
    pub fn build(
        config: &Config,
        outbox: Arc<dyn Outbox>,
        clock: Arc<dyn Clock>,
    ) -> Result<Built, Vec<ConfigError>> {
        Ok(Self::compile(config)?.assemble(outbox, clock))
    }

    /// Compiles every part and validates the whole config; every error is returned at once.
    pub fn compile(config: &Config) -> Result<Compiled, Vec<ConfigError>> {
        Self::compile_checking(config, true)
    }

    /// `compile`; without `templates`, on the built-in templates alone, and without looking
    /// for or rendering the templates the config names: when `[templates]` is itself in error,
    /// they could only be reported missing.
    pub fn compile_checking(config: &Config, templates: bool) -> Result<Compiled, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let dir = config.templates_dir.as_deref().filter(|_| templates);
        // Templates that do not compile are reported, and the rest is checked on the built-ins.
        let (renderer, templates) = match Renderer::new(dir) {
            Ok(r) => (Arc::new(r), templates),
            Err(errs) => {
                errors.extend(errs.into_iter().map(|e| ConfigError::new("templates", e)));
                (Arc::new(Renderer::new(None).map_err(|_| errors.clone())?), false)
            }
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| vec![ConfigError::new("channels", format!("cannot build the HTTP client: {e}"))])?;
        let deps = ChannelDeps { renderer: renderer.clone(), http };
        let mut built: HashMap<String, Arc<dyn Channel>> = HashMap::new();
        let mut channel_templates = HashMap::new();
        for cfg in &config.channels {
            let template = cfg.common.template.clone().unwrap_or_else(|| "default".to_string());
            if templates && !renderer.has_template(&template) {
                errors.push(ConfigError::new(
                    format!("channels.{}.template", cfg.name),
                    format!("template \"{template}\" not found"),
                ));
            }
            channel_templates.insert(cfg.name.clone(), template);
            match channels::build(cfg, &deps) {
                Ok(ch) => {
                    built.insert(cfg.name.clone(), ch);
                }
                Err(found) => errors.extend(
                    found
                        .into_iter()
                        .map(|e| ConfigError::new(format!("channels.{}.{}", cfg.name, e.field), e.message)),
                ),
            }
        }
        let rules = match RuleSet::compile(&config.rules) {
            Ok(r) => r,
            Err(mut e) => {
                errors.append(&mut e);
                RuleSet::default()
            }
        };
        // Every reachable template is rendered against a full sample event and a minimal one
        // (every optional field absent), so an unguarded optional field is caught here, not at
        // 3 a.m. when a real event lacks it.
        let samples = [Event::sample(), Event::new("flow", Status::Running, "RUNNING", false)];
        let directory = Directory::new(&config.people);
        let mut checked: Vec<(String, String)> = Vec::new();
        let mut reported: Vec<(&str, String, String)> = Vec::new();
        for rule in &config.rules {
            let i = rule.at;
            if let Some(t) = &rule.template {
                if templates && !renderer.has_template(t) {
                    errors.push(ConfigError::new(
                        format!("rules[{i}].template"),
                        format!("template \"{t}\" not found"),
                    ));
                    continue;
                }
            }
            for (j, name) in rule.channels.iter().enumerate() {
                let Some(ch) = built.get(name) else { continue };
                let template = rule.template.clone().unwrap_or_else(|| channel_templates[name].clone());
                // A channel's own template that is missing was reported with the channel.
                if templates && renderer.has_template(&template) {
                    let found = render_check(ch.as_ref(), &template, &samples, |sample| ContextExtras {
                        rule: Some(&rule.name),
                        channel: Some(name),
                        content: rule.content.as_deref().map(|c| render::interpolate_content(c, sample)),
                        public_url: config.server.public_url.as_deref(),
                    });
                    // A template that fails the same way for every rule that reaches it through
                    // this channel is reported for the first.
                    for e in found {
                        if !reported.contains(&(name.as_str(), template.clone(), e.clone())) {
                            reported.push((name.as_str(), template.clone(), e.clone()));
                            errors.push(ConfigError::new(format!("rules[{i}].channels[{j}]"), e));
                        }
                    }
                }
                // Platform limits apply to the ids people resolve to, too.
                let resolved = directory.resolve_people(&rule.mention, ch.kind());
                let mut found = directory.check(&rule.mention, ch.kind());
                found.extend(ch.check_mention(&resolved));
                // The author is known only per event: what any person could add as the author
                // is checked too, and said once.
                if rule.mention.author {
                    for w in ch.check_mention(&directory.author_candidates(ch.kind())) {
                        if !found.contains(&w) {
                            found.push(format!("mention.author: {w}"));
                        }
                    }
                }
                for w in found {
                    warnings.push(ConfigError::new(
                        format!("rules[{i}].mention"),
                        format!("channel \"{name}\": {w}"),
                    ));
                }
                checked.push((name.clone(), template));
            }
        }
        // Channels no rule reaches still get their own template checked.
        for cfg in &config.channels {
            let Some(ch) = built.get(&cfg.name) else { continue };
            let template = &channel_templates[&cfg.name];
            if !templates
                || checked.iter().any(|(n, t)| n == &cfg.name && t == template)
                || !renderer.has_template(template)
            {
                continue;
            }
            let found = render_check(ch.as_ref(), template, &samples, |_| ContextExtras {
                channel: Some(&cfg.name),
                ..Default::default()
            });
            errors.extend(found.into_iter().map(|e| ConfigError::new(format!("channels.{}", cfg.name), e)));
        }
        // A channel whose messages can be merged (its robot has limits, or a rule holds them
        // for quiet hours or a group) renders summaries through the `summary` template.
        for cfg in &config.channels {
            let Some(ch) = built.get(&cfg.name) else { continue };
            let held_by_a_rule = config
                .rules
                .iter()
                .any(|r| r.channels.contains(&cfg.name) && (r.quiet.is_some() || !r.group_by.is_empty()));
            if !templates || (cfg.rates().is_empty() && !held_by_a_rule) {
                continue;
            }
            let found = ch.check_templates(SUMMARY_TEMPLATE, &summary::sample_context(&cfg.name));
            errors.extend(
                found
                    .into_iter()
                    .map(|e| ConfigError::new(format!("channels.{}", cfg.name), format!("summary: {e}"))),
            );
        }
        for (name, src) in &config.sources {
            if (src.tcp.is_some() || src.udp.is_some()) && src.allow_ips.is_empty() {
                warnings.push(ConfigError::new(
                    format!("sources.{name}"),
                    "raw tcp/udp listeners carry no token: set allow_ips, or anyone who can reach the port can post",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Compiled {
            sources: sources(&config.sources),
            rules,
            channels: built,
            channel_templates,
            public_url: config.server.public_url.clone(),
            directory,
            dedup_window_ms: config.delivery.dedup_window.0.as_millis() as i64,
            lease_ms: crate::delivery::lease_for(config.channels.iter().map(|c| c.common.timeout_ms))
                .as_millis() as i64,
            warnings,
        })
    }

    /// The source requests name `name`.
    fn source(&self, name: &str) -> Result<&SourceEntry, HookError> {
        self.sources.get(name).ok_or_else(|| HookError::UnknownFormat {
            name: name.to_string(),
            known: self.sources.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
        })
    }

    /// Resolves the source (detecting the format when `name` is `None`), authenticates the
    /// request, and parses it into its events. `raw_query` is the query as received, token
    /// included (`http::hooks` reads a Job Status GET's second `?` as `&`); `req` carries it
    /// with the token stripped (see [`strip_token`]).
    pub fn parse(
        &self,
        name: Option<&str>,
        req: &Inbound<'_>,
        raw_query: &str,
        peer: Option<IpAddr>,
    ) -> Result<Vec<Event>, HookError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => ingest::detect(req)?.name().to_string(),
        };
        let src = self.source(&name)?;
        if req.method != "POST" && src.format != Format::JenkinsStatus {
            return Err(HookError::MethodNotAllowed(format!("{name} accepts POST only")));
        }
        src.guard.check(&name, src.format, req, raw_query, peer).map_err(|e| HookError::Unauthorized(e.0))?;
        Ok(ingest::parse_events(&src.source(&name), req)?)
    }

    /// Parses, authenticates and accepts a request: the HTTP API's entry point. Returns one
    /// `Accepted` per event (none for a GitHub ping).
    pub async fn receive(
        &self,
        name: Option<&str>,
        req: &Inbound<'_>,
        raw_query: &str,
        peer: Option<IpAddr>,
    ) -> Result<Vec<Accepted>, HookError> {
        let events = self.parse(name, req, raw_query, peer)?;
        self.accept_all(events).await
    }

    /// A raw TCP/UDP message (Jenkins over sockets): the source's `allow_ips` is checked, its
    /// token and secret are not, since a raw message has nowhere to carry them.
    pub async fn receive_raw(
        &self,
        name: &str,
        req: &Inbound<'_>,
        peer: IpAddr,
    ) -> Result<Vec<Accepted>, HookError> {
        self.check_peer(name, Some(peer))?;
        let src = self.source(name)?;
        let events = ingest::parse_events(&src.source(name), req)?;
        self.accept_all(events).await
    }

    async fn accept_all(&self, events: Vec<Event>) -> Result<Vec<Accepted>, HookError> {
        let mut accepted = Vec::with_capacity(events.len());
        for mut event in events {
            event.received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            accepted.push(self.accept(event).await?);
        }
        Ok(accepted)
    }

    /// Checks a raw-socket sender's address against the source's allowlist.
    pub fn check_peer(&self, name: &str, peer: Option<IpAddr>) -> Result<(), HookError> {
        let src = self.source(name)?;
        src.guard.check_peer(name, peer).map_err(|e| HookError::Unauthorized(e.0))
    }

    /// The messages an event produces, one per route. Pure: nothing is stored or sent.
    pub fn plan(&self, event: &Event) -> Vec<Planned> {
        self.plan_with(event, None)
    }

    /// `plan`, with the event already serialized when the caller has it.
    fn plan_with(&self, event: &Event, event_json: Option<&str>) -> Vec<Planned> {
        let routes = self.rules.route(event);
        routes
            .into_iter()
            .filter_map(|route| {
                let channel = self.channels.get(&route.channel)?;
                let template =
                    route.template.clone().unwrap_or_else(|| self.channel_templates[&route.channel].clone());
                let content = route.content.as_deref().map(|c| render::interpolate_content(c, event));
                let extras = ContextExtras {
                    rule: Some(&route.rule),
                    channel: Some(&route.channel),
                    content,
                    public_url: self.public_url.as_deref(),
                };
                let mention = self.directory.resolve(&route.mention, channel.kind(), event);
                let mut input = Prepare::new(event, extras, &template, &mention);
                if let Some(json) = event_json {
                    input = input.with_event_json(json);
                }
                let message = channel.prepare(&input);
                for e in &message.template_errors {
                    tracing::warn!(event_id = %event.event_id, rule = %route.rule, channel = %route.channel,
                        "template failed, sent with the built-in default: {e}");
                }
                let mentions = Mentioned::from(&mention);
                Some(Planned { route, delivery_id: event::new_event_id(), message, mentions })
            })
            .collect()
    }

    /// Plans and stores an event's deliveries, then wakes the worker. Returns once they are
    /// stored: the caller may then answer 202.
    pub async fn accept(&self, mut event: Event) -> Result<Accepted, HookError> {
        let unavailable = |e: crate::outbox::OutboxError| HookError::Unavailable(e.to_string());
        // What happened to this unit of work before decides transitions, so it is read before
        // routing; the new state is stored with the event, unless the event is a duplicate.
        // Until then, a result of the same unit accepted meanwhile reads it from `observing`.
        let key = state::key(&event);
        let stored = self.outbox.track(&key).await.map_err(unavailable)?;
        let dedup = dedup_key(&event)
            .filter(|_| self.dedup_window_ms > 0)
            .map(|key| Dedup { key, window_ms: self.dedup_window_ms });
        let copy_key = dedup.as_ref().map(|d| d.key.as_str());
        let (next, pending) = self.observing.observe(&key, stored, copy_key, &mut event, self.clock.now_ms());
        // Serialized once: the store keeps it, and the default webhook body is made from it.
        let event_json = serde_json::to_string(&event)
            .map_err(|e| HookError::Unavailable(format!("cannot serialize the event: {e}")))?;
        let planned = self.plan_with(&event, Some(&event_json));
        let now = self.clock.now_ms();
        let mut deliveries: Vec<NewDelivery> = Vec::with_capacity(planned.len());
        let mut routes = Vec::with_capacity(planned.len());
        for p in planned {
            let (hold, due_at) = self.hold(&p.route, &event, now).await.map_err(unavailable)?;
            deliveries.push(NewDelivery {
                id: p.delivery_id,
                rule: p.route.rule.clone(),
                channel: p.route.channel.clone(),
                message: p.message,
                headline: Headline {
                    text: render::headline(&event),
                    url: event.build_url.clone().or_else(|| event.pipeline_url.clone()),
                    status: event.status.to_string(),
                    covers: None,
                    mentions: p.mentions,
                },
                hold,
                due_at,
                repeat: repeat_of(&p.route, &event),
            });
            routes.push(p.route);
        }
        // The deliveries due at once are stored leased to the worker and handed to it in
        // memory, when the hand-off queue has room; otherwise the worker leases them.
        let due_now = deliveries.iter().filter(|d| d.due_at.is_none()).count();
        let room = if due_now > 0 { self.handoff.reserve(due_now) } else { None };
        let lease_ms = room.as_ref().map(|_| self.handoff.lease_ms());
        let with = EnqueueWith {
            dedup: dedup.as_ref(),
            track: next.as_ref().map(|t| (key.as_str(), t)),
            lease_ms,
            event_json: Some(&event_json),
        };
        let stored = self.outbox.enqueue(&event, &deliveries, now, &with).await.map_err(unavailable)?;
        if let Some(first) = &stored.duplicate_of {
            tracing::info!(event_id = %event.event_id, duplicate_of = %first, source = %event.source,
                status = %event.status, "duplicate event stored, not sent again");
            return Ok(Accepted {
                event_id: event.event_id,
                status: event.status,
                routes: Vec::new(),
                duplicate_of: stored.duplicate_of,
            });
        }
        pending.stored();
        // A message whose repeat key was claimed within its interval was not stored.
        let (deliveries, routes): (Vec<NewDelivery>, Vec<Route>) = deliveries
            .into_iter()
            .zip(routes)
            .filter(|(d, _)| {
                let suppressed = stored.suppressed.contains(&d.id);
                if suppressed {
                    tracing::info!(event_id = %event.event_id, rule = %d.rule, channel = %d.channel,
                        "same message within repeat_interval: suppressed");
                }
                !suppressed
            })
            .unzip();
        let count = deliveries.len();
        // Held deliveries (quiet hours, groups) wait in the store until they are due.
        if let Some(at) = deliveries.iter().filter_map(|d| d.due_at).min() {
            self.handoff.stored(at);
        }
        match room {
            Some(room) => {
                let handed = deliveries
                    .into_iter()
                    .filter(|d| d.due_at.is_none())
                    .map(|d| Delivery::stored(d, &event.event_id, now));
                room.fill(handed, now + self.handoff.lease_ms());
            }
            None if due_now > 0 => self.handoff.stored(now),
            None => {}
        }
        // Per-event lines are debug: at thousands of events a second they would cost more than
        // the event, and the store answers "what happened to it" (`herald deliveries`).
        tracing::debug!(event_id = %event.event_id, source = %event.source, status = %event.status,
            pipeline = event.pipeline.as_deref().unwrap_or("-"), routes = count, "event accepted");
        Ok(Accepted { event_id: event.event_id, status: event.status, routes, duplicate_of: None })
    }
}

/// Renders `template` through `channel` against each sample; the distinct errors.
fn render_check<'a>(
    channel: &dyn Channel,
    template: &str,
    samples: &[Event],
    extras: impl Fn(&Event) -> ContextExtras<'a>,
) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for sample in samples {
        for e in channel.check_templates(template, &render::context(sample, &extras(sample))) {
            if !found.contains(&e) {
                found.push(e);
            }
        }
    }
    found
}

impl Gateway {
    /// Whether the route's rule holds this message back (quiet hours, grouping), under which
    /// key and until when. A group's later events join its first event's release time.
    async fn hold(
        &self,
        route: &Route,
        e: &Event,
        now: Millis,
    ) -> Result<(Option<String>, Option<Millis>), OutboxError> {
        let quiet_until = route.hold.quiet.as_ref().filter(|q| !q.bypass.contains(&e.status)).and_then(|q| {
            let now_utc = chrono::DateTime::from_timestamp_millis(now)?;
            q.until(now_utc).map(|end| (end.timestamp_millis(), q.label.clone()))
        });
        if let Some((fields, wait)) = &route.hold.group {
            let key = Hold::group(&route.rule, &route.channel, fields, e).key();
            let due = self.outbox.hold_due(&key, now).await?.unwrap_or(now + wait.as_millis() as Millis);
            let due = quiet_until.as_ref().map_or(due, |(end, _)| due.max(*end));
            return Ok((Some(key), Some(due)));
        }
        Ok(match quiet_until {
            Some((until, label)) => {
                let hold =
                    Hold::Quiet { rule: route.rule.clone(), channel: route.channel.clone(), until, label };
                (Some(hold.key()), Some(until))
            }
            None => (None, None),
        })
    }
}

/// The repeat key of a route whose rule has a `repeat_interval`: the same (pipeline, branch,
/// status) message to the same channel is sent once per interval.
fn repeat_of(route: &Route, e: &Event) -> Option<Repeat> {
    let interval = route.hold.repeat_interval?;
    let parts = [
        "repeat",
        route.rule.as_str(),
        route.channel.as_str(),
        e.pipeline.as_deref().unwrap_or(""),
        e.branch.as_deref().unwrap_or(""),
        e.status.as_str(),
    ];
    Some(Repeat { key: serde_json::to_string(&parts).ok()?, window_ms: interval.as_millis() as i64 })
}

/// What makes two events the same notification: source, pipeline (its name and its id),
/// build, stage/task, status (normalized and as sent) and finality. Not the phase, so a final
/// result is one notification however often it comes: Jenkins sends COMPLETED and then
/// FINALIZED for it. An event that is not final also keys on its message, so a build's step
/// messages (a jenkins-status `body`, Tikal's `notes` from `notifyEndpoints`) are each news.
/// Events that name neither a pipeline nor a build are never de-duplicated.
pub fn dedup_key(e: &Event) -> Option<String> {
    if let Some(id) = &e.delivery_id {
        return serde_json::to_string(&[e.source.as_str(), "delivery", id]).ok();
    }
    if e.pipeline.is_none() && e.build_number.is_none() {
        return None;
    }
    let build = e.build_number.map(|n| n.to_string());
    let message = if e.is_final { None } else { e.message.as_deref() };
    let parts = [
        Some(e.source.as_str()),
        e.pipeline.as_deref(),
        e.pipeline_id.as_deref(),
        build.as_deref(),
        e.stage.as_deref(),
        e.task.as_deref(),
        Some(e.status.as_str()),
        Some(e.status_raw.as_str()),
        Some(if e.is_final { "final" } else { "open" }),
        message,
    ];
    // serde_json escapes the separators out of the values, so keys never collide; an absent
    // value (null) is not an empty one ("").
    serde_json::to_string(&parts).ok()
}

/// The query string without its `token` parameter, so a token never reaches an event's
/// params, raw payload or any output.
pub fn strip_token(query: &str) -> String {
    if !query.split('&').any(|p| p == "token" || p.starts_with("token=")) {
        return query.to_string();
    }
    query
        .split('&')
        .filter(|p| !(p.is_empty() || *p == "token" || p.starts_with("token=")))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_the_same_notification() {
        let result = |phase: &str| {
            let mut e = Event::new("jenkins", Status::Success, "SUCCESS", true);
            e.pipeline = Some("payments".into());
            e.build_number = Some(42);
            e.phase = Some(phase.into());
            e
        };
        let key = |e: &Event| dedup_key(e).expect("a key");
        // COMPLETED then FINALIZED, notes filled in late: one notification.
        let mut finalized = result("FINALIZED");
        finalized.message = Some("deployed".into());
        assert_eq!(key(&result("COMPLETED")), key(&finalized));

        // Step messages of one running build: each is news, and a repeat of one is not.
        let step = |phase: &str, message: Option<&str>| {
            let mut e = Event::new("jenkins-status", Status::Running, phase, false);
            e.pipeline = Some("payments".into());
            e.build_number = Some(42);
            e.message = message.map(str::to_string);
            e
        };
        assert_ne!(key(&step("RUNNING", None)), key(&step("RUNNING", Some("deploying to prod"))));
        assert_ne!(key(&step("RUNNING", Some("stage A done"))), key(&step("RUNNING", Some("stage B done"))));
        assert_eq!(key(&step("RUNNING", Some("stage A done"))), key(&step("RUNNING", Some("stage A done"))));
        // Tikal step calls without a status: their phase is their status as sent.
        assert_ne!(key(&step("COMPLETED", None)), key(&step("NONE", None)));

        // Two Flow pipelines with one name are two pipelines.
        let flow = |id: &str| {
            let mut e = Event::new("flow", Status::Success, "SUCCESS", true);
            e.pipeline = Some("payments-api".into());
            e.pipeline_id = Some(id.into());
            e.build_number = Some(7);
            e
        };
        assert_ne!(key(&flow("2713459")), key(&flow("9999999")));
        assert_eq!(key(&flow("2713459")), key(&flow("2713459")));

        // Sender delivery ids decide alone; nothing to key on means no de-duplication.
        assert_eq!(dedup_key(&Event::new("generic", Status::Success, "ok", true)), None);
    }

    #[test]
    fn tokens_are_stripped_from_queries() {
        assert_eq!(strip_token("a=1&token=s3cret&b=2"), "a=1&b=2");
        assert_eq!(strip_token("token=x"), "");
        assert_eq!(strip_token("tokens=1"), "tokens=1");
    }
}
