//! `${VAR}` interpolation of the config text, before TOML parsing.
//!
//! `${VAR}` is an error when VAR is unset, `${VAR:-default}` falls back to the default (also
//! when VAR is empty, as in POSIX shells), and `$${` writes a literal `${`. Comments (from a
//! `#` outside any string to the end of its line) are left as written, so a commented-out line
//! never needs its variables set. An unset variable outside a string is left as a quoted mark,
//! so that the file still parses and its other errors are found too.

use super::ConfigError;

/// Open and close the mark left where an unset variable was, around its index in
/// [`Interpolated::unset`], so that the value or key holding it can be found once the text is
/// parsed (private-use characters: no config has them, and TOML takes them in any string).
pub const UNSET_OPEN: char = '\u{E000}';
pub const UNSET_CLOSE: char = '\u{E001}';

/// The config text with every variable replaced.
#[derive(Debug, Default)]
pub struct Interpolated {
    pub text: String,
    pub errors: Vec<ConfigError>,
    /// Each unset variable, in order: its name, and the index of its error in `errors`.
    pub unset: Vec<(String, usize)>,
    /// The values taken from the environment, which no error may echo: they may be secrets.
    pub values: Vec<String>,
}

/// Interpolates `text`, looking variables up with `env`. Every unset variable is reported, each
/// with its line, and marked (see [`UNSET_OPEN`]) so that parsing can go on and report further
/// errors; the reader then empties each value that holds a mark.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Interpolated {
    let mut done = Interpolated { text: String::with_capacity(text.len()), ..Default::default() };
    let out = &mut done.text;
    let errors = &mut done.errors;
    // The closing quotes of a multi-line `content` string still open.
    let mut content_until: Option<&str> = None;
    let mut quotes = Quotes::default();
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        if let Some(close) = content_until {
            out.push_str(line);
            if line.contains(close) {
                content_until = None;
            }
            continue;
        }
        if !quotes.in_string() && is_content_line(line) {
            content_until = opens_multiline(line);
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut comment = false;
        while let Some(pos) = rest.find('$') {
            if quotes.follow(&rest[..pos]) {
                // The rest of the line is a comment: left as written.
                comment = true;
                break;
            }
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
                                (Some(v), _) => {
                                    out.push_str(&v);
                                    done.values.push(v);
                                }
                                (None, Some(d)) => out.push_str(d),
                                (None, None) => {
                                    // Outside a string the mark is quoted, so that the TOML still
                                    // parses: its value is then reported as the unset variable's.
                                    let quote = if quotes.in_string() { "" } else { "\"" };
                                    out.push_str(quote);
                                    out.push(UNSET_OPEN);
                                    out.push_str(&done.unset.len().to_string());
                                    out.push(UNSET_CLOSE);
                                    out.push_str(quote);
                                    done.unset.push((name.to_string(), errors.len()));
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
        if !comment {
            quotes.follow(rest);
        }
        out.push_str(rest);
        quotes.end_line();
    }
    done
}

/// Which TOML string, if any, the text followed so far is inside.
#[derive(Debug, Default)]
struct Quotes {
    open: Option<&'static str>,
}

impl Quotes {
    /// Follows `s`; true when it reaches a `#` outside any string, where a comment begins.
    fn follow(&mut self, s: &str) -> bool {
        let at = |i: usize, q: &str| s.get(i..).is_some_and(|r| r.starts_with(q));
        let mut i = 0;
        while i < s.len() {
            match self.open {
                None if at(i, "#") => return true,
                None => {
                    if let Some(q) = ["\"\"\"", "\'\'\'", "\"", "'"].into_iter().find(|q| at(i, q)) {
                        self.open = Some(q);
                        i += q.len();
                        continue;
                    }
                }
                Some(q) if q.starts_with('"') && at(i, "\\") => {
                    i += 2;
                    continue;
                }
                Some(q) if at(i, q) => {
                    self.open = None;
                    i += q.len();
                    continue;
                }
                Some(_) => {}
            }
            i += 1;
        }
        false
    }

    fn in_string(&self) -> bool {
        self.open.is_some()
    }

    /// At a line's end, only a multi-line string is still open.
    fn end_line(&mut self) {
        if matches!(self.open, Some("\"" | "'")) {
            self.open = None;
        }
    }
}

/// The closing quotes, when `line` opens a multi-line string it does not close.
fn opens_multiline(line: &str) -> Option<&'static str> {
    ["\"\"\"", "\'\'\'"].into_iter().find(|q| line.matches(q).count() == 1)
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
        let done = interpolate(text, &env);
        (done.text, done.errors.iter().map(|e| e.to_string()).collect())
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
            (
                "content = \"\"\"\nEnv: ${DEPLOY_ENV}\n\"\"\"\nurl = \"${TOKEN}\"\n",
                "content = \"\"\"\nEnv: ${DEPLOY_ENV}\n\"\"\"\nurl = \"abc\"\n",
            ),
            ("contents = \"${TOKEN}\"", "contents = \"abc\""),
            ("a = 1 # was ${MISSING}\n", "a = 1 # was ${MISSING}\n"),
            ("a = \"# ${TOKEN}\" # ${MISSING}\n", "a = \"# abc\" # ${MISSING}\n"),
            (
                "a = '''\n# ${TOKEN} \"\n'''\nb = 1 # ${MISSING}\n",
                "a = '''\n# abc \"\n'''\nb = 1 # ${MISSING}\n",
            ),
            ("a = \"\\\" ${TOKEN}\"\n", "a = \"\\\" abc\"\n"),
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
    fn an_unset_variable_outside_a_string_is_left_as_a_quoted_mark() {
        let done = interpolate("port = ${NOPE}\nname = \"x-${NOPE}\"\n", &env);
        let mark = |k: usize| format!("{UNSET_OPEN}{k}{UNSET_CLOSE}");
        assert_eq!(done.text, format!("port = \"{}\"\nname = \"x-{}\"\n", mark(0), mark(1)));
        assert_eq!(done.unset, [("NOPE".to_string(), 0), ("NOPE".to_string(), 1)]);
        assert!(toml::from_str::<toml::Table>(&done.text).is_ok(), "it still parses");
    }

    #[test]
    fn malformed_references() {
        let (_, errs) = run("a = \"${1BAD}\"\nb = \"${OPEN\"\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
