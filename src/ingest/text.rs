//! Small normalizations shared by the format parsers: branch names, commit titles and URLs.
//!
//! Pure string functions only; they never invent a value: an input that normalizes to nothing
//! gives `None`.

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
