//! Config values with units: durations (`"10m"`, `"24h"`, `"500ms"`) and rates (`"20/min"`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the human way, e.g. `"30s"`, `"10m"`, `"24h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(HumanDuration).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration \"{s}\" ({e}); write e.g. \"30s\", \"10m\", \"24h\""
            ))
        })
    }
}

/// At most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub const fn per_second(count: u32) -> Rate {
        Rate { count, per: Duration::from_secs(1) }
    }
    pub const fn per_minute(count: u32) -> Rate {
        Rate { count, per: Duration::from_secs(60) }
    }

    /// Parses `"20/min"`, `"5/s"`, `"100/h"` or `"20/30s"`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        let (count, per) =
            s.split_once('/').ok_or_else(|| format!("invalid rate \"{s}\"; write e.g. \"20/min\""))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid rate \"{s}\": the count must be a positive integer"))?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("invalid rate \"{s}\": unknown period \"{other}\""))?,
        };
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rate::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("20/min"), Ok(Rate::per_minute(20)));
        assert_eq!(Rate::parse("5/s"), Ok(Rate::per_second(5)));
        assert_eq!(Rate::parse("100 / h"), Ok(Rate { count: 100, per: Duration::from_secs(3600) }));
        assert_eq!(Rate::parse("20/30s"), Ok(Rate { count: 20, per: Duration::from_secs(30) }));
        for bad in ["20", "0/min", "x/min", "20/fortnight", "20/0s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}
