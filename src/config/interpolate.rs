//! `${VAR}` interpolation of the config text, before TOML parsing.
//!
//! `${VAR}` is an error when VAR is unset, `${VAR:-default}` falls back to the default (also
//! when VAR is empty, as in POSIX shells), and `$${` writes a literal `${`. Lines whose first
//! non-blank character is `#` are comments and are left as written, so a commented-out line
//! never needs its variables set.

use super::ConfigError;

/// Stands where an unset variable was, so that the value holding it can be found once the text
/// is parsed (a private-use character: no config has it, and TOML takes it in any string).
pub const UNSET: char = '\u{E000}';

/// Interpolates `text`, looking variables up with `env`. Every unset variable is reported, each
/// with its line, and replaced by [`UNSET`] so that parsing can go on and report further
/// errors; the reader then empties each value that holds it.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<ConfigError>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || is_content_line(line) {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(literal) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = literal;
            } else if let Some(body) = after.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => {
                        let expr = &body[..end];
                        let (name, default) = match expr.split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (expr, None),
                        };
                        if !valid_name(name) {
                            errors.push(ConfigError::new(
                                format!("line {}", idx + 1),
                                format!("\"${{{expr}}}\" is not a valid variable reference"),
                            ));
                        } else {
                            match (env(name).filter(|v| !(v.is_empty() && default.is_some())), default) {
                                (Some(v), _) => out.push_str(&v),
                                (None, Some(d)) => out.push_str(d),
                                (None, None) => {
                                    out.push(UNSET);
                                    errors.push(ConfigError::new(
                                        format!("line {}", idx + 1),
                                        format!("environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"),
                                    ))
                                }
                            }
                        }
                        rest = &body[end + 1..];
                    }
                    None => {
                        errors.push(ConfigError::new(
                            format!("line {}", idx + 1),
                            "unterminated \"${\" (write \"$${\" for a literal \"${\")",
                        ));
                        out.push_str(after);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    (out, errors)
}

/// `content = ...`: the value is interpolated per event, from the event.
fn is_content_line(line: &str) -> bool {
    line.trim_start().strip_prefix("content").is_some_and(|rest| rest.trim_start().starts_with('='))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> (String, Vec<String>) {
        let (out, errs) = interpolate(text, &env);
        (out, errs.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            ("url = \"x?t=${TOKEN}\"", "url = \"x?t=abc\""),
            ("a = \"${MISSING:-dflt}\"", "a = \"dflt\""),
            ("a = \"${EMPTY:-dflt}\"", "a = \"dflt\""),
            ("a = \"${EMPTY}\"", "a = \"\""),
            ("a = \"$${TOKEN}\"", "a = \"${TOKEN}\""),
            ("a = \"cost $5\"", "a = \"cost $5\""),
            ("# url = \"${MISSING}\"", "# url = \"${MISSING}\""),
            ("a = \"${TOKEN}${TOKEN}\"\n", "a = \"abcabc\"\n"),
            ("content = \"Commit: ${CI_COMMIT_TITLE}\"", "content = \"Commit: ${CI_COMMIT_TITLE}\""),
            ("contents = \"${TOKEN}\"", "contents = \"abc\""),
        ];
        for (input, want) in cases {
            let (out, errs) = run(input);
            assert!(errs.is_empty(), "{input}: {errs:?}");
            assert_eq!(&out, want, "{input}");
        }
    }

    #[test]
    fn every_unset_variable_is_reported_with_its_line() {
        let (_, errs) = run("a = \"${ONE}\"\nb = 1\nc = \"${TWO}\"\n");
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("line 1: environment variable ONE is not set"), "{errs:?}");
        assert!(errs[1].starts_with("line 3: environment variable TWO is not set"), "{errs:?}");
    }

    #[test]
    fn malformed_references() {
        let (_, errs) = run("a = \"${1BAD}\"\nb = \"${OPEN\"\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
