//! Small normalizations shared by the format parsers: branch names, commit titles, URLs and
//! timestamps.
//!
//! Pure string functions only; they never invent a value: an input that normalizes to nothing
//! gives `None`.

use chrono::{DateTime, NaiveDateTime, Utc};

/// A branch name without `refs/heads/`, `refs/remotes/origin/` or `origin/` in front.
///
/// A tag ref (`refs/tags/v1.2`) is kept whole, so that it still reads as a tag.
pub(crate) fn normalize_branch(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let name = ["refs/heads/", "refs/remotes/origin/", "origin/"]
        .iter()
        .find_map(|prefix| raw.strip_prefix(prefix))
        .unwrap_or(raw);
    non_blank(name)
}

/// The first non-blank line of a commit message, trimmed.
pub(crate) fn first_line(message: &str) -> Option<String> {
    message.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
}

/// `Some(s)` unless `s` is empty or only whitespace.
pub(crate) fn non_blank(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}

/// The Jenkins job path in a job URL: `job/payments/job/api/` → `payments/api`.
///
/// Every segment that follows a `job` segment is a folder or job name (percent-decoded); other
/// segments (host, build number, `view/...`) are skipped. `None` when there is no `job/` segment.
pub(crate) fn jenkins_job_path(url: &str) -> Option<String> {
    let segments: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < segments.len() {
        if segments[i] == "job" && i + 1 < segments.len() {
            let name = percent_encoding::percent_decode_str(segments[i + 1]).decode_utf8_lossy();
            names.push(name.into_owned());
            i += 2;
        } else {
            i += 1;
        }
    }
    if names.is_empty() {
        None
    } else {
        Some(names.join("/"))
    }
}

/// A URL with one trailing `/{suffix}` (and a trailing slash after it) removed, if present:
/// `…/builders/3/builds/57` without `builds/57` is `…/builders/3`.
pub(crate) fn strip_url_suffix(url: &str, suffix: &str) -> Option<String> {
    let trimmed = url.strip_suffix('/').unwrap_or(url);
    let base = trimmed.strip_suffix(suffix)?.strip_suffix('/')?;
    non_blank(base)
}

/// A timestamp in RFC 3339 (`2024-06-12T09:42:03Z`, `2021-02-23T02:41:37.886Z`, with any
/// offset) or GitLab's older `2024-06-12 09:42:01 UTC` / `… +0200`. `None` when it is neither:
/// timestamps only feed durations, and an unreadable one leaves the duration unknown.
pub(crate) fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    if let Some(naive) = raw.strip_suffix(" UTC") {
        let t = NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S%.f").ok()?;
        return Some(t.and_utc());
    }
    DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f %z").ok().map(|t| t.with_timezone(&Utc))
}

/// Milliseconds from `start` to `end` (see [`parse_time`]); `None` if either is unreadable or
/// `end` comes first.
pub(crate) fn millis_between(start: &str, end: &str) -> Option<u64> {
    let ms = (parse_time(end)? - parse_time(start)?).num_milliseconds();
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_normalization_table() {
        let cases = [
            ("origin/main", Some("main")),
            ("refs/heads/main", Some("main")),
            ("refs/remotes/origin/release/1.x", Some("release/1.x")),
            ("origin/feature/origin/x", Some("feature/origin/x")),
            ("main", Some("main")),
            ("feature/login", Some("feature/login")),
            ("refs/tags/v1.2.0", Some("refs/tags/v1.2.0")),
            (" master ", Some("master")),
            ("origin/", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_branch(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn first_line_skips_blank_lines_and_trims() {
        assert_eq!(first_line("fix: round refunds\n\nlong body").as_deref(), Some("fix: round refunds"));
        assert_eq!(first_line("\n  title  \r\nmore").as_deref(), Some("title"));
        assert_eq!(first_line(" \n\t\n"), None);
    }

    #[test]
    fn jenkins_job_paths() {
        let cases = [
            ("job/acme-web/job/main/", Some("acme-web/main")),
            ("job/acme-api/", Some("acme-api")),
            (
                "https://ci.example.com/job/payments/job/payments-service/214/",
                Some("payments/payments-service"),
            ),
            ("job/my%20job/", Some("my job")),
            ("job/job/", Some("job")),
            ("view/all/", None),
            ("", None),
        ];
        for (url, want) in cases {
            assert_eq!(jenkins_job_path(url).as_deref(), want, "{url:?}");
        }
    }

    #[test]
    fn timestamps_in_both_gitlab_formats_and_rfc3339() {
        let cases = [
            ("2024-06-12 09:42:01 UTC", "2024-06-12 09:47:19 UTC", Some(318_000)),
            ("2021-02-23T02:41:37.886Z", "2021-02-23T02:41:40.000Z", Some(2_114)),
            ("2024-06-12 09:42:01 UTC", "2024-06-12T11:42:02+02:00", Some(1_000)),
            ("2024-06-12 11:42:01 +0200", "2024-06-12T09:42:01Z", Some(0)),
            ("2024-06-12T09:42:03Z", "2024-06-12T09:47:35Z", Some(332_000)),
            ("2024-06-12T09:47:35Z", "2024-06-12T09:42:03Z", None),
            ("yesterday", "2024-06-12T09:42:03Z", None),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", Some(0)),
        ];
        for (start, end, want) in cases {
            assert_eq!(millis_between(start, end), want, "{start} → {end}");
        }
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn url_suffixes() {
        let url = "https://buildbot.example.com/#/builders/3/builds/57";
        assert_eq!(
            strip_url_suffix(url, "builds/57").as_deref(),
            Some("https://buildbot.example.com/#/builders/3")
        );
        assert_eq!(strip_url_suffix("https://ci/x/12/", "12").as_deref(), Some("https://ci/x"));
        assert_eq!(strip_url_suffix(url, "builds/58"), None);
        assert_eq!(strip_url_suffix("https://ci/x/112", "12"), None);
    }
}
