//! The fleet: one mock of every channel (DingTalk, WeCom, Lark, a webhook receiver and an SMTP
//! server) and a Herald routing to all of them with rules like a real team's.

use std::collections::HashMap;

use herald::delivery::RetryPolicy;
use serde_json::{json, Value};

use super::{
    Herald, ADMIN_TOKEN, AUDIT_KEY, AUDIT_TOKEN, AUDIT_URL_TOKEN, DT_SECRET, FLOW_HOOK_TOKEN, KEYWORD,
    LARK_SECRET, LARK_USER, MOBILE, SMTP_PASSWORD, SMTP_USER, WECOM_USER,
};
use crate::support::robots::{MockOptions, MockRobot, Platform};
use crate::support::smtp::{Mode, SmtpSink};
use crate::support::webhook_sink::WebhookSink;

// ---------------------------------------------------------------------------------------------
// The fleet: one of every channel, with rules like a real team's
// ---------------------------------------------------------------------------------------------

const FLEET_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_token = "${ADMIN_TOKEN}"

[delivery]
dedup_window = "0s"

[sources.flow]
token = "${FLOW_HOOK_TOKEN}"

[channels.ding]
type = "dingtalk"
url = "${DT_URL}"
secret = "${DT_SECRET}"
keyword = "${KEYWORD}"
msgtype = "markdown"

[channels.wecom]
type = "wecom"
url = "${WECOM_URL}"
msgtype = "markdown"

[channels.lark]
type = "feishu"
url = "${LARK_URL}"
secret = "${LARK_SECRET}"
msgtype = "interactive"

[channels.audit]
type = "webhook"
url = "${AUDIT_URL}"
secret = "${AUDIT_KEY}"
headers = { Authorization = "Bearer ${AUDIT_TOKEN}" }

[channels.mail]
type = "email"
smtp = "smtp://${SMTP_USER}:${SMTP_PASSWORD}@127.0.0.1:${SMTP_PORT}"
from = "Herald CI <ci@example.com>"
to = ["dev@example.com"]

[[rules]]
name = "payments failures to dingtalk"
channels = ["ding"]
[rules.when]
source = "flow"
status = ["failure", "aborted"]
final = true
pipeline = "payments-*"
[rules.mention]
mobiles = ["${MOBILE}"]

[[rules]]
name = "successes"
channels = ["ding", "mail"]
[rules.when]
status = "success"

[[rules]]
name = "wecom team"
channels = ["wecom"]
[rules.when]
status = "failure"
branch = ["main", "master"]
[rules.mention]
user_ids = ["${WECOM_USER}"]

[[rules]]
name = "lark team"
channels = ["lark"]
[rules.when]
status = ["failure"]
params = { DEPLOY_ENV = "stag*" }
[rules.mention]
user_ids = ["${LARK_USER}"]
all = true

[[rules]]
name = "audit and mail"
channels = ["audit", "mail"]
"#;

/// The routes `flow-task-fail.json` takes through `FLEET_CONFIG`, in rule order.
pub(crate) fn fleet_routes() -> Value {
    json!([
        {"rule": "payments failures to dingtalk", "channel": "ding"},
        {"rule": "wecom team", "channel": "wecom"},
        {"rule": "lark team", "channel": "lark"},
        {"rule": "audit and mail", "channel": "audit"},
        {"rule": "audit and mail", "channel": "mail"},
    ])
}

/// Every mock, and a Herald routing to all of them.
pub(crate) struct Fleet {
    pub(crate) ding: MockRobot,
    pub(crate) wecom: MockRobot,
    pub(crate) lark: MockRobot,
    pub(crate) audit: WebhookSink,
    pub(crate) smtp: SmtpSink,
    pub(crate) herald: Herald,
    /// The SMTP password in Herald's config (the sink requires `SMTP_PASSWORD`).
    smtp_password: String,
}

impl Fleet {
    pub(crate) async fn start(smtp_password: &str, retry: RetryPolicy) -> Fleet {
        let ding = MockRobot::start(Platform::Dingtalk, MockOptions::signed(DT_SECRET).with_keyword(KEYWORD));
        let wecom = MockRobot::start(Platform::Wecom, MockOptions::default());
        let lark = MockRobot::start(Platform::Lark, MockOptions::signed(LARK_SECRET));
        let audit = WebhookSink::start(Some(AUDIT_KEY));
        let smtp = SmtpSink::start(Mode::Plain, Some((SMTP_USER, SMTP_PASSWORD)), None);
        let env = HashMap::from([
            ("FLOW_HOOK_TOKEN", FLOW_HOOK_TOKEN.to_string()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
            ("DT_URL", ding.url()),
            ("DT_SECRET", DT_SECRET.to_string()),
            ("KEYWORD", KEYWORD.to_string()),
            ("WECOM_URL", wecom.url()),
            ("LARK_URL", lark.url()),
            ("LARK_SECRET", LARK_SECRET.to_string()),
            ("AUDIT_URL", audit.url(&format!("/ci/events?token={AUDIT_URL_TOKEN}"))),
            ("AUDIT_KEY", AUDIT_KEY.to_string()),
            ("AUDIT_TOKEN", AUDIT_TOKEN.to_string()),
            ("SMTP_USER", SMTP_USER.to_string()),
            ("SMTP_PASSWORD", smtp_password.to_string()),
            ("SMTP_PORT", smtp.port.to_string()),
            ("MOBILE", MOBILE.to_string()),
            ("WECOM_USER", WECOM_USER.to_string()),
            ("LARK_USER", LARK_USER.to_string()),
        ]);
        let herald = Herald::start(FLEET_CONFIG, &env, retry).await;
        Fleet { ding, wecom, lark, audit, smtp, herald, smtp_password: smtp_password.to_string() }
    }

    /// Every credential in the fleet's config.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let whsec_b64 = AUDIT_KEY.trim_start_matches("whsec_");
        let mut s: Vec<String> = [
            DT_SECRET,
            LARK_SECRET,
            AUDIT_KEY,
            whsec_b64,
            AUDIT_TOKEN,
            AUDIT_URL_TOKEN,
            FLOW_HOOK_TOKEN,
            ADMIN_TOKEN,
            SMTP_PASSWORD,
            self.ding.token(),
            self.wecom.token(),
            self.lark.token(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        s.push(self.smtp_password.clone());
        s
    }

    pub(crate) async fn stop(self) {
        self.herald.stop().await;
    }
}
