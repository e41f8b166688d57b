//! Herald: a chat-robot notification gateway.
//!
//! Data flows one way: **ingest** (webhook → [`event::Event`]) → **rules** (event → routes) →
//! **render** (templates) → **outbox** (stored deliveries) → **delivery** (the worker) →
//! **channels** (DingTalk, WeCom, Lark, email, webhook, console).
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the TOML file: interpolation, strict keys, validation with every error at once |
//! | [`secret`] | the redacting `Secret` and `SecretUrl` types |
//! | [`event`] | the normalized event and status words |
//! | [`ingest`] | one parser per inbound format, and format detection |
//! | [`rules`] | compiled matchers: event → (rule, channel) routes |
//! | [`render`] | the Handlebars registry, helpers, template context |
//! | [`channels`] | one trait, one file per platform: wire format, signing, limits, verdicts |

pub mod channels;
pub mod config;
pub mod event;
pub mod ingest;
pub mod render;
pub mod rules;
pub mod secret;
