//! Inbound formats: bytes and headers in, a normalized [`Event`] or a typed error out.
//!
//! Parsing is pure: no async, no I/O, no server. Each format lives in its own file. Detection
//! (`detect`) picks a format from headers and body shape for `POST /hooks`. Authentication is
//! not here: the HTTP layer checks tokens before parsing.

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
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Jenkins, Format::JenkinsStatus, Format::Flow, Format::Buildbot];

    /// The format's name in URLs (`/hooks/{name}`), config (`[sources.{name}]`) and `event.source`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jenkins => "jenkins",
            Format::JenkinsStatus => "jenkins-status",
            Format::Flow => "flow",
            Format::Buildbot => "buildbot",
        }
    }

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

/// Parses a request of a known format.
pub fn parse(format: Format, req: &Inbound<'_>) -> Result<Event, IngestError> {
    let _ = (format, req);
    todo!("ingest::parse")
}

/// Picks the format of a request from its headers and body shape.
pub fn detect(req: &Inbound<'_>) -> Result<Format, IngestError> {
    let _ = req;
    todo!("ingest::detect")
}
