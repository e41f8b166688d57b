//! The people directory: `[people.<key>]`, and how a rule's `mention.people` and
//! `mention.author` become the ids each platform needs.
//!
//! A person carries one id per platform. Resolving a rule's mention for one channel type puts
//! each named person's id where that platform's message reads it: DingTalk `mobiles`
//! (`dingtalk_mobile`) or `user_ids` (`dingtalk_user_id`); WeCom `user_ids` (`wecom_user_id`)
//! or `mobiles` (`wecom_mobile`); Lark `user_ids` (`lark_open_id`); email `emails` (`email`);
//! the console the person's key, as a readable name. A webhook gets no one. The first id a
//! person has, in that order, is the one used, so nobody is mentioned twice.
//!
//! The event's author (commit author, Jenkins culprit, GitHub actor: `event.author`) is found by
//! comparing it, case-insensitively, with each person's key, `email` and `git` names; an author
//! written `Name <email>` is compared by its name and by its address too.
//!
//! Everything here is pure: no I/O, no clock. `check` is what `herald check` can say before any
//! event arrives; `resolve` is what each accepted event gets.

use std::collections::BTreeMap;

use crate::channels::ChannelKind;
use crate::config::{Mention, Person};
use crate::event::Event;

/// Where a resolved id goes in a [`Mention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Mobile,
    UserId,
    Email,
}

/// One `[people.<key>]` field a channel type reads.
struct Field {
    name: &'static str,
    slot: Slot,
    get: fn(&Person) -> Option<&String>,
}

const DINGTALK: &[Field] = &[
    Field { name: "dingtalk_mobile", slot: Slot::Mobile, get: |p| p.dingtalk_mobile.as_ref() },
    Field { name: "dingtalk_user_id", slot: Slot::UserId, get: |p| p.dingtalk_user_id.as_ref() },
];
const WECOM: &[Field] = &[
    Field { name: "wecom_user_id", slot: Slot::UserId, get: |p| p.wecom_user_id.as_ref() },
    Field { name: "wecom_mobile", slot: Slot::Mobile, get: |p| p.wecom_mobile.as_ref() },
];
const LARK: &[Field] =
    &[Field { name: "lark_open_id", slot: Slot::UserId, get: |p| p.lark_open_id.as_ref() }];
const EMAIL: &[Field] = &[Field { name: "email", slot: Slot::Email, get: |p| p.email.as_ref() }];

/// The fields a channel type reads, in order of preference; `None` when it needs no id (the
/// console names people by key, a webhook names no one).
fn fields(kind: ChannelKind) -> Option<&'static [Field]> {
    match kind {
        ChannelKind::Dingtalk => Some(DINGTALK),
        ChannelKind::Wecom => Some(WECOM),
        ChannelKind::Lark => Some(LARK),
        ChannelKind::Email => Some(EMAIL),
        ChannelKind::Console | ChannelKind::Webhook => None,
    }
}

/// The id a person is mentioned by on this channel type, and where it goes.
fn id_for(key: &str, person: &Person, kind: ChannelKind) -> Option<(Slot, String)> {
    match kind {
        ChannelKind::Console => Some((Slot::UserId, key.to_string())),
        ChannelKind::Webhook => None,
        _ => fields(kind)?.iter().find_map(|f| {
            let id = (f.get)(person)?.trim();
            (!id.is_empty()).then(|| (f.slot, id.to_string()))
        }),
    }
}

/// "a or b", the field names a warning asks for.
fn field_names(fields: &[Field]) -> String {
    fields.iter().map(|f| f.name).collect::<Vec<_>>().join(" or ")
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// The forms an author string is compared by: as written and, for `Name <email>`, the name
/// and the address. Lowercased; empty forms dropped.
fn author_forms(author: &str) -> Vec<String> {
    let author = author.trim();
    let mut forms = vec![author.to_lowercase()];
    if let Some((name, rest)) = author.split_once('<') {
        if let Some(addr) = rest.strip_suffix('>') {
            forms.push(name.trim().trim_matches('"').trim().to_lowercase());
            forms.push(addr.trim().to_lowercase());
        }
    }
    forms.retain(|f| !f.is_empty());
    forms
}

/// `[people]`, ready to resolve mentions.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    people: BTreeMap<String, Person>,
}

impl Directory {
    pub fn new(people: &BTreeMap<String, Person>) -> Directory {
        Directory { people: people.clone() }
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// The key of the person who is the event's author, if any. When several people match,
    /// the first key in alphabetical order wins.
    pub fn author(&self, event: &Event) -> Option<&str> {
        let forms = author_forms(event.author.as_deref()?);
        if forms.is_empty() {
            return None;
        }
        self.people
            .iter()
            .find(|(key, p)| {
                std::iter::once(key.as_str())
                    .chain(p.email.as_deref())
                    .chain(p.git.iter().map(String::as_str))
                    .map(|alias| alias.trim().to_lowercase())
                    .any(|alias| !alias.is_empty() && forms.contains(&alias))
            })
            .map(|(key, _)| key.as_str())
    }

    /// The mention one channel of type `kind` receives for this event: the direct `mobiles`,
    /// `user_ids`, `emails` and `all` kept, then `people`, then the author, each person by the
    /// id that platform needs. Lists are de-duplicated in first-seen order; `people` and
    /// `author` are cleared. A person without an id for `kind` is left out (see [`check`]).
    ///
    /// [`check`]: Directory::check
    pub fn resolve(&self, mention: &Mention, kind: ChannelKind, event: &Event) -> Mention {
        let mut out = self.resolve_people(mention, kind);
        if mention.author {
            if let Some(key) = self.author(event) {
                self.add(&mut out, key, kind);
            }
        }
        out
    }

    /// [`resolve`](Directory::resolve) without an event: `people` resolved, `author` dropped.
    /// This is what a channel's own mention check can see before any event arrives.
    pub fn resolve_people(&self, mention: &Mention, kind: ChannelKind) -> Mention {
        let mut out = Mention { all: mention.all, ..Mention::default() };
        for m in &mention.mobiles {
            push_unique(&mut out.mobiles, m);
        }
        for u in &mention.user_ids {
            push_unique(&mut out.user_ids, u);
        }
        for e in &mention.emails {
            push_unique(&mut out.emails, e);
        }
        for key in &mention.people {
            self.add(&mut out, key, kind);
        }
        out
    }

    /// What `mention.author` can add on a channel of type `kind`: the id of every person who
    /// could be an event's author. A channel's mention check sees from this what an author
    /// mention may bring (a mobile a message type drops, say) before any event arrives.
    pub fn author_candidates(&self, kind: ChannelKind) -> Mention {
        let mut out = Mention::default();
        for key in self.people.keys() {
            self.add(&mut out, key, kind);
        }
        out
    }

    /// Adds one person's id for `kind` to `out`, if they have one.
    fn add(&self, out: &mut Mention, key: &str, kind: ChannelKind) {
        let Some(person) = self.people.get(key) else { return };
        let Some((slot, id)) = id_for(key, person, kind) else { return };
        let list = match slot {
            Slot::Mobile => &mut out.mobiles,
            Slot::UserId => &mut out.user_ids,
            Slot::Email => &mut out.emails,
        };
        push_unique(list, &id);
    }

    /// Warnings for a rule's mention routed to a channel of type `kind`: each person in
    /// `people` without an id for it, and, for `author`, a directory where nobody has one.
    pub fn check(&self, mention: &Mention, kind: ChannelKind) -> Vec<String> {
        let Some(wanted) = fields(kind) else { return vec![] };
        let names = field_names(wanted);
        let mut warnings = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for key in &mention.people {
            if seen.contains(&key.as_str()) {
                continue;
            }
            seen.push(key);
            match self.people.get(key) {
                None => warnings.push(format!("person \"{key}\" is not in [people]")),
                Some(p) if id_for(key, p, kind).is_none() => warnings
                    .push(format!("person \"{key}\" has no {names} for channel type {}", kind.as_str())),
                Some(_) => {}
            }
        }
        if mention.author && !self.people.iter().any(|(k, p)| id_for(k, p, kind).is_some()) {
            warnings.push(format!(
                "mention.author: no person in [people] has a {names}, so the author is never \
                 mentioned on channel type {}",
                kind.as_str()
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;
    use ChannelKind::*;

    fn person(email: &str, git: &[&str], ids: [&str; 5]) -> Person {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Person {
            email: some(email),
            git: git.iter().map(|s| s.to_string()).collect(),
            dingtalk_mobile: some(ids[0]),
            dingtalk_user_id: some(ids[1]),
            wecom_user_id: some(ids[2]),
            wecom_mobile: some(ids[3]),
            lark_open_id: some(ids[4]),
        }
    }

    /// alice has every id; bob has the second choice on DingTalk and WeCom and no Lark id;
    /// carol has no id at all; dave's DingTalk mobile is blank.
    fn directory() -> Directory {
        let mut people = BTreeMap::new();
        let alice = ["138", "", "alice", "", "ou_alice"];
        people
            .insert("alice".into(), person("alice@example.com", &["Alice Liu", "alice@example.com"], alice));
        people.insert("bob".into(), person("bob@example.com", &["Bob Chen"], ["", "bob.dt", "", "139", ""]));
        people.insert("carol".into(), person("", &[], ["", "", "", "", ""]));
        people.insert("dave".into(), person("", &["dave"], ["  ", "dave.dt", "", "", ""]));
        Directory::new(&people)
    }

    fn event(author: Option<&str>) -> Event {
        let mut e = Event::new("flow", Status::Failure, "FAIL", true);
        e.author = author.map(String::from);
        e
    }

    fn mention(mobiles: &[&str], people: &[&str], author: bool) -> Mention {
        Mention {
            people: people.iter().map(|s| s.to_string()).collect(),
            author,
            ..Mention::direct(mobiles, &[], false)
        }
    }

    #[test]
    fn authors_are_found_by_key_email_and_git_name() {
        let d = directory();
        let cases = [
            (Some("Alice Liu"), Some("alice")),
            (Some("  alice LIU "), Some("alice")),
            (Some("alice"), Some("alice")),
            (Some("ALICE@example.com"), Some("alice")),
            (Some("\"Alice Liu\" <someone@else.org>"), Some("alice")),
            (Some("B. Chen <bob@example.com>"), Some("bob")),
            (Some("bob chen"), Some("bob")),
            (Some("Carol"), Some("carol")),
            (Some("Mallory"), None),
            (Some("   "), None),
            (None, None),
        ];
        for (author, want) in cases {
            assert_eq!(d.author(&event(author)), want, "{author:?}");
        }
        assert_eq!(Directory::default().author(&event(Some("alice"))), None);
    }

    #[test]
    fn mentions_resolve_to_each_platforms_id() {
        let d = directory();
        // (mention, kind, author, mobiles, user_ids, emails)
        type Case<'a> = (Mention, ChannelKind, Option<&'a str>, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let both = mention(&[], &["alice", "bob"], false);
        let cases: Vec<Case> = vec![
            (both.clone(), Dingtalk, None, &["138"], &["bob.dt"], &[]),
            (both.clone(), Wecom, None, &["139"], &["alice"], &[]),
            (both.clone(), Lark, None, &[], &["ou_alice"], &[]),
            (both.clone(), Email, None, &[], &[], &["alice@example.com", "bob@example.com"]),
            (both.clone(), Console, None, &[], &["alice", "bob"], &[]),
            (both.clone(), Webhook, None, &[], &[], &[]),
            // Direct ids come first and are not repeated.
            (mention(&["138", "100"], &["alice"], false), Dingtalk, None, &["138", "100"], &[], &[]),
            // The author, alone, with people, repeated, unknown, or not asked for.
            (mention(&[], &[], true), Dingtalk, Some("Bob Chen"), &[], &["bob.dt"], &[]),
            (mention(&[], &["alice"], true), Dingtalk, Some("ALICE@EXAMPLE.COM"), &["138"], &[], &[]),
            (
                mention(&[], &["bob"], true),
                Email,
                Some("Alice Liu <a@b.c>"),
                &[],
                &[],
                &["bob@example.com", "alice@example.com"],
            ),
            (mention(&[], &["alice"], true), Lark, Some("Mallory"), &[], &["ou_alice"], &[]),
            (mention(&[], &[], true), Lark, None, &[], &[], &[]),
            (mention(&[], &[], false), Dingtalk, Some("Bob Chen"), &[], &[], &[]),
            // No id, a blank id (the next field is used), an unknown key, a repeated key.
            (
                mention(&[], &["carol", "dave", "ghost", "dave"], false),
                Dingtalk,
                None,
                &[],
                &["dave.dt"],
                &[],
            ),
            (mention(&[], &["carol"], true), Console, Some("dave"), &[], &["carol", "dave"], &[]),
        ];
        for (i, (m, kind, author, mobiles, user_ids, emails)) in cases.into_iter().enumerate() {
            let got = d.resolve(&m, kind, &event(author));
            let want = Mention {
                mobiles: mobiles.iter().map(|s| s.to_string()).collect(),
                user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
                emails: emails.iter().map(|s| s.to_string()).collect(),
                ..Mention::default()
            };
            assert_eq!(got, want, "case {i}: {m:?} for {kind:?}");
        }
    }

    #[test]
    fn direct_ids_and_all_are_kept_and_static_resolution_drops_the_author() {
        let d = directory();
        let m = Mention {
            user_ids: vec!["zhangsan".into(), "zhangsan".into()],
            emails: vec!["ops@example.com".into()],
            people: vec!["alice".into()],
            author: true,
            ..Mention::direct(&[], &[], true)
        };
        let got = d.resolve(&m, Wecom, &event(Some("bob chen")));
        assert_eq!(got.user_ids, ["zhangsan", "alice"]);
        assert_eq!(got.mobiles, ["139"]);
        assert_eq!(got.emails, ["ops@example.com"]);
        assert!(got.all && got.people.is_empty() && !got.author);

        let fixed = d.resolve_people(&m, Wecom);
        assert_eq!(fixed.user_ids, ["zhangsan", "alice"]);
        assert!(fixed.mobiles.is_empty() && !fixed.author);
    }

    #[test]
    fn check_warns_about_missing_ids() {
        let d = directory();
        let cases: Vec<(Mention, ChannelKind, Vec<&str>)> = vec![
            (mention(&[], &["alice"], false), Dingtalk, vec![]),
            (
                mention(&[], &["alice", "bob"], false),
                Lark,
                vec![r#"person "bob" has no lark_open_id for channel type lark"#],
            ),
            (
                mention(&[], &["carol", "carol"], false),
                Wecom,
                vec![r#"person "carol" has no wecom_user_id or wecom_mobile for channel type wecom"#],
            ),
            (
                mention(&[], &["dave"], false),
                Email,
                vec![r#"person "dave" has no email for channel type email"#],
            ),
            (mention(&[], &["ghost"], false), Dingtalk, vec![r#"person "ghost" is not in [people]"#]),
            (mention(&[], &["carol", "ghost"], true), Console, vec![]),
            (mention(&[], &["carol"], true), Webhook, vec![]),
            (mention(&[], &[], true), Lark, vec![]),
            (mention(&["138"], &[], false), Dingtalk, vec![]),
        ];
        for (m, kind, want) in cases {
            assert_eq!(d.check(&m, kind), want, "{m:?} for {kind:?}");
        }

        let mut nobody = BTreeMap::new();
        nobody.insert("carol".to_string(), Person::default());
        let warnings = Directory::new(&nobody).check(&mention(&[], &[], true), Dingtalk);
        assert_eq!(
            warnings,
            ["mention.author: no person in [people] has a dingtalk_mobile or dingtalk_user_id, so the \
              author is never mentioned on channel type dingtalk"]
        );
        assert_eq!(Directory::default().check(&mention(&[], &[], true), Email).len(), 1);
        assert!(Directory::default().is_empty() && !directory().is_empty());
    }
}
