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
        prop::option::of(prop::sample::select(vec!["Discord", "Email", "email"])),
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

/// Found by an attack (#27), failing first: a rule may list any number of labels, and a ticket it routes starts
/// with all of them, more than the [`crate::lifecycle::LABELS_MAX`] any ticket may carry (an `add_label` past that
/// bound is refused).
#[test]
fn a_rule_with_more_labels_than_a_ticket_may_carry_is_refused() {
    let max = crate::lifecycle::LABELS_MAX;
    let text = RuleText {
        name: "many".into(),
        labels: (0..=max).map(|n| format!("label-{n}")).collect(),
        ..RuleText::default()
    };
    assert!(text.compile().is_err(), "a rule giving a new ticket {} labels was compiled; at most {max}", max + 1);
}

/// Found by an attack (#27), failing first: a ticket's origin is `Discord` or `Email` (aufbereitung takes no other),
/// yet a rule naming another one (`cli`, which the rule's own documentation lists, or `mail`) compiles and silently
/// matches no ticket ever, where a rule that cannot work should stop franz.
#[test]
fn a_rule_naming_an_origin_no_ticket_has_is_refused() {
    let taken: Vec<&str> = ["cli", "mail", "Emial"]
        .into_iter()
        .filter(|origin| {
            let text = RuleText {
                name: "r".into(),
                origin: Some((*origin).into()),
                team: Some("support".into()),
                ..RuleText::default()
            };
            text.compile().is_ok()
        })
        .collect();
    assert!(taken.is_empty(), "origins none of {:?}, yet compiled: {taken:?}", crate::schema::ORIGINS);
}

/// Found by an attack (#27), failing first: a word the text is never split into (one with `.`, `+`, or a Devanagari
/// virama, which `char::is_alphanumeric` does not count) is accepted, but never matches the text that holds exactly
/// that word: the rule is silently dead. Either refuse such a word, or match it.
#[test]
fn a_word_the_text_is_never_split_into_is_refused_or_matches() {
    let cases = [("node.js", "node.js crashes on start"), ("c++", "my C++ build fails"), ("प्रिंटर", "मेरा प्रिंटर खराब है")];
    let dead: Vec<&str> = cases
        .into_iter()
        .filter(|(word, body)| {
            let text = RuleText {
                name: "r".into(),
                words: vec![(*word).into()],
                team: Some("support".into()),
                ..RuleText::default()
            };
            text.compile().is_ok_and(|rule| !rule.matches(&ticket("Discord", "x", body)))
        })
        .map(|(word, _)| word)
        .collect();
    assert!(dead.is_empty(), "accepted, yet never matching the text that holds them: {dead:?}");
}

/// Found by an attack (#27), failing first: words match "without case" by `to_lowercase`, not by Unicode case
/// folding: the rule word `Straße` misses `STRASSE` (its upper case), and `strasse` misses `Straße`.
#[test]
fn words_match_without_case_as_unicode_case_folding_does() {
    let rule = |word: &str| {
        RuleText { name: "r".into(), words: vec![word.into()], team: Some("roads".into()), ..RuleText::default() }
            .compile()
            .unwrap()
    };
    assert!(rule("Straße").matches(&ticket("Email", "x", "DIE STRASSE IST GESPERRT")), "Straße vs STRASSE");
    assert!(rule("strasse").matches(&ticket("Email", "x", "die Straße ist gesperrt")), "strasse vs Straße");
}

/// Found by an attack (#27), failing first: the size limit per regular expression (1 MiB of program) lets one rule
/// take most of a second (debug build) to decide a ticket of the longest body; `RULES_MAX` such rules keep akte on
/// one ticket for minutes. The module promises "a rule cannot make akte slow": one accepted rule gets at most its
/// share of a second.
#[test]
fn one_accepted_pattern_decides_a_longest_ticket_within_its_share_of_a_second() {
    let text = RuleText {
        name: "slow".into(),
        pattern: Some("(?:a|b|c| ){3000}z".into()),
        team: Some("support".into()),
        ..RuleText::default()
    };
    let Ok(rule) = text.compile() else { return };
    let body: String = "abc ".repeat(crate::lifecycle::BODY_MAX / 4);
    let ticket = ticket("Discord", "x", &body);
    let start = std::time::Instant::now();
    assert!(!rule.matches(&ticket));
    let took = start.elapsed();
    let share = std::time::Duration::from_secs(1) / RULES_MAX as u32;
    assert!(took <= share, "one rule took {took:?} on a {}-character ticket; its share is {share:?}", body.len());
}

/// Found by an attack (#27), failing first: a rule's name is "1 to 64 characters", but its bytes are counted (so 40
/// `ü` are refused) and before the name is trimmed (so 60 letters with spaces around are refused).
#[test]
fn a_rule_name_of_64_characters_is_taken() {
    for name in ["ü".repeat(40), format!("   {}   ", "x".repeat(60))] {
        let text = RuleText { name: name.clone(), team: Some("support".into()), ..RuleText::default() };
        assert!(text.compile().is_ok(), "{name:?} ({} characters trimmed) refused", name.trim().chars().count());
    }
}

#[test]
fn the_submitters_category_decides_the_team_before_any_rule_and_no_rule_may_take_its_name() {
    let rules = [rule("support", |r| r.words = vec!["refund".into()])];
    let chosen = Ticket { category: Some("billing".into()), ..ticket("Discord", "ponta", "a refund please") };
    let routed = route(&rules, &chosen).unwrap();
    assert_eq!((routed.rule.as_str(), routed.team.as_deref()), (CATEGORY_RULE, Some("billing")));
    assert_eq!(by(&routed.rule), "by the submitter's choice in /ticket");
    assert_eq!(by("invoices"), "by rule `invoices`");
    let no_team = Ticket { category: Some("triage".into()), ..chosen };
    assert_eq!(route(&rules, &no_team).unwrap().rule, "support", "triage is no team: the rules decide");
    let taken = RuleText { name: CATEGORY_RULE.into(), team: Some("x".into()), ..RuleText::default() }.compile();
    assert!(taken.unwrap_err().contains("starts with /"));
}
