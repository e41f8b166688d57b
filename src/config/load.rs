//! Reading a config file into a validated [`Config`], collecting every error with its path.
//!
//! Each table is deserialized on its own, through `serde_ignored` (every unknown key) and
//! `serde_path_to_error` (the path of a mistyped value), so one bad channel or rule never hides
//! the errors of the others, and a mistyped value never hides the rest of its table.
//! Cross-references (rule → channel, status words, formats) are checked here too; globs and
//! templates are checked where they are compiled (`rules`, `gateway`), on what [`read`] kept
//! even when it found errors, so that `app::validate` reports them all in one run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::de::DeserializeOwned;

use super::interpolate::{interpolate, Interpolated, UNSET_OPEN};
use super::model::*;
use super::{ConfigError, Rate};
use crate::event::Status;
use crate::ingest::Format;

/// The channel types `type = "..."` accepts (`feishu` is an alias of `lark`).
pub const CHANNEL_TYPES: &[&str] = &["dingtalk", "wecom", "lark", "feishu", "email", "webhook", "console"];

/// A config read as far as it goes: every part that has no error of its own, and every error
/// found. The checks that need the parts compiled (globs, templates) can then run on what was
/// read, so that one `herald check` reports their errors alongside these.
#[derive(Debug)]
pub struct Read {
    pub config: Config,
    pub errors: Vec<ConfigError>,
    /// Whether `[templates]` was read without error. When it was not, the templates the rules
    /// name cannot be looked for: a check would only report them missing.
    pub templates_read: bool,
    /// The values already reported (mistyped, or holding an unset variable), read as absent or
    /// empty: an error a later check finds at or under one of them only repeats it.
    pub reported: Vec<String>,
    /// The values taken from the environment, hidden in every error.
    values: Vec<String>,
}

impl Read {
    /// `errors` with every value taken from the environment hidden, for errors found later
    /// (compiling what was read).
    pub fn hide(&self, errors: Vec<ConfigError>) -> Vec<ConfigError> {
        hide_values(errors, &self.values)
    }

    /// Whether `e`, found later, only repeats what reading found: it is about a value already
    /// reported, or at the very path of an error (building a channel checks some values that
    /// reading checked too).
    pub fn repeats(&self, e: &ConfigError) -> bool {
        self.reported.iter().any(|field| is_at_or_under(&e.path, field))
            || self.errors.iter().any(|r| r.path == e.path)
    }

    /// The config, if it has no error.
    pub fn complete(self) -> Result<Config, Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(self.config)
        } else {
            Err(self.errors)
        }
    }
}

/// Whether the key path `path` is `field` or inside it.
fn is_at_or_under(path: &str, field: &str) -> bool {
    path.strip_prefix(field).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Reads and validates a config file, with `${VAR}` taken from the process environment.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    read(path)?.complete()
}

/// Validates config text, with `${VAR}` looked up through `env`.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigError>> {
    read_text(text, env)?.complete()
}

/// Reads a config file as far as it goes; an error only when nothing could be read (the file
/// is missing, or is not TOML).
pub fn read(path: &Path) -> Result<Read, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))])?;
    read_text(&text, &|name| std::env::var(name).ok())
}

/// Reads config text as far as it goes, with `${VAR}` looked up through `env`.
pub fn read_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Read, Vec<ConfigError>> {
    let mut done = interpolate(text, env);
    let interpolated = std::mem::take(&mut done.text);
    let mut errors = Errors { list: std::mem::take(&mut done.errors), reported: Vec::new() };
    let mut table: toml::Table = match toml::from_str(&interpolated) {
        Ok(t) => t,
        Err(e) => {
            let at = e.span().map(|span| done.written_offset(span.start));
            errors.push(syntax_error(text, at, &e));
            return Err(hide_values(errors.list, &done.values));
        }
    };
    for (k, field, mark) in mark_unset(&mut table, &done) {
        // The error is told where the value is, not only its line.
        let e = &mut errors.list[done.unset[k].1];
        *e = ConfigError::new(
            &field,
            e.message.replacen("is not set (", &format!("is not set ({}; ", e.path), 1),
        );
        // Reported: what later checks find about the emptied value only follows from it. A
        // key keeps `${NAME}` in its place, and what is found under it is its own.
        if mark == Mark::InValue {
            let found = errors.list.len();
            errors.reported.push((field, found));
        }
    }
    let mut server = ServerConfig::default();
    let mut delivery = DeliveryConfig::default();
    let mut templates = TemplatesConfig::default();
    let mut sources = BTreeMap::new();
    let mut channels = Vec::new();
    // Every [channels.<name>] given, even one with errors of its own: a rule naming it is not
    // also told the channel is unknown.
    let mut declared = BTreeSet::new();
    // Likewise every [sources.<name>] and [people.<key>] given.
    let mut declared_sources = BTreeSet::new();
    let mut declared_people = BTreeSet::new();
    let mut rules = Vec::new();
    let mut people = BTreeMap::new();
    let mut templates_read = true;
    for (key, value) in table {
        match key.as_str() {
            "server" => server = typed(&key, value, &mut errors).unwrap_or_default(),
            "templates" => {
                templates = typed(&key, value, &mut errors).unwrap_or_default();
                templates_read = !errors.was_reported("templates.dir");
            }
            "delivery" => delivery = typed(&key, value, &mut errors).unwrap_or_default(),
            "sources" => {
                declared_sources = keys(&value);
                sources = parse_sources(value, &mut errors)
            }
            "channels" => {
                declared = keys(&value);
                channels = parse_channels(value, &mut errors)
            }
            "rules" => rules = parse_rules(value, &mut errors),
            "people" => {
                declared_people = keys(&value);
                people = parse_people(value, &mut errors)
            }
            other => errors.push(ConfigError::new(
                other,
                "unknown key (expected server, delivery, templates, sources, channels, rules or people)",
            )),
        }
    }
    check_server(&server, &mut errors);
    if let Some(dir) = &templates.dir {
        if !dir.is_dir() {
            errors.push(ConfigError::new("templates.dir", format!("{} is not a directory", dir.display())));
            templates_read = false;
        }
    }
    check_rules(&rules, &declared, &declared_sources, &mut errors);
    for rule in &rules {
        for (j, key) in rule.mention.people.iter().enumerate() {
            if !declared_people.contains(key) {
                errors.push(ConfigError::new(
                    format!("rules[{}].mention.people[{j}]", rule.at),
                    format!("unknown person \"{key}\""),
                ));
            }
        }
    }
    if delivery.max_attempts == 0 {
        errors.push(ConfigError::new("delivery.max_attempts", "must be at least 1"));
    }
    let reported = errors.reported.iter().map(|(field, _)| field.clone()).collect();
    Ok(Read {
        config: Config { people, server, delivery, templates_dir: templates.dir, sources, channels, rules },
        errors: hide_values(errors.into_list(), &done.values),
        values: done.values,
        templates_read,
        reported,
    })
}

/// The keys of a table (of channels, sources or people), even those whose own tables have
/// errors: a rule that names one is not also told it is unknown.
fn keys(value: &toml::Value) -> BTreeSet<String> {
    value.as_table().map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

/// Takes the mark of each unset variable out of the strings that hold one, as if the variable
/// were empty, and returns the key path of each, with the variable's index in `unset`. A key
/// that holds one gets `${NAME}` back in its place.
fn mark_unset(table: &mut toml::Table, done: &Interpolated) -> Vec<(usize, String, Mark)> {
    /// Takes this text's marks out of `s`: each with its index, replaced by `with(name)`.
    fn unmark(s: &mut String, done: &Interpolated, with: fn(&str) -> String) -> Vec<usize> {
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(start) = s[from..].find(UNSET_OPEN).map(|i| i + from) {
            match done.mark_at(&s[start..]) {
                Some((k, len)) => {
                    let by = with(&done.unset[k].0);
                    s.replace_range(start..start + len, &by);
                    found.push(k);
                    from = start + by.len();
                }
                None => from = start + UNSET_OPEN.len_utf8(),
            }
        }
        found
    }
    fn walk_table(
        t: &mut toml::Table,
        path: &str,
        done: &Interpolated,
        out: &mut Vec<(usize, String, Mark)>,
    ) {
        let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
        let marked: Vec<String> = t.keys().filter(|k| k.contains(UNSET_OPEN)).cloned().collect();
        for key in marked {
            let mut named = key.clone();
            let found = unmark(&mut named, done, |name| format!("${{{name}}}"));
            out.extend(found.into_iter().map(|k| (k, join(&named), Mark::InKey)));
            if let Some(v) = t.remove(&key) {
                t.insert(named, v);
            }
        }
        for (k, v) in t.iter_mut() {
            walk(v, join(k), done, out);
        }
    }
    fn walk(
        value: &mut toml::Value,
        path: String,
        done: &Interpolated,
        out: &mut Vec<(usize, String, Mark)>,
    ) {
        match value {
            toml::Value::String(s) if s.contains(UNSET_OPEN) => {
                let found = unmark(s, done, |_| String::new());
                out.extend(found.into_iter().map(|k| (k, path.clone(), Mark::InValue)));
            }
            toml::Value::Table(t) => walk_table(t, &path, done, out),
            toml::Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(v, format!("{path}[{i}]"), done, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk_table(table, "", done, &mut out);
    out
}

/// The message of an unknown key.
const UNKNOWN_KEY: &str = "unknown key";

/// Where an unset variable was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    InValue,
    InKey,
}

/// The errors, with every value taken from the environment hidden: serde's messages quote
/// what they reject, and an interpolated value may be a secret. Short values (a port, a flag)
/// are left alone, so as not to hide words of the messages.
fn hide_values(errors: Vec<ConfigError>, values: &[String]) -> Vec<ConfigError> {
    let mut hidden: Vec<&String> = values.iter().filter(|v| v.chars().count() >= 6).collect();
    // Longest first: a value that holds another is hidden whole.
    hidden.sort_by_key(|v| std::cmp::Reverse(v.len()));
    errors
        .into_iter()
        .map(|mut e| {
            for v in &hidden {
                e.path = e.path.replace(v.as_str(), "***");
                e.message = e.message.replace(v.as_str(), "***");
            }
            e
        })
        .collect()
}

/// The errors found so far, and the values already reported: a mistyped value is taken out of
/// its table, which is read without it, so its other fields are still checked; a check that
/// then finds the field missing, or at its default, would only repeat the error, and is left
/// out. So is one about a value emptied because it holds an unset variable.
struct Errors {
    list: Vec<ConfigError>,
    /// The path of each value reported, and how many errors had been found by then.
    reported: Vec<(String, usize)>,
}

impl Errors {
    fn push(&mut self, e: ConfigError) {
        self.list.push(e);
    }

    /// Whether the value at `path` was reported, and so taken out or emptied.
    fn was_reported(&self, path: &str) -> bool {
        self.reported.iter().any(|(field, _)| field == path)
    }

    /// Every error, less those found after a value was reported that are about that value.
    fn into_list(self) -> Vec<ConfigError> {
        let Errors { list, reported } = self;
        let repeats = |i: usize, e: &ConfigError| {
            // An unknown key is never a consequence: it is wrong whatever its value.
            e.message != UNKNOWN_KEY
                && reported.iter().any(|(field, found)| i >= *found && is_at_or_under(&e.path, field))
        };
        list.into_iter().enumerate().filter(|(i, e)| !repeats(*i, e)).map(|(_, e)| e).collect()
    }
}

/// A TOML syntax error with its line and column in `text`, the config as written (`at`, its
/// offset there), without echoing the line (it may hold an interpolated secret).
fn syntax_error(text: &str, at: Option<usize>, e: &toml::de::Error) -> ConfigError {
    let at = match at {
        Some(at) => {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let col = before[before.rfind('\n').map_or(0, |p| p + 1)..].chars().count() + 1;
            format!("line {line}, column {col}")
        }
        None => "config".to_string(),
    };
    ConfigError::new(at, format!("TOML syntax error: {}", e.message().trim()))
}

/// Deserializes `value` as T, reporting unknown keys and every type error under `path`.
///
/// serde stops at the first mistyped value, so each error's value is taken out and the table
/// deserialized again, until it passes or nothing more can be taken out: a table with three
/// mistyped values gets three errors, not one per run of `herald check`. The table read
/// without its mistyped fields is returned, so that the checks after this one still check the
/// rest of it. A field the table cannot do without gets a stand-in of the type it expected (a
/// channel's `url = 5` does not keep its template and addresses from being checked); what is
/// found about a stand-in is a consequence, never reported. `None` when a required field
/// could have none.
fn typed<T: DeserializeOwned>(path: &str, mut value: toml::Value, errors: &mut Errors) -> Option<T> {
    let mut unknown: Vec<String> = Vec::new();
    // Fields taken out so far, as (path of their table, key, a stand-in of the type expected
    // there until it is used): serde then reports them missing.
    let mut taken: Vec<(String, String, Option<toml::Value>)> = Vec::new();
    // The same, as key paths from the top.
    let mut taken_paths: Vec<String> = Vec::new();
    // The paths (inside this table) of the stand-ins put in.
    let mut stood_in: Vec<String> = Vec::new();
    for _ in 0..MAX_PASSES {
        let mut on_unknown = |p: serde_ignored::Path<'_>| {
            let p = p.to_string();
            if !unknown.contains(&p) {
                unknown.push(p);
            }
        };
        let de = serde_ignored::Deserializer::new(value.clone(), &mut on_unknown);
        let result: Result<T, _> = serde_path_to_error::deserialize(de);
        let e = match result {
            Ok(v) => {
                report_unknown(path, &unknown, errors);
                // Only what is found after this table is a consequence of its taken-out fields.
                errors.reported.extend(taken_paths.into_iter().map(|f| (f, errors.list.len())));
                return Some(v);
            }
            Err(e) => e,
        };
        let inner = e.path().to_string();
        let message = clean_serde_message(&e.inner().to_string());
        let needed = taken
            .iter_mut()
            .find(|(table, key, _)| *table == inner && message == format!("missing field `{key}`"));
        if let Some((_, key, stand_in)) = needed {
            if let Some(v) = stand_in.take() {
                if let Some(table) = table_at(&mut value, e.path()) {
                    stood_in.push(if inner == "." { key.clone() } else { format!("{inner}.{key}") });
                    table.insert(key.clone(), v);
                    continue;
                }
            }
        } else if !stood_in.contains(&inner) {
            let at = if inner == "." { path.to_string() } else { join(path, &inner) };
            errors.push(ConfigError::new(at, message.clone()));
        }
        // For a field its table cannot do without, taken out already, that table goes too when
        // it is itself a field (an optional `[rules.quiet]`, say); at the top nothing is left.
        match take_out(&mut value, e.path()) {
            Some((table, key)) => {
                let field = if table == "." { key.clone() } else { format!("{table}.{key}") };
                taken_paths.push(join(path, &field));
                // A stand-in that does not do either is not tried again.
                let stand_in = if stood_in.contains(&field) { None } else { stand_in(&message) };
                taken.push((table, key, stand_in));
            }
            None => break,
        }
    }
    report_unknown(path, &unknown, errors);
    errors.reported.extend(taken_paths.into_iter().map(|f| (f, errors.list.len())));
    None
}

/// A value of the type a serde error says was expected: a string that also reads as a URL,
/// the first of an enum's variants, an empty list or table, `false`, `1`.
fn stand_in(message: &str) -> Option<toml::Value> {
    let expected = message.rsplit_once("expected ")?.1;
    if let Some(variant) = expected.split('`').nth(1).filter(|_| expected.contains('`')) {
        return Some(toml::Value::String(variant.to_string()));
    }
    Some(match expected.trim() {
        "a string" | "string" | "a URL" => toml::Value::String("http://stand-in.invalid/".into()),
        "a boolean" => toml::Value::Boolean(false),
        "a sequence" => toml::Value::Array(Vec::new()),
        "a map" => toml::Value::Table(toml::Table::new()),
        t if t.starts_with('u') || t.starts_with('i') || t.contains("integer") => toml::Value::Integer(1),
        _ => return None,
    })
}

/// The table at `at` in `value` (`.` is `value` itself).
fn table_at<'v>(value: &'v mut toml::Value, at: &serde_path_to_error::Path) -> Option<&'v mut toml::Table> {
    use serde_path_to_error::Segment;
    let mut current = value;
    for segment in at.iter() {
        current = match segment {
            Segment::Map { key } => current.as_table_mut()?.get_mut(key)?,
            Segment::Seq { index } => current.as_array_mut()?.get_mut(*index)?,
            _ => return None,
        };
    }
    current.as_table_mut()
}

/// More passes than any table here has keys.
const MAX_PASSES: usize = 64;

fn report_unknown(path: &str, unknown: &[String], errors: &mut Errors) {
    for key in unknown {
        // serde_ignored names an optional table's inside with a `?` segment.
        let key = key.replace(".?", "").replace("?.", "");
        errors.push(ConfigError::new(join(path, &key), UNKNOWN_KEY));
    }
}

/// Removes the field an error points at and returns (path of its table, key). An array element
/// takes its whole array with it: removing one element would renumber the ones after it.
fn take_out(value: &mut toml::Value, at: &serde_path_to_error::Path) -> Option<(String, String)> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = at.iter().collect();
    let last = segments.iter().rposition(|s| matches!(s, Segment::Map { .. }))?;
    let mut table_path = String::new();
    let mut current = value;
    for segment in &segments[..last] {
        current = match segment {
            Segment::Map { key } => current.as_table_mut()?.get_mut(key)?,
            Segment::Seq { index } => current.as_array_mut()?.get_mut(*index)?,
            _ => return None,
        };
        if !table_path.is_empty() && matches!(segment, Segment::Map { .. }) {
            table_path.push('.');
        }
        table_path.push_str(&segment.to_string());
    }
    let Segment::Map { key } = segments[last] else { return None };
    current.as_table_mut()?.remove(key)?;
    if table_path.is_empty() {
        table_path.push('.');
    }
    Some((table_path, key.clone()))
}

fn join(path: &str, inner: &str) -> String {
    if inner.starts_with('[') {
        format!("{path}{inner}")
    } else {
        format!("{path}.{inner}")
    }
}

/// The longest `timeout_ms` a channel may have: no robot or mail server needs more.
const MAX_TIMEOUT_MS: i64 = 600_000;

/// serde's message, on one line, without the value it quotes (`invalid type: string "…"`,
/// `integer \`…\``): the value may be a secret, written in the file or interpolated into it.
fn clean_serde_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = first.strip_prefix(prefix) else { continue };
        let Some(end) = rest.rfind(", expected ") else { continue };
        let kind = &rest[..end];
        // `string "…"`, `integer \`…\``, `floating point \`…\``: the kind, without the value.
        let kind = [" \"", " `"].iter().filter_map(|q| kind.find(q)).min().map_or(kind, |i| &kind[..i]);
        return format!("{prefix}{kind}{}", &rest[end..]);
    }
    first.to_string()
}

fn parse_sources(value: toml::Value, errors: &mut Errors) -> BTreeMap<String, SourceConfig> {
    let mut out = BTreeMap::new();
    let toml::Value::Table(table) = value else {
        errors.push(ConfigError::new("sources", "expected a table of [sources.<format>]"));
        return out;
    };
    for (name, v) in table {
        let path = format!("sources.{name}");
        let Some(src) = typed::<SourceConfig>(&path, v, errors) else { continue };
        let format = match src.kind.as_deref() {
            // Which format was meant is not known: what would be checked is not either.
            None if errors.was_reported(&format!("{path}.type")) => continue,
            Some("generic") => Some(Format::Generic),
            Some(other) => {
                errors.push(ConfigError::new(
                    format!("{path}.type"),
                    format!("unknown type \"{other}\" (only \"generic\")"),
                ));
                continue;
            }
            None => Format::from_name(&name),
        };
        let Some(format) = format else {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            errors.push(ConfigError::new(
                &path,
                format!("unknown format (known: {}; or set type = \"generic\")", known.join(", ")),
            ));
            continue;
        };
        check_source(&path, &name, format, &src, errors);
        out.insert(name, src);
    }
    out
}

fn check_source(path: &str, name: &str, format: Format, src: &SourceConfig, errors: &mut Errors) {
    for (i, ip) in src.allow_ips.iter().enumerate() {
        if ip.parse::<ipnet::IpNet>().is_err() && ip.parse::<std::net::IpAddr>().is_err() {
            errors.push(ConfigError::new(
                format!("{path}.allow_ips[{i}]"),
                format!("\"{ip}\" is not an address or CIDR range"),
            ));
        }
    }
    for (key, addr) in [("tcp", &src.tcp), ("udp", &src.udp)] {
        let Some(addr) = addr else { continue };
        if format != Format::Jenkins {
            errors.push(ConfigError::new(
                format!("{path}.{key}"),
                "only the jenkins source listens on raw sockets",
            ));
        } else if addr.parse::<std::net::SocketAddr>().is_err() {
            errors.push(ConfigError::new(
                format!("{path}.{key}"),
                format!("\"{addr}\" is not an address like 0.0.0.0:9000"),
            ));
        }
    }
    if src.secret.is_some() && format != Format::Github {
        errors.push(ConfigError::new(
            format!("{path}.secret"),
            "only the github source takes secret (it verifies X-Hub-Signature-256); for a shared token use token, \
             sent as ?token=, Authorization: Bearer or X-Gitlab-Token",
        ));
    }
    if let Some(base) = &src.base_url {
        if format != Format::Jenkins {
            errors.push(ConfigError::new(
                format!("{path}.base_url"),
                "only the jenkins source takes base_url: the others send absolute links",
            ));
        } else if crate::ingest::jenkins_base(base).is_none() {
            errors.push(ConfigError::new(
                format!("{path}.base_url"),
                format!("\"{base}\" is not an http:// or https:// URL"),
            ));
        }
    }
    let spec = src.generic_spec();
    if format == Format::Generic {
        if !spec.pointers.contains_key("status") {
            errors.push(ConfigError::new(
                format!("{path}.status"),
                "a generic source needs a JSON pointer to its status",
            ));
        }
        for (field, pointer) in &spec.pointers {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                errors.push(ConfigError::new(
                    format!("{path}.{field}"),
                    format!("\"{pointer}\" is not a JSON pointer (they start with \"/\")"),
                ));
            }
        }
        for (word, status) in &spec.status_map {
            if Status::parse(status).is_none() {
                errors.push(ConfigError::new(
                    format!("{path}.status_map.{word}"),
                    format!("unknown status \"{status}\""),
                ));
            }
        }
    } else if !spec.pointers.is_empty() || !spec.status_map.is_empty() {
        errors.push(ConfigError::new(
            path,
            format!(
                "field mappings belong to generic sources; \"{name}\" is the built-in {} format",
                format.name()
            ),
        ));
    }
}

fn parse_channels(value: toml::Value, errors: &mut Errors) -> Vec<ChannelConfig> {
    let mut out = Vec::new();
    let toml::Value::Table(table) = value else {
        errors.push(ConfigError::new("channels", "expected a table of [channels.<name>]"));
        return out;
    };
    for (name, v) in table {
        let path = format!("channels.{name}");
        let toml::Value::Table(mut t) = v else {
            errors.push(ConfigError::new(&path, "expected a table"));
            continue;
        };
        let mut common = ChannelCommon::default();
        match t.remove("timeout_ms") {
            Some(toml::Value::Integer(ms)) if (1..=MAX_TIMEOUT_MS).contains(&ms) => {
                common.timeout_ms = ms as u64
            }
            Some(_) => errors.push(ConfigError::new(
                format!("{path}.timeout_ms"),
                format!("expected a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS} (10 minutes)"),
            )),
            None => {}
        }
        if let Some(v) = t.remove("rate") {
            let (list, listed) = match v {
                toml::Value::Array(items) => (items, true),
                one => (vec![one], false),
            };
            let mut rates = Vec::new();
            for (i, item) in list.into_iter().enumerate() {
                let at = if listed { format!("{path}.rate[{i}]") } else { format!("{path}.rate") };
                match item.as_str().map(Rate::parse) {
                    Some(Ok(r)) => rates.push(r),
                    Some(Err(e)) => errors.push(ConfigError::new(at, e)),
                    None => {
                        errors.push(ConfigError::new(at, "expected a rate like \"20/min\" or a list of them"))
                    }
                }
            }
            common.rate = Some(rates);
        }
        match t.remove("template") {
            Some(toml::Value::String(s)) => common.template = Some(s),
            Some(_) => errors.push(ConfigError::new(format!("{path}.template"), "expected a string")),
            None => {}
        }
        let kind = match t.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => {
                errors.push(ConfigError::new(format!("{path}.type"), "expected a string"));
                continue;
            }
            None => {
                errors.push(ConfigError::new(
                    format!("{path}.type"),
                    format!("missing (one of {})", CHANNEL_TYPES.join(", ")),
                ));
                continue;
            }
        };
        let rest = toml::Value::Table(t);
        let spec = match kind.as_str() {
            "dingtalk" => typed(&path, rest, errors).map(ChannelSpec::Dingtalk),
            "wecom" => typed(&path, rest, errors).map(ChannelSpec::Wecom),
            "lark" | "feishu" => typed(&path, rest, errors).map(ChannelSpec::Lark),
            "email" => typed(&path, rest, errors).map(ChannelSpec::Email),
            "webhook" => typed(&path, rest, errors).map(ChannelSpec::Webhook),
            "console" => typed(&path, rest, errors).map(ChannelSpec::Console),
            other => {
                errors.push(ConfigError::new(
                    format!("{path}.type"),
                    format!("unknown channel type \"{other}\" (one of {})", CHANNEL_TYPES.join(", ")),
                ));
                None
            }
        };
        if let Some(spec) = spec {
            check_channel(&path, &spec, errors);
            out.push(ChannelConfig { name, common, spec });
        }
    }
    out
}

fn check_channel(path: &str, spec: &ChannelSpec, errors: &mut Errors) {
    let http_url = |url: &crate::secret::SecretUrl, errors: &mut Errors| {
        if !matches!(url.expose().scheme(), "http" | "https") {
            errors.push(ConfigError::new(format!("{path}.url"), "expected an http:// or https:// URL"));
        }
    };
    match spec {
        ChannelSpec::Dingtalk(c) => http_url(&c.url, errors),
        ChannelSpec::Wecom(c) => http_url(&c.url, errors),
        ChannelSpec::Lark(c) => http_url(&c.url, errors),
        ChannelSpec::Webhook(c) => http_url(&c.url, errors),
        ChannelSpec::Email(c) => {
            if !matches!(c.smtp.expose().scheme(), "smtp" | "smtps") {
                errors.push(ConfigError::new(format!("{path}.smtp"), "expected an smtp:// or smtps:// URL"));
            }
            if c.to.is_empty() {
                errors.push(ConfigError::new(format!("{path}.to"), "at least one recipient is required"));
            }
            for (field, list) in
                [("from", std::slice::from_ref(&c.from)), ("to", &c.to[..]), ("cc", &c.cc[..])]
            {
                for (i, addr) in list.iter().enumerate() {
                    if addr.parse::<lettre::message::Mailbox>().is_err() {
                        let at = if field == "from" {
                            format!("{path}.from")
                        } else {
                            format!("{path}.{field}[{i}]")
                        };
                        errors.push(ConfigError::new(at, format!("invalid address \"{addr}\"")));
                    }
                }
            }
        }
        ChannelSpec::Console(_) => {}
    }
}

fn parse_people(value: toml::Value, errors: &mut Errors) -> BTreeMap<String, Person> {
    let toml::Value::Table(table) = value else {
        errors.push(ConfigError::new("people", "expected a table of [people.<key>]"));
        return BTreeMap::new();
    };
    table
        .into_iter()
        .filter_map(|(key, v)| typed::<Person>(&format!("people.{key}"), v, errors).map(|p| (key, p)))
        .collect()
}

/// The rules that could be read, each with its index in the file.
fn parse_rules(value: toml::Value, errors: &mut Errors) -> Vec<RuleConfig> {
    let toml::Value::Array(items) = value else {
        errors.push(ConfigError::new("rules", "expected an array of tables ([[rules]])"));
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| {
            typed::<RuleConfig>(&format!("rules[{i}]"), v, errors).map(|r| RuleConfig { at: i, ..r })
        })
        .collect()
}

fn check_server(server: &ServerConfig, errors: &mut Errors) {
    if server.listen.parse::<std::net::SocketAddr>().is_err() {
        errors.push(ConfigError::new(
            "server.listen",
            format!("\"{}\" is not an address like 127.0.0.1:8080", server.listen),
        ));
    }
    if let Some(url) = &server.public_url {
        if url::Url::parse(url).is_err() {
            errors.push(ConfigError::new("server.public_url", format!("\"{url}\" is not a URL")));
        }
    }
    if server.max_body_bytes == 0 {
        errors.push(ConfigError::new("server.max_body_bytes", "must be greater than 0"));
    }
}

fn check_rules(
    rules: &[RuleConfig],
    channels: &BTreeSet<String>,
    // Every [sources.<name>] given, even one with errors of its own.
    sources: &BTreeSet<String>,
    errors: &mut Errors,
) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for rule in rules {
        let i = rule.at;
        let path = format!("rules[{i}]");
        if rule.name.trim().is_empty() {
            errors.push(ConfigError::new(format!("{path}.name"), "required: every rule needs a name"));
        } else if let Some(first) = seen.insert(&rule.name, i) {
            errors.push(ConfigError::new(
                format!("{path}.name"),
                format!("duplicate rule name \"{}\" (also rules[{first}])", rule.name),
            ));
        }
        if rule.channels.is_empty() {
            errors.push(ConfigError::new(format!("{path}.channels"), "at least one channel is required"));
        }
        for (j, ch) in rule.channels.iter().enumerate() {
            if !channels.contains(ch) {
                errors.push(ConfigError::new(
                    format!("{path}.channels[{j}]"),
                    format!("unknown channel \"{ch}\""),
                ));
            }
        }
        if let Some(statuses) = &rule.when.status {
            for (j, s) in statuses.items().iter().enumerate() {
                if Status::parse(s).is_none() {
                    let known: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                    errors.push(ConfigError::new(
                        format!("{path}.when.status[{j}]"),
                        format!("unknown status \"{s}\" (one of {})", known.join(", ")),
                    ));
                }
            }
        }
        if let Some(words) = &rule.when.transition {
            for (j, w) in words.items().iter().enumerate() {
                if !crate::state::Transition::WORDS.contains(&w.as_str()) {
                    errors.push(ConfigError::new(
                        format!("{path}.when.transition[{j}]"),
                        format!(
                            "unknown transition \"{w}\" (one of {})",
                            crate::state::Transition::WORDS.join(", ")
                        ),
                    ));
                }
            }
        }
        if rule.when.still_failing_every == Some(0) {
            errors.push(ConfigError::new(format!("{path}.when.still_failing_every"), "must be at least 1"));
        }
        if let Some(named) = &rule.when.source {
            for (j, s) in named.items().iter().enumerate() {
                if Format::from_name(s).is_none() && !sources.contains(s.as_str()) {
                    let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                    errors.push(ConfigError::new(
                        format!("{path}.when.source[{j}]"),
                        format!("unknown source \"{s}\" (one of {})", known.join(", ")),
                    ));
                }
            }
        }
    }
}
