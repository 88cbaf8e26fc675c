//! The lifecycle's rules, example by example, and the properties that tie `decide` to `fold`.

use proptest::prelude::*;

use super::*;
use crate::schema::Ticket;
use crate::schema::lifecycle::{Actor, ActorSource, Attachment, Delivery, Person, PersonSource, Via};

const T: &str = "2026-02-24T08:32:23.255Z";

fn actor(name: &str) -> Actor {
    Actor::staff(ActorSource::Web, name)
}

/// A Discord account, linked to the staff member `staff` or to nobody.
fn discord(id: &str, name: &str, staff: Option<&str>) -> Actor {
    Actor { source: ActorSource::Discord, name: name.into(), id: Some(id.into()), staff: staff.map(Into::into) }
}

/// Command `n` by the staff member `who`; `submitter` writes as the ticket's submitter (Discord account 42), and
/// `franz` records deliveries.
fn command(n: usize, who: &str, action: Action) -> Command {
    let actor = match who {
        "submitter" => discord("42", "pontatot", None),
        "franz" => Actor { source: ActorSource::Franz, name: "kummerkasten".into(), id: None, staff: None },
        _ => actor(who),
    };
    Command { command_id: format!("c{n}"), ticket_id: "t1".into(), actor, action }
}

fn write(body: &str) -> Action {
    Action::Write { body: body.into(), attachments: Vec::new(), via: Via::DiscordDm, message_id: None }
}

fn public(body: &str) -> Action {
    Action::Comment { body: body.into(), internal: false, via: None }
}

/// Decides `commands` at the given times (RFC 3339), with `policy`.
fn run_at(commands: &[(Command, &str)], policy: &Policy) -> (Vec<Event>, Option<TicketState>) {
    let mut state = None;
    let mut events = Vec::new();
    for (command, at) in commands {
        let event = decide(state.as_ref(), command, at, policy);
        state = apply(state, &event);
        events.push(event);
    }
    (events, state)
}

fn ticket() -> Ticket {
    Ticket {
        id: "t1".into(),
        contact: "pontatot".into(),
        origin: "Discord".into(),
        body: "my account is locked".into(),
        date: T.into(),
        contact_id: Some("42".into()),
        guild_id: None,
        channel_id: None,
        follows: None,
        category: None,
        message_id: None,
        automatic: None,
        attachments: Vec::new(),
    }
}

/// Decides each command against the state so far, as akte does, and returns the events and the final state.
fn run(commands: &[Command]) -> (Vec<Event>, Option<TicketState>) {
    let mut state = None;
    let mut events = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let event =
            decide(state.as_ref(), command, &format!("2026-03-01T00:00:{:02}.000Z", i % 60), &Policy::default());
        state = apply(state, &event);
        events.push(event);
    }
    (events, state)
}

fn reason(event: &Event) -> Option<&str> {
    match &event.change {
        Change::Rejected { reason, .. } => Some(reason),
        _ => None,
    }
}

#[test]
fn a_ticket_is_claimed_commented_closed_and_reopened() {
    let (events, state) = run(&[
        Command::create(ticket()),
        command(1, "ana", Action::Claim),
        command(2, "ana", Action::Comment { body: " on it ".into(), internal: false, via: None }),
        command(3, "ana", Action::Close { reason: "fixed".into() }),
        command(4, "bo", Action::Reopen),
    ]);
    assert!(events.iter().all(|e| reason(e).is_none()), "{events:#?}");
    let state = state.unwrap();
    assert_eq!((state.status, state.version, state.comments), (Status::Open, 5, 1));
    assert_eq!(state.first_claimed_at.as_deref(), Some("2026-03-01T00:00:01.000Z"));
    assert_eq!(state.closed_by, None);
    assert_eq!(events[2].change, Change::Commented { body: "on it".into(), internal: false, via: None });
}

#[test]
fn claiming_a_ticket_someone_else_holds_is_refused_with_their_name() {
    let (events, state) =
        run(&[Command::create(ticket()), command(1, "ana", Action::Claim), command(2, "bo", Action::Claim)]);
    assert_eq!(reason(&events[2]), Some("already claimed by ana"));
    assert_eq!(events[2].version, None);
    assert_eq!(state.unwrap().assignee, Some(Person::staff("ana")));
}

#[test]
fn an_explicit_assignment_takes_the_ticket_from_its_holder() {
    let (events, state) = run(&[
        Command::create(ticket()),
        command(1, "ana", Action::Claim),
        command(2, "bo", Action::Assign { to: "cy".into() }),
    ]);
    assert_eq!(events[2].change, Change::Assigned { to: Person::staff("cy"), from: Some(Person::staff("ana")) });
    assert_eq!(state.unwrap().assignee, Some(Person::staff("cy")));
}

/// Regression (#33): a Discord user whose username is `ana` and the desk's `ana` were one assignee, so her "Mine",
/// her claims and her numbers merged two people.
#[test]
fn a_discord_account_and_a_staff_member_of_one_name_are_two_people_and_a_linked_account_is_its_staff_member() {
    let claim = |n: usize, actor: Actor| Command { actor, ..command(n, "unused", Action::Claim) };
    let (events, state) = run(&[Command::create(ticket()), claim(1, discord("42", "ana", None))]);
    let stranger = Person { source: PersonSource::Discord, id: "42".into(), name: "ana".into() };
    assert_eq!(events[1].change, Change::Claimed { by: stranger.clone() });
    let state = state.unwrap();
    assert_ne!(state.assignee, Some(Person::staff("ana")));
    assert_eq!(state.assignee.as_ref().map(Person::display).as_deref(), Some("@ana (Discord)"));

    let (events, state) = run(&[
        Command::create(ticket()),
        claim(1, discord("43", "ana_k", Some("ana"))),
        command(2, "ana", Action::Close { reason: "done".into() }),
        command(3, "bo", Action::Close { reason: "again".into() }),
    ]);
    assert_eq!(events[1].change, Change::Claimed { by: Person::staff("ana") }, "the linked account is ana");
    assert_eq!(events[1].actor.display(), "ana (Discord @ana_k)");
    assert_eq!(reason(&events[3]), Some("already closed by ana"));
    assert_eq!(state.unwrap().closed_by, Some(Person::staff("ana")));
}

/// Events written before identities name people by a bare string; they still read, as the staff member of that
/// name.
#[test]
fn events_written_before_identities_still_read_and_fold() {
    let old = [
        r#"{"event_id":"e1","ticket_id":"t1","version":1,"at":"2026-01-01T00:00:00.000Z","actor":{"source":"franz","name":"franz"},"caused_by":"c0","type":"created","contact":"p","origin":"Discord","body":"b","submitted":"2026-01-01T00:00:00.000Z"}"#,
        r#"{"event_id":"e2","ticket_id":"t1","version":2,"at":"2026-01-01T00:00:01.000Z","actor":{"source":"web","name":"ana"},"caused_by":"c1","type":"claimed","by":"ana"}"#,
        r#"{"event_id":"e3","ticket_id":"t1","version":3,"at":"2026-01-01T00:00:02.000Z","actor":{"source":"web","name":"bo"},"caused_by":"c2","type":"assigned","to":"cy","from":"ana"}"#,
        r#"{"event_id":"e4","ticket_id":"t1","version":4,"at":"2026-01-01T00:00:03.000Z","actor":{"source":"web","name":"bo"},"caused_by":"c3","type":"unclaimed","from":"cy"}"#,
    ];
    let events: Vec<Event> = old.iter().map(|text| serde_json::from_str(text).unwrap()).collect();
    assert_eq!(events[2].change, Change::Assigned { to: Person::staff("cy"), from: Some(Person::staff("ana")) });
    assert_eq!(events[3].change, Change::Unclaimed { from: Person::staff("cy") });
    let state = fold(&events[..3]).unwrap();
    assert_eq!(state.assignee, Some(Person::staff("cy")));
    assert_eq!(fold(&events).unwrap().assignee, None);
    let written = serde_json::to_value(&events[1]).unwrap();
    assert_eq!(written["by"], serde_json::json!({"source": "staff", "id": "ana", "name": "ana"}));
}

#[test]
fn closing_a_closed_ticket_is_refused_with_who_closed_it() {
    let (events, _) = run(&[
        Command::create(ticket()),
        command(1, "ana", Action::Close { reason: "spam".into() }),
        command(2, "bo", Action::Close { reason: "again".into() }),
    ]);
    assert_eq!(reason(&events[2]), Some("already closed by ana"));
}

#[test]
fn commands_for_an_unknown_ticket_are_refused() {
    let (events, state) = run(&[command(1, "ana", Action::Claim)]);
    assert_eq!(reason(&events[0]), Some("there is no ticket t1"));
    assert_eq!(state, None);
}

#[test]
fn text_outside_its_bounds_is_refused_with_the_limit() {
    let long = "x".repeat(COMMENT_MAX + 1);
    let (events, _) = run(&[
        Command::create(ticket()),
        command(1, "ana", Action::Comment { body: "   ".into(), internal: true, via: None }),
        command(2, "ana", Action::Comment { body: long, internal: false, via: None }),
        command(3, "ana", Action::AddLabel { label: "<script>".into() }),
        command(4, &"n".repeat(NAME_MAX + 1), Action::Claim),
        command(5, "ana", Action::Assign { to: "a\u{7}b".into() }),
    ]);
    assert_eq!(reason(&events[1]), Some("a comment cannot be empty"));
    assert_eq!(reason(&events[2]), Some("a comment has at most 4000 characters (this one has 4001)"));
    assert!(reason(&events[3]).unwrap().starts_with("a label has"));
    assert!(reason(&events[4]).unwrap().starts_with("the actor's name must have"));
    assert!(reason(&events[5]).unwrap().starts_with("the assignee's name must have"));
}

#[test]
fn labels_are_normalized_and_bounded_in_number() {
    let mut commands = vec![Command::create(ticket())];
    commands.extend((0..=LABELS_MAX).map(|i| command(i + 1, "ana", Action::AddLabel { label: format!(" Tag{i} ") })));
    let (events, state) = run(&commands);
    assert_eq!(events[1].change, Change::LabelAdded { label: "tag0".into() });
    assert_eq!(reason(events.last().unwrap()), Some("a ticket carries at most 20 labels"));
    assert_eq!(state.unwrap().labels.len(), LABELS_MAX);
}

#[test]
fn a_create_with_an_oversized_or_malformed_ticket_is_refused_and_its_event_stays_small() {
    let mut big = ticket();
    big.body = "b".repeat(2_000_000);
    let mut bad_date = ticket();
    bad_date.date = "yesterday".into();
    let mut huge_actor = Command::create(ticket());
    huge_actor.actor.name = "n".repeat(1_000_000);
    for (command, says) in [
        (Command::create(big), "a ticket's body has at most 4000 characters"),
        (Command::create(bad_date), "a ticket's date must be RFC 3339"),
        (huge_actor, "the actor's name must have"),
    ] {
        let event = decide(None, &command, T, &Policy::default());
        assert!(reason(&event).unwrap().starts_with(says), "{:?}", event.change);
        assert!(serde_json::to_vec(&event).unwrap().len() < 1_000);
    }
}

#[test]
fn a_tickets_discord_server_and_channel_reach_the_created_event_and_the_state() {
    let from_discord = Ticket { guild_id: Some("2".into()), channel_id: Some("3".into()), ..ticket() };
    let (events, state) = run(&[Command::create(from_discord)]);
    let wire = serde_json::to_value(&events[0]).unwrap();
    assert_eq!((&wire["guild_id"], &wire["channel_id"]), (&serde_json::json!("2"), &serde_json::json!("3")), "{wire}");
    let state = state.unwrap();
    assert_eq!((state.guild_id.as_deref(), state.channel_id.as_deref()), (Some("2"), Some("3")));

    // An event written before franz kept them reads as a ticket without them, and writes none back.
    let (events, _) = run(&[Command::create(ticket())]);
    let mut old = serde_json::to_value(&events[0]).unwrap();
    assert!(old.get("guild_id").is_none() && old.get("channel_id").is_none(), "{old}");
    old["type"] = "created".into();
    let read: Event = serde_json::from_value(old).unwrap();
    let state = apply(None, &read).unwrap();
    assert_eq!((state.guild_id, state.channel_id), (None, None));
}

#[test]
fn a_second_create_of_the_same_ticket_is_refused() {
    let mut again = Command::create(ticket());
    again.command_id = "other".into();
    let (events, _) = run(&[Command::create(ticket()), again]);
    assert_eq!(reason(&events[1]), Some("the ticket exists already"));
}

fn any_action() -> impl Strategy<Value = Action> {
    let name = prop::sample::select(vec!["ana", "bo", "cy"]).prop_map(String::from);
    let label = prop::sample::select(vec!["bug", "billing", "Bug "]).prop_map(String::from);
    prop_oneof![
        Just(Action::Claim),
        Just(Action::Unclaim),
        name.prop_map(|to| Action::Assign { to }),
        ("[a-z ]{0,8}", any::<bool>()).prop_map(|(body, internal)| Action::Comment { body, internal, via: None }),
        prop::sample::select(Priority::ALL.to_vec()).prop_map(|priority| Action::SetPriority { priority }),
        label.clone().prop_map(|label| Action::AddLabel { label }),
        label.prop_map(|label| Action::RemoveLabel { label }),
        "[a-z]{0,4}".prop_map(|reason| Action::Close { reason }),
        Just(Action::Reopen),
        Just(Action::Create { ticket: Box::new(ticket()) }),
        "[a-z ]{0,8}".prop_map(|body| write(&body)),
        (0u8..7, prop::option::of("[a-z ]{0,8}")).prop_map(|(rating, comment)| Action::Rate { rating, comment }),
        (any::<bool>(), 1u64..100).prop_map(|(delivered, id)| Action::RecordDelivery(Delivery {
            of: "e".into(),
            via: Via::DiscordDm,
            delivered,
            detail: None,
            message_id: Some(id.to_string()),
            channel_id: None,
        })),
    ]
}

fn any_commands() -> impl Strategy<Value = Vec<Command>> {
    let one = (prop::sample::select(vec!["ana", "bo", "cy", "submitter", "franz"]), any_action());
    prop::collection::vec(one, 0..40).prop_map(|steps| {
        let mut commands = vec![Command::create(ticket())];
        commands.extend(steps.into_iter().enumerate().map(|(i, (who, action))| command(i, who, action)));
        commands
    })
}

proptest! {
    /// The state akte decides with is the fold of the events it wrote, and versions count without gaps.
    #[test]
    fn props_fold_of_the_decided_events_is_the_state_decided_with(commands in any_commands()) {
        let (events, state) = run(&commands);
        prop_assert_eq!(fold(&events), state.clone());
        let versions: Vec<u64> = events.iter().filter_map(|e| e.version).collect();
        prop_assert_eq!(versions.clone(), (1..=versions.len() as u64).collect::<Vec<_>>());
        prop_assert_eq!(state.map_or(0, |s| s.version), versions.len() as u64);
    }

    /// Every event delivered twice, or the whole history replayed after itself, changes nothing.
    #[test]
    fn props_replayed_or_duplicated_events_change_nothing(commands in any_commands()) {
        let (events, state) = run(&commands);
        let doubled: Vec<&Event> = events.iter().flat_map(|e| [e, e]).collect();
        prop_assert_eq!(fold(doubled), state.clone());
        prop_assert_eq!(fold(events.iter().chain(&events)), state);
    }

    /// Every event names the command it answers, by an id derived from that command alone, so deciding a
    /// redelivered command again could only ever produce the same event id.
    #[test]
    fn props_the_event_id_depends_only_on_the_command(commands in any_commands()) {
        let (events, _) = run(&commands);
        for (command, event) in commands.iter().zip(&events) {
            prop_assert_eq!(&event.event_id, &event_id_for(&command.ticket_id, &command.command_id));
            prop_assert_eq!(&event.caused_by, &command.command_id);
        }
    }
}

#[test]
fn names_with_invisible_or_direction_changing_characters_are_refused_but_emoji_joiners_pass() {
    for spoof in ["ana\u{200B}", "\u{202E}evil", "a\u{2066}na", "ana\u{FEFF}", "an\u{00AD}a"] {
        let error = crate::lifecycle::name("a name", spoof).unwrap_err();
        assert!(error.contains("invisible or direction-changing"), "{spoof:?}: {error}");
    }
    assert_eq!(crate::lifecycle::name("a name", " 👩\u{200D}💻 ana ").unwrap(), "👩\u{200D}💻 ana");
    let (events, _) = run(&[
        command(0, "ana", Action::Create { ticket: Box::new(ticket()) }),
        command(1, "ana", Action::Assign { to: "bo\u{200B}".into() }),
    ]);
    assert!(reason(&events[1]).is_some_and(|r| r.contains("invisible")), "{:?}", events[1]);
}

#[test]
fn ticket_ids_that_are_dot_segments_or_carry_control_characters_are_refused() {
    for id in [".", "..", "a\r\nb", "x\u{200B}"] {
        let mut created = ticket();
        created.id = id.to_owned();
        let mut create = command(0, "ana", Action::Create { ticket: Box::new(created) });
        create.ticket_id = id.to_owned();
        let (events, state) = run(&[create]);
        assert!(state.is_none(), "{id:?}");
        assert!(reason(&events[0]).is_some_and(|r| r.contains("ticket id")), "{id:?}: {:?}", events[0]);
    }
}

/// Found by an attack (#33): a claim's `by` was built from the uncut command actor, so a Discord actor with a huge
/// id (a command on `ticket-commands` from anyone who may write it) made a huge `claimed` event, and the same
/// account's claim and close carried two identities (the full id, and the id cut at 64 characters). A Discord id is
/// a number of at most 20 digits; anything else is refused, in an event that stays small.
#[test]
fn a_claim_or_close_by_a_discord_account_with_a_huge_id_is_refused_in_a_small_event() {
    let huge = "4".repeat(200_000);
    let claim = Command { actor: discord(&huge, "mallory", None), ..command(1, "unused", Action::Claim) };
    let close = Command {
        actor: discord(&huge, "mallory", None),
        ..command(2, "unused", Action::Close { reason: "x".into() })
    };
    let not_a_number = Command { actor: discord("42; DROP", "mallory", None), ..command(3, "unused", Action::Claim) };
    let (events, state) = run(&[Command::create(ticket()), claim, close, not_a_number]);
    for event in &events[1..] {
        assert_eq!(reason(event), Some("a Discord actor's id is a number of 1 to 20 digits"));
        let size = serde_json::to_vec(event).unwrap().len();
        assert!(size < 2_000, "the event is {size} bytes");
    }
    assert_eq!(state.unwrap().version, 1, "nothing changed");
}

/// Found by an attack (#33): an event written before identities by a Discord press names the claimer by their Discord
/// *username* (`"by": "ana"`) while its actor carries the account id. It now folds as the desk's staff member
/// `ana` (her "Mine", her card line), while the close by the very same account folds as `discord:42`: the old
/// stranger keeps sharing ana's identity, which the change was meant to end, and one account is two people.
#[test]
fn an_old_discord_claim_is_the_discord_account_not_the_staff_member_of_that_name() {
    let old = [
        r#"{"event_id":"e1","ticket_id":"t1","version":1,"at":"2026-01-01T00:00:00.000Z","actor":{"source":"franz","name":"franz"},"caused_by":"c0","type":"created","contact":"p","origin":"Discord","body":"b","submitted":"2026-01-01T00:00:00.000Z"}"#,
        r#"{"event_id":"e2","ticket_id":"t1","version":2,"at":"2026-01-01T00:00:01.000Z","actor":{"source":"discord","name":"ana","id":"42"},"caused_by":"discord-1","type":"claimed","by":"ana"}"#,
        r#"{"event_id":"e3","ticket_id":"t1","version":3,"at":"2026-01-01T00:00:02.000Z","actor":{"source":"discord","name":"ana","id":"42"},"caused_by":"discord-2","type":"closed","reason":"done"}"#,
    ];
    let events: Vec<Event> = old.iter().map(|text| serde_json::from_str(text).unwrap()).collect();
    let state = fold(&events).unwrap();
    let stranger = Person { source: PersonSource::Discord, id: "42".into(), name: "ana".into() };
    assert_eq!(state.closed_by, Some(stranger.clone()));
    assert_eq!(state.assignee, Some(stranger), "the Discord account 42 claimed it, not the desk's ana");
}

/// Found by an attack (#33): the staff list took `@ana (Discord)`, which the board, the card and the closers'
/// numbers then showed exactly as the Discord account `ana` linked to nobody; and `discord:42` as a staff name,
/// which the API's `assignee` filter reads as that account.
#[test]
fn a_staff_name_cannot_pass_for_another_identity() {
    for impostor in ["@ana (Discord)", "discord:42", "Staff:bo", "franz:x"] {
        assert!(staff_name("a staff name", impostor).is_err(), "{impostor}");
    }
    for fine in ["ana", "ana@example.com", "José María", "a:b"] {
        assert_eq!(staff_name("a staff name", fine).as_deref(), Ok(fine));
    }
    let stranger = Person { source: PersonSource::Discord, id: "42".into(), name: "ana".into() };
    assert_ne!(Person::staff("ana").display(), stranger.display());
}

#[test]
fn whose_turn_it_is_follows_the_conversation_and_a_holder_keeps_the_ticket_through_it() {
    let (events, state) = run(&[
        Command::create(ticket()),
        command(1, "submitter", write("it is still locked")),
        command(2, "ana", public("which account?")),
        command(3, "ana", Action::Comment { body: "probably SSO".into(), internal: true, via: None }),
        command(4, "ana", Action::Claim),
        command(5, "submitter", write("ponta@example.org")),
        command(6, "ana", public("unlocked")),
        command(7, "ana", Action::Unclaim),
    ]);
    assert!(events.iter().all(|e| reason(e).is_none()), "{events:#?}");
    let statuses: Vec<Status> = (1..=events.len()).map(|n| fold(&events[..n]).unwrap().status).collect();
    use Status::*;
    assert_eq!(statuses, [Open, Open, Waiting, Waiting, Waiting, Claimed, Waiting, Waiting]);
    let answered: Vec<bool> = (1..=events.len()).map(|n| fold(&events[..n]).unwrap().answered).collect();
    assert_eq!(answered, [false, true, false, false, false, true, false, false], "an internal note is no answer");
    let state = state.unwrap();
    assert_eq!((state.assignee, state.comments), (None, 3));
    assert_eq!(
        events[1].change,
        Change::SubmitterWrote {
            body: "it is still locked".into(),
            attachments: Vec::new(),
            via: Via::DiscordDm,
            message_id: None,
            reopened: false
        }
    );
}

#[test]
fn only_the_submitter_writes_and_only_franz_records_deliveries() {
    let delivery = Action::RecordDelivery(Delivery {
        of: "e".into(),
        via: Via::DiscordDm,
        delivered: true,
        detail: None,
        message_id: Some("9".into()),
        channel_id: None,
    });
    let (events, _) = run(&[
        Command::create(ticket()),
        command(1, "ana", write("pretending to be the submitter")),
        Command { actor: discord("43", "someone", None), ..command(2, "x", write("not my ticket")) },
        command(3, "ana", delivery.clone()),
        command(4, "franz", delivery),
    ]);
    assert_eq!(reason(&events[1]), Some("only the ticket's submitter writes to it; the team replies with a comment"));
    assert!(reason(&events[2]).is_some(), "another Discord account");
    assert_eq!(reason(&events[3]), Some("only franz records where a message went"));
    assert_eq!(events[4].version, Some(2));
}

#[test]
fn a_delivery_grows_the_history_but_changes_nothing_people_see() {
    let delivered = Action::RecordDelivery(Delivery {
        of: "e".into(),
        via: Via::DiscordDm,
        delivered: false,
        detail: Some("the user does not accept direct messages from the bot".into()),
        message_id: None,
        channel_id: None,
    });
    let (_, before) = run(&[Command::create(ticket()), command(1, "ana", public("hi"))]);
    let (_, after) = run(&[Command::create(ticket()), command(1, "ana", public("hi")), command(2, "franz", delivered)]);
    let (before, after) = (before.unwrap(), after.unwrap());
    assert_eq!(after.version, before.version + 1);
    assert_eq!(TicketState { version: before.version, ..after }, before, "status, times and counts stay");
}

#[test]
fn a_message_to_a_closed_ticket_reopens_it_within_the_window_and_is_refused_after_it() {
    let week = Policy::default();
    let closed = [
        (Command::create(ticket()), "2026-03-01T00:00:00Z"),
        (command(1, "ana", Action::Claim), "2026-03-01T01:00:00Z"),
        (command(2, "ana", Action::Close { reason: "fixed".into() }), "2026-03-01T02:00:00Z"),
    ];
    let within =
        [closed.clone().to_vec(), vec![(command(3, "submitter", write("not fixed")), "2026-03-08T02:00:00Z")]].concat();
    let (events, state) = run_at(&within, &week);
    assert!(matches!(events[3].change, Change::SubmitterWrote { reopened: true, .. }), "{:?}", events[3]);
    let state = state.unwrap();
    assert_eq!((state.status, state.assignee, state.closed_at, state.answered), (Status::Open, None, None, true));

    let after = [closed.to_vec(), vec![(command(3, "submitter", write("not fixed")), "2026-03-08T02:00:01Z")]].concat();
    let (events, state) = run_at(&after, &week);
    assert_eq!(
        reason(&events[3]),
        Some("the ticket was closed more than 7 days ago; a message now opens a new ticket that follows it")
    );
    assert_eq!(state.unwrap().status, Status::Closed);
}

fn rate(rating: u8, comment: Option<&str>) -> Action {
    Action::Rate { rating, comment: comment.map(Into::into) }
}

#[test]
fn the_submitter_rates_a_closed_ticket_and_may_change_it_within_the_window_only() {
    let week = Policy::default();
    let open = [(Command::create(ticket()), "2026-03-01T00:00:00Z")];
    let (events, _) = run_at(
        &[open.to_vec(), vec![(command(1, "submitter", rate(5, None)), "2026-03-01T00:10:00Z")]].concat(),
        &week,
    );
    assert_eq!(reason(&events[1]), Some("the ticket is open; a rating is for a closed ticket"));

    let closed = [
        open[0].clone(),
        (command(1, "ana", Action::Close { reason: "fixed".into() }), "2026-03-01T02:00:00Z"),
        (command(2, "submitter", rate(2, None)), "2026-03-01T03:00:00Z"),
        (command(3, "submitter", rate(4, Some("  quick, <b>thanks</b>  "))), "2026-03-08T02:00:00Z"),
        (command(4, "ana", rate(5, None)), "2026-03-08T02:00:00Z"),
        (command(5, "submitter", rate(0, None)), "2026-03-08T02:00:00Z"),
        (command(6, "submitter", rate(6, None)), "2026-03-08T02:00:00Z"),
        (command(7, "submitter", rate(1, Some(&"x".repeat(RATING_COMMENT_MAX + 1)))), "2026-03-08T02:00:00Z"),
        (command(8, "submitter", rate(1, None)), "2026-03-08T02:00:01Z"),
    ];
    let (events, state) = run_at(&closed, &week);
    assert_eq!(events[2].change, Change::Rated { rating: 2, comment: None });
    assert_eq!(events[3].change, Change::Rated { rating: 4, comment: Some("quick, <b>thanks</b>".into()) }, "replaced");
    assert_eq!(reason(&events[4]), Some("only the ticket's submitter rates it"));
    assert_eq!(reason(&events[5]), Some("a rating is a whole number from 1 to 5, not 0"));
    assert_eq!(reason(&events[6]), Some("a rating is a whole number from 1 to 5, not 6"));
    assert!(
        reason(&events[7]).is_some_and(|r| r.starts_with("a rating's comment has at most 1000")),
        "{:?}",
        events[7]
    );
    assert_eq!(
        reason(&events[8]),
        Some("the ticket was closed more than 7 days ago; its rating can no longer be given or changed")
    );
    let state = state.unwrap();
    let rating = state.rating.clone().unwrap();
    assert_eq!(
        (rating.rating, rating.comment.as_deref(), rating.at.as_str()),
        (4, Some("quick, <b>thanks</b>"), "2026-03-08T02:00:00Z")
    );
    assert_eq!(
        (state.status, state.updated_at.as_str()),
        (Status::Closed, "2026-03-01T02:00:00Z"),
        "a rating changes no ticket"
    );
    assert_eq!(state.version, 4, "each rating counts in the history");
}

#[test]
fn a_message_is_bounded_and_its_attachments_are_https_links_with_printable_names() {
    let file = |name: &str, url: &str| Attachment {
        name: name.into(),
        size: 10,
        content_type: None,
        url: url.into(),
        sha256: None,
    };
    let with = |body: &str, files: Vec<Attachment>| Action::Write {
        body: body.into(),
        attachments: files,
        via: Via::DiscordDm,
        message_id: None,
    };
    let ok = file("shot.png", "https://cdn.discordapp.com/attachments/1/2/shot.png");
    let cases = [
        (with(&"x".repeat(MESSAGE_MAX + 1), vec![]), "a message has at most 4000 characters (this one has 4001)"),
        (with("  ", vec![]), "a message needs text or an attachment"),
        (with("", vec![ok.clone(); ATTACHMENTS_MAX + 1]), "a message carries at most 10 attachments (this one has 11)"),
        (with("", vec![file("x", "javascript:alert(1)")]), "an attachment's URL is https"),
        (with("", vec![file("x", "https://a/\"onmouseover=\"x")]), "an attachment's URL is https"),
        (with("", vec![file("x", "http://cdn/x")]), "an attachment's URL is https"),
        (with("", vec![file("a\nb", "https://cdn/x")]), "an attachment's name has"),
    ];
    for (n, (action, expected)) in cases.into_iter().enumerate() {
        let (events, _) = run(&[Command::create(ticket()), command(n, "submitter", action)]);
        assert!(reason(&events[1]).is_some_and(|r| r.starts_with(expected)), "{expected}: {:?}", events[1]);
    }
    let (events, _) = run(&[Command::create(ticket()), command(1, "submitter", with("", vec![ok.clone()]))]);
    assert!(matches!(&events[1].change, Change::SubmitterWrote { attachments, .. } if attachments == &[ok]));
    let (events, _) =
        run(&[Command::create(ticket()), command(1, "submitter", with(&"x".repeat(MESSAGE_MAX), vec![]))]);
    assert!(reason(&events[1]).is_none(), "exactly the limit is a message");
}

/// Routing at creation (the rule named on the `created` event, the ticket's team, priority and labels, and its
/// service-level clocks run for the routed priority), and moves between teams with their refusals.
#[test]
fn a_routed_ticket_starts_in_its_team_and_moves_with_a_reason() {
    use crate::lifecycle::levels::{Levels, Target};
    use crate::lifecycle::routing::RuleText;
    let rule = RuleText {
        name: "locked".into(),
        words: vec!["locked".into()],
        team: Some("accounts".into()),
        priority: Some("urgent".into()),
        labels: vec!["Login".into()],
        ..RuleText::default()
    };
    let levels = Levels {
        teams: Default::default(),
        calendar: crate::lifecycle::calendar::Calendar::always(),
        warn_percent: 80,
        targets: [
            ((Target::FirstResponse, Priority::Normal), Duration::from_secs(3600)),
            ((Target::FirstResponse, Priority::Urgent), Duration::from_secs(600)),
        ]
        .into_iter()
        .collect(),
        remind_before: Duration::ZERO,
    };
    let policy = Policy {
        routing: std::sync::Arc::new(vec![rule.compile().unwrap()]),
        levels: Some(std::sync::Arc::new(levels)),
        ..Policy::default()
    };
    let mv = |n, team: Option<&str>, reason: &str| {
        (command(n, "ana", Action::Move { team: team.map(Into::into), reason: reason.into() }), T)
    };
    let (events, state) = run_at(
        &[
            (Command::create(ticket()), T),
            mv(1, Some("accounts"), "here already"),
            mv(2, Some("Billing Team"), "x"),
            mv(3, Some("billing"), "  "),
            mv(4, Some("billing"), "a refund, not a login"),
            mv(5, None, "back to triage"),
        ],
        &policy,
    );
    let Change::Created { routed: Some(routed), .. } = &events[0].change else { panic!("{:?}", events[0]) };
    assert_eq!((routed.rule.as_str(), routed.team.as_deref()), ("locked", Some("accounts")));
    let clock = &events[0].clocks.as_ref().unwrap()[0];
    assert_eq!(clock.target_secs, 600, "the clocks run for the routed priority");
    let kinds: Vec<&str> = events.iter().map(|e| e.change.name()).collect();
    assert_eq!(kinds, ["created", "rejected", "rejected", "rejected", "moved", "moved"]);
    let reasons: Vec<String> = events[1..4]
        .iter()
        .map(|e| match &e.change {
            Change::Rejected { reason, .. } => reason.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("in team accounts already"), "{reasons:?}");
    assert!(reasons[1].contains("no team name"), "{reasons:?}");
    assert!(reasons[2].contains("cannot be empty"), "{reasons:?}");
    assert_eq!(
        events[4].change,
        Change::Moved {
            from: Some("accounts".into()),
            to: Some("billing".into()),
            reason: "a refund, not a login".into()
        }
    );
    let state = state.unwrap();
    assert_eq!((state.team, state.priority), (None, Priority::Urgent));
    assert_eq!(state.labels.into_iter().collect::<Vec<_>>(), ["login"], "labels as every label is: lower case");
    assert_eq!(fold(&events).unwrap().version, 3);
}
