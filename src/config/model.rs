//! The validated configuration: what the rest of Herald reads.
//!
//! These structs are deserialized only by `config::load`, which rejects unknown keys itself (it
//! collects every one of them, where `deny_unknown_fields` would stop at the first).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::units::{HumanDuration, Rate};
use crate::secret::{Secret, SecretUrl};

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[people.<key>]`.
    pub people: BTreeMap<String, Person>,
    pub server: ServerConfig,
    pub delivery: DeliveryConfig,
    pub templates_dir: Option<PathBuf>,
    pub sources: BTreeMap<String, SourceConfig>,
    pub channels: Vec<ChannelConfig>,
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Bearer token for `/api/*`. Without it the API answers 401 to everyone.
    #[serde(default)]
    pub admin_token: Option<Secret>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            data_dir: default_data_dir(),
            public_url: None,
            max_body_bytes: default_max_body(),
            admin_token: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_max_body() -> usize {
    1024 * 1024
}

/// `[delivery]`: retries, give-up limits, de-duplication and backlog summaries.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryConfig {
    /// Attempts in all before a delivery is dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A delivery older than this is not retried again.
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
    /// An identical event within this window is stored but not sent again; "0s" turns it off.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: HumanDuration,
    /// When a robot's backlog cannot drain within this wait, its pending messages are merged
    /// into one summary.
    #[serde(default = "default_max_wait")]
    pub max_wait: HumanDuration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: default_max_attempts(),
            max_age: default_max_age(),
            dedup_window: default_dedup_window(),
            max_wait: default_max_wait(),
        }
    }
}

fn default_max_attempts() -> u32 {
    12
}
fn default_max_age() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}
fn default_dedup_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(600))
}
fn default_max_wait() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TemplatesConfig {
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// `[sources.<name>]`: a built-in format's settings (the name is the format), or a named
/// generic source (`type = "generic"`, posted to `/hooks/<name>`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourceConfig {
    /// `generic` for a named generic source; otherwise absent (the name is the format).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// When set, requests must carry `?token=`, `Authorization: Bearer`, or the sender's own
    /// token header (GitLab `X-Gitlab-Token`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// The HMAC key of senders that sign their body (GitHub `X-Hub-Signature-256`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// When not empty, only these addresses or CIDR ranges may post (e.g. `10.0.0.0/8`).
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Jenkins (Tikal): the Jenkins root URL, for links when Jenkins sends none (its own root
    /// URL is not configured, so `build.full_url` is absent): `build.url` is resolved against it.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Jenkins (Tikal) over raw TCP: one message per connection, ending at EOF.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Jenkins (Tikal) over UDP: one datagram per message.
    #[serde(default)]
    pub udp: Option<String>,
    /// Generic sources: JSON pointers to the event's fields, and the status words.
    #[serde(default)]
    pub status_map: BTreeMap<String, String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, rename = "final")]
    pub is_final: Option<String>,
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub pipeline_id: Option<String>,
    #[serde(default)]
    pub pipeline_url: Option<String>,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub build_number: Option<String>,
    #[serde(default)]
    pub build_url: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub commit_title: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<String>,
    /// A pointer to an id the sender repeats on retries, for de-duplication.
    #[serde(default)]
    pub delivery_id: Option<String>,
}

impl SourceConfig {
    /// The generic mapping this source configures.
    pub fn generic_spec(&self) -> GenericSpec {
        let pointers = [
            ("status", &self.status),
            ("final", &self.is_final),
            ("pipeline", &self.pipeline),
            ("pipeline_id", &self.pipeline_id),
            ("pipeline_url", &self.pipeline_url),
            ("stage", &self.stage),
            ("task", &self.task),
            ("build_number", &self.build_number),
            ("build_url", &self.build_url),
            ("repo", &self.repo),
            ("branch", &self.branch),
            ("commit", &self.commit),
            ("commit_title", &self.commit_title),
            ("author", &self.author),
            ("message", &self.message),
            ("duration_ms", &self.duration_ms),
            ("delivery_id", &self.delivery_id),
        ];
        GenericSpec {
            pointers: pointers
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|p| (k.to_string(), p.clone())))
                .collect(),
            status_map: self.status_map.clone(),
        }
    }
}

/// How a generic source maps any JSON onto an event: event field → JSON pointer (RFC 6901),
/// and the sender's status words → Herald's (`status_map`; unmapped words that are already
/// Herald words are taken as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenericSpec {
    pub pointers: BTreeMap<String, String>,
    pub status_map: BTreeMap<String, String>,
}

/// One `[channels.<name>]` table.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    pub common: ChannelCommon,
    pub spec: ChannelSpec,
}

/// Settings every channel takes.
#[derive(Debug, Clone)]
pub struct ChannelCommon {
    pub timeout_ms: u64,
    /// The template used when a rule names none.
    pub template: Option<String>,
    /// Sending limits for this robot; `None` means the platform's defaults.
    pub rate: Option<Vec<Rate>>,
}

impl Default for ChannelCommon {
    fn default() -> Self {
        ChannelCommon { timeout_ms: 10_000, template: None, rate: None }
    }
}

impl ChannelSpec {
    /// The platform's documented limits: DingTalk and WeCom 20/min, Lark 5/s and 100/min.
    pub fn default_rate(&self) -> Vec<Rate> {
        match self {
            ChannelSpec::Dingtalk(_) | ChannelSpec::Wecom(_) => vec![Rate::per_minute(20)],
            ChannelSpec::Lark(_) => vec![Rate::per_second(5), Rate::per_minute(100)],
            ChannelSpec::Email(_) | ChannelSpec::Webhook(_) | ChannelSpec::Console(_) => vec![],
        }
    }
}

impl ChannelConfig {
    /// The limits in force: the channel's `rate`, or the platform's defaults.
    pub fn rates(&self) -> Vec<Rate> {
        self.common.rate.clone().unwrap_or_else(|| self.spec.default_rate())
    }
}

/// The per-type settings of a channel.
#[derive(Debug, Clone)]
pub enum ChannelSpec {
    Dingtalk(DingtalkConfig),
    Wecom(WecomConfig),
    Lark(LarkConfig),
    Email(EmailConfig),
    Webhook(WebhookConfig),
    Console(ConsoleConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum DingtalkMsgType {
    #[default]
    #[serde(rename = "markdown")]
    Markdown,
    #[serde(rename = "text")]
    Text,
    #[serde(rename = "actionCard")]
    ActionCard,
}

impl DingtalkMsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            DingtalkMsgType::Markdown => "markdown",
            DingtalkMsgType::Text => "text",
            DingtalkMsgType::ActionCard => "actionCard",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DingtalkConfig {
    pub url: SecretUrl,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub keyword: Option<String>,
    #[serde(default)]
    pub msgtype: DingtalkMsgType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WecomMsgType {
    #[default]
    Markdown,
    Text,
    MarkdownV2,
}

impl WecomMsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            WecomMsgType::Markdown => "markdown",
            WecomMsgType::Text => "text",
            WecomMsgType::MarkdownV2 => "markdown_v2",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WecomConfig {
    pub url: SecretUrl,
    #[serde(default)]
    pub msgtype: WecomMsgType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LarkMsgType {
    #[default]
    Interactive,
    Post,
    Text,
}

impl LarkMsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            LarkMsgType::Interactive => "interactive",
            LarkMsgType::Post => "post",
            LarkMsgType::Text => "text",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LarkConfig {
    pub url: SecretUrl,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub keyword: Option<String>,
    #[serde(default)]
    pub msgtype: LarkMsgType,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmailConfig {
    /// lettre's SMTP URL form: `smtp://user:pass@host:587?tls=required`, `smtps://…`.
    pub smtp: SecretUrl,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// A PEM file with extra root certificates to trust (an internal CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Get,
    Put,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Get => "GET",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookConfig {
    pub url: SecretUrl,
    #[serde(default)]
    pub method: HttpMethod,
    /// Header values are treated as secrets (they usually carry tokens).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Standard Webhooks signing key. `whsec_<base64>` keys are decoded; others are used as bytes.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// The body's Content-Type (default `application/json`).
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConsoleConfig {}

/// `[rules.mention]`, and the resolved mention a channel receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Mention {
    #[serde(default)]
    pub mobiles: Vec<String>,
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default)]
    pub all: bool,
    /// Keys of `[people.<key>]` to mention, resolved per channel to the id that platform needs.
    #[serde(default)]
    pub people: Vec<String>,
    /// Mention the event's author (commit author, Jenkins culprit, GitHub actor), found in
    /// `[people]` through their `git` names.
    #[serde(default)]
    pub author: bool,
    /// Resolved email addresses (for email channels); never read from config.
    #[serde(skip)]
    pub emails: Vec<String>,
}

impl Mention {
    /// A mention of these phone numbers and user ids (and everyone, with `all`).
    pub fn direct(mobiles: &[&str], user_ids: &[&str], all: bool) -> Mention {
        Mention {
            mobiles: mobiles.iter().map(|s| s.to_string()).collect(),
            user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
            all,
            ..Mention::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.mobiles.is_empty() && self.user_ids.is_empty() && !self.all && self.emails.is_empty()
    }

    /// The union of two mention sets, keeping first-seen order.
    pub fn merge(&mut self, other: &Mention) {
        for m in &other.mobiles {
            if !self.mobiles.contains(m) {
                self.mobiles.push(m.clone());
            }
        }
        for u in &other.user_ids {
            if !self.user_ids.contains(u) {
                self.user_ids.push(u.clone());
            }
        }
        self.all |= other.all;
        for p in &other.people {
            if !self.people.contains(p) {
                self.people.push(p.clone());
            }
        }
        self.author |= other.author;
        for e in &other.emails {
            if !self.emails.contains(e) {
                self.emails.push(e.clone());
            }
        }
    }
}

/// `[people.<key>]`: one person, with the id each platform needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Person {
    #[serde(default)]
    pub email: Option<String>,
    /// Names and emails this person commits as (matched case-insensitively against the
    /// event's author).
    #[serde(default)]
    pub git: Vec<String>,
    #[serde(default)]
    pub dingtalk_mobile: Option<String>,
    #[serde(default)]
    pub dingtalk_user_id: Option<String>,
    #[serde(default)]
    pub wecom_user_id: Option<String>,
    #[serde(default)]
    pub wecom_mobile: Option<String>,
    #[serde(default)]
    pub lark_open_id: Option<String>,
}

/// A glob or a list of globs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[rules.when]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WhenConfig {
    #[serde(default, deserialize_with = "one_or_many")]
    pub source: Option<OneOrMany>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub status: Option<OneOrMany>,
    #[serde(default, rename = "final")]
    pub is_final: Option<bool>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub pipeline: Option<OneOrMany>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub branch: Option<OneOrMany>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub stage: Option<OneOrMany>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub task: Option<OneOrMany>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// `first_failure`, `still_failing`, `fixed` or `changed` (a word or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub transition: Option<OneOrMany>,
    /// Of a still-failing streak, report only every Nth consecutive failure.
    #[serde(default)]
    pub still_failing_every: Option<u32>,
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    items.push(s);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OneOrMany>, D::Error> {
    OneOrMany::deserialize(d).map(Some)
}

/// `[rules.quiet]`: hold a rule's messages during a daily window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct QuietConfig {
    /// "22:00"
    pub from: String,
    /// "08:00"; earlier than `from` means the next day.
    pub to: String,
    /// An IANA zone such as "Asia/Shanghai" (default UTC).
    #[serde(default)]
    pub tz: Option<String>,
    /// The days a window starts on ("mon" … "sun"); default every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Statuses sent at once even in the window.
    #[serde(default)]
    pub bypass: Vec<String>,
}

/// One `[[rules]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleConfig {
    /// Its index in `[[rules]]`, for the paths of its errors (`rules[2].when.pipeline`): a rule
    /// with an error of its own is left out of the rules read, and the ones after it keep
    /// their own paths.
    #[serde(skip)]
    pub at: usize,
    /// Required; checked after reading, so that a rule without one still has the rest checked.
    #[serde(default)]
    pub name: String,
    /// At least one; checked after reading, like `name`.
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub stop: bool,
    #[serde(default)]
    pub when: WhenConfig,
    #[serde(default)]
    pub mention: Mention,
    #[serde(default)]
    pub quiet: Option<QuietConfig>,
    /// Suppresses the same (pipeline, branch, status) message within this interval.
    #[serde(default)]
    pub repeat_interval: Option<HumanDuration>,
    /// Event fields that identify one run; with `group_wait`, that run's events arriving
    /// within the wait are merged into one message.
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default)]
    pub group_wait: Option<HumanDuration>,
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // The message names the problem but never echoes the URL: it may hold a token.
        SecretUrl::parse(&s).map_err(|e| serde::de::Error::custom(format!("invalid URL: {e}")))
    }
}
