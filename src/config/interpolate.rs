//! `${VAR}` interpolation of the config text, before TOML parsing.
//!
//! `${VAR}` is an error when VAR is unset, `${VAR:-default}` falls back to the default (also
//! when VAR is empty, as in POSIX shells), and `$${` writes a literal `${`. Comments (from a
//! `#` outside any string to the end of its line) are left as written, so a commented-out line
//! never needs its variables set. An unset variable outside a string is left as a quoted mark,
//! so that the file still parses and its other errors are found too.

use std::ops::Range;

use super::ConfigError;

/// Open and close the mark left where an unset variable was, around its index in
/// [`Interpolated::unset`], so that the value or key holding it can be found once the text is
/// parsed (private-use characters: no config has them, and TOML takes them in any string).
pub const UNSET_OPEN: char = '\u{E000}';
const UNSET_CLOSE: char = '\u{E001}';

/// The config text with every variable replaced.
#[derive(Debug, Default)]
pub struct Interpolated {
    pub text: String,
    pub errors: Vec<ConfigError>,
    /// Each unset variable, in order: its name, and the index of its error in `errors`.
    pub unset: Vec<(String, usize)>,
    /// The values taken from the environment, which no error may echo: they may be secrets.
    pub values: Vec<String>,
    /// Makes this text's marks its own: a config cannot write one that is taken for a mark.
    pub nonce: u64,
    /// Each replacement made, in order: where it is in `text`, and where its reference is in
    /// the text as written, so that a position found in `text` is told as written.
    replaced: Vec<(Range<usize>, Range<usize>)>,
}

/// The mark of the `k`th unset variable.
pub fn mark(nonce: u64, k: usize) -> String {
    format!("{UNSET_OPEN}{nonce:x}.{k}{UNSET_CLOSE}")
}

impl Interpolated {
    /// The index in `unset` of the mark at the start of `s` (which starts with [`UNSET_OPEN`]),
    /// and the mark's length; `None` when it is not one of this text's marks.
    pub fn mark_at(&self, s: &str) -> Option<(usize, usize)> {
        let len = s.find(UNSET_CLOSE)? + UNSET_CLOSE.len_utf8();
        let inner = &s[UNSET_OPEN.len_utf8()..len - UNSET_CLOSE.len_utf8()];
        let (nonce, k) = inner.split_once('.')?;
        let k: usize = k.parse().ok()?;
        (u64::from_str_radix(nonce, 16).ok()? == self.nonce && k < self.unset.len()).then_some((k, len))
    }

    /// The offset in the text as written of `at`, an offset in [`Interpolated::text`]: a
    /// position inside a replaced value is told as the start of its `${…}`.
    pub fn written_offset(&self, at: usize) -> usize {
        let mut shift = 0isize;
        for (out, written) in &self.replaced {
            if at < out.start {
                break;
            }
            if at < out.end {
                return written.start;
            }
            shift = written.end as isize - out.end as isize;
        }
        at.saturating_add_signed(shift)
    }
}

/// Interpolates `text`, looking variables up with `env`. Every unset variable is reported, each
/// with its line, and marked (see [`UNSET_OPEN`]) so that parsing can go on and report further
/// errors; the reader then empties each value that holds a mark.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Interpolated {
    let mut done =
        Interpolated { text: String::with_capacity(text.len()), nonce: rand::random(), ..Default::default() };
    let out = &mut done.text;
    let errors = &mut done.errors;
    let mut quotes = Quotes::default();
    // Inside a rule's `content` string, over several lines.
    let mut in_content = false;
    // The header of the table the lines are in, without white space or quotes (`[[rules]]`).
    let mut table = String::new();
    let mut next_line = 0;
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        // Where this line starts in the text as written (every branch below counts it).
        let line_start = next_line;
        next_line += line.len();
        let written_at = |rest: &str| line_start + line.len() - rest.len();
        if in_content {
            quotes.follow(line);
            in_content = quotes.in_string();
            out.push_str(line);
            continue;
        }
        if !quotes.in_string() {
            let head = line.trim();
            if head.starts_with('[') {
                let header = head.split('#').next().unwrap_or(head);
                table = header.chars().filter(|c| !c.is_whitespace() && !matches!(c, '"' | '\'')).collect();
            }
            // `rules = [{ ..., content = "..." }]`: rules written inline, at the root.
            if table.is_empty() && is_inline_rules_line(line) {
                quotes.inline_rules();
            }
            if table == "[[rules]]" && is_content_line(line) {
                quotes.follow(line);
                in_content = quotes.in_string();
                quotes.end_line();
                out.push_str(line);
                continue;
            }
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
            if quotes.in_verbatim() {
                // A rule's content written inline: interpolated per event, as in `[[rules]]`.
                out.push('$');
                rest = &after[1..];
                continue;
            }
            let (out_start, written_start) = (out.len(), written_at(after));
            if let Some(literal) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = literal;
                done.replaced.push((out_start..out.len(), written_start..written_at(rest)));
            } else if let Some(body) = after.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => {
                        let expr = &body[..end];
                        let (name, default) = match expr.split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (expr, None),
                        };
                        if !valid_name(name) {
                            // Only the name: a default may be a secret.
                            errors.push(ConfigError::new(
                                format!("line {}", idx + 1),
                                format!("\"{name}\" is not a valid variable name (letters, digits and _, not starting with a digit)"),
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
                                    out.push_str(&mark(done.nonce, done.unset.len()));
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
                        done.replaced.push((out_start..out.len(), written_start..written_at(rest)));
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
    /// Whether the open string is a rule's `content` in an inline `rules` array: left as written.
    verbatim: bool,
    /// Inside `rules = [...]` at the root: the brackets and braces open in it, and whether the
    /// last key at the depth of a rule's own keys was `content`.
    rules: Option<InlineRules>,
}

#[derive(Debug, Default)]
struct InlineRules {
    brackets: usize,
    braces: usize,
    key: String,
    content: bool,
}

impl InlineRules {
    /// Follows one character outside any string; false once the array has closed.
    fn follow(&mut self, c: char) -> bool {
        match c {
            '[' => self.brackets += 1,
            ']' => {
                self.brackets = self.brackets.saturating_sub(1);
                if self.brackets == 0 {
                    return false;
                }
            }
            '{' => self.braces += 1,
            '}' => self.braces = self.braces.saturating_sub(1),
            _ => {}
        }
        if self.braces == 1 {
            match c {
                '=' => self.content = std::mem::take(&mut self.key).trim() == "content",
                ',' | '{' => {
                    self.key.clear();
                    self.content = false;
                }
                c if !c.is_whitespace() => self.key.push(c),
                _ => {}
            }
        }
        true
    }

    /// A string opens here: whether it is a rule's `content`.
    fn string_opens(&mut self) -> bool {
        std::mem::take(&mut self.content) && self.braces == 1 && self.brackets == 1
    }
}

impl Quotes {
    /// The next line begins an inline `rules` array.
    fn inline_rules(&mut self) {
        self.rules = Some(InlineRules::default());
    }

    /// Whether the text followed so far is inside a rule's inline `content` string.
    fn in_verbatim(&self) -> bool {
        self.open.is_some() && self.verbatim
    }

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
                        self.verbatim = self.rules.as_mut().is_some_and(InlineRules::string_opens);
                        i += q.len();
                        continue;
                    }
                    if let Some(c) = s[i..].chars().next() {
                        if let Some(rules) = &mut self.rules {
                            if !rules.follow(c) {
                                self.rules = None;
                            }
                        }
                        i += c.len_utf8();
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
                    // A multi-line string may end with one or two more of its quotes inside it.
                    for _ in 0..2 {
                        if q.len() == 3 && at(i, &q[..1]) {
                            i += 1;
                        }
                    }
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
            self.verbatim = false;
        }
    }
}

/// `content = ...` (in a `[[rules]]` table): the value is interpolated per event, from the
/// event.
fn is_content_line(line: &str) -> bool {
    line.trim_start().strip_prefix("content").is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// `rules = [` at the start of a line: the rules written as an inline array.
fn is_inline_rules_line(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("rules")
        .and_then(|rest| rest.trim_start().strip_prefix('='))
        .is_some_and(|rest| rest.trim_start().starts_with('['))
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
            ("[[rules]]\ncontent = \"Commit: ${CI_COMMIT_TITLE}\"", "[[rules]]\ncontent = \"Commit: ${CI_COMMIT_TITLE}\""),
            ("[[ rules ]] # x\ncontent = \"${CI_COMMIT_TITLE}\"", "[[ rules ]] # x\ncontent = \"${CI_COMMIT_TITLE}\""),
            ("[[\"rules\"]]\ncontent = \"${CI_COMMIT_TITLE}\"", "[[\"rules\"]]\ncontent = \"${CI_COMMIT_TITLE}\""),
            // Only a rule's content is the event's; `content` elsewhere is the config's.
            ("[rules.when.params]\ncontent = \"${TOKEN}\"", "[rules.when.params]\ncontent = \"abc\""),
            (
                "[[rules]]\ncontent = \"don't ''' here\"\nname = \"${TOKEN}\"\n",
                "[[rules]]\ncontent = \"don't ''' here\"\nname = \"abc\"\n",
            ),
            (
                "[[rules]]\ncontent = \"\"\"\nEnv: \\\"\"\" ${DEPLOY_ENV}\n\"\"\"\"\nurl = \"${TOKEN}\" # \"${DEPLOY_ENV}\n",
                "[[rules]]\ncontent = \"\"\"\nEnv: \\\"\"\" ${DEPLOY_ENV}\n\"\"\"\"\nurl = \"abc\" # \"${DEPLOY_ENV}\n",
            ),
            ("contents = \"${TOKEN}\"", "contents = \"abc\""),
            // Rules written inline: a rule's content is the event's, everything else the config's.
            (
                "rules = [{ name = \"${TOKEN}\", content = \"Commit: ${CI_COMMIT_TITLE}\" }]\n",
                "rules = [{ name = \"abc\", content = \"Commit: ${CI_COMMIT_TITLE}\" }]\n",
            ),
            (
                "rules = [\n  { channels = [\"c\"], content = '''\n${CI_COMMIT_TITLE}\n''' },\n  { content = \"$${X}\" },\n]\nurl = \"${TOKEN}\"\n",
                "rules = [\n  { channels = [\"c\"], content = '''\n${CI_COMMIT_TITLE}\n''' },\n  { content = \"$${X}\" },\n]\nurl = \"abc\"\n",
            ),
            (
                "rules = [{ when = { params = { content = \"${TOKEN}\" } }, name = \"${TOKEN}\" }]\n",
                "rules = [{ when = { params = { content = \"abc\" } }, name = \"abc\" }]\n",
            ),
            ("other = [{ content = \"${TOKEN}\" }]\n", "other = [{ content = \"abc\" }]\n"),
            ("[server]\nrules = [{ content = \"${TOKEN}\" }]\n", "[server]\nrules = [{ content = \"abc\" }]\n"),
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
        let mark = |k: usize| mark(done.nonce, k);
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
