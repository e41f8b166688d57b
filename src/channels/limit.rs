//! Platform size limits: cutting text to a byte budget at a character boundary, keeping its
//! markdown valid, and ending with a visible marker.
//!
//! Every limit is counted in UTF-8 bytes (SPEC §6). This module knows nothing of any platform:
//! a channel says how big the result may be, and, through [`fit_measured`], how to measure what
//! counts (a whole serialized body, or one content field with the mentions appended). Text the
//! channel adds after cutting (mentions, keyword) is never cut.

/// The marker ending a cut text.
pub const MARKER: &str = "\n…(truncated)";

/// How many cut marks `text` (a rendered message, or its serialized form) holds. A message
/// was cut to fit when it holds more than the texts it was made from.
pub fn cut_marks(text: &str) -> usize {
    text.matches(MARKER.trim_start_matches('\n')).count()
}

/// The marker ending a cut single line (a title).
pub const LINE_MARKER: &str = "…";

/// How a text is read, which decides how it may be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Plain text: cut anywhere between characters.
    Plain,
    /// Markdown: an open code fence is closed, and a half link, half tag, `**` or `` ` `` at the
    /// cut is dropped or closed.
    Markdown,
    /// One line (a title): ends with `…` rather than a marker line.
    Line,
}

/// `text` unchanged when it fits in `max_bytes`; otherwise cut at a character boundary,
/// repaired for its flavor, and ended with a marker, all within `max_bytes`.
pub fn fit(text: &str, max_bytes: usize, flavor: Flavor) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let marker = if flavor == Flavor::Line { LINE_MARKER } else { MARKER };
    if max_bytes < marker.len() {
        return text[..floor_boundary(text, max_bytes)].to_string();
    }
    let mut budget = max_bytes - marker.len();
    loop {
        let mut out = text[..floor_boundary(text, budget)].to_string();
        if flavor == Flavor::Markdown {
            repair_markdown(&mut out);
        }
        out.push_str(marker);
        // A repair may add a few bytes (a closing fence): shrink the cut by that much and retry.
        if out.len() <= max_bytes || budget == 0 {
            return out;
        }
        budget = budget.saturating_sub(out.len() - max_bytes);
    }
}

/// Cuts `text` with [`fit`] until `measure(candidate) <= max`, and returns the candidate.
///
/// `measure` builds what the limit applies to, for instance the serialized JSON body, where
/// escaping can make a byte of text cost more than a byte, and where the fixed parts (title,
/// mentions) count too. Each round estimates the budget from what the last candidate cost per
/// byte, and the budget shrinks every round, so the loop ends. When even an empty text is too
/// big, the result is empty.
pub fn fit_measured(text: &str, flavor: Flavor, max: usize, measure: impl Fn(&str) -> usize) -> String {
    let mut size = measure(text);
    if size <= max {
        return text.to_string();
    }
    let fixed = measure("");
    if fixed >= max {
        return String::new();
    }
    let mut candidate_len = text.len();
    let mut budget = text.len();
    loop {
        let variable = (size - fixed).max(1) as u128;
        let estimate = ((max - fixed) as u128 * candidate_len as u128 / variable) as usize;
        budget = estimate.min(budget.saturating_sub(1));
        let candidate = fit(text, budget, flavor);
        size = measure(&candidate);
        if size <= max || budget == 0 {
            return candidate;
        }
        candidate_len = candidate.len();
    }
}

/// The largest char boundary of `s` at or below `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut end = at.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Makes the end of a cut markdown text well-formed.
fn repair_markdown(s: &mut String) {
    if in_open_fence(s) {
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str("```");
        return;
    }
    let line_start = s.rfind('\n').map_or(0, |i| i + 1);
    // A cut right after a closing fence: its backticks are not a code span to balance.
    if s[line_start..].trim_start().starts_with("```") {
        return;
    }
    // Links, tags and emphasis do not span lines in chat markdown: only the last line can hold
    // a construct the cut opened.
    let mut line = s[line_start..].to_string();
    drop_open_link(&mut line);
    drop_open_tag(&mut line);
    balance(&mut line, "**");
    balance(&mut line, "`");
    s.truncate(line_start);
    s.push_str(&line);
}

/// True when the text ends inside a ``` fence.
fn in_open_fence(s: &str) -> bool {
    s.lines().filter(|l| l.trim_start().starts_with("```")).count() % 2 == 1
}

/// Drops a link or image the cut left without its closing `]` or `)`.
fn drop_open_link(line: &mut String) {
    let Some(open) = line.rfind('[') else { return };
    let rest = &line[open..];
    let open_target = match rest.find("](") {
        Some(i) => !rest[i..].contains(')'),
        None => !rest.contains(']'),
    };
    if open_target {
        let start = if line[..open].ends_with('!') { open - 1 } else { open };
        line.truncate(start);
    }
}

/// Drops a `<tag` the cut left without its `>` (`<font color=…`, `<@user`, `<at id=…`).
fn drop_open_tag(line: &mut String) {
    if let Some(open) = line.rfind('<') {
        if !line[open..].contains('>') {
            line.truncate(open);
        }
    }
}

/// Closes an odd `delim` (emphasis, a code span), or drops it when nothing follows it.
fn balance(line: &mut String, delim: &str) {
    if line.matches(delim).count().is_multiple_of(2) {
        return;
    }
    let last = line.rfind(delim).expect("an odd count is at least one");
    if line[last + delim.len()..].trim().is_empty() {
        line.truncate(last);
    } else {
        line.truncate(line.trim_end().len());
        line.push_str(delim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_text_says_so_even_inside_json() {
        let cut = fit(&"x".repeat(100), 40, Flavor::Markdown);
        assert_eq!(cut_marks(&cut), 1);
        assert_eq!(cut_marks(&serde_json::to_string(&serde_json::json!({ "text": cut })).unwrap()), 1);
        assert_eq!(cut_marks(&fit("short", 40, Flavor::Markdown)), 0);
        assert_eq!(cut_marks(&fit(&cut, 400, Flavor::Markdown)), 1, "a text that was cut before");
    }

    #[test]
    fn fit_table() {
        let fence = "intro\n```\nlet a = 1;\nlet b = 2;\nlet c = 3;\n```\nafter";
        // (input, max, flavor, expected)
        let cases: &[(&str, usize, Flavor, &str)] = &[
            ("short", 100, Flavor::Markdown, "short"),
            ("exactly", 7, Flavor::Plain, "exactly"),
            ("0123456789abcdefghijklmnopqrstuvwxyz", 24, Flavor::Plain, "012345678\n…(truncated)"),
            ("a title that is too long", 10, Flavor::Line, "a title…"),
            ("中文中文中文中文", 20, Flavor::Plain, "中\n…(truncated)"),
            ("中文中文中文中文中文", 22, Flavor::Plain, "中文\n…(truncated)"),
            ("see [the logs](https://ci.example.com/42) now", 36, Flavor::Markdown, "see \n…(truncated)"),
            ("see ![img](https://x.example/a.png) now", 34, Flavor::Markdown, "see \n…(truncated)"),
            ("some **bold text here** and more", 30, Flavor::Markdown, "some **bold t**\n…(truncated)"),
            ("tail **bold text that is long", 22, Flavor::Markdown, "tail \n…(truncated)"),
            ("x **y z", 20, Flavor::Markdown, "x **y z"),
            ("run `cargo test --all` now", 25, Flavor::Markdown, "run `carg`\n…(truncated)"),
            // Cut just after the opening backtick: no empty code span is left.
            ("run `cargo test --all` now", 21, Flavor::Markdown, "run \n…(truncated)"),
            ("ok <font color=\"warning\">failed</font>", 30, Flavor::Markdown, "ok \n…(truncated)"),
            (fence, 40, Flavor::Markdown, "intro\n```\nlet a = 1;\n```\n…(truncated)"),
            ("[a](b) and [c]", 14, Flavor::Markdown, "[a](b) and [c]"),
        ];
        for (input, max, flavor, want) in cases {
            let got = fit(input, *max, *flavor);
            assert_eq!(&got, want, "fit({input:?}, {max}, {flavor:?})");
            assert!(got.len() <= *max, "{got:?} is longer than {max}");
        }
    }

    #[test]
    fn cuts_on_char_boundaries_for_every_budget() {
        let text = "构建失败 🚀 stage **test** 中文 `code` [link](https://e.x/一) 😀😀 end";
        for flavor in [Flavor::Plain, Flavor::Markdown, Flavor::Line] {
            for max in 0..=text.len() {
                let got = fit(text, max, flavor);
                assert!(got.len() <= max, "{flavor:?} {max}: {got:?}");
            }
        }
    }

    #[test]
    fn long_chinese_text_fits_its_byte_budget() {
        let text = "构建失败，请检查日志。".repeat(1000);
        let got = fit(&text, 4096, Flavor::Markdown);
        assert!(got.len() <= 4096 && got.len() > 4096 - 20, "{}", got.len());
        assert!(got.ends_with(MARKER));
    }

    #[test]
    fn emoji_are_never_split() {
        let text = "😀".repeat(100);
        let got = fit(&text, 50, Flavor::Plain);
        assert_eq!(got, format!("{}{MARKER}", "😀".repeat(8)));
    }

    #[test]
    fn fence_cut_in_the_middle_is_closed() {
        let text = format!("## Log\n```\n{}```\ndone", "error: line\n".repeat(500));
        let got = fit(&text, 1000, Flavor::Markdown);
        assert!(got.len() <= 1000);
        assert!(got.ends_with(&format!("\n```{MARKER}")), "{got}");
        assert!(!in_open_fence(&got));
    }

    #[test]
    fn a_cut_right_after_a_closing_fence_keeps_it() {
        let text = "## Log\n```\nerror: line\n```\nafter the block, long enough to be cut";
        let cut_at = text.find("```\nafter").unwrap() + 3;
        let got = fit(text, cut_at + MARKER.len(), Flavor::Markdown);
        assert_eq!(got, format!("{}{MARKER}", &text[..cut_at]));
        assert!(!in_open_fence(&got));
    }

    #[test]
    fn fit_measured_accounts_for_json_escaping() {
        let text = "\"quoted\"\n".repeat(1000);
        let json_len = |t: &str| serde_json::to_string(&serde_json::json!({ "text": t })).unwrap().len();
        let got = fit_measured(&text, Flavor::Plain, 2000, json_len);
        assert!(json_len(&got) <= 2000);
        assert!(json_len(&got) > 1900, "cut more than needed: {}", json_len(&got));
        assert!(got.ends_with(MARKER));
        assert_eq!(fit_measured("small", Flavor::Plain, 2000, json_len), "small");
    }
}
