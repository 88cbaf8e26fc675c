//! Service levels through `decide` and `apply`, as akte and the store run them: clocks started, stopped and moved
//! by the ticket's events, and time commands that decide each point once, whatever the clock jumps.

use std::sync::Arc;

use chrono::{DateTime, Duration as Span, Utc};
use proptest::prelude::*;

use super::*;
use crate::lifecycle::{Policy, TicketState, apply, decide};
use crate::schema::Ticket;
use crate::schema::lifecycle::{Action, Actor, ActorSource, Command, Event, Status, Via};

/// Monday 2026-12-07, 10:00 UTC.
const MONDAY: &str = "2026-12-07T10:00:00.000Z";

fn at(minutes: i64) -> String {
    stamp(parse(MONDAY).unwrap() + Span::minutes(minutes))
}

fn levels(calendar: Calendar, targets: &[(Target, Priority, u64)]) -> Policy {
    let targets = targets.iter().map(|&(t, p, minutes)| ((t, p), Duration::from_secs(minutes * 60))).collect();
    let levels = Levels {
        calendar,
        warn_percent: 80,
        targets,
        remind_before: Duration::from_secs(2 * 86_400),
        teams: Default::default(),
    };
    Policy { levels: Some(Arc::new(levels)), ..Policy::default() }
}

/// One hour to the first response, two to the resolution, one to the next response, for normal tickets, always.
fn hourly() -> Policy {
    levels(
        Calendar::always(),
        &[
            (Target::FirstResponse, Priority::Normal, 60),
            (Target::Resolution, Priority::Normal, 120),
            (Target::NextResponse, Priority::Normal, 60),
            (Target::FirstResponse, Priority::Urgent, 10),
        ],
    )
}

fn ticket() -> Ticket {
    Ticket {
        id: "t1".into(),
        contact: "pontatot".into(),
        origin: "Discord".into(),
        body: "help".into(),
        date: MONDAY.into(),
        contact_id: Some("42".into()),
        ..Ticket::default()
    }
}

fn franz() -> Actor {
    Actor { source: ActorSource::Franz, name: "uhr".into(), id: None, staff: None }
}

fn submitter() -> Actor {
    Actor { source: ActorSource::Discord, name: "pontatot".into(), id: Some("42".into()), staff: None }
}

fn action(n: usize, actor: Actor, action: Action) -> Command {
    Command { command_id: format!("c{n}"), ticket_id: "t1".into(), actor, action }
}

fn reply() -> Action {
    Action::Comment { body: "on it".into(), internal: false, via: None }
}

fn write() -> Action {
    Action::Write { body: "still broken".into(), attachments: Vec::new(), via: Via::DiscordDm, message_id: None }
}

/// A ticket's life: decides each command at its time, as akte does, and applies each event, as the store does.
struct Life {
    policy: Policy,
    state: Option<TicketState>,
    events: Vec<Event>,
    n: usize,
}

impl Life {
    fn new(policy: Policy) -> Life {
        let mut life = Life { policy, state: None, events: Vec::new(), n: 0 };
        life.run(Actor::staff(ActorSource::Franz, "akte"), Action::Create { ticket: Box::new(ticket()) }, 0);
        life
    }

    fn run(&mut self, actor: Actor, what: Action, minutes: i64) -> &Event {
        self.n += 1;
        let command = action(self.n, actor, what);
        let event = decide(self.state.as_ref(), &command, &at(minutes), &self.policy);
        self.state = apply(self.state.take(), &event);
        self.events.push(event);
        self.events.last().unwrap()
    }

    /// A time command at `minutes`, as the scheduler sends it: its id names the version it saw.
    fn tick(&mut self, minutes: i64) -> String {
        let version = self.state.as_ref().map_or(0, |s| s.version);
        self.n += 1;
        let command = Command {
            command_id: format!("tick:{version}"),
            ticket_id: "t1".into(),
            actor: franz(),
            action: Action::Tick { at: at(minutes) },
        };
        let event = decide(self.state.as_ref(), &command, &at(minutes), &self.policy);
        self.state = apply(self.state.take(), &event);
        let kind = event.change.name().to_owned();
        self.events.push(event);
        kind
    }

    fn clocks(&self) -> &[Clock] {
        &self.state.as_ref().unwrap().clocks
    }

    /// The clock of `target` that has a time for the ticket's priority.
    fn clock(&self, target: Target) -> Option<&Clock> {
        self.clocks().iter().find(|clock| clock.target == target && clock.target_secs > 0)
    }

    /// Every target decided over the ticket's life, as the store counts them from the events.
    fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes_and_starts().0
    }

    /// The targets decided, and the targets of the clocks with a time that were started (one per start).
    fn outcomes_and_starts(&self) -> (Vec<Outcome>, Vec<Target>) {
        let mut state: Option<TicketState> = None;
        let (mut decided, mut started) = (Vec::new(), Vec::new());
        for event in &self.events {
            let before = state.as_ref().map(|s| s.clocks.clone()).unwrap_or_default();
            state = apply(state.take(), event);
            let after = state.as_ref().map(|s| s.clocks.as_slice()).unwrap_or_default();
            decided.extend(outcomes(&before, after, &event.change));
            let new =
                |clock: &&Clock| !before.iter().any(|old| old.target == clock.target && old.started == clock.started);
            started.extend(after.iter().filter(|c| c.target_secs > 0).filter(new).map(|clock| clock.target));
        }
        (decided, started)
    }

    fn count(&self, kind: &str) -> usize {
        self.events.iter().filter(|e| e.change.name() == kind).count()
    }
}

#[test]
fn a_new_ticket_starts_its_first_response_and_resolution_clocks_due_soon_at_80_percent() {
    let life = Life::new(hourly());
    assert_eq!(life.events[0].clocks.as_ref().map(Vec::len), Some(2), "the created event records them");
    let first = life.clock(Target::FirstResponse).unwrap();
    assert_eq!((first.soon.as_deref(), first.due.as_deref()), (Some(at(48).as_str()), Some(at(60).as_str())));
    assert_eq!(life.clock(Target::Resolution).unwrap().due.as_deref(), Some(at(120).as_str()));
    assert_eq!(life.clock(Target::NextResponse), None, "nothing to answer yet");
    assert_eq!(next_check(life.clocks()), Some(at(48)));
}

#[test]
fn a_ticket_left_unanswered_is_due_soon_once_then_breached_once() {
    let mut life = Life::new(hourly());
    assert_eq!(life.tick(47), "rejected", "nothing is due before its point");
    assert_eq!(life.tick(48), "due_soon");
    assert_eq!(life.tick(50), "rejected", "due soon is said once");
    assert_eq!(life.tick(60), "breached");
    assert_eq!(life.tick(61), "rejected", "breached is said once");
    assert_eq!((life.count("due_soon"), life.count("breached")), (1, 1));
    let Change::Breached { target, due } = &life.events.iter().find(|e| e.change.name() == "breached").unwrap().change
    else {
        unreachable!()
    };
    assert_eq!((*target, due.as_str()), (Target::FirstResponse, at(60).as_str()));
    assert_eq!(next_check(life.clocks()), Some(at(96)), "the resolution's due soon comes next");
}

#[test]
fn a_reply_in_time_stops_the_first_response_clock_and_nothing_is_said() {
    let mut life = Life::new(hourly());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    assert_eq!(life.clock(Target::FirstResponse), None);
    for minute in [48, 60, 500] {
        assert_eq!(life.tick(minute), "rejected", "minute {minute}");
    }
    assert_eq!((life.count("due_soon"), life.count("breached")), (0, 0));
}

#[test]
fn time_waiting_on_the_submitter_does_not_count_toward_the_resolution() {
    let mut life = Life::new(hourly());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    let resolution = life.clock(Target::Resolution).unwrap();
    assert_eq!((resolution.due.as_deref(), resolution.paused_since.as_deref()), (None, Some(at(30).as_str())));
    assert_eq!(life.tick(500), "rejected", "a clock standing still is never due");
    // The submitter answers four and a half hours later: the resolution is due 4h30 later than it was.
    life.run(submitter(), write(), 300);
    let resolution = life.clock(Target::Resolution).unwrap();
    assert_eq!(resolution.due.as_deref(), Some(at(120 + 270).as_str()));
    assert_eq!(resolution.paused_secs, 270 * 60);
    let next = life.clock(Target::NextResponse).unwrap();
    assert_eq!(next.due.as_deref(), Some(at(360).as_str()), "the team owes the next answer within the hour");
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 310);
    assert_eq!(life.clock(Target::NextResponse), None, "answered");
}

#[test]
fn a_change_of_priority_sets_each_clock_anew_from_its_start() {
    let mut life = Life::new(hourly());
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::SetPriority { priority: Priority::Urgent }, 5);
    assert_eq!(life.clock(Target::FirstResponse).unwrap().due.as_deref(), Some(at(10).as_str()));
    assert_eq!(life.clock(Target::Resolution), None, "no resolution target for urgent tickets");
    assert_eq!(life.tick(10), "due_soon", "its due soon (8 minutes) passed already");
    assert_eq!(life.tick(10), "breached");
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::SetPriority { priority: Priority::Normal }, 11);
    let first = life.clock(Target::FirstResponse).unwrap();
    assert_eq!(first.due.as_deref(), Some(at(60).as_str()), "the normal target again, from the ticket's start");
    assert!(first.breached, "a miss stays a miss whatever the priority becomes: {first:?}");
    assert_eq!(life.tick(60), "rejected", "and is said once");
}

#[test]
fn a_close_stops_every_clock_and_a_reopening_starts_the_resolution_again() {
    let mut life = Life::new(hourly());
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::Close { reason: "done".into() }, 20);
    assert!(life.clocks().is_empty());
    assert_eq!(life.tick(200), "rejected");
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::Reopen, 300);
    assert_eq!(life.clock(Target::Resolution).unwrap().due.as_deref(), Some(at(420).as_str()));
    assert_eq!(life.clock(Target::FirstResponse), None, "the first response was given");
}

#[test]
fn working_hours_move_deadlines_over_the_night_and_the_weekend() {
    let calendar = Calendar::new("Europe/Berlin", "Mon-Fri 09:00-17:00", &[]).unwrap();
    let policy = levels(calendar, &[(Target::FirstResponse, Priority::Normal, 60)]);
    let friday = Ticket { date: "2026-12-11T15:30:00.000Z".into(), ..ticket() };
    let command = action(1, franz(), Action::Create { ticket: Box::new(friday) });
    // Friday 16:30 in Berlin: half an hour today, half an hour on Monday.
    let event = decide(None, &command, "2026-12-11T15:30:00.000Z", &policy);
    let clock = &event.clocks.as_ref().unwrap()[0];
    assert_eq!(clock.due.as_deref(), Some("2026-12-14T08:30:00.000Z"), "Monday 09:30 in Berlin");
}

#[test]
fn only_franz_says_what_time_it_is_and_a_time_that_is_no_time_is_refused() {
    let life = Life::new(hourly());
    let state = life.state.as_ref();
    let forged = action(9, Actor::staff(ActorSource::Web, "ana"), Action::Tick { at: at(1000) });
    let Change::Rejected { reason, .. } = decide(state, &forged, &at(1), &life.policy).change else { panic!() };
    assert!(reason.contains("only franz"), "{reason}");
    let garbled = action(9, franz(), Action::Tick { at: "soon".into() });
    let Change::Rejected { reason, .. } = decide(state, &garbled, &at(1), &life.policy).change else { panic!() };
    assert!(reason.contains("RFC 3339"), "{reason}");
}

#[test]
fn without_service_levels_no_event_carries_clocks() {
    let mut life = Life::new(Policy::default());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    life.run(submitter(), write(), 40);
    assert!(life.events.iter().all(|event| event.clocks.is_none()));
    assert_eq!(life.tick(1000), "rejected");
}

/// Only the silence: 7 days to close, the reminder 2 days before; never for urgent tickets.
fn silent() -> Policy {
    let week = 7 * 24 * 60;
    levels(
        Calendar::new("Europe/Berlin", "Mon-Fri 09:00-17:00", &[]).unwrap(),
        &[
            (Target::Silence, Priority::Low, week),
            (Target::Silence, Priority::Normal, week),
            (Target::Silence, Priority::High, week),
        ],
    )
}

const DAY: i64 = 24 * 60;

#[test]
fn a_ticket_waiting_on_a_silent_submitter_is_reminded_then_closed_in_calendar_days() {
    let mut life = Life::new(silent());
    assert!(life.clocks().is_empty(), "nothing runs before the team replies");
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    let silence = life.clock(Target::Silence).unwrap();
    // Calendar days, whatever the working hours: a weekend counts.
    assert_eq!(silence.soon.as_deref(), Some(at(30 + 5 * DAY).as_str()), "the reminder two days before");
    assert_eq!(silence.due.as_deref(), Some(at(30 + 7 * DAY).as_str()));
    assert_eq!(life.tick(30 + 5 * DAY - 1), "rejected");
    assert_eq!(life.tick(30 + 5 * DAY), "reminded");
    let Change::Reminded { closes } = &life.events.last().unwrap().change else { unreachable!() };
    assert_eq!(closes, &at(30 + 7 * DAY));
    assert_eq!(life.tick(30 + 6 * DAY), "rejected", "reminded once");
    assert_eq!(life.tick(30 + 7 * DAY), "closed");
    let state = life.state.as_ref().unwrap();
    assert_eq!((state.status, state.close_reason.as_deref()), (Status::Closed, Some(SILENT)));
    assert_eq!(state.closed_by.as_ref().map(|p| p.name.as_str()), Some("franz"), "by franz itself");
    assert!(state.clocks.is_empty());
    assert_eq!(life.tick(30 + 30 * DAY), "rejected", "closed once");
}

#[test]
fn the_submitters_answer_stops_the_silence_and_the_next_reply_starts_it_anew() {
    let mut life = Life::new(silent());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    life.run(submitter(), write(), 3 * DAY);
    assert_eq!(life.clock(Target::Silence), None, "answered");
    assert_eq!(life.tick(30 * DAY), "rejected", "nothing closes it");
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 31 * DAY);
    assert_eq!(life.clock(Target::Silence).unwrap().due.as_deref(), Some(at(38 * DAY).as_str()));
    // A second reply while waiting starts the week again.
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 32 * DAY);
    assert_eq!(life.clock(Target::Silence).unwrap().due.as_deref(), Some(at(39 * DAY).as_str()));
}

#[test]
fn an_excepted_priority_is_never_closed_for_silence_and_a_closed_ticket_never_waits() {
    let mut life = Life::new(silent());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::SetPriority { priority: Priority::Urgent }, 40);
    assert_eq!(life.clock(Target::Silence), None, "urgent tickets are excepted");
    assert_eq!(life.tick(30 * DAY), "rejected");
    let mut closed = Life::new(silent());
    closed.run(Actor::staff(ActorSource::Web, "ana"), Action::Close { reason: "done".into() }, 10);
    closed.run(Actor::staff(ActorSource::Web, "ana"), reply(), 20);
    assert!(closed.clocks().is_empty(), "a reply to a closed ticket waits for nothing");
}

#[test]
fn targets_are_read_as_priorities_and_working_times_and_anything_else_is_refused_with_the_form() {
    let read = parse_targets("urgent 1h, high 4h30m,normal 90m").unwrap();
    assert_eq!(
        read,
        [
            (Priority::Urgent, Duration::from_secs(3600)),
            (Priority::High, Duration::from_secs(4 * 3600 + 1800)),
            (Priority::Normal, Duration::from_secs(5400)),
        ]
    );
    assert_eq!(parse_targets(""), Ok(Vec::new()));
    for wrong in ["urgent", "urgent 1d", "critical 1h", "urgent 1h, urgent 2h", "urgent 0m", "urgent h", "urgent 1h2"] {
        let error = parse_targets(wrong).unwrap_err();
        assert!(error.contains("such as \"urgent 1h"), "{wrong}: {error}");
    }
    assert!(parse_targets("low 99999999h").is_err(), "bounded");
}

/// What may happen to a ticket in the property below.
#[derive(Debug, Clone)]
enum Step {
    Reply,
    Write,
    Priority(Priority),
    Close,
    Reopen,
    /// A time command this many minutes after the last step (a clock that jumps).
    Tick,
    /// A move to a team (none: triage).
    Move(Option<&'static str>),
}

fn step() -> impl Strategy<Value = (Step, i64)> {
    let kind = prop_oneof![
        Just(Step::Reply),
        Just(Step::Write),
        prop::sample::select(Priority::ALL.to_vec()).prop_map(Step::Priority),
        Just(Step::Close),
        Just(Step::Reopen),
        Just(Step::Tick),
        Just(Step::Tick),
        Just(Step::Tick),
        prop::sample::select(vec![None, Some("fast"), Some("slow")]).prop_map(Step::Move),
    ];
    (kind, prop_oneof![0..5i64, 0..120i64, 0..5000i64])
}

proptest! {
    /// Whatever happens and however the clock jumps: no point is decided before it comes, each deadline is said due
    /// soon at most once and breached at most once, a time command at a moment when nothing is pending changes
    /// nothing, and the state folded from the events alone (the store, a second akte) equals the one decided step
    /// by step.
    #[test]
    fn props_points_are_decided_once_never_early_and_the_events_alone_make_the_clocks(
        steps in prop::collection::vec(step(), 0..60),
        business in any::<bool>(),
    ) {
        let calendar = if business {
            Calendar::new("Europe/Berlin", "Mon-Fri 09:00-17:00", &["2026-12-24".into()]).unwrap()
        } else {
            Calendar::always()
        };
        let mut targets = Vec::new();
        for priority in Priority::ALL {
            targets.push((Target::FirstResponse, priority, 30));
            targets.push((Target::NextResponse, priority, 45));
            targets.push((Target::Resolution, priority, 240));
        }
        targets.push((Target::Silence, Priority::Normal, 3 * 24 * 60));
        let mut policy = levels(calendar, &targets);
        let mut with_teams = (*policy.levels.take().unwrap()).clone();
        for (team, minutes) in [("fast", 10u64), ("slow", 600)] {
            let mut own = TeamLevels { names: vec![Target::FirstResponse, Target::Resolution], ..TeamLevels::default() };
            for priority in Priority::ALL {
                own.targets.insert((Target::FirstResponse, priority), Duration::from_secs(minutes * 60));
                own.targets.insert((Target::Resolution, priority), Duration::from_secs(minutes * 4 * 60));
            }
            with_teams.teams.insert(team.into(), own);
        }
        policy.levels = Some(Arc::new(with_teams));
        let mut life = Life::new(policy);
        let mut minute = 0;
        for (step, gap) in steps {
            minute += gap;
            let staff = Actor::staff(ActorSource::Web, "ana");
            match step {
                Step::Reply => { life.run(staff, reply(), minute); }
                Step::Write => { life.run(submitter(), write(), minute); }
                Step::Priority(priority) => { life.run(staff, Action::SetPriority { priority }, minute); }
                Step::Close => { life.run(staff, Action::Close { reason: "done".into() }, minute); }
                Step::Reopen => { life.run(staff, Action::Reopen, minute); }
                Step::Move(team) => {
                    life.run(staff, Action::Move { team: team.map(str::to_owned), reason: "moved".into() }, minute);
                }
                Step::Tick => {
                    let before = life.clocks().to_vec();
                    let pending = next_check(&before).is_some_and(|next| parse(&next).unwrap() <= parse(&at(minute)).unwrap());
                    let kind = life.tick(minute);
                    prop_assert_eq!(kind != "rejected", pending, "a tick decides exactly when a point passed");
                    let event = life.events.last().unwrap();
                    if let Change::DueSoon { target, .. } | Change::Breached { target, .. } = &event.change {
                        let clock = before.iter().find(|c| c.target == *target).unwrap();
                        let point = if event.change.name() == "breached" { &clock.due } else { &clock.soon };
                        prop_assert!(parse(point.as_ref().unwrap()).unwrap() <= parse(&at(minute)).unwrap(), "never early");
                    }
                }
            }
        }
        // Each deadline (a target and its due time) is said at most once of each kind.
        let mut said = std::collections::BTreeSet::new();
        for event in &life.events {
            if let Change::DueSoon { target, due } | Change::Breached { target, due } = &event.change {
                prop_assert!(said.insert((event.change.name(), *target, due.clone())), "said twice: {:?}", event.change);
            }
            if let Change::Reminded { closes } = &event.change {
                prop_assert!(said.insert(("reminded", Target::Silence, closes.clone())), "reminded twice");
            }
        }
        // Each promise is decided once at most (no more decided of a target than its clocks started), and every
        // miss said is counted as one.
        let (decided, started) = life.outcomes_and_starts();
        for target in Target::ALL {
            let of = |o: &&Outcome| o.target == target;
            prop_assert!(decided.iter().filter(of).count() <= started.iter().filter(|t| **t == target).count());
        }
        prop_assert_eq!(decided.iter().filter(|o| !o.met).count(), life.count("breached"));
        let folded = crate::lifecycle::fold(&life.events);
        prop_assert_eq!(folded.as_ref().map(|s| &s.clocks), life.state.as_ref().map(|s| &s.clocks));
    }

    /// After any silence (franz down, a clock that jumps far), every point that passed is decided, earliest first,
    /// one per time command, and then nothing more.
    #[test]
    fn props_after_a_jump_every_passed_point_is_decided_in_order(jump in 0..10_000i64) {
        let mut life = Life::new(hourly());
        let mut said = Vec::new();
        loop {
            match life.tick(jump).as_str() {
                "rejected" => break,
                kind => said.push(kind.to_owned()),
            }
            prop_assert!(said.len() <= 4, "four points at most: {:?}", said);
        }
        let expected: Vec<&str> = [(48, "due_soon"), (60, "breached"), (96, "due_soon"), (120, "breached")]
            .iter()
            .filter(|(point, _)| *point <= jump)
            .map(|(_, kind)| *kind)
            .collect();
        prop_assert_eq!(said, expected);
    }
}

#[test]
fn a_time_is_read_in_utc_whatever_its_offset() {
    let utc: DateTime<Utc> = parse("2026-12-07T11:00:00+01:00").unwrap();
    assert_eq!(stamp(utc), MONDAY);
}

/// Found by an attack (#26), failing first: the README's own example sets a resolution target for urgent and high tickets only. Every ticket is
/// created at the default priority (normal), so a ticket becomes high only by a change of priority, and that change
/// starts no clock: with that configuration no ticket ever has a resolution clock.
#[test]
fn a_ticket_raised_to_a_priority_with_a_target_gets_that_targets_clock() {
    let policy = levels(
        Calendar::always(),
        &[
            (Target::FirstResponse, Priority::Normal, 480),
            (Target::FirstResponse, Priority::High, 240),
            (Target::Resolution, Priority::High, 960),
        ],
    );
    let mut life = Life::new(policy);
    assert_eq!(life.clock(Target::Resolution), None, "no resolution target for normal tickets");
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::SetPriority { priority: Priority::High }, 5);
    let resolution = life.clock(Target::Resolution);
    assert_eq!(
        resolution.and_then(|clock| clock.due.clone()),
        Some(at(960)),
        "a high ticket has the high resolution target, counted from its start: {:?}",
        life.clocks()
    );
}

/// Found by an attack (#26), failing first: normal → urgent → normal. Urgent has no resolution target, so the clock is dropped; back at normal,
/// which has one, the ticket stays without a resolution clock for ever (the clock is gone, not set anew).
#[test]
fn a_priority_changed_there_and_back_keeps_its_resolution_clock() {
    let mut life = Life::new(hourly());
    let staff = || Actor::staff(ActorSource::Web, "ana");
    life.run(staff(), Action::SetPriority { priority: Priority::Urgent }, 1);
    life.run(staff(), Action::SetPriority { priority: Priority::Normal }, 2);
    assert_eq!(
        life.clock(Target::Resolution).and_then(|clock| clock.due.clone()),
        Some(at(120)),
        "a normal ticket again has the normal resolution target from its start: {:?}",
        life.clocks()
    );
    // Left unanswered and unresolved for a day, nothing but the first response is ever said.
    let mut said = Vec::new();
    loop {
        match life.tick(24 * 60).as_str() {
            "rejected" => break,
            kind => said.push(kind.to_owned()),
        }
        assert!(said.len() <= 4);
    }
    assert_eq!(said, ["due_soon", "breached", "due_soon", "breached"], "the resolution is missed too");
}

/// Found by an attack (#26), failing first: a change of priority that moves a deadline later decides its points again, but only when the clock
/// runs at that moment. The same change while the ticket waits on its submitter keeps the old `warned`, so the new,
/// later deadline is never said due soon.
#[test]
fn a_deadline_moved_later_while_its_clock_stands_still_is_said_due_soon_again() {
    let targets = [
        (Target::FirstResponse, Priority::Normal, 60),
        (Target::Resolution, Priority::Normal, 120),
        (Target::Resolution, Priority::Low, 480),
    ];
    let mut life = Life::new(levels(Calendar::always(), &targets));
    assert_eq!(life.tick(48), "due_soon");
    assert_eq!(life.tick(60), "breached");
    assert_eq!(life.tick(96), "due_soon", "the resolution's due soon");
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 100);
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::SetPriority { priority: Priority::Low }, 101);
    life.run(submitter(), write(), 110);
    let resolution = life.clock(Target::Resolution).unwrap().clone();
    assert_eq!(resolution.soon.as_deref(), Some(at(384 + 10).as_str()), "{resolution:?}");
    assert_eq!(
        life.tick(394),
        "due_soon",
        "the later deadline is due soon, as it is when the priority changes while the clock runs: {resolution:?}"
    );
}

/// Found by an attack (#26), failing first: a point is decided only by a time command, and a reply or a close removes the clock. A reply
/// decided after the deadline but before the scheduler's tick (akte down or behind while the desk and the bot queue
/// commands: the tick is queued behind the reply; or just the second between two looks) erases the miss: the
/// first response was given an hour late and no `breached` is ever said, nor counted.
#[test]
fn a_reply_after_the_deadline_decided_before_the_tick_still_counts_as_missed() {
    let mut life = Life::new(hourly());
    // akte comes back two hours late: the reply queued meanwhile is decided before the scheduler's tick.
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 120);
    while life.tick(120) != "rejected" {}
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::Close { reason: "done".into() }, 121);
    while life.tick(500) != "rejected" {}
    let missed: Vec<_> = life.events.iter().filter(|e| e.change.name() == "breached").map(|e| &e.change).collect();
    assert!(
        !missed.is_empty(),
        "the first response (due at minute 60) came at minute 120, yet nothing says it was missed: {:?}",
        life.events.iter().map(|e| e.change.name()).collect::<Vec<_>>()
    );
}

#[test]
fn each_promise_is_counted_once_as_met_in_time_or_missed() {
    let staff = || Actor::staff(ActorSource::Web, "ana");
    let mut life = Life::new(hourly());
    life.run(staff(), reply(), 30);
    let met: Vec<_> = life.outcomes().into_iter().map(|o| (o.target, o.met)).collect();
    assert_eq!(met, [(Target::FirstResponse, true)], "a reply in time meets the first response");

    let mut late = Life::new(hourly());
    while late.tick(70) != "rejected" {}
    late.run(staff(), reply(), 75);
    let decided: Vec<_> = late.outcomes().into_iter().map(|o| (o.target, o.met)).collect();
    assert_eq!(decided, [(Target::FirstResponse, false)], "missed once, and the late reply meets nothing");

    // Waiting on the submitter does not count: closed at minute 200 after 30 working minutes, it is met.
    let mut waited = Life::new(hourly());
    waited.run(staff(), reply(), 30);
    waited.run(staff(), Action::Close { reason: "done".into() }, 200);
    let decided: Vec<_> = waited.outcomes().into_iter().map(|o| (o.target, o.met)).collect();
    assert_eq!(decided, [(Target::FirstResponse, true), (Target::Resolution, true)]);
}

#[test]
fn a_clock_tells_the_working_time_spent_and_left_and_stands_still_while_the_ticket_waits() {
    let calendar = Calendar::new("UTC", "Mon-Fri 09:00-17:00", &[]).unwrap();
    let policy = levels(calendar.clone(), &[(Target::Resolution, Priority::Normal, 4 * 60)]);
    // Monday 10:00: four working hours, due 14:00.
    let mut life = Life::new(policy);
    let now = |minutes| parse(&at(minutes)).unwrap();
    let clock = life.clock(Target::Resolution).unwrap().clone();
    assert_eq!(clock.spent(now(90), &calendar), Duration::from_secs(90 * 60));
    assert_eq!(clock.left(now(90), &calendar), Some(Duration::from_secs(150 * 60)));
    assert_eq!(clock.left(now(300), &calendar), Some(Duration::ZERO), "due: nothing left");
    // A reply at 11:00 stops it; the submitter writes on Tuesday at 09:30: the hour of Monday counts, the night not.
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 60);
    let waiting = life.clock(Target::Resolution).unwrap().clone();
    assert_eq!(waiting.spent(now(600), &calendar), Duration::from_secs(3600), "stands still while it waits");
    assert_eq!(waiting.left(now(600), &calendar), None);
    life.run(submitter(), write(), 23 * 60 + 30);
    let running = life.clock(Target::Resolution).unwrap().clone();
    assert_eq!(running.spent(now(24 * 60), &calendar), Duration::from_secs(90 * 60), "Tuesday 10:00");
    assert_eq!(running.left(now(24 * 60), &calendar), Some(Duration::from_secs(150 * 60)));
}

/// Found by an attack (#26, silent tickets), failing first: franz was down (or its clock jumped) past both the
/// reminder and the close of a waiting ticket. The first time command reminds the submitter that the ticket "closes
/// on" a time already past, and the very next one, a second later, closes it: the reminder gives the submitter no
/// time at all to answer. A reminder must leave the submitter `remind_before` to answer (or not be sent as a promise
/// already broken).
#[test]
fn a_reminder_sent_late_still_leaves_the_submitter_time_to_answer_before_the_close() {
    let mut life = Life::new(silent());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    // franz comes back eight days later.
    let back = 30 + 8 * DAY;
    assert_eq!(life.tick(back), "reminded");
    let Change::Reminded { closes } = life.events.last().unwrap().change.clone() else { unreachable!() };
    assert!(
        parse(&closes).unwrap() > parse(&at(back)).unwrap(),
        "the reminder sent at {} says the ticket closes on {closes}, in the past",
        at(back)
    );
    let next = life.tick(back + 1);
    assert_eq!(next, "rejected", "reminded at minute {back}, the ticket is closed a minute later, unanswerable");
}

/// Found by an attack (#26), failing first: a clock whose due soon lies within the calendar's ten-year horizon but
/// whose due lies beyond it (a team that works one hour a week, a 600-hour resolution target: due soon after 480
/// working hours, about nine years; due after 600, about eleven and a half) has `soon` but no `due`. The time
/// command says `due_soon` with an empty `due`, which matches no clock, so the clock is never marked warned and its
/// next check never moves: every event bumps the version, the scheduler ticks the new version at once, and akte
/// writes a `due_soon` event (and a Discord alert) every second, for ever.
#[test]
fn a_due_soon_whose_due_lies_beyond_the_calendar_is_said_once() {
    let hour_a_week = Calendar::new("UTC", "Mon 09:00-10:00", &[]).unwrap();
    let mut life = Life::new(levels(hour_a_week, &[(Target::Resolution, Priority::Normal, 600 * 60)]));
    let clock = life.clock(Target::Resolution).unwrap().clone();
    assert!(clock.soon.is_some() && clock.due.is_none(), "{clock:?}");
    let soon = parse(clock.soon.as_deref().unwrap()).unwrap();
    let minutes = (soon - parse(MONDAY).unwrap()).num_minutes() + 1;
    let mut said = 0;
    for _ in 0..5 {
        if life.tick(minutes) == "due_soon" {
            said += 1;
        }
    }
    assert_eq!(said, 1, "due soon said {said} times for one deadline: {:?}", life.events.last().unwrap().change);
}

/// Found by an attack (#26), failing first: akte decides a time command by the time the command says, not by its
/// own clock. A time command dated far ahead (a scheduler whose clock runs fast, or any producer on the commands
/// topic that names itself franz, with `at` = 9999-12-31) closes a ticket that waited one minute, in two commands:
/// the submitter is reminded and the ticket closed "no answer from the submitter" seven days early by akte's clock.
#[test]
fn a_time_command_dated_in_the_future_never_closes_a_ticket_before_its_time() {
    let mut life = Life::new(silent());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    for n in 0..2 {
        let version = life.state.as_ref().unwrap().version;
        let command = Command {
            command_id: format!("tick:{version}"),
            ticket_id: "t1".into(),
            actor: franz(),
            action: Action::Tick { at: "9999-12-31T23:59:59Z".into() },
        };
        // akte's own clock says one minute after the reply.
        let event = decide(life.state.as_ref(), &command, &at(31 + n), &life.policy);
        life.state = apply(life.state.take(), &event);
        life.events.push(event);
    }
    let state = life.state.as_ref().unwrap();
    assert_ne!(
        state.status,
        Status::Closed,
        "closed at {} ({:?}), a minute after the reply: {:?}",
        at(32),
        state.close_reason,
        life.events.iter().map(|e| e.change.name()).collect::<Vec<_>>()
    );
}

/// Found by an attack (#26), failing first: akte is down past a first response's due soon and due; the reply queued
/// meanwhile is decided before the scheduler's tick. The clock stays, stopped, to say its miss, but the time
/// commands first say `due_soon`: an amber "the first response is due soon" alert for a response already given.
#[test]
fn a_target_met_late_is_said_missed_but_never_due_soon_after_it_was_met() {
    let mut life = Life::new(hourly());
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 120);
    let mut said = Vec::new();
    loop {
        match life.tick(120).as_str() {
            "rejected" => break,
            kind => said.push(kind.to_owned()),
        }
    }
    let first: Vec<_> = life
        .events
        .iter()
        .filter_map(|e| match &e.change {
            Change::DueSoon { target, .. } | Change::Breached { target, .. } if *target == Target::FirstResponse => {
                Some(e.change.name())
            }
            _ => None,
        })
        .collect();
    assert_eq!(first, ["breached"], "after the reply at minute 120 the first response was said: {first:?}");
}

/// Found by an attack (#26, silent tickets), failing first: the same late reminder without any downtime. An urgent
/// ticket (excepted from the close) waits ten days on its submitter; the team lowers it to normal. Its silence
/// counts from the reply, so the first time command reminds the submitter of a close three days past, and the
/// next one closes it at once: lowering a priority closes the ticket without giving the submitter the two
/// days the reminder promises.
#[test]
fn a_ticket_lowered_from_an_excepted_priority_after_a_long_wait_is_not_closed_at_once() {
    let mut life = Life::new(silent());
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::SetPriority { priority: Priority::Urgent }, 10);
    life.run(Actor::staff(ActorSource::Web, "ana"), reply(), 30);
    assert_eq!(life.tick(30 + 10 * DAY), "rejected", "urgent tickets are excepted");
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::SetPriority { priority: Priority::Normal }, 30 + 10 * DAY);
    let kinds: Vec<String> = (1..=3).map(|n| life.tick(30 + 10 * DAY + n)).collect();
    assert!(
        !kinds.contains(&"closed".to_owned()),
        "lowered to normal at minute {}, the ticket was {kinds:?} within three minutes",
        30 + 10 * DAY
    );
}

/// Found by an attack (#26), failing first: a ticket closed, reopened by its submitter, answered and closed again,
/// all in one millisecond, starts its second resolution clock at the same time as its first; the store kept each
/// promise by its start, so the second was never counted.
#[test]
fn a_resolution_started_again_in_the_same_millisecond_is_a_promise_of_its_own() {
    let staff = || Actor::staff(ActorSource::Web, "ana");
    let mut life = Life::new(hourly());
    life.run(staff(), Action::Close { reason: "done".into() }, 0);
    life.run(submitter(), write(), 0);
    life.run(staff(), reply(), 0);
    life.run(staff(), Action::Close { reason: "done".into() }, 0);
    let (decided, _) = life.outcomes_and_starts();
    let resolutions = decided.iter().filter(|o| o.target == Target::Resolution).count();
    assert_eq!(resolutions, 2, "{decided:?}");
    // The store keeps them apart: by the version of the event that decided each.
    let (_dir, store, mut writer) = crate::store::tests::open_temp();
    let payloads: Vec<Vec<u8>> = life.events.iter().map(|e| serde_json::to_vec(e).unwrap()).collect();
    crate::store::tests::apply_all(&mut writer, &payloads, 0, 10);
    let counted: i64 = store
        .reader()
        .unwrap()
        .query_row("SELECT count(*) FROM outcomes WHERE target = 'resolution'", [], |row| row.get(0))
        .unwrap();
    assert_eq!(counted, 2);
}

/// Per-team policies (#26 with #27): a team's own target replaces the team-wide one for its tickets; a target it
/// does not name stays the team-wide one; a move to another team sets each running clock anew.
#[test]
fn a_teams_own_target_runs_for_its_tickets_and_a_move_sets_the_clocks_anew() {
    let mut policy = hourly();
    let mut levels = (*policy.levels.take().unwrap()).clone();
    levels.teams.insert(
        "billing".into(),
        TeamLevels {
            names: vec![Target::FirstResponse],
            targets: [((Target::FirstResponse, Priority::Normal), Duration::from_secs(15 * 60))].into_iter().collect(),
        },
    );
    policy.levels = Some(Arc::new(levels));
    let mut life = Life::new(policy);
    assert_eq!(life.clock(Target::FirstResponse).unwrap().target_secs, 3600, "triage: the team-wide hour");
    life.run(
        Actor::staff(ActorSource::Web, "ana"),
        Action::Move { team: Some("billing".into()), reason: "a bill".into() },
        5,
    );
    let first = life.clock(Target::FirstResponse).unwrap();
    assert_eq!(
        (first.target_secs, first.due.as_deref()),
        (900, Some(at(15).as_str())),
        "billing's 15 minutes, from the start"
    );
    assert_eq!(life.clock(Target::Resolution).unwrap().target_secs, 7200, "a target billing does not name stays");
    life.run(Actor::staff(ActorSource::Web, "ana"), Action::Move { team: None, reason: "not a bill".into() }, 10);
    assert_eq!(life.clock(Target::FirstResponse).unwrap().target_secs, 3600, "back in triage");
}

/// Attack (#26 with #27): a ticket moved to a team with a longer target and straight back, after its due soon was
/// said, must not be said due soon a second time for the same deadline.
#[test]
fn attack_a_move_away_and_back_never_says_the_same_due_soon_twice() {
    let mut policy = hourly();
    let mut levels = (*policy.levels.take().unwrap()).clone();
    levels.teams.insert(
        "slow".into(),
        TeamLevels {
            names: vec![Target::FirstResponse],
            targets: [((Target::FirstResponse, Priority::Normal), Duration::from_secs(600 * 60))].into_iter().collect(),
        },
    );
    policy.levels = Some(Arc::new(levels));
    let mut life = Life::new(policy);
    assert_eq!(life.tick(50), "due_soon", "the triage hour's 80% passed");
    let staff = || Actor::staff(ActorSource::Web, "ana");
    life.run(staff(), Action::Move { team: Some("slow".into()), reason: "slow".into() }, 51);
    life.run(staff(), Action::Move { team: None, reason: "back".into() }, 52);
    let second = life.tick(53);
    let said: Vec<_> = life
        .events
        .iter()
        .filter_map(|e| match &e.change {
            Change::DueSoon { target, due } => Some((*target, due.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "said due soon twice for the same deadline (second tick: {second}): {said:?}");
}
