//! Hold keys: deliveries held back under one key are released together and, when there are
//! several, sent as one summary. A key names why (quiet hours or a group), the rule and
//! channel, what makes it unique (the window's end, the run's values), and a label for people.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::event::Event;

/// Why deliveries are held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    /// Until a rule's quiet window ends.
    Quiet { rule: String, channel: String, until: Millis, label: String },
    /// One run's events, gathered for `group_wait`.
    Group { rule: String, channel: String, values: Vec<String> },
}

impl Hold {
    /// The group a rule's `group_by` puts an event in; absent fields group together as "-".
    pub fn group(rule: &str, channel: &str, fields: &[String], e: &Event) -> Hold {
        let values = fields.iter().map(|f| e.lookup(f).unwrap_or_else(|| "-".to_string())).collect();
        Hold::Group { rule: rule.to_string(), channel: channel.to_string(), values }
    }

    /// The stored key.
    pub fn key(&self) -> String {
        serde_json::to_string(self).expect("a hold serializes")
    }

    /// Reads a stored key back.
    pub fn parse(key: &str) -> Option<Hold> {
        serde_json::from_str(key).ok()
    }

    /// The summary's title and reason for `count` held messages.
    pub fn describe(&self, count: usize) -> (String, String) {
        match self {
            Hold::Quiet { rule, label, .. } => (
                format!("{count} notifications held during quiet hours"),
                format!("Rule \"{rule}\" holds its messages during quiet hours ({label}); these arrived meanwhile"),
            ),
            Hold::Group { values, .. } => (
                format!("{}: {count} updates", values.join(" #")),
                "Every stage and task of this run that reported within the group wait".to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;

    #[test]
    fn keys_round_trip_and_group_by_values() {
        let mut e = Event::new("flow", Status::Success, "SUCCESS", true);
        e.pipeline = Some("payments".into());
        e.build_number = Some(42);
        let fields = vec!["pipeline".to_string(), "build_number".to_string()];
        let a = Hold::group("r", "c", &fields, &e);
        e.task = Some("other task".into());
        assert_eq!(Hold::group("r", "c", &fields, &e).key(), a.key(), "tasks of one run share a key");
        e.build_number = Some(43);
        assert_ne!(Hold::group("r", "c", &fields, &e).key(), a.key());
        assert_eq!(Hold::parse(&a.key()), Some(a.clone()));
        assert_eq!(a.describe(3).0, "payments #42: 3 updates");
    }
}
