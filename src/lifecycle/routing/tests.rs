//! Routing rules as a pure function: the first rule that matches decides, whatever follows it; no rule, triage.

use proptest::prelude::*;

use super::*;

fn ticket(origin: &str, contact: &str, body: &str) -> Ticket {
    Ticket {
        id: "t1".into(),
        contact: contact.into(),
        origin: origin.into(),
        body: body.into(),
        date: "2026-12-07T10:00:00Z".into(),
        guild_id: Some("111".into()),
        channel_id: Some("222".into()),
        ..Ticket::default()
    }
}

fn rule(name: &str, change: impl FnOnce(&mut RuleText)) -> Rule {
    let mut text = RuleText { name: name.into(), team: Some(name.into()), ..RuleText::default() };
    change(&mut text);
    text.compile().unwrap()
}

#[test]
fn the_first_rule_that_matches_decides_and_no_rule_leaves_triage() {
    let rules = [
        rule("billing", |r| r.words = vec!["Invoice".into(), "refund".into()]),
        rule("mail", |r| r.origin = Some("email".into())),
        rule("vip", |r| {
            r.contact = Some("@bigcustomer\\.com$".into());
            r.priority = Some("urgent".into());
            r.labels = vec!["vip".into()];
        }),
        rule("discord-help", |r| r.channel = Some("222".into())),
    ];
    let routed = |t: &Ticket| route(&rules, t).map(|r| r.rule);
    assert_eq!(routed(&ticket("Email", "a@b.c", "my INVOICE is wrong")).as_deref(), Some("billing"), "first wins");
    assert_eq!(routed(&ticket("Email", "a@b.c", "invoiced twice")).as_deref(), Some("mail"), "whole words only");
    let vip = route(&rules, &ticket("cli", "ceo@bigcustomer.com", "hello")).unwrap();
    assert_eq!((vip.priority, vip.labels.as_slice()), (Some(Priority::Urgent), &["vip".to_owned()][..]));
    assert_eq!(routed(&ticket("Discord", "pontatot", "hi")).as_deref(), Some("discord-help"));
    let mut elsewhere = ticket("Discord", "pontatot", "hi");
    elsewhere.channel_id = Some("999".into());
    assert_eq!(routed(&elsewhere), None, "no rule matches: triage");
    assert_eq!(route(&[], &elsewhere), None);
}

#[test]
fn a_rule_that_cannot_work_is_refused_with_its_reason() {
    let refused = |change: fn(&mut RuleText)| {
        let mut text = RuleText { name: "r".into(), team: Some("billing".into()), ..RuleText::default() };
        change(&mut text);
        text.compile().unwrap_err()
    };
    assert!(refused(|r| r.pattern = Some("(unclosed".into())).contains("no regular expression"));
    assert!(refused(|r| r.contact = Some("[z-a]".into())).contains("its contact"));
    assert!(refused(|r| r.pattern = Some("a{1000}{1000}{1000}".into())).contains("no regular expression"), "too large");
    assert!(refused(|r| r.team = Some("Billing Team".into())).contains("no team name"));
    assert!(refused(|r| r.priority = Some("asap".into())).contains("none of low"));
    assert!(refused(|r| r.words = vec!["two words".into()]).contains("single words"));
    assert!(refused(|r| r.name = String::new()).contains("needs a name"));
    assert!(refused(|r| r.team = None).contains("sets nothing"));
}

fn any_rule() -> impl Strategy<Value = Rule> {
    let word = prop::sample::select(vec!["invoice", "refund", "crash", "login", "printer"]);
    (
        "[a-z]{1,6}",
        prop::option::of(prop::sample::select(vec!["Discord", "Email", "cli"])),
        prop::collection::vec(word, 0..3),
        prop::option::of(prop::sample::select(vec!["222", "333"])),
    )
        .prop_map(|(name, origin, words, channel)| {
            rule(&name, |r| {
                r.origin = origin.map(str::to_owned);
                r.words = words.into_iter().map(str::to_owned).collect();
                r.channel = channel.map(str::to_owned);
            })
        })
}

fn any_ticket() -> impl Strategy<Value = Ticket> {
    let words =
        prop::collection::vec(prop::sample::select(vec!["Invoice", "refund!", "crash", "hello", "printer,"]), 0..6);
    (prop::sample::select(vec!["Discord", "email", "cli"]), words)
        .prop_map(|(origin, words)| ticket(origin, "x", &words.join(" ")))
}

proptest! {
    /// The rule that decides is the first that matches; rules after it never change the decision; with none
    /// matching, the ticket stays in triage.
    #[test]
    fn props_first_match_wins_and_later_rules_never_change_it(
        rules in prop::collection::vec(any_rule(), 0..8),
        more in prop::collection::vec(any_rule(), 0..4),
        ticket in any_ticket(),
    ) {
        let first = rules.iter().position(|rule| rule.matches(&ticket));
        let routed = route(&rules, &ticket);
        prop_assert_eq!(routed.as_ref().map(|r| &r.rule), first.map(|i| &rules[i].name));
        let longer: Vec<Rule> = rules.iter().chain(&more).cloned().collect();
        if routed.is_some() {
            prop_assert_eq!(route(&longer, &ticket), routed);
        }
        prop_assert_eq!(route(&[], &ticket), None);
    }
}

#[test]
fn a_suggestion_needs_three_of_the_five_nearest_to_agree_and_is_never_what_the_ticket_has() {
    use crate::lifecycle::TicketState;
    let closed = |labels: &[&str], team: Option<&str>| TicketState {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        team: team.map(Into::into),
        ..TicketState::default()
    };
    let ticket = TicketState { labels: ["printer".to_owned()].into(), ..TicketState::default() };
    let two = [closed(&["hardware"], Some("support")), closed(&["hardware"], Some("support")), closed(&[], None)];
    assert_eq!(suggest(&ticket, &two), Suggested::default(), "two agreeing are not enough");
    let three = [
        closed(&["hardware", "printer"], Some("support")),
        closed(&["hardware", "printer"], Some("support")),
        closed(&["hardware", "printer"], Some("support")),
    ];
    let suggested = suggest(&ticket, &three);
    assert_eq!(
        suggested,
        Suggested { labels: vec!["hardware".into()], team: Some("support".into()) },
        "not printer: it has it"
    );
    let in_support = TicketState { team: Some("support".into()), ..ticket.clone() };
    assert_eq!(suggest(&in_support, &three).team, None, "its own team is no suggestion");
    // Only the nearest five count: three more agreeing beyond them change nothing.
    let far: Vec<TicketState> = [two.to_vec(), vec![closed(&[], None), closed(&[], None)], three.to_vec()].concat();
    assert_eq!(suggest(&ticket, &far), Suggested::default());
}
