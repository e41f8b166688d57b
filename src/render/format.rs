//! Pure formatting behind the helpers: status emoji and colours, durations, truncation,
//! markdown table cells.
//!
//! No Handlebars here, so each rule is a plain function with a table test.

use crate::event::Status;

/// The emoji shown before a status.
pub(super) fn status_emoji(status: Status) -> &'static str {
    match status {
        Status::Success => "✅",
        Status::Failure => "❌",
        Status::Unstable => "⚠️",
        Status::Aborted => "⛔",
        Status::Started => "🚀",
        Status::Running => "🔄",
        Status::Waiting => "⏳",
        Status::Skipped => "⏭️",
        Status::Unknown => "❔",
    }
}

/// The WeCom markdown `<font color>` name for a status: `info` is green, `warning` orange,
/// `comment` grey.
pub(super) fn status_color(status: Status) -> &'static str {
    match status {
        Status::Success => "info",
        Status::Failure => "warning",
        _ => "comment",
    }
}

/// Milliseconds as a short human duration: "45s", "3m 12s", "1h 2m", "2d 3h". Two units at
/// most; a zero second unit is left out ("3m"), and under a second is "0s".
pub(super) fn duration_text(ms: u64) -> String {
    let secs = ms / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small}{small_unit}")
        }
    };
    if d > 0 {
        pair(d, "d", h, "h")
    } else if h > 0 {
        pair(h, "h", m, "m")
    } else if m > 0 {
        pair(m, "m", s, "s")
    } else {
        format!("{s}s")
    }
}

/// Cuts `text` to at most `max` characters, the marker included, at a character boundary.
/// Text that fits is returned unchanged; when even the marker does not fit, the text is cut
/// without one.
pub(super) fn truncate_chars(text: &str, max: usize, marker: &str) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let marker_len = marker.chars().count();
    if marker_len >= max {
        return text.chars().take(max).collect();
    }
    let mut out: String = text.chars().take(max - marker_len).collect();
    out.push_str(marker);
    out
}

/// Text as one markdown block quote: every line quoted, blank ones too, so that a sender's
/// multi-line text (a heading, a rule, a list) stays inside the quote rather than
/// restructuring the message around it.
pub(super) fn md_quote(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|line| match line.trim_end() {
            "" => ">".to_string(),
            line => format!("> {line}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text made safe for one markdown table cell: `|` escaped, line breaks turned into spaces.
pub(super) fn md_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\r' => {}
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_and_colour_for_every_status() {
        let table = [
            (Status::Success, "✅", "info"),
            (Status::Failure, "❌", "warning"),
            (Status::Unstable, "⚠️", "comment"),
            (Status::Aborted, "⛔", "comment"),
            (Status::Started, "🚀", "comment"),
            (Status::Running, "🔄", "comment"),
            (Status::Waiting, "⏳", "comment"),
            (Status::Skipped, "⏭️", "comment"),
            (Status::Unknown, "❔", "comment"),
        ];
        assert_eq!(table.len(), Status::ALL.len());
        for (status, emoji, colour) in table {
            assert_eq!(status_emoji(status), emoji, "{status}");
            assert_eq!(status_color(status), colour, "{status}");
        }
    }

    #[test]
    fn a_quote_holds_every_line_of_the_text() {
        assert_eq!(md_quote("Deploy failed"), "> Deploy failed");
        assert_eq!(
            md_quote("Deploy failed\r\n\n# Rollback\n---\n- [logs](http://x)\n"),
            "> Deploy failed\n>\n> # Rollback\n> ---\n> - [logs](http://x)"
        );
        assert_eq!(md_quote(""), "");
    }

    #[test]
    fn durations() {
        let table = [
            (0, "0s"),
            (999, "0s"),
            (1_000, "1s"),
            (45_000, "45s"),
            (59_999, "59s"),
            (60_000, "1m"),
            (192_000, "3m 12s"),
            (3_599_000, "59m 59s"),
            (3_600_000, "1h"),
            (3_720_000, "1h 2m"),
            (3_721_000, "1h 2m"),
            (86_400_000, "1d"),
            (97_200_000, "1d 3h"),
        ];
        for (ms, want) in table {
            assert_eq!(duration_text(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn truncation() {
        let table = [
            ("short", 10, "…", "short"),
            ("exactly10!", 10, "…", "exactly10!"),
            ("hello world", 8, "…", "hello w…"),
            ("hello world", 8, "...", "hello..."),
            ("hello world", 5, "", "hello"),
            ("构建失败了很多次", 5, "…", "构建失败…"),
            ("emoji ✅✅✅✅", 8, "…", "emoji ✅…"),
            ("hello", 0, "…", ""),
            ("hello", 2, "...", "he"),
            ("", 3, "…", ""),
        ];
        for (text, max, marker, want) in table {
            assert_eq!(truncate_chars(text, max, marker), want, "{text:?} {max} {marker:?}");
        }
    }

    #[test]
    fn table_cells() {
        let table = [
            ("plain", "plain"),
            ("a|b", "a\\|b"),
            ("line one\nline two", "line one line two"),
            ("crlf\r\nend", "crlf end"),
            ("  padded  ", "padded"),
        ];
        for (text, want) in table {
            assert_eq!(md_cell(text), want, "{text:?}");
        }
    }
}
