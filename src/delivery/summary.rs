//! Summaries: several held-back messages for one channel merged into one message that says how
//! many it covers, why, and lists each with a link to its build. Three things hold messages
//! back: a robot's rate limit (a backlog that would wait past `delivery.max_wait`), a rule's
//! quiet hours, and a rule's grouping of one run's events. Nothing is dropped: every merged
//! delivery is kept, in state `merged`, pointing at its summary.

use std::time::Duration;

use crate::channels::{limit, Channel, Message, Prepare};
use crate::config::{Mention, Rate};
use crate::event::{Event, Status};
use crate::outbox::{Delivery, Headline, Mentioned};
use crate::render::{self, ContextExtras};

/// The rule name recorded on summary deliveries.
pub const SUMMARY_RULE: &str = "(rate-limit summary)";

/// The template summaries render with (`templates/summary*.hbs`).
pub const SUMMARY_TEMPLATE: &str = "summary";

/// Statuses from most to least alarming: a summary takes the worst of its items.
const SEVERITY: [Status; 9] = [
    Status::Failure,
    Status::Aborted,
    Status::Unstable,
    Status::Unknown,
    Status::Running,
    Status::Started,
    Status::Waiting,
    Status::Skipped,
    Status::Success,
];

/// A summary built for one robot.
pub struct Summary {
    pub message: Message,
    pub headline: Headline,
}

/// Why a rate-limited backlog was merged.
pub fn rate_limit_reason(rates: &[Rate], max_wait: Duration) -> String {
    let limit = rates.iter().map(Rate::to_string).collect::<Vec<_>>().join(", ");
    format!(
        "This robot's rate limit ({}) would have held them back for more than {}, so Herald merged them",
        if limit.is_empty() { "none".to_string() } else { limit },
        humantime::format_duration(max_wait)
    )
}

/// Builds the summary of the first of `items` (oldest first) that it can list in full within
/// the channel's size limit, and says how many that is (at least one). `describe(n)` gives the
/// title and reason for `n` items. The rest are left for the next summary, so every merged
/// message appears in one, not only in a count.
pub fn build_fitting(
    channel: &dyn Channel,
    items: &[Delivery],
    describe: impl Fn(usize) -> (String, String),
) -> (Summary, usize) {
    let attempt = |n: usize| {
        let (title, reason) = describe(n);
        let built = build(channel, &items[..n], &title, &reason);
        // Cut if it holds more cut marks than its items' own lines brought with them.
        let brought: usize = items[..n].iter().map(|d| limit::cut_marks(&d.headline.text)).sum();
        let marks = limit::cut_marks(&serde_json::to_string(&built.message.body).unwrap_or_default());
        (built, marks > brought)
    };
    let (built, cut) = attempt(items.len());
    if !cut || items.len() <= 1 {
        return (built, items.len());
    }
    // The largest count that fits: `fits` lists in full, `cut` does not.
    let (mut fits, mut cut) = (1, items.len());
    let mut best = attempt(1).0;
    while cut - fits > 1 {
        let mid = fits + (cut - fits) / 2;
        match attempt(mid) {
            (built, false) => (fits, best) = (mid, built),
            (_, true) => cut = mid,
        }
    }
    (best, fits)
}

/// Builds the summary of `items` through `channel`; `title` and `reason` head the message.
pub fn build(channel: &dyn Channel, items: &[Delivery], title: &str, reason: &str) -> Summary {
    let worst = items
        .iter()
        .filter_map(|d| Status::parse(&d.headline.status))
        .min_by_key(|s| SEVERITY.iter().position(|x| x == s))
        .unwrap_or(Status::Unknown);
    let count = items.len();
    let headlines: Vec<&Headline> = items.iter().map(|d| &d.headline).collect();
    let (event, ctx) = summary_context(channel.name(), worst, &headlines, title, reason);
    // Whoever a covered message would have mentioned is mentioned by the summary.
    let mut mention = Mention::default();
    for d in items {
        mention.merge(&Mention::from(&d.headline.mentions));
    }
    let message = channel.prepare(&Prepare::with_context(&event, ctx, SUMMARY_TEMPLATE, &mention));
    let headline = Headline {
        text: format!("🔔 {count} notifications in one message"),
        url: None,
        status: worst.to_string(),
        covers: Some(count),
        mentions: Mentioned::from(&mention),
    };
    Summary { message, headline }
}

/// The event a summary of these headlines is sent as, and its template context: the event's,
/// with `summary` (`count`, `title`, `reason`, `items`).
fn summary_context(
    channel: &str,
    worst: Status,
    headlines: &[&Headline],
    title: &str,
    reason: &str,
) -> (Event, serde_json::Value) {
    let count = headlines.len();
    let mut event = Event::new("herald", worst, "summary", true);
    event.pipeline = Some(format!("{count} notifications"));
    event.message = Some(headlines.iter().map(|h| h.text.as_str()).collect::<Vec<_>>().join("\n"));
    let mut ctx = render::context(&event, &ContextExtras { channel: Some(channel), ..Default::default() });
    ctx["summary"] =
        serde_json::json!({ "count": count, "title": title, "reason": reason, "items": headlines });
    (event, ctx)
}

/// A summary's template context for `herald check`: two sample messages, one with a link.
pub fn sample_context(channel: &str) -> serde_json::Value {
    let item = |text: &str, url: Option<&str>, status: Status| Headline {
        text: text.to_string(),
        url: url.map(str::to_string),
        status: status.to_string(),
        covers: None,
        mentions: Mentioned::default(),
    };
    let items = [
        item(
            "❌ payments-api #42 failure",
            Some("https://ci.example.com/job/payments-api/42/"),
            Status::Failure,
        ),
        item("✅ payments-api #43 success", None, Status::Success),
    ];
    let headlines: Vec<&Headline> = items.iter().collect();
    let reason = rate_limit_reason(&[Rate::per_minute(20)], Duration::from_secs(60));
    summary_context(channel, Status::Failure, &headlines, "2 notifications in one message", &reason).1
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::channels::{self, ChannelDeps, MessageBody};
    use crate::outbox::NewDelivery;
    use crate::render::Renderer;

    fn dingtalk() -> Arc<dyn Channel> {
        channel("[channels.ding]\ntype = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=t\"\n")
    }

    fn channel(text: &str) -> Arc<dyn Channel> {
        let cfg = crate::config::parse(text, &|_| None).expect("valid config");
        let deps = ChannelDeps {
            renderer: Arc::new(Renderer::new(None).expect("templates")),
            http: reqwest::Client::new(),
        };
        channels::build(&cfg.channels[0], &deps).expect("channel")
    }

    fn item(i: usize, text: &str) -> Delivery {
        let new = NewDelivery {
            id: format!("d{i}"),
            rule: "r".into(),
            channel: "ding".into(),
            message: Message { body: MessageBody::Text { text: String::new() }, template_errors: vec![] },
            headline: Headline { text: text.into(), status: "failure".into(), ..Default::default() },
            hold: None,
            due_at: None,
            repeat: None,
        };
        Delivery::stored(new, "e", 0)
    }

    fn describe(n: usize) -> (String, String) {
        (format!("{n} notifications in one message"), "held".into())
    }

    #[test]
    fn a_summary_covers_what_it_can_list_in_full() {
        let ding = dingtalk();
        let items: Vec<Delivery> =
            (0..600).map(|i| item(i, &format!("❌ payments-api #{i} failure"))).collect();
        let (built, covered) = build_fitting(ding.as_ref(), &items, describe);
        assert!((100..600).contains(&covered), "covered {covered}");
        let body = serde_json::to_string(&built.message.body).unwrap();
        assert_eq!(limit::cut_marks(&body), 0, "listed in full");
        assert!(
            body.contains(&format!("#{} failure", covered - 1))
                && !body.contains(&format!("#{covered} failure"))
        );
        let (_, one_more) = build_fitting(ding.as_ref(), &items[..covered + 1], describe);
        assert_eq!(one_more, covered, "one more line does not fit");
    }

    #[test]
    fn a_lark_card_summary_has_its_title_in_the_header_and_no_markdown_heading() {
        let lark = channel(
            "[channels.lark]\ntype = \"lark\"\nurl = \"https://open.feishu.cn/open-apis/bot/v2/hook/t\"\n",
        );
        let items: Vec<Delivery> =
            (0..3).map(|i| item(i, &format!("❌ payments-api #{i} failure"))).collect();
        let built = build(lark.as_ref(), &items, "3 notifications in one message", "held");
        let body = serde_json::to_value(&built.message.body).unwrap();
        let text = body.to_string();
        assert!(!text.contains("####"), "lark_md has no headings: {text}");
        assert!(text.contains("3 notifications in one message"), "the header: {text}");
        for i in 0..3 {
            assert!(text.contains(&format!("#{i} failure")), "{text}");
        }
    }

    #[test]
    fn a_line_that_was_cut_before_is_not_taken_for_a_cut_summary() {
        let ding = dingtalk();
        let items: Vec<Delivery> =
            (0..5).map(|i| item(i, &format!("#{i} {}", limit::MARKER.trim()))).collect();
        let (_, covered) = build_fitting(ding.as_ref(), &items, describe);
        assert_eq!(covered, 5);
    }
}
