//! Tolerant reading of payload fields: the one place that decides what a field may look like.
//!
//! Senders are loose about types, so a number may arrive as a numeric string and a string field as a
//! number; `null` and `""` mean "absent". When a value really has the wrong shape, the error names
//! the field by its path (`task.buildNumber`, `sources[0].data.repo`) and says what was found. The
//! format parsers own which fields they read; this file owns how a field is read.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{text, IngestError};

/// A place in a payload: the value found there, if any, and its path for error messages.
///
/// Walking through something that is not an object or array does not fail at once: the error is
/// carried along and reported by whichever accessor is finally called, so call sites stay short.
#[derive(Debug, Clone)]
pub(crate) struct At<'a> {
    found: Result<Option<&'a Value>, IngestError>,
    path: String,
}

impl<'a> At<'a> {
    /// The top of a payload.
    pub(crate) fn root(value: &'a Value) -> At<'a> {
        At { found: Ok(Some(value)), path: String::new() }
    }

    /// The value at a JSON pointer (RFC 6901) in `root`, named by the pointer in error messages.
    pub(crate) fn pointer(root: &'a Value, pointer: &str) -> At<'a> {
        At { found: Ok(root.pointer(pointer)), path: pointer.to_string() }
    }

    /// The member `key` of this object.
    pub(crate) fn get(&self, key: &str) -> At<'a> {
        // Every field read builds its path, found or not, so it is joined by hand: `format!`
        // cost more than the lookup.
        let mut path = String::with_capacity(self.path.len() + 1 + key.len());
        path.push_str(&self.path);
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        let found = self.container("an object", Value::is_object).map(|v| v.and_then(|v| v.get(key)));
        At { found, path }
    }

    /// The item `index` of this array.
    pub(crate) fn index(&self, index: usize) -> At<'a> {
        let path = format!("{}[{index}]", self.path);
        let found = self.container("an array", Value::is_array).map(|v| v.and_then(|v| v.get(index)));
        At { found, path }
    }

    /// The path of this place, as used in error messages.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The value here; `null` and `""` count as absent.
    pub(crate) fn value(&self) -> Result<Option<&'a Value>, IngestError> {
        match &self.found {
            Err(e) => Err(e.clone()),
            Ok(None | Some(Value::Null)) => Ok(None),
            Ok(Some(Value::String(s))) if s.is_empty() => Ok(None),
            Ok(Some(v)) => Ok(Some(v)),
        }
    }

    /// The parent check for `get`/`index`: absent stays absent, a scalar is an error.
    fn container(&self, expected: &str, fits: fn(&Value) -> bool) -> Result<Option<&'a Value>, IngestError> {
        match self.value()? {
            None => Ok(None),
            Some(v) if fits(v) => Ok(Some(v)),
            Some(other) => Err(wrong_type(&self.path, expected, other)),
        }
    }

    /// A string; a number is accepted and written in decimal. Blank strings are absent.
    pub(crate) fn str_opt(&self) -> Result<Option<String>, IngestError> {
        match self.value()? {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(wrong_type(&self.path, "a string", other)),
        }
    }

    /// A status word: a string, and nothing else (a number is not a status). Blank is absent.
    pub(crate) fn word_opt(&self) -> Result<Option<String>, IngestError> {
        match self.value()? {
            Some(Value::String(s)) => Ok(text::non_blank(s)),
            Some(other) => Err(wrong_type(&self.path, "a string", other)),
            None => Ok(None),
        }
    }

    /// A status word that must be there.
    pub(crate) fn word_req(&self) -> Result<String, IngestError> {
        self.word_opt()?.ok_or_else(|| missing(&self.path))
    }

    /// A non-negative integer, given as a JSON number or a numeric string.
    pub(crate) fn u64_opt(&self) -> Result<Option<u64>, IngestError> {
        let bad = |v: &Value| wrong_type(&self.path, "an integer or numeric string", v);
        match self.value()? {
            None => Ok(None),
            Some(v @ Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Ok(Some(u)),
                // `128.0` is an integer written loosely; anything with a fraction is not.
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
                _ => Err(bad(v)),
            },
            Some(v @ Value::String(s)) => match s.trim() {
                "" => Ok(None),
                t => t.parse().map(Some).map_err(|_| bad(v)),
            },
            Some(other) => Err(bad(other)),
        }
    }

    /// A duration in seconds, as a number or numeric string, fractions allowed (GitLab sends
    /// `66.2`), in whole milliseconds.
    pub(crate) fn seconds_ms_opt(&self) -> Result<Option<u64>, IngestError> {
        let bad = |v: &Value| wrong_type(&self.path, "a number of seconds", v);
        let secs = match self.value()? {
            None => return Ok(None),
            Some(v @ Value::Number(n)) => n.as_f64().ok_or_else(|| bad(v))?,
            Some(v @ Value::String(s)) => match s.trim() {
                "" => return Ok(None),
                t => t.parse::<f64>().map_err(|_| bad(v))?,
            },
            Some(other) => return Err(bad(other)),
        };
        if !secs.is_finite() || secs < 0.0 || secs * 1000.0 >= u64::MAX as f64 {
            return Err(bad(self.value()?.unwrap_or(&Value::Null)));
        }
        Ok(Some((secs * 1000.0).round() as u64))
    }

    /// An integer that must be there.
    pub(crate) fn u64_req(&self) -> Result<u64, IngestError> {
        self.u64_opt()?.ok_or_else(|| missing(&self.path))
    }

    /// A boolean, or the strings `true`/`false` (XML has no booleans).
    pub(crate) fn bool_opt(&self) -> Result<Option<bool>, IngestError> {
        match self.value()? {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.trim() == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s.trim() == "false" => Ok(Some(false)),
            Some(other) => Err(wrong_type(&self.path, "a boolean", other)),
        }
    }

    /// An object, if one is here.
    pub(crate) fn object_opt(&self) -> Result<Option<&'a Map<String, Value>>, IngestError> {
        match self.value()? {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(wrong_type(&self.path, "an object", other)),
        }
    }

    /// An array, if one is here.
    pub(crate) fn array_opt(&self) -> Result<Option<&'a Vec<Value>>, IngestError> {
        match self.value()? {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(wrong_type(&self.path, "an array", other)),
        }
    }

    /// An object of name → value as a string map (see [`scalar_string`]); absent gives an empty map.
    pub(crate) fn string_map(&self) -> Result<BTreeMap<String, String>, IngestError> {
        let mut out = BTreeMap::new();
        for (k, v) in self.object_opt()?.into_iter().flatten() {
            if let Some(s) = scalar_string(v) {
                out.insert(k.clone(), s);
            }
        }
        Ok(out)
    }
}

/// A value as a parameter string: strings as they are, numbers and booleans in JSON notation,
/// arrays and objects as compact JSON, `null` as absent.
pub(crate) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

/// `missing field "a.b"`.
pub(crate) fn missing(path: &str) -> IngestError {
    IngestError::Invalid(format!("missing field \"{path}\""))
}

/// `field "a.b": expected X, got Y`.
pub(crate) fn wrong_type(path: &str, expected: &str, got: &Value) -> IngestError {
    let place = if path.is_empty() { "the body".to_string() } else { format!("field \"{path}\"") };
    IngestError::Invalid(format!("{place}: expected {expected}, got {}", describe(got)))
}

/// A name from the body (a key, an XML element) as an error message shows it: cut after 40
/// characters, so an answer or a log line never carries a large part of what was sent.
pub(crate) fn short_name(name: &str) -> String {
    const MAX_CHARS: usize = 40;
    if name.chars().count() <= MAX_CHARS {
        return name.to_string();
    }
    let cut: String = name.chars().take(MAX_CHARS).collect();
    format!("{cut}…")
}

/// A short description of a value for error messages: scalars verbatim (long strings cut).
pub(crate) fn describe(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    match value {
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "an array".into(),
        Value::String(s) if s.chars().count() > MAX_CHARS => {
            let cut: String = s.chars().take(MAX_CHARS).collect();
            format!("{}…", Value::String(cut))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn invalid(e: IngestError) -> String {
        match e {
            IngestError::Invalid(m) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn strings_accept_numbers_and_treat_blank_as_absent() {
        let v = json!({"a": "x", "n": 2713459, "e": "", "s": "  ", "z": null});
        let r = At::root(&v);
        assert_eq!(r.get("a").str_opt().unwrap().as_deref(), Some("x"));
        assert_eq!(r.get("n").str_opt().unwrap().as_deref(), Some("2713459"));
        for k in ["e", "s", "z", "nope"] {
            assert_eq!(r.get(k).str_opt().unwrap(), None, "{k}");
        }
    }

    #[test]
    fn words_are_strings_only() {
        let v = json!({"w": "SUCCESS", "n": 3, "b": " "});
        let r = At::root(&v);
        assert_eq!(r.get("w").word_req().unwrap(), "SUCCESS");
        assert_eq!(invalid(r.get("n").word_opt().unwrap_err()), "field \"n\": expected a string, got 3");
        assert_eq!(invalid(r.get("b").word_req().unwrap_err()), "missing field \"b\"");
    }

    #[test]
    fn integers_accept_numeric_strings_only() {
        let v = json!({"a": 19, "b": "22", "c": " 7 ", "d": 3.0, "t": true, "x": "abc", "f": 1.5, "m": -1});
        let r = At::root(&v);
        assert_eq!(r.get("a").u64_opt().unwrap(), Some(19));
        assert_eq!(r.get("b").u64_opt().unwrap(), Some(22));
        assert_eq!(r.get("c").u64_opt().unwrap(), Some(7));
        assert_eq!(r.get("d").u64_opt().unwrap(), Some(3));
        let e = invalid(r.get("t").u64_opt().unwrap_err());
        assert_eq!(e, "field \"t\": expected an integer or numeric string, got true");
        assert!(invalid(r.get("x").u64_opt().unwrap_err()).ends_with("got \"abc\""));
        assert!(r.get("f").u64_opt().is_err());
        assert!(r.get("m").u64_opt().is_err());
    }

    #[test]
    fn paths_name_nested_fields_and_array_items() {
        let v = json!({"task": {"buildNumber": true}, "sources": [{"data": {"repo": []}}]});
        let r = At::root(&v);
        let e = invalid(r.get("task").get("buildNumber").u64_req().unwrap_err());
        assert_eq!(e, "field \"task.buildNumber\": expected an integer or numeric string, got true");
        let e = invalid(r.get("sources").index(0).get("data").get("repo").str_opt().unwrap_err());
        assert_eq!(e, "field \"sources[0].data.repo\": expected a string, got an array");
        let e = invalid(r.get("build").get("phase").word_req().unwrap_err());
        assert_eq!(e, "missing field \"build.phase\"");
    }

    #[test]
    fn walking_through_a_scalar_names_the_scalar() {
        let v = json!({"build": "oops", "list": {"a": 1}});
        let r = At::root(&v);
        let e = invalid(r.get("build").get("phase").word_req().unwrap_err());
        assert_eq!(e, "field \"build\": expected an object, got \"oops\"");
        let e = invalid(r.get("list").index(0).str_opt().unwrap_err());
        assert_eq!(e, "field \"list\": expected an array, got an object");
        let top = json!([1, 2]);
        let e = invalid(At::root(&top).get("x").str_opt().unwrap_err());
        assert_eq!(e, "the body: expected an object, got an array");
    }

    #[test]
    fn seconds_become_milliseconds() {
        let v = json!({"a": 318, "b": 66.2, "c": "2.5", "d": -1, "e": "x", "f": true, "n": null});
        let r = At::root(&v);
        assert_eq!(r.get("a").seconds_ms_opt().unwrap(), Some(318_000));
        assert_eq!(r.get("b").seconds_ms_opt().unwrap(), Some(66_200));
        assert_eq!(r.get("c").seconds_ms_opt().unwrap(), Some(2_500));
        assert_eq!(r.get("n").seconds_ms_opt().unwrap(), None);
        assert_eq!(
            invalid(r.get("d").seconds_ms_opt().unwrap_err()),
            "field \"d\": expected a number of seconds, got -1"
        );
        assert!(r.get("e").seconds_ms_opt().is_err());
        assert!(r.get("f").seconds_ms_opt().is_err());
    }

    #[test]
    fn pointers_name_themselves_in_errors() {
        let v = json!({"build": {"num": true, "tags": ["a"]}});
        assert_eq!(At::pointer(&v, "/build/tags/0").str_opt().unwrap().as_deref(), Some("a"));
        assert_eq!(At::pointer(&v, "/nope").str_opt().unwrap(), None);
        let e = invalid(At::pointer(&v, "/build/num").u64_opt().unwrap_err());
        assert_eq!(e, "field \"/build/num\": expected an integer or numeric string, got true");
    }

    #[test]
    fn booleans_and_maps() {
        let v = json!({"c": false, "s": "true", "m": {"A": "1", "B": 2, "C": null, "D": [1]}});
        let r = At::root(&v);
        assert_eq!(r.get("c").bool_opt().unwrap(), Some(false));
        assert_eq!(r.get("s").bool_opt().unwrap(), Some(true));
        let m = r.get("m").string_map().unwrap();
        assert_eq!(m.get("A").map(String::as_str), Some("1"));
        assert_eq!(m.get("B").map(String::as_str), Some("2"));
        assert_eq!(m.get("C"), None);
        assert_eq!(m.get("D").map(String::as_str), Some("[1]"));
        assert!(r.get("absent").string_map().unwrap().is_empty());
    }

    #[test]
    fn long_strings_are_cut_in_messages() {
        let long = "é".repeat(100);
        let d = describe(&Value::String(long));
        assert!(d.ends_with('…'));
        assert_eq!(d.chars().count(), 40 + 3);
    }
}
