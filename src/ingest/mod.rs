//! Inbound formats: bytes and headers in, a normalized [`Event`] or a typed error out.
//!
//! Parsing is pure: no async, no I/O, no server. Each format lives in its own file. Detection
//! (`detect`) picks a format from headers and body shape for `POST /hooks`. Authentication is
//! not here: the HTTP layer checks tokens before parsing.
//!
//! | file | owns |
//! |---|---|
//! | `jenkins.rs` | Tikal's Notification plugin, JSON and XML |
//! | `jenkins_status.rs` | the environment-variables-status-sync plugin: JSON body or query string |
//! | `flow.rs` | Alibaba Cloud DevOps Flow's task webhook |
//! | `buildbot.rs` | Buildbot's `HttpStatusPush` |
//! | `github.rs` | GitHub Actions `workflow_run` / `workflow_job` (and Gitea/Forgejo's copies) |
//! | `gitlab.rs` | GitLab's Pipeline Hook and Job Hook |
//! | `alertmanager.rs` | Prometheus Alertmanager's webhook: one event per alert |
//! | `generic.rs` | any JSON, mapped by a configured `GenericSpec` |
//! | `detect.rs` | which format a request is, for `POST /hooks` |
//! | `body.rs` | bytes to JSON: JSON bodies, query strings, JSON-or-XML sniffing (400 errors) |
//! | `xml.rs` | generic XML to JSON with XStream's conventions (400 errors) |
//! | `lenient.rs` | tolerant field readers and the 422 errors that name a field |
//! | `text.rs` | branch, commit-title, URL and timestamp normalizations |
//!
//! Each parser's status mapping is a pure function next to its table test. Every event carries
//! the payload as JSON in `raw`.

mod alertmanager;
mod body;
mod buildbot;
mod detect;
mod flow;
mod generic;
mod github;
mod gitlab;
mod jenkins;
mod jenkins_status;
mod lenient;
mod text;
mod xml;

use crate::event::Event;

/// An inbound request, as the parsers see it.
#[derive(Debug, Clone, Default)]
pub struct Inbound<'a> {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'a str,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// The request body, exactly as received.
    pub body: &'a [u8],
}

impl Inbound<'_> {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The inbound formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Jenkins Notification plugin (Tikal), JSON or XML.
    Jenkins,
    /// Jenkins Job Status Notification / environment-variables-status-sync plugin.
    JenkinsStatus,
    /// Alibaba Cloud DevOps Flow.
    Flow,
    /// Buildbot HttpStatusPush.
    Buildbot,
    /// GitHub Actions `workflow_run` / `workflow_job` webhooks.
    Github,
    /// GitLab Pipeline Hook / Job Hook.
    Gitlab,
    /// Prometheus Alertmanager webhook, version 4: one event per alert.
    Alertmanager,
    /// Any JSON, mapped by a configured [`GenericSpec`](crate::config::GenericSpec).
    Generic,
}

impl Format {
    /// Every format, in detection order.
    pub const ALL: [Format; 8] = [
        Format::Jenkins,
        Format::JenkinsStatus,
        Format::Flow,
        Format::Buildbot,
        Format::Github,
        Format::Gitlab,
        Format::Alertmanager,
        Format::Generic,
    ];

    /// The format's name in URLs (`/hooks/{name}`), config (`[sources.{name}]`) and `event.source`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jenkins => "jenkins",
            Format::JenkinsStatus => "jenkins-status",
            Format::Flow => "flow",
            Format::Buildbot => "buildbot",
            Format::Github => "github",
            Format::Gitlab => "gitlab",
            Format::Alertmanager => "alertmanager",
            Format::Generic => "generic",
        }
    }

    /// The format with this [`name`](Format::name).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Why a request could not become an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// Not well-formed JSON, XML or query string (HTTP 400). The message gives the parser's
    /// message and position.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but not of this format (HTTP 422): names the missing or mistyped field.
    #[error("{0}")]
    Invalid(String),
    /// `POST /hooks` could not tell the format (HTTP 422).
    #[error("cannot detect the format: {0}")]
    Undetected(String),
}

/// Parses a request of a known format into a single event.
///
/// The event's `source` is the format's [name](Format::name) and `raw` is the payload as JSON.
/// This suits the formats that send one event per request; the gateway uses [`parse_events`].
/// For Alertmanager it gives the first alert's event, and for a GitHub `ping` (no event) an
/// error. A generic source needs its mapping, so [`Format::Generic`] is always an error here.
///
/// Errors: [`IngestError::Malformed`] when the body (or, for `jenkins-status`, the query string)
/// cannot be read at all; [`IngestError::Invalid`] when it can but is not this format.
pub fn parse(format: Format, req: &Inbound<'_>) -> Result<Event, IngestError> {
    match format {
        Format::Jenkins => jenkins::parse(req),
        Format::JenkinsStatus => jenkins_status::parse(req),
        Format::Flow => flow::parse(req),
        Format::Buildbot => buildbot::parse(req),
        Format::Gitlab => gitlab::parse(req),
        Format::Github => first(github::parse_events(req)?, "a GitHub ping carries no CI event"),
        Format::Alertmanager => first(
            alertmanager::parse_events(req)?,
            "the notification has no alerts (parse_events gives one event per alert)",
        ),
        Format::Generic => Err(IngestError::Invalid(
            "the generic format needs a source's field mapping: use parse_events with its GenericSpec".into(),
        )),
    }
}

/// The first of `events`, or `Invalid(why)` when there is none.
fn first(events: Vec<Event>, why: &str) -> Result<Event, IngestError> {
    events.into_iter().next().ok_or_else(|| IngestError::Invalid(why.to_string()))
}

/// A configured source, as the parsers need it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The source's name: the format's name, or a named generic source's. It becomes
    /// `event.source`.
    pub name: &'a str,
    pub format: Format,
    /// The mapping of a generic source.
    pub generic: Option<&'a crate::config::GenericSpec>,
    /// Jenkins (Tikal): the root URL relative links are resolved against (see [`jenkins_base`]).
    pub base_url: Option<&'a url::Url>,
}

/// A Jenkins root URL from config, ready to resolve `build.url` against: absolute http(s), and
/// ending in `/` so that a root under a path (`https://ci.example.com/jenkins`) keeps it.
pub fn jenkins_base(url: &str) -> Option<url::Url> {
    let with_slash = if url.ends_with('/') { url.to_string() } else { format!("{url}/") };
    url::Url::parse(&with_slash)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .filter(|u| u.query().is_none() && u.fragment().is_none())
}

/// Parses a request into its events: one for most formats, one per alert for Alertmanager,
/// none for a GitHub `ping` (the HTTP layer answers 200 all the same).
///
/// Every event's `source` is the source's name. A generic source without its mapping is
/// [`IngestError::Invalid`]. Errors are otherwise those of [`parse`].
pub fn parse_events(source: &Source<'_>, req: &Inbound<'_>) -> Result<Vec<Event>, IngestError> {
    let mut events = match source.format {
        Format::Github => github::parse_events(req)?,
        Format::Alertmanager => alertmanager::parse_events(req)?,
        Format::Generic => {
            let spec = source.generic.ok_or_else(|| {
                IngestError::Invalid(format!("generic source \"{}\" has no field mapping", source.name))
            })?;
            vec![generic::parse(source.name, spec, req)?]
        }
        other => vec![parse(other, req)?],
    };
    for event in &mut events {
        event.source = source.name.to_string();
        if let (Format::Jenkins, Some(base)) = (source.format, source.base_url) {
            jenkins::resolve_links(event, base);
        }
    }
    Ok(events)
}

/// Picks the format of a request from its headers and body shape.
///
/// GitHub, Gitea and Forgejo (all [`Format::Github`]) and GitLab are recognised by their headers,
/// Alertmanager by its body. Drone, recognised but not parsed, gives [`IngestError::Undetected`]
/// naming what was seen, as does a body of no known shape. [`Format::Generic`] is never detected:
/// a generic source is always named in the URL. A body that is not well-formed gives
/// [`IngestError::Malformed`].
pub fn detect(req: &Inbound<'_>) -> Result<Format, IngestError> {
    detect::detect(req)
}
