//! Quiet hours: a daily window in a time zone (possibly across midnight), on chosen days,
//! during which a rule's messages are held and sent as one summary when the window ends.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::config::{ConfigError, QuietConfig};
use crate::event::Status;

/// A compiled `[rules.quiet]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quiet {
    from: NaiveTime,
    to: NaiveTime,
    tz: Tz,
    /// The days a window starts on.
    days: Vec<Weekday>,
    /// Statuses that are sent at once, quiet or not.
    pub bypass: Vec<Status>,
    /// For messages: "22:00–08:00 Asia/Shanghai".
    pub label: String,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

impl Quiet {
    /// Compiles the window; errors name the key under `path`.
    pub fn compile(cfg: &QuietConfig, path: &str) -> Result<Quiet, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let time = |key: &str, v: &str, errors: &mut Vec<ConfigError>| {
            NaiveTime::parse_from_str(v, "%H:%M").map_err(|_| {
                errors.push(ConfigError::new(
                    format!("{path}.{key}"),
                    format!("\"{v}\" is not a time like \"22:00\""),
                ))
            })
        };
        let from = time("from", &cfg.from, &mut errors);
        let to = time("to", &cfg.to, &mut errors);
        let tz_name = cfg.tz.as_deref().unwrap_or("UTC");
        let tz = tz_name.parse::<Tz>().map_err(|_| {
            errors.push(ConfigError::new(format!("{path}.tz"), format!("unknown time zone \"{tz_name}\"")))
        });
        let mut days = Vec::new();
        for (i, d) in cfg.days.iter().enumerate() {
            match DAYS.iter().find(|(name, _)| d.to_ascii_lowercase().starts_with(name)) {
                Some((_, wd)) => days.push(*wd),
                None => errors.push(ConfigError::new(
                    format!("{path}.days[{i}]"),
                    format!("\"{d}\" is not a day (mon … sun)"),
                )),
            }
        }
        if days.is_empty() {
            days = DAYS.iter().map(|(_, d)| *d).collect();
        }
        let mut bypass = Vec::new();
        for (i, s) in cfg.bypass.iter().enumerate() {
            match Status::parse(s) {
                Some(st) => bypass.push(st),
                None => errors
                    .push(ConfigError::new(format!("{path}.bypass[{i}]"), format!("unknown status \"{s}\""))),
            }
        }
        match (from, to, tz) {
            (Ok(from), Ok(to), Ok(tz)) if errors.is_empty() => {
                if from == to {
                    return Err(vec![ConfigError::new(
                        format!("{path}.to"),
                        "the window is empty (from == to)",
                    )]);
                }
                let label = format!("{}–{} {}", cfg.from, cfg.to, tz_name);
                Ok(Quiet { from, to, tz, days, bypass, label })
            }
            _ => Err(errors),
        }
    }

    /// When `now` falls in a quiet window, the instant the window ends.
    pub fn until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz).date_naive();
        // A window that crosses midnight may have started yesterday.
        [local - Duration::days(1), local]
            .into_iter()
            .find_map(|day| self.window(day).filter(|(s, e)| *s <= now && now < *e).map(|(_, e)| e))
    }

    /// The window starting on `day`, if `day` is one of the configured days.
    fn window(&self, day: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.days.contains(&day.weekday()) {
            return None;
        }
        let end_day = if self.to > self.from { day } else { day.succ_opt()? };
        // In a DST gap the local time does not exist; the window then starts or ends an hour on.
        let at = |d: NaiveDate, t: NaiveTime| {
            let naive = d.and_time(t);
            self.tz
                .from_local_datetime(&naive)
                .earliest()
                .or_else(|| self.tz.from_local_datetime(&(naive + Duration::hours(1))).earliest())
                .map(|x| x.with_timezone(&Utc))
        };
        Some((at(day, self.from)?, at(end_day, self.to)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(from: &str, to: &str, days: &[&str]) -> Quiet {
        let cfg = QuietConfig {
            from: from.into(),
            to: to.into(),
            tz: Some("Asia/Shanghai".into()),
            days: days.iter().map(|d| d.to_string()).collect(),
            bypass: vec!["failure".into()],
        };
        Quiet::compile(&cfg, "q").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn overnight_window_in_a_time_zone() {
        let q = quiet("22:00", "08:00", &[]);
        // 2026-11-20 is a Friday. 22:30 in Shanghai is 14:30 UTC.
        assert_eq!(q.until(utc("2026-11-20T14:30:00Z")), Some(utc("2026-11-21T00:00:00Z")));
        // 03:00 Saturday in Shanghai: the window began the evening before.
        assert_eq!(q.until(utc("2026-11-20T19:00:00Z")), Some(utc("2026-11-21T00:00:00Z")));
        // 08:00 sharp is outside; noon is outside.
        assert_eq!(q.until(utc("2026-11-21T00:00:00Z")), None);
        assert_eq!(q.until(utc("2026-11-21T04:00:00Z")), None);
        assert_eq!(q.bypass, vec![Status::Failure]);
    }

    #[test]
    fn days_are_the_days_a_window_starts() {
        let q = quiet("22:00", "08:00", &["fri"]);
        assert!(q.until(utc("2026-11-20T19:00:00Z")).is_some(), "Saturday 03:00 belongs to Friday's window");
        assert!(
            q.until(utc("2026-11-21T15:00:00Z")).is_none(),
            "Saturday 23:00: no window starts on Saturday"
        );
    }

    #[test]
    fn daytime_window() {
        let q = quiet("12:00", "13:30", &["monday"]);
        // 2026-11-23 is a Monday; 12:15 Shanghai = 04:15 UTC.
        assert_eq!(q.until(utc("2026-11-23T04:15:00Z")), Some(utc("2026-11-23T05:30:00Z")));
        assert_eq!(q.until(utc("2026-11-24T04:15:00Z")), None);
    }

    #[test]
    fn bad_settings_are_reported_together() {
        let cfg = QuietConfig {
            from: "25:00".into(),
            to: "8".into(),
            tz: Some("Mars/Olympus".into()),
            days: vec!["funday".into()],
            bypass: vec!["broken".into()],
        };
        let errors: Vec<String> =
            Quiet::compile(&cfg, "rules[0].quiet").unwrap_err().iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].starts_with("rules[0].quiet.from: \"25:00\" is not a time"));
    }
}
