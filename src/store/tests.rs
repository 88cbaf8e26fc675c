//! The store against the lifecycle: every row equals the fold of its ticket's events, however the events are
//! batched, repeated or replayed; and the queries find what they should.

use proptest::prelude::*;

use super::*;
use crate::lifecycle::{Policy, decide, fold};
use crate::schema::Ticket;
use crate::schema::lifecycle::{Action, Actor, ActorSource, Command, Delivery};
use std::sync::Arc;

pub(crate) fn ticket(id: &str, body: &str) -> Ticket {
    Ticket {
        id: id.into(),
        contact: "pontatot".into(),
        origin: "Discord".into(),
        body: body.into(),
        date: "2026-02-24T08:32:23.255Z".into(),
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

/// Command `n` on `ticket` by `who`; a message from the submitter comes from the submitter's account, a delivery
/// from franz, as they do in franz.
fn command(n: usize, ticket: &str, who: &str, action: Action) -> Command {
    let actor = match action {
        Action::Write { .. } | Action::Rate { .. } => {
            Actor { source: ActorSource::Discord, name: "pontatot".into(), id: Some("42".into()), staff: None }
        }
        Action::RecordDelivery(_) => {
            Actor { source: ActorSource::Franz, name: "kummerkasten".into(), id: None, staff: None }
        }
        _ => Actor::staff(ActorSource::Cli, who),
    };
    Command { command_id: format!("c{n}"), ticket_id: ticket.into(), actor, action }
}

/// Decides `commands` in order, as akte does, and returns the events as records of one partition.
pub(crate) fn decided(commands: &[Command]) -> Vec<Event> {
    let mut states: HashMap<String, TicketState> = HashMap::new();
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let state = states.get(&c.ticket_id).cloned();
            let event = decide(state.as_ref(), c, &format!("2026-03-01T00:{:02}:00.000Z", i % 60), &Policy::default());
            if let Some(next) = lifecycle::apply(state, &event) {
                states.insert(c.ticket_id.clone(), next);
            }
            event
        })
        .collect()
}

pub(crate) fn payloads(events: &[Event]) -> Vec<Vec<u8>> {
    events.iter().map(|e| serde_json::to_vec(e).unwrap()).collect()
}

pub(crate) fn open_temp() -> (tempfile::TempDir, Store, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = open(&dir.path().join("store/tickets.sqlite"), &Identity::named("events")).unwrap();
    (dir, store, writer)
}

/// Applies payloads at offsets `first..` of partition 0, in batches of `batch`.
pub(crate) fn apply_all(writer: &mut Writer, payloads: &[Vec<u8>], first: i64, batch: usize) {
    let records: Vec<Record<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Record { partition: 0, offset: first + i as i64, payload: p })
        .collect();
    for chunk in records.chunks(batch.max(1)) {
        writer.apply(chunk).unwrap();
    }
}

fn all_rows(store: &Store) -> Vec<TicketState> {
    let conn = store.reader().unwrap();
    let mut statement = conn.prepare(&format!("SELECT {TICKET_COLUMNS} FROM tickets ORDER BY id")).unwrap();
    statement.query_map([], ticket_from_row).unwrap().map(|r| r.unwrap().1).collect()
}

fn any_commands() -> impl Strategy<Value = Vec<Command>> {
    let action = prop_oneof![
        Just(Action::Claim),
        Just(Action::Unclaim),
        Just(Action::Assign { to: "cy".into() }),
        "[a-z]{1,6}".prop_map(|body| Action::Comment { body, internal: false, via: None }),
        Just(Action::SetPriority { priority: crate::schema::lifecycle::Priority::High }),
        prop::sample::select(vec!["bug", "vip"]).prop_map(|l| Action::AddLabel { label: l.into() }),
        prop::sample::select(vec!["bug", "vip"]).prop_map(|l| Action::RemoveLabel { label: l.into() }),
        Just(Action::Close { reason: "done".into() }),
        Just(Action::Reopen),
        (1u8..=5, prop::option::of("[a-z]{1,6}")).prop_map(|(rating, comment)| Action::Rate { rating, comment }),
        "[a-z]{1,6}".prop_map(|body| Action::Write {
            body,
            attachments: Vec::new(),
            via: crate::schema::lifecycle::Via::DiscordDm,
            message_id: None
        }),
        (any::<bool>(), 1u64..1000).prop_map(|(delivered, id)| Action::RecordDelivery(Delivery {
            of: "e".into(),
            via: crate::schema::lifecycle::Via::DiscordDm,
            delivered,
            detail: None,
            message_id: Some(id.to_string()),
            channel_id: None,
        })),
    ];
    let step = (prop::sample::select(vec!["t1", "t2", "t3"]), prop::sample::select(vec!["ana", "bo"]), action);
    prop::collection::vec(step, 0..60).prop_map(|steps| {
        let mut commands: Vec<Command> =
            ["t1", "t2", "t3"].iter().map(|id| Command::create(ticket(id, &format!("body of {id}")))).collect();
        commands.extend(steps.into_iter().enumerate().map(|(i, (t, who, a))| command(i, t, who, a)));
        commands
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_cases(48)))]

    /// Whatever the batching, and with every event delivered twice, each row is the fold of its events; a second
    /// store built from the same events has the same rows.
    #[test]
    fn props_every_row_is_the_fold_of_its_events(commands in any_commands(), batch in 1usize..20) {
        let events = decided(&commands);
        let mut doubled = Vec::new();
        for payload in payloads(&events) {
            doubled.push(payload.clone());
            doubled.push(payload);
        }
        let (_dir, store, mut writer) = open_temp();
        apply_all(&mut writer, &doubled, 0, batch);
        let rows = all_rows(&store);
        for row in &rows {
            let own: Vec<&Event> = events.iter().filter(|e| e.ticket_id == row.id).collect();
            prop_assert_eq!(Some(row.clone()), fold(own));
        }
        prop_assert_eq!(rows.len(), 3);
        let (_dir2, rebuilt, mut writer2) = open_temp();
        apply_all(&mut writer2, &payloads(&events), 0, 7);
        prop_assert_eq!(all_rows(&rebuilt), rows);
    }
}

#[test]
fn records_below_the_stored_offset_are_not_applied_again() {
    let events = decided(&[Command::create(ticket("t1", "x")), command(1, "t1", "ana", Action::Claim)]);
    let (dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    drop(writer);
    // After a restart the same offsets are read again (the store's offsets are the truth of what it applied).
    let (_, mut again) = open(&dir.path().join("store/tickets.sqlite"), &Identity::named("events")).unwrap();
    assert_eq!(again.next_offsets().get(&0), Some(&2));
    let applied = again.apply(&[Record { partition: 0, offset: 1, payload: &payloads(&events)[1] }]).unwrap();
    assert_eq!(applied, Applied::default());
    assert_eq!(all_rows(&store)[0].version, 2);
}

/// #33: a ticket's page read the whole history on every view and live refresh, though it shows 500 events. The
/// store now reads only what the page shows: the first event and the newest, and counts the rest.
#[test]
fn a_tickets_timeline_holds_its_first_and_newest_events_and_counts_the_ones_left_out() {
    let mut commands = vec![Command::create(ticket("t1", "long story")), Command::create(ticket("t2", "other"))];
    for n in 0..12 {
        commands.push(command(
            n,
            "t1",
            "ana",
            Action::Comment { body: format!("comment {n}"), internal: false, via: None },
        ));
        commands.push(command(
            100 + n,
            "t2",
            "bo",
            Action::Comment { body: format!("elsewhere {n}"), internal: false, via: None },
        ));
    }
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&decided(&commands)), 0, 7);
    let conn = store.reader().unwrap();
    let shown = |max| {
        let (events, hidden) = query::timeline(&conn, "t1", max).unwrap();
        let bodies: Vec<String> = events
            .iter()
            .map(|e| match &e.change {
                Change::Commented { body, .. } => body.clone(),
                other => other.name().to_owned(),
            })
            .collect();
        (bodies, hidden)
    };
    // 13 events (created and 12 comments): with room for 5, the first and the 4 newest, 8 left out.
    assert_eq!(
        shown(5),
        (vec!["created".into(), "comment 8".into(), "comment 9".into(), "comment 10".into(), "comment 11".into()], 8)
    );
    let (all, hidden) = shown(500);
    assert_eq!((all.len(), hidden), (13, 0), "a short history is shown whole");
    assert_eq!(all[1..], (0..12).map(|n| format!("comment {n}")).collect::<Vec<_>>()[..], "oldest first");
    assert_eq!(shown(13), (all.clone(), 0));
    assert_eq!(shown(12).1, 1);
    assert_eq!(query::timeline(&conn, "nothing", 5).unwrap(), (vec![], 0));
}

#[test]
fn records_that_are_no_events_are_skipped_and_counted() {
    let (_dir, store, mut writer) = open_temp();
    let applied = writer.apply(&[Record { partition: 0, offset: 0, payload: b"{not json" }]).unwrap();
    assert_eq!(applied.unreadable, 1);
    assert!(all_rows(&store).is_empty());
    assert_eq!(writer.next_offsets().get(&0), Some(&1));
}

#[test]
fn a_store_built_from_another_topic_is_emptied_to_be_rebuilt() {
    let events = decided(&[Command::create(ticket("t1", "x"))]);
    let (dir, _store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    drop(writer);
    let (store, writer) = open(&dir.path().join("store/tickets.sqlite"), &Identity::named("other-events")).unwrap();
    assert!(all_rows(&store).is_empty());
    assert!(writer.next_offsets().is_empty());
}

/// Found by the fresh-clone CI run of the schema-10 change, failing first: a store written by the franz before (its
/// `tickets` table without a column this franz adds) was opened with the new tables' statements first, and the index
/// on the new column failed ("no such column: due_at"): `franz up` refused to start after an upgrade, instead of
/// rebuilding the store.
#[test]
fn a_store_of_an_older_franz_without_a_new_column_is_rebuilt_not_refused() {
    let events = decided(&[Command::create(ticket("t1", "x"))]);
    let (dir, _store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    drop(writer);
    let path = dir.path().join("store/tickets.sqlite");
    let older = rusqlite::Connection::open(&path).unwrap();
    older
        .execute_batch(
            "DROP INDEX tickets_by_due; ALTER TABLE tickets DROP COLUMN due_at;
             UPDATE meta SET value = '9' WHERE key = 'schema_version';",
        )
        .unwrap();
    drop(older);
    let (store, writer) = open(&path, &Identity::named("events")).expect("an older store is rebuilt");
    assert!(all_rows(&store).is_empty(), "emptied, to be rebuilt from the topic");
    assert!(writer.next_offsets().is_empty());
}

/// A store at `dir` opened for `identity` after one ticket was applied to it under `first`: whether it was kept.
fn kept_after(first: &Identity, identity: &Identity) -> bool {
    let events = decided(&[Command::create(ticket("t1", "x"))]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store/tickets.sqlite");
    let (_, mut writer) = open(&path, first).unwrap();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    drop(writer);
    let (store, writer) = open(&path, identity).unwrap();
    let kept = all_rows(&store).len() == 1;
    assert_eq!(writer.next_offsets().is_empty(), !kept, "the offsets go with the rows");
    kept
}

fn identity(cluster: Option<&str>, topic_id: Option<uuid::Uuid>) -> Identity {
    Identity { topic: "events".into(), cluster_id: cluster.map(str::to_owned), topic_id }
}

/// Regression (#33): a store remembered its topic by name only, so a data dir reused against another cluster (or
/// a topic deleted and created again) kept tickets that do not exist there and skipped the first events of each
/// partition. The cluster id and the topic id now decide too.
#[test]
fn a_store_of_another_cluster_or_of_a_topic_created_again_is_emptied_and_the_same_one_kept() {
    let id = uuid::Uuid::new_v4();
    let a = identity(Some("cluster-a"), Some(id));
    assert!(kept_after(&a, &a), "the same cluster and topic: kept");
    assert!(!kept_after(&a, &identity(Some("cluster-b"), Some(uuid::Uuid::new_v4()))), "another cluster: rebuilt");
    assert!(!kept_after(&a, &identity(Some("cluster-b"), Some(id))), "another cluster id alone: rebuilt");
    assert!(!kept_after(&a, &identity(Some("cluster-a"), Some(uuid::Uuid::new_v4()))), "the topic created again");
    assert!(!kept_after(&a, &Identity { topic: "other".into(), ..a.clone() }), "another topic name: rebuilt");
}

/// A cluster that cannot say who it is (an old broker, or none answered at start) never gets a store wiped: what
/// is unknown is not compared. A store that records no ids (written before franz recorded them, or while the
/// cluster did not answer) is rebuilt once they are known, since nothing vouches for it.
#[test]
fn an_unknown_identity_keeps_the_store_and_a_store_without_recorded_ids_is_rebuilt_once_they_are_known() {
    let a = identity(Some("cluster-a"), Some(uuid::Uuid::new_v4()));
    assert!(kept_after(&a, &Identity::named("events")), "nothing known now: kept");
    assert!(kept_after(&a, &identity(Some("cluster-a"), None)), "the topic id unknown, the cluster the same: kept");
    assert!(kept_after(&a, &identity(None, a.topic_id)), "the cluster id unknown, the topic the same: kept");
    assert!(!kept_after(&a, &identity(Some("cluster-b"), None)), "the topic id unknown, another cluster: rebuilt");
    assert!(kept_after(&Identity::named("events"), &Identity::named("events")), "by name, as before");
    assert!(!kept_after(&Identity::named("events"), &a), "no recorded ids, ids known now: rebuilt");

    // Once rebuilt, the ids are recorded and the store is kept from then on, also when they are unknown again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store/tickets.sqlite");
    drop(open(&path, &a).unwrap());
    let (_, mut writer) = open(&path, &Identity::named("events")).unwrap();
    apply_all(&mut writer, &payloads(&decided(&[Command::create(ticket("t1", "x"))])), 0, 10);
    drop(writer);
    let (store, _) = open(&path, &a).unwrap();
    assert_eq!(all_rows(&store).len(), 1, "an unknown identity did not erase the recorded one");
}

#[test]
fn search_finds_words_of_the_body_contact_and_comments_and_ignores_query_syntax() {
    let events = decided(&[
        Command::create(ticket("t1", "my printer is on fire")),
        Command::create(ticket("t2", "password reset please")),
        command(
            1,
            "t2",
            "ana",
            Action::Comment { body: "sent a reset link to the mailbox".into(), internal: true, via: None },
        ),
    ]);
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let conn = store.reader().unwrap();
    let found = |q: &str| -> Vec<String> {
        let filter = query::Filter { q: Some(q.into()), ..Default::default() };
        query::list(&conn, &filter).unwrap().tickets.into_iter().map(|t| t.id).collect()
    };
    assert_eq!(found("printer"), ["t1"]);
    assert_eq!(found("mailb"), ["t2"], "a word matches as a prefix, comments included");
    assert_eq!(found("PONTATOT"), ["t2", "t1"], "the contact, newest first");
    assert_eq!(found("\"fire\" OR NEAR("), Vec::<String>::new(), "operators are words, not syntax");
    assert_eq!(found("fire\")*"), ["t1"]);
    // Regression (#33): a one-letter prefix matched most of a large store and took seconds to sort; words of one
    // or two letters are matched whole.
    assert_eq!(found("p"), Vec::<String>::new(), "a single letter is no prefix");
    assert_eq!(found("my"), ["t1"], "a short word still matches whole");
    assert_eq!(found("pas"), ["t2"], "three letters are a prefix");
}

#[test]
fn pages_follow_each_other_without_gaps_or_repeats() {
    let commands: Vec<Command> = (0..25).map(|i| Command::create(ticket(&format!("t{i:02}"), "x"))).collect();
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&decided(&commands)), 0, 10);
    let conn = store.reader().unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let filter = query::Filter { limit: Some(10), cursor: cursor.clone(), ..Default::default() };
        let page = query::list(&conn, &filter).unwrap();
        seen.extend(page.tickets.into_iter().map(|t| t.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("t{i:02}")).collect();
    assert_eq!(seen, expected);
    let bad = query::Filter { cursor: Some("nope".into()), ..Default::default() };
    assert!(matches!(query::list(&conn, &bad), Err(query::QueryError::Invalid(_))));
}

#[test]
fn filters_narrow_the_list() {
    let events = decided(&[
        Command::create(ticket("t1", "a")),
        Command::create(ticket("t2", "b")),
        command(1, "t1", "ana", Action::Claim),
        command(2, "t2", "ana", Action::AddLabel { label: "VIP".into() }),
    ]);
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let conn = store.reader().unwrap();
    let ids = |filter: query::Filter| -> Vec<String> {
        query::list(&conn, &filter).unwrap().tickets.into_iter().map(|t| t.id).collect()
    };
    assert_eq!(ids(query::Filter { status: Some(Status::Claimed), ..Default::default() }), ["t1"]);
    assert_eq!(ids(query::Filter { assignee: Some("ana".into()), ..Default::default() }), ["t1"]);
    assert_eq!(ids(query::Filter { unassigned: true, ..Default::default() }), ["t2"]);
    assert_eq!(ids(query::Filter { label: Some("vip".into()), ..Default::default() }), ["t2"]);
    assert_eq!(ids(query::Filter { origin: Some("Web".into()), ..Default::default() }), Vec::<String>::new());
}

/// `due_before`: only the tickets with a target of the team due by then (a missed one too), the soonest due first;
/// the silence and tickets without a running target are not listed.
#[test]
fn a_list_by_due_time_holds_the_tickets_due_by_then_the_soonest_first() {
    use crate::lifecycle::levels::{Levels, Target};
    let targets = [
        ((Target::FirstResponse, Priority::Normal), 60),
        ((Target::FirstResponse, Priority::Urgent), 10),
        ((Target::Silence, Priority::Normal), 60 * 24 * 7),
    ];
    let levels = Levels {
        teams: Default::default(),
        calendar: crate::lifecycle::calendar::Calendar::always(),
        warn_percent: 80,
        targets: targets
            .into_iter()
            .map(|(key, minutes)| (key, std::time::Duration::from_secs(minutes * 60)))
            .collect(),
        remind_before: std::time::Duration::from_secs(2 * 86_400),
    };
    let policy = Policy { levels: Some(std::sync::Arc::new(levels)), ..Policy::default() };
    let commands = [
        Command::create(ticket("later", "a")),
        Command::create(ticket("sooner", "b")),
        Command::create(ticket("answered", "c")),
        command(1, "sooner", "ana", Action::SetPriority { priority: Priority::Urgent }),
        command(2, "answered", "ana", Action::Comment { body: "hi".into(), internal: false, via: None }),
    ];
    let mut states: HashMap<String, TicketState> = HashMap::new();
    let events: Vec<Event> = commands
        .iter()
        .map(|c| {
            let state = states.get(&c.ticket_id).cloned();
            let event = decide(state.as_ref(), c, "2026-12-07T10:00:00.000Z", &policy);
            if let Some(next) = lifecycle::apply(state, &event) {
                states.insert(c.ticket_id.clone(), next);
            }
            event
        })
        .collect();
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let conn = store.reader().unwrap();
    let due = |before: &str| -> Vec<String> {
        let filter = query::Filter { due_before: Some(before.into()), ..Default::default() };
        query::list(&conn, &filter).unwrap().tickets.into_iter().map(|t| t.id).collect()
    };
    assert_eq!(due("2026-12-07T12:00:00Z"), ["sooner", "later"], "the soonest due first");
    assert_eq!(due("2026-12-07T10:30:00Z"), ["sooner"]);
    assert_eq!(due("2026-12-07T09:00:00Z"), Vec::<String>::new());
    assert_eq!(due("2026-12-30T00:00:00+01:00"), ["sooner", "later"], "the answered ticket's silence is no target");
    let wrong = query::Filter { due_before: Some("tomorrow".into()), ..Default::default() };
    assert!(query::list(&conn, &wrong).unwrap_err().to_string().contains("RFC 3339"));
}

/// Found by an attack (#26), failing first: `due_before` is compared as text with the stored RFC 3339 stamps. A
/// valid far-future time west of UTC (`9999-12-31T23:00:00-05:00`) is in the year 10000 in UTC, which chrono writes
/// as `+10000-…`; `+` sorts before every digit, so "everything due before the end of time" lists nothing.
#[test]
fn a_list_due_before_the_end_of_time_holds_every_ticket_with_a_target() {
    use crate::lifecycle::levels::{Levels, Target};
    let levels = Levels {
        teams: Default::default(),
        calendar: crate::lifecycle::calendar::Calendar::always(),
        warn_percent: 80,
        targets: [((Target::FirstResponse, Priority::Normal), std::time::Duration::from_secs(3600))].into(),
        remind_before: std::time::Duration::from_secs(2 * 86_400),
    };
    let policy = Policy { levels: Some(std::sync::Arc::new(levels)), ..Policy::default() };
    let event = decide(None, &Command::create(ticket("due", "a")), "2026-12-07T10:00:00.000Z", &policy);
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&[event]), 0, 10);
    let conn = store.reader().unwrap();
    let due = |before: &str| -> Vec<String> {
        let filter = query::Filter { due_before: Some(before.into()), ..Default::default() };
        query::list(&conn, &filter).unwrap().tickets.into_iter().map(|t| t.id).collect()
    };
    assert_eq!(due("9999-12-31T23:00:00Z"), ["due"]);
    assert_eq!(due("9999-12-31T23:00:00-05:00"), ["due"], "five hours later than the line above");
}

/// Regression (#33): the store kept an assignee's name only, so a Discord user called `ana` and the desk's `ana`
/// shared one "Mine" and one line of the closers' numbers.
#[test]
fn two_people_of_one_name_have_their_own_tickets_and_numbers() {
    let stranger = Actor { source: ActorSource::Discord, name: "ana".into(), id: Some("42".into()), staff: None };
    let linked =
        Actor { source: ActorSource::Discord, name: "ana_k".into(), id: Some("43".into()), staff: Some("ana".into()) };
    let by = |n: usize, ticket: &str, actor: &Actor, action: Action| Command {
        actor: actor.clone(),
        ..command(n, ticket, "x", action)
    };
    let events = decided(&[
        Command::create(ticket("t1", "a")),
        Command::create(ticket("t2", "b")),
        Command::create(ticket("t3", "c")),
        by(1, "t1", &stranger, Action::Claim),
        command(2, "t2", "ana", Action::Claim),
        by(3, "t3", &linked, Action::Claim),
        by(4, "t1", &stranger, Action::Close { reason: "done".into() }),
        command(5, "t2", "ana", Action::Close { reason: "done".into() }),
    ]);
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let conn = store.reader().unwrap();
    let ids = |assignee: &str| -> Vec<String> {
        let filter = query::Filter { assignee: Some(assignee.into()), ..Default::default() };
        query::list(&conn, &filter).unwrap().tickets.into_iter().map(|t| t.id).collect()
    };
    assert_eq!(ids("ana"), ["t3", "t2"], "the desk's ana, from the desk and from her linked Discord account");
    assert_eq!(ids("staff:ana"), ["t3", "t2"]);
    assert_eq!(ids("discord:42"), ["t1"], "the Discord user called ana is someone else");
    let t1 = query::ticket(&conn, "t1").unwrap().unwrap();
    assert_eq!(t1.assignee.as_ref().map(Person::display).as_deref(), Some("@ana (Discord)"));
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let stats = query::stats(&conn, now).unwrap();
    assert_eq!(
        stats.closed_by,
        [query::Count { name: "@ana (Discord)".into(), tickets: 1 }, query::Count { name: "ana".into(), tickets: 1 }]
    );
}

#[test]
fn a_submitters_tickets_are_found_by_their_id_newest_first_and_no_one_elses() {
    let from = |id: &str, user: Option<&str>| Ticket { contact_id: user.map(String::from), ..ticket(id, "a") };
    let events = decided(&[
        Command::create(from("t1", Some("42"))),
        Command::create(from("t2", Some("7"))),
        Command::create(from("t3", Some("42"))),
        Command::create(from("t4", None)),
    ]);
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let conn = store.reader().unwrap();
    let ids = |user: &str, limit: usize| -> Vec<String> {
        query::by_contact(&conn, user, limit).unwrap().into_iter().map(|t| t.id).collect()
    };
    assert_eq!(ids("42", 10), ["t3", "t1"]);
    assert_eq!(ids("42", 1), ["t3"]);
    assert_eq!(ids("7", 10), ["t2"]);
    assert!(ids("", 10).is_empty() && ids("99", 10).is_empty());
}

/// Found by an attack (#28), failing first: `open_tickets_max` may be up to 1,000, but the open tickets a limit counts
/// were read at most a page (200) at a time, so with a limit above 200 nobody ever reached it: a submitter with 250
/// open tickets under a limit of 250 was let open more, without end.
#[test]
fn a_limit_of_open_tickets_above_a_page_counts_every_open_ticket_up_to_it() {
    let from = |n: usize| Ticket { contact_id: Some("42".into()), ..ticket(&format!("t{n}"), "a") };
    let events = decided(&(0..250).map(|n| Command::create(from(n))).collect::<Vec<_>>());
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 1000);
    let conn = store.reader().unwrap();
    assert_eq!(query::open_of_contact(&conn, "42", 250).unwrap().len(), 250);
    assert_eq!(query::open_of_contact(&conn, "42", 1000).unwrap().len(), 250);
}

/// Found by an attack (#25): a start looks for direct messages sent while franz was away in the channels of at most a
/// hundred submitters, those `recent_contacts` names first. It ranks them by their newest ticket's creation, not by
/// when their tickets last changed: the submitter the team has just answered on an older ticket (the one most likely to
/// write back, whose ticket waits for them) comes after everyone who opened a ticket since, and with a hundred of those
/// is never looked at, so their answer sent while franz was away is lost.
#[test]
fn recent_contacts_come_by_their_latest_change_not_their_newest_ticket() {
    let from = |id: &str, user: &str| Ticket { contact_id: Some(user.into()), ..ticket(id, "a") };
    let events = decided(&[
        Command::create(from("t1", "1")),
        Command::create(from("t2", "2")),
        Command::create(from("t3", "3")),
        // The team answers the oldest ticket last.
        command(3, "t1", "ana", Action::Comment { body: "Which floor?".into(), internal: false, via: None }),
    ]);
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let conn = store.reader().unwrap();
    let contacts = query::recent_contacts(&conn, "2026-03-01T00:00:00.000Z", 2).unwrap();
    assert!(contacts.contains(&"1".to_owned()), "the submitter answered last is left out: {contacts:?}");
}

#[test]
fn stats_count_statuses_time_to_claim_days_labels_and_closers() {
    let events = decided(&[
        Command::create(ticket("t1", "a")),
        Command::create(ticket("t2", "b")),
        command(1, "t1", "ana", Action::Claim),
        command(2, "t2", "ana", Action::Close { reason: "dup".into() }),
        command(3, "t1", "ana", Action::AddLabel { label: "vip".into() }),
    ]);
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let stats = query::stats(&store.reader().unwrap(), now).unwrap();
    assert_eq!((stats.open, stats.claimed, stats.waiting, stats.closed), (0, 1, 0, 1));
    // Created at minute 0 and 1, claimed at minute 2, closed at minute 3 (see `decided`).
    assert_eq!(stats.time_to_claim.median_secs, Some(120.0));
    assert_eq!(stats.time_to_close.median_secs, Some(120.0));
    assert_eq!(stats.created_per_hour.iter().map(|b| b.created).sum::<u64>(), 2);
    assert_eq!(stats.created_per_day.len(), 30);
    assert_eq!(stats.created_per_day.iter().map(|b| b.created).sum::<u64>(), 2);
    assert_eq!(stats.by_label, [query::Count { name: "vip".into(), tickets: 1 }]);
    assert_eq!(stats.closed_by, [query::Count { name: "ana".into(), tickets: 1 }]);
}

/// Regression (#33): a read had no time limit, so one search held a connection for as long as it ran.
#[test]
fn a_read_past_its_time_limit_is_stopped_says_so_and_leaves_no_deadline_behind() {
    let (_dir, store, _writer) = open_temp();
    let forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let conn = store.reader_within(Reads::Searches, Duration::from_millis(50)).unwrap();
    let started = std::time::Instant::now();
    let error = conn.query_row(forever, [], |row| row.get::<_, i64>(0)).expect_err("stopped");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped at its deadline: {:?}", started.elapsed());
    assert!(conn.stopped());
    assert!(matches!(conn.explain(error), ReadError::TooLong(_)));
    drop(conn);
    // Every connection of the pool, the stopped one among them, reads again without the old deadline.
    std::thread::sleep(Duration::from_millis(60));
    let conns: Vec<_> =
        (0..SEARCH_READERS).map(|_| store.reader_within(Reads::Searches, Duration::from_secs(60)).unwrap()).collect();
    for conn in &conns {
        assert_eq!(conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)).unwrap(), 1);
        assert!(!conn.stopped());
    }
}

/// The targets met and missed, by week, priority and person: each promise counted once, as the events decide it,
/// also when the same events are applied again (a rebuild, a replay).
#[test]
fn stats_count_the_targets_met_in_time_by_week_priority_and_person() {
    use crate::lifecycle::calendar::Calendar;
    use crate::lifecycle::levels::{Levels, Target};
    let hour = Duration::from_secs(3600);
    let targets =
        [((Target::FirstResponse, Priority::Normal), hour), ((Target::Resolution, Priority::Normal), 4 * hour)];
    let levels = Levels {
        teams: Default::default(),
        calendar: Calendar::always(),
        warn_percent: 80,
        targets: targets.into_iter().collect(),
        remind_before: Duration::ZERO,
    };
    let policy = Policy { levels: Some(Arc::new(levels)), ..Policy::default() };
    let tick = |n: usize, ticket: &str, at: &str| Command {
        command_id: format!("tick:{n}"),
        ticket_id: ticket.into(),
        actor: Actor { source: ActorSource::Franz, name: "uhr".into(), id: None, staff: None },
        action: Action::Tick { at: at.into() },
    };
    let reply = || Action::Comment { body: "on it".into(), internal: false, via: None };
    // t1 is answered by ana in time, then closed by her; t2 is nobody's when its first response is missed, then bo
    // claims, answers late (which meets nothing) and closes it in time.
    let steps = [
        (Command::create(ticket("t1", "a")), "2026-03-02T09:00:00.000Z"),
        (Command::create(ticket("t2", "b")), "2026-03-02T09:00:00.000Z"),
        (command(1, "t1", "ana", reply()), "2026-03-02T09:30:00.000Z"),
        (tick(2, "t2", "2026-03-02T09:48:00.000Z"), "2026-03-02T09:48:00.000Z"),
        (tick(3, "t2", "2026-03-02T10:00:00.000Z"), "2026-03-02T10:00:00.000Z"),
        (command(4, "t2", "bo", Action::Claim), "2026-03-02T10:05:00.000Z"),
        (command(5, "t2", "bo", reply()), "2026-03-02T10:10:00.000Z"),
        (command(6, "t1", "ana", Action::Close { reason: "done".into() }), "2026-03-02T10:20:00.000Z"),
        (command(7, "t2", "bo", Action::Close { reason: "done".into() }), "2026-03-02T10:30:00.000Z"),
    ];
    let mut states: HashMap<String, TicketState> = HashMap::new();
    let events: Vec<Event> = steps
        .iter()
        .map(|(command, at)| {
            let state = states.get(&command.ticket_id).cloned();
            let event = decide(state.as_ref(), command, at, &policy);
            if let Some(next) = lifecycle::apply(state, &event) {
                states.insert(command.ticket_id.clone(), next);
            }
            event
        })
        .collect();
    assert_eq!(events.iter().filter(|e| e.change.name() == "breached").count(), 1, "{events:?}");
    let (_dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 3);
    // The same events again, at later offsets (as a second copy on the topic would be): counted once.
    apply_all(&mut writer, &payloads(&events), events.len() as i64, 100);
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-04T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let stats = query::stats(&store.reader().unwrap(), now).unwrap();
    let tally = |met, missed| query::MetMissed { met, missed };
    let week = stats.within_target_by_week.last().unwrap();
    assert_eq!(stats.within_target_by_week.len(), 8);
    assert_eq!(week.name, "2026-W10");
    assert_eq!((week.first_response, week.resolution), (tally(1, 1), tally(2, 0)));
    assert_eq!(stats.within_target_by_week[..7].iter().map(query::Within::decided).sum::<u64>(), 0);
    let priorities: Vec<_> = stats.within_target_by_priority.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(priorities, ["normal"]);
    let people: Vec<_> = stats
        .within_target_by_person
        .iter()
        .map(|row| (row.name.as_str(), row.first_response, row.resolution))
        .collect();
    assert_eq!(
        people,
        [("ana", tally(1, 0), tally(1, 0)), ("bo", tally(0, 0), tally(1, 0)), ("unassigned", tally(0, 1), tally(0, 0))]
    );
    let teams: Vec<_> =
        stats.within_target_by_team.iter().map(|row| (row.name.as_str(), row.first_response, row.resolution)).collect();
    assert_eq!(teams, [("triage", tally(1, 1), tally(2, 0))], "of no team");
    assert!(stats.open_by_team.is_empty(), "both closed");
}

/// The ids of the closed tickets most like ticket `me` once `commands` are decided and applied, with `me` and a way
/// to ask the same store for another ticket.
fn similar_in(commands: &[Command]) -> (Vec<String>, TicketState, impl Fn(&TicketState) -> Vec<String>) {
    let events = decided(commands);
    let (dir, store, mut writer) = open_temp();
    apply_all(&mut writer, &payloads(&events), 0, 10);
    let me = query::ticket(&store.reader().unwrap(), "me").unwrap().unwrap();
    let similar_to = move |ticket: &TicketState| {
        let _kept = &dir;
        let conn = store.reader().unwrap();
        query::similar(&conn, ticket, 5).unwrap().into_iter().map(|t| t.id).collect::<Vec<String>>()
    };
    (similar_to(&me), me, similar_to)
}

/// Similar tickets (#27): closed ones sharing the most words first, never the ticket itself or an open one.
#[test]
fn similar_tickets_are_the_closed_ones_most_like_it_best_first() {
    let mut commands = vec![
        Command::create(ticket("jam", "the printer has a paper jam on floor two")),
        Command::create(ticket("open-jam", "printer paper jam again")),
        Command::create(ticket("toner", "the printer is out of toner")),
        Command::create(ticket("login", "cannot log in to my account")),
        Command::create(ticket("me", "paper jam in the printer")),
    ];
    for (n, id) in ["jam", "toner", "login"].iter().enumerate() {
        commands.push(command(n, id, "ana", Action::Close { reason: "fixed".into() }));
    }
    let (found, me, similar_to) = similar_in(&commands);
    assert_eq!(found, ["jam", "toner"], "closed ones only, the one sharing more words first; never itself");
    let nothing = TicketState { body: "?! ..".into(), ..me };
    assert!(similar_to(&nothing).is_empty(), "no word, no search");
}

/// Attack (#27): a word written with a diacritic (`Überweisung`) is never found in `search_terms` as written (the
/// index folds it to `uberweisung`), so it counts as the commonest word and is dropped in favour of 12 common ones:
/// the one closed ticket sharing the ticket's rarest word is never found.
#[test]
fn attack_a_rare_word_with_a_diacritic_still_finds_the_ticket_sharing_it() {
    let common = "please help with payment transfer from account today because money missing urgently";
    let mut commands = vec![Command::create(ticket("bank", "die Überweisung kam nie an"))];
    let noise: Vec<String> = (0..6).map(|n| format!("noise-{n}")).collect();
    for id in &noise {
        commands.push(Command::create(ticket(id, common)));
    }
    commands.push(Command::create(ticket("me", &format!("{common} Überweisung"))));
    for (n, id) in std::iter::once("bank").chain(noise.iter().map(String::as_str)).enumerate() {
        commands.push(command(n, id, "ana", Action::Close { reason: "fixed".into() }));
    }
    let (found, _, _) = similar_in(&commands);
    assert_eq!(found.first().map(String::as_str), Some("bank"), "the one sharing the rarest word first: {found:?}");
}
