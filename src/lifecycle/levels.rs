//! Service levels: the answers a team promises, counted in the working time of its calendar.
//!
//! A team sets targets per priority (`service_levels` in the configuration): the first response (from the ticket's
//! creation to the team's first public reply), the next response (from a message of the submitter the team has not
//! answered yet to its next public reply) and the resolution (from the creation to the close). Each target that
//! runs is a [`Clock`] on the ticket. akte decides the clocks with every event that changes them, from the event,
//! the ticket before it and the levels in force ([`after`]), and the event records them (`Event::clocks`): a replay,
//! a rebuilt store and a second akte see the same deadlines whatever the configuration says later, and the
//! configuration changes only the tickets it decides for from then on.
//!
//! Time waiting on the submitter does not count: a public reply stops the resolution clock, and the submitter's
//! next message starts it again where it stood (the time between, in working time, is added to its deadline). A
//! change of priority sets each clock's target anew from its start. A clock has two points: due soon (when the warn
//! share of its target is spent) and due. A scheduler wakes akte at the next point ([`next_check`]) with a time
//! command (`tick`), and akte decides from the ticket and the command's time ([`tick`]) whether a point passed:
//! `due_soon` or `breached`, each once per deadline, the earlier point first.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::calendar::Calendar;
use crate::schema::lifecycle::{Change, Priority, Status};
pub use crate::schema::lifecycle::{Clock, Target};

/// A team's promises: targets per priority, in the working time of a calendar.
#[derive(Debug, Clone)]
pub struct Levels {
    pub calendar: Calendar,
    /// The share of a target spent when it is due soon, in percent (1 to 99).
    pub warn_percent: u32,
    /// The targets set; a target without a time for a priority does not run for tickets of that priority. The
    /// silence (`Target::Silence`) is in calendar time: how long a ticket waits on its submitter before it closes.
    pub targets: BTreeMap<(Target, Priority), Duration>,
    /// How long before a silent ticket closes its submitter is reminded (zero: never).
    pub remind_before: Duration,
    /// The teams' own targets, by team.
    pub teams: BTreeMap<String, TeamLevels>,
}

/// A team's own targets: for each target it names, its times replace the team-wide ones for its tickets (a
/// priority it leaves out has none); the targets it does not name are the team-wide ones.
#[derive(Debug, Clone, Default)]
pub struct TeamLevels {
    pub names: Vec<Target>,
    pub targets: BTreeMap<(Target, Priority), Duration>,
}

/// Why franz closes a ticket whose submitter stayed silent.
pub const SILENT: &str = "no answer from the submitter";

/// An instant as clocks record it (and the store compares them): RFC 3339 in UTC with milliseconds.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at).ok().map(|at| at.with_timezone(&Utc))
}

impl Clock {
    /// A clock for `target` of `secs` working seconds, started `at`.
    fn start(target: Target, secs: u64, at: DateTime<Utc>, levels: &Levels) -> Clock {
        let mut clock = Clock {
            target,
            started: stamp(at),
            target_secs: secs,
            paused_secs: 0,
            paused_since: None,
            soon: None,
            due: None,
            warned: false,
            warned_for: Vec::new(),
            breached: false,
            stopped: None,
        };
        clock.run(levels);
        clock
    }

    /// Sets its points from its start, target and the time it stood still: in working time, or for the silence in
    /// calendar time with the reminder as its first point.
    fn run(&mut self, levels: &Levels) {
        let Some(started) = parse(&self.started) else { return };
        if self.target_secs == 0 {
            // No target for the ticket's priority: the clock only keeps its start, for a priority that has one.
            self.soon = None;
            self.due = None;
            return;
        }
        let always = Calendar::always();
        let calendar = if self.target == Target::Silence { &always } else { &levels.calendar };
        let point = |secs: u64| calendar.add(started, Duration::from_secs(secs + self.paused_secs)).map(stamp);
        let remind = levels.remind_before.as_secs();
        self.soon = match self.target {
            Target::Silence if remind == 0 || remind >= self.target_secs => None,
            Target::Silence => point(self.target_secs - remind),
            _ => point(self.target_secs.saturating_mul(u64::from(levels.warn_percent)) / 100),
        };
        self.due = point(self.target_secs);
    }

    fn pause(&mut self, at: DateTime<Utc>) {
        // Overdue and not said so yet, it runs on until a time command says it was missed.
        if self.paused_since.is_none() && !self.overdue(at) {
            self.paused_since = Some(stamp(at));
            self.soon = None;
            self.due = None;
        }
    }

    fn resume(&mut self, at: DateTime<Utc>, levels: &Levels) {
        if let Some(since) = self.paused_since.take().as_deref().and_then(parse) {
            self.paused_secs += levels.calendar.between(since, at.max(since)).as_secs();
            self.moved(at, levels);
        }
    }

    /// Sets its points anew (its target or the time it stood still changed): a due soon moved past `at` is said
    /// again when it comes, unless the target was missed already (a miss stays a miss).
    fn moved(&mut self, at: DateTime<Utc>, levels: &Levels) {
        self.run(levels);
        if !self.breached {
            let said = self.due.as_ref().is_some_and(|due| self.warned_for.contains(due));
            self.warned = said || (self.warned && self.soon.as_deref().and_then(parse).is_none_or(|soon| soon <= at));
        }
    }

    /// Due at or before `at`, and not said missed yet.
    fn overdue(&self, at: DateTime<Utc>) -> bool {
        !self.breached && self.due.as_deref().and_then(parse).is_some_and(|due| due <= at)
    }

    /// The points not decided yet, earliest first: (when, breached rather than due soon).
    fn pending(&self) -> impl Iterator<Item = (DateTime<Utc>, bool)> {
        // A clock kept only to say its miss is past being due soon.
        let soon = self
            .soon
            .as_deref()
            .filter(|_| !self.warned && self.stopped.is_none())
            .and_then(parse)
            .map(|at| (at, false));
        let due = self.due.as_deref().filter(|_| !self.breached).and_then(parse).map(|at| (at, true));
        soon.into_iter().chain(due)
    }
}

/// The clocks after `change`, decided `at` on a ticket whose clocks, priority and status were `clocks`, `priority`
/// and `status` (none, the default priority and open for a new ticket); `None` when the change leaves them as they
/// are.
pub fn after(
    clocks: &[Clock],
    (priority, status, team): (Priority, Status, Option<&str>),
    change: &Change,
    at: DateTime<Utc>,
    levels: &Levels,
) -> Option<Vec<Clock>> {
    // A clock runs for every target set for any priority (or team), so that a change of priority or team finds it;
    // for a priority without a time it only keeps its start.
    let start = |target: Target| {
        let set = levels
            .targets
            .keys()
            .chain(levels.teams.values().flat_map(|t| t.targets.keys()))
            .any(|(set, _)| *set == target);
        set.then(|| Clock::start(target, self::target(levels, target, priority, team).unwrap_or(0), at, levels))
    };
    let running = |clock: &Clock, targets: &[Target]| clock.stopped.is_none() && targets.contains(&clock.target);
    let mut next: Vec<Clock> = clocks.to_vec();
    match change {
        Change::Created { .. } => {
            next = [Target::FirstResponse, Target::Resolution].into_iter().filter_map(start).collect();
        }
        Change::Commented { internal: false, .. } => {
            stop(&mut next, at, &[Target::FirstResponse, Target::NextResponse, Target::Silence]);
            next.iter_mut().filter(|c| running(c, &[Target::Resolution])).for_each(|clock| clock.pause(at));
            // The ticket waits on its submitter now (a reply to a closed ticket changes nothing).
            if status != Status::Closed {
                next.extend(start(Target::Silence));
            }
        }
        Change::SubmitterWrote { reopened: true, .. } | Change::Reopened => {
            stop(&mut next, at, &[Target::Resolution, Target::Silence]);
            next.extend(start(Target::Resolution));
            if matches!(change, Change::SubmitterWrote { .. })
                && !next.iter().any(|c| running(c, &[Target::NextResponse]))
            {
                next.extend(start(Target::NextResponse));
            }
        }
        Change::SubmitterWrote { .. } => {
            stop(&mut next, at, &[Target::Silence]);
            next.iter_mut().filter(|c| c.stopped.is_none()).for_each(|clock| clock.resume(at, levels));
            if !next.iter().any(|clock| running(clock, &[Target::NextResponse])) {
                next.extend(start(Target::NextResponse));
            }
        }
        Change::Closed { .. } => stop(&mut next, at, &Target::ALL_CLOCKS),
        Change::PrioritySet { .. } | Change::Moved { .. } => {
            // A change of priority or team sets each running clock's target anew from its start.
            let priority = if let Change::PrioritySet { priority } = change { *priority } else { priority };
            let team = if let Change::Moved { to, .. } = change { to.as_deref() } else { team };
            for clock in next.iter_mut().filter(|clock| clock.stopped.is_none()) {
                clock.target_secs = target(levels, clock.target, priority, team).unwrap_or(0);
                if clock.paused_since.is_none() {
                    clock.moved(at, levels);
                }
            }
        }
        Change::DueSoon { target, due } | Change::Breached { target, due } => {
            let breached = matches!(change, Change::Breached { .. });
            // A due beyond the calendar is said as none (`tick`).
            let said = |clock: &&mut Clock| clock.target == *target && clock.due.as_deref().unwrap_or_default() == due;
            for clock in next.iter_mut().filter(said) {
                clock.warned = true;
                clock.breached |= breached;
                // Each deadline said due soon is remembered (a few at most: one per change of team or priority).
                if !breached && !clock.warned_for.contains(due) {
                    clock.warned_for.push(due.clone());
                }
            }
            // A clock kept only to say its miss has said it.
            next.retain(|clock| clock.stopped.is_none() || !clock.breached);
        }
        Change::Reminded { closes } => {
            for clock in next.iter_mut().filter(|clock| clock.target == Target::Silence) {
                // A late reminder moved the close: the silence stands still for as long.
                let due = clock.due.as_deref().and_then(parse);
                if let (Some(due), Some(closes)) = (due, parse(closes)) {
                    clock.paused_secs += u64::try_from(((closes - due).num_milliseconds() + 999) / 1000).unwrap_or(0);
                    clock.run(levels);
                }
                clock.warned = true;
            }
        }
        _ => return None,
    }
    (next != clocks).then_some(next)
}

/// The times of one target by priority, as the configuration writes them: `urgent 1h, high 4h, normal 1h30m`, in
/// working time (hours `h` and minutes `m`); a priority left out has no target.
pub fn parse_targets(text: &str) -> Result<Vec<(Priority, Duration)>, String> {
    let wrong = |why: &str| {
        format!(
            "{text:?} is not a list of targets: {why}; write a priority and a working time for each, such as \
             \"urgent 1h, high 4h, normal 8h, low 2h30m\" (priorities low, normal, high, urgent; hours h, minutes m)"
        )
    };
    let mut targets: Vec<(Priority, Duration)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let (name, time) =
            part.split_once(char::is_whitespace).ok_or_else(|| wrong(&format!("{part:?} has no time")))?;
        let priority = Priority::parse(name).ok_or_else(|| wrong(&format!("{name:?} is no priority")))?;
        if targets.iter().any(|(known, _)| *known == priority) {
            return Err(wrong(&format!("{name} is named twice")));
        }
        let time = working_time(time.trim()).ok_or_else(|| wrong(&format!("{:?} is no working time", time.trim())))?;
        targets.push((priority, time));
    }
    Ok(targets)
}

/// `4h`, `90m`, `1h30m`: at least a minute, at most 10,000 hours.
fn working_time(text: &str) -> Option<Duration> {
    let (mut minutes, mut number, mut units) = (0u64, String::new(), 0);
    for c in text.chars() {
        match c {
            '0'..='9' if number.len() < 6 => number.push(c),
            'h' | 'm' if !number.is_empty() => {
                let value: u64 = number.parse().ok()?;
                minutes += if c == 'h' { value * 60 } else { value };
                number.clear();
                units += 1;
            }
            _ => return None,
        }
    }
    (number.is_empty() && units > 0 && (1..=600_000).contains(&minutes)).then(|| Duration::from_secs(minutes * 60))
}

/// Takes the clocks of `targets` away: what they waited for came. One overdue and not said missed yet stays, stopped,
/// until a time command says it was missed (the silence aside: an answer after its time keeps the ticket open).
fn stop(clocks: &mut Vec<Clock>, at: DateTime<Utc>, targets: &[Target]) {
    clocks.retain_mut(|clock| {
        if clock.stopped.is_some() || !targets.contains(&clock.target) {
            return true;
        }
        if clock.target != Target::Silence && clock.overdue(at) {
            clock.stopped = Some(stamp(at));
            return true;
        }
        false
    });
}

/// The working seconds of `target` for tickets of `priority` in `team`, if one is set: the team's own when it names
/// the target, else the team-wide one.
fn target(levels: &Levels, target: Target, priority: Priority, team: Option<&str>) -> Option<u64> {
    let own = team.and_then(|team| levels.teams.get(team)).filter(|team| team.names.contains(&target));
    own.map_or(&levels.targets, |team| &team.targets).get(&(target, priority)).map(Duration::as_secs)
}

/// What a time command at `at` decides on a ticket with `clocks`: the earliest point not decided yet that `at`
/// reached (`due_soon` or `breached`), or why nothing is.
pub fn tick(clocks: &[Clock], at: &str) -> Result<Change, String> {
    let now = parse(at).ok_or_else(|| format!("a time command's time must be RFC 3339, got {at:?}"))?;
    let passed = clocks
        .iter()
        .flat_map(|clock| clock.pending().map(move |(point, breached)| (point, breached, clock)))
        .filter(|(point, ..)| *point <= now)
        .min_by_key(|(point, breached, clock)| (*point, *breached, clock.target));
    let Some((point, breached, clock)) = passed else { return Err(format!("nothing is due at {at}")) };
    let (target, due) = (clock.target, clock.due.clone().unwrap_or_default());
    Ok(match (target, breached) {
        // A reminder sent late (franz was down, the clock jumped) still leaves the submitter the time it promises:
        // the close moves by as much as the reminder is late.
        (Target::Silence, false) => Change::Reminded {
            closes: parse(&due).map_or(due, |due| stamp(due + (now - point).max(chrono::Duration::zero()))),
        },
        (Target::Silence, true) => Change::Closed { reason: SILENT.to_owned() },
        (_, true) => Change::Breached { target, due },
        (_, false) => Change::DueSoon { target, due },
    })
}

impl Clock {
    /// The working time of its target spent at `now`: from its start, less the time it stood still (while it
    /// stands still, up to when it began to).
    pub fn spent(&self, now: DateTime<Utc>, calendar: &Calendar) -> Duration {
        let Some(started) = parse(&self.started) else { return Duration::ZERO };
        let until = [self.stopped.as_deref(), self.paused_since.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(parse)
            .fold(now, DateTime::min);
        calendar.between(started, until).saturating_sub(Duration::from_secs(self.paused_secs))
    }

    /// The working time left at `now` before it is due; `None` when it has no due time (it stands still, or has no
    /// target), zero once it is due.
    pub fn left(&self, now: DateTime<Utc>, calendar: &Calendar) -> Option<Duration> {
        self.due.as_deref().and_then(parse).map(|due| calendar.between(now, due))
    }
}

/// A target of the team decided on a ticket: met in time, or missed. What the numbers page counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub target: Target,
    /// When its clock started.
    pub started: String,
    pub met: bool,
}

/// The targets `change` decided, the ticket's clocks being `before` it and `after`: missed when it says so
/// (`breached`), met when a running clock with a time is taken away before it was missed (what it waited for
/// came). A clock without a time for the ticket's priority promised nothing; the silence is not the team's.
pub fn outcomes(before: &[Clock], after: &[Clock], change: &Change) -> Vec<Outcome> {
    let promised = |clock: &&Clock| clock.target != Target::Silence && clock.target_secs > 0 && !clock.breached;
    let outcome = |clock: &Clock, met| Outcome { target: clock.target, started: clock.started.clone(), met };
    if let Change::Breached { target, due } = change {
        return before
            .iter()
            .filter(promised)
            .filter(|clock| clock.target == *target && clock.due.as_ref() == Some(due))
            .map(|clock| outcome(clock, false))
            .collect();
    }
    before
        .iter()
        .filter(promised)
        .filter(|clock| clock.stopped.is_none())
        .filter(|clock| !after.iter().any(|kept| kept.target == clock.target && kept.started == clock.started))
        .map(|clock| outcome(clock, true))
        .collect()
}

/// When the ticket's earliest target of the team is due (its silence aside): what the board and `franz tickets
/// --due` sort and filter by. A missed one counts, at the time it was due.
pub fn due_at(clocks: &[Clock]) -> Option<String> {
    clocks
        .iter()
        .filter(|clock| clock.target != Target::Silence)
        .filter_map(|clock| clock.due.as_deref().and_then(parse))
        .min()
        .map(stamp)
}

/// When the next point of `clocks` comes that is not decided yet: when a scheduler wakes akte for the ticket.
pub fn next_check(clocks: &[Clock]) -> Option<String> {
    clocks.iter().flat_map(Clock::pending).map(|(point, _)| point).min().map(stamp)
}

#[cfg(test)]
mod tests;
