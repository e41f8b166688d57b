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
//! | [`listen`] | Jenkins (Tikal) over raw TCP and UDP, into the same accept path |
//! | [`state`] | what Herald remembers per unit of work: last final status, failure streak, transitions |
//! | [`rules`] | compiled matchers: event → (rule, channel) routes; quiet hours, repeats, grouping |
//! | [`people`] | the people directory: `mention.people` and `mention.author` → each platform's ids |
//! | [`render`] | the Handlebars registry, helpers, template context |
//! | [`channels`] | one trait, one file per platform: wire format, signing, limits, verdicts |
//! | [`outbox`] | the store behind one trait (SQLite by default): events, deliveries, attempts, state |
//! | [`delivery`] | the worker: lease → send → delivered / retry later / dead; backoff, rate governor, summaries, holds |
//! | [`gateway`] | the accept pipeline: auth → parse → route → render → store |
//! | [`http`] | the HTTP API (actix-web): hooks, health, admin API; one error type |
//! | [`admin`] | the operations on stored deliveries that the admin API and `herald deliveries` share: their parameters, list, show, retry |
//! | [`app`] | wiring and shutdown; [`cli`] the commands; [`clock`] time as a dependency |
//! | [`threads`] | which threads go first under load: background work lowers its priority |

pub mod admin;
pub mod app;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod event;
pub mod gateway;
pub mod http;
pub mod ingest;
pub mod listen;
pub mod outbox;
pub mod people;
pub mod render;
pub mod rules;
pub mod secret;
pub mod state;
pub mod threads;
