//! Business hours: the calendar service-level targets are measured in (the days and hours a team works, in its time
//! zone, less its holidays), and the arithmetic on it: the instant a span of working time after a start ends
//! ([`Calendar::add`]), and the working time between two instants ([`Calendar::between`]).
//!
//! Pure, like the rest of the lifecycle: the caller passes the instants. Hours are wall-clock hours in the
//! calendar's zone (`chrono-tz`, with the IANA database built in), so "09:00-17:00" is eight hours on the day
//! clocks change too, and an opening that falls into a skipped hour (a spring-forward gap) opens when the clocks
//! come back to life (a day a zone left out, as Samoa did on 2011-12-30, has no hours). The default,
//! [`Calendar::always`], is every hour of every day in UTC. Working time exists in the years 0001 to 9999.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use chrono::{
    DateTime, Datelike as _, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _, Timelike as _, Utc,
    Weekday,
};
use chrono_tz::Tz;

/// How many days past the start [`Calendar::add`] looks before it gives up: ten years, far beyond any target.
const HORIZON_DAYS: u64 = 3660;

/// The first instant with working time: 0001-01-01 (with a day to spare for any zone's offset).
fn first_instant() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1, 1, 2).map_or(DateTime::<Utc>::MIN_UTC, |day| NaiveDateTime::from(day).and_utc())
}

/// The last instant with working time: the end of 9999 (less a day for any zone's offset).
fn last_instant() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31).map_or(DateTime::<Utc>::MAX_UTC, |day| NaiveDateTime::from(day).and_utc())
}

/// The working hours of a team.
#[derive(Clone, PartialEq, Eq)]
pub struct Calendar {
    zone: Tz,
    /// The open hours of each weekday (Monday first), as minutes after midnight: `[open, close)`.
    hours: [Vec<(u32, u32)>; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl fmt::Debug for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Calendar({} {}, {} holidays)", self.zone, self.hours_text(), self.holidays.len())
    }
}

/// Why a calendar's settings are no calendar.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("{0:?} is not a time zone of the IANA database (such as \"Europe/Berlin\" or \"UTC\")")]
    Zone(String),
    #[error(
        "{0:?} is not a list of working hours; write days and hours such as \"Mon-Fri 09:00-17:00, Sat 10:00-14:00\" \
         (days Mon Tue Wed Thu Fri Sat Sun, hours HH:MM-HH:MM, 24:00 for midnight at the end)"
    )]
    Hours(String),
    #[error("working hours {0:?} overlap on one day; give each hour once")]
    Overlap(String),
    #[error("the working hours are empty: a team that never works would never meet a target")]
    Empty,
    #[error("{0:?} is not a holiday date; write it as YYYY-MM-DD")]
    Holiday(String),
}

impl Calendar {
    /// Every hour of every day, in UTC: the calendar when none is configured.
    pub fn always() -> Calendar {
        Calendar { zone: Tz::UTC, hours: std::array::from_fn(|_| vec![(0, 24 * 60)]), holidays: BTreeSet::new() }
    }

    /// The calendar of `zone` (`Europe/Berlin`), `hours` (`Mon-Fri 09:00-17:00, Sat 10:00-14:00`) and `holidays`
    /// (`2026-12-25`), or what is wrong with them.
    pub fn new(zone: &str, hours: &str, holidays: &[String]) -> Result<Calendar, CalendarError> {
        let zone: Tz = zone.trim().parse().map_err(|_| CalendarError::Zone(zone.to_owned()))?;
        let hours = parse_hours(hours)?;
        let holidays = holidays
            .iter()
            .map(|day| {
                NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d").map_err(|_| CalendarError::Holiday(day.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Calendar { zone, hours, holidays })
    }

    /// The instant at which `work` of working time has passed since `start`: `start` itself for none if the team
    /// works then, else the next opening. `None` when that is more than ten years after `start` (a calendar of
    /// holidays, or work beyond any target), or when either lies outside the years 0001 to 9999.
    pub fn add(&self, start: DateTime<Utc>, work: Duration) -> Option<DateTime<Utc>> {
        if !(first_instant()..=last_instant()).contains(&start) {
            return None;
        }
        let mut left = chrono::Duration::from_std(work).ok()?;
        for (open, close) in self.open_spans(start, HORIZON_DAYS) {
            let from = open.max(start);
            let end = from.checked_add_signed(left).filter(|end| *end <= last_instant())?;
            if end <= close {
                return Some(end);
            }
            left -= close - from;
        }
        None
    }

    /// The working time between `from` and `to`; none when `to` is not after `from`. Only the years 0001 to 9999
    /// hold working time.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let range = first_instant()..=last_instant();
        let (from, to) = (from.clamp(*range.start(), *range.end()), to.clamp(*range.start(), *range.end()));
        if to <= from {
            return Duration::ZERO;
        }
        // Every local day that touches the stretch (a day of the zone can be shorter than 24 hours), and one more.
        let local = |at: DateTime<Utc>| at.with_timezone(&self.zone).date_naive();
        let days = u64::try_from((local(to) - local(from)).num_days()).unwrap_or(0) + 2;
        let mut total = chrono::Duration::zero();
        for (open, close) in self.open_spans(from, days) {
            if open >= to {
                break;
            }
            total += close.min(to) - open.max(from);
        }
        total.to_std().unwrap_or(Duration::ZERO)
    }

    /// The team's open spans in order, as UTC instants, from the local day of `start` on for `days` days, each
    /// ending after `start`. A day the zone skipped has none.
    fn open_spans(&self, start: DateTime<Utc>, days: u64) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let first = start.with_timezone(&self.zone).date_naive();
        (0..days)
            .map_while(move |n| first.checked_add_days(Days::new(n)))
            .filter(|day| !self.holidays.contains(day))
            .flat_map(move |day| {
                self.hours[day.weekday().num_days_from_monday() as usize]
                    .iter()
                    .map(move |&(open, close)| (self.instant(day, open), self.instant(day, close)))
            })
            .filter(move |(open, close)| close > open && *close > start)
    }

    /// The instant of `minutes` after local midnight of `day` in the calendar's zone. A wall time the clocks skip
    /// (a spring-forward gap, or a whole day a zone left out) is the instant they resumed; one they pass twice is the
    /// first of the two.
    fn instant(&self, day: NaiveDate, minutes: u32) -> DateTime<Utc> {
        let wall = NaiveDateTime::from(day) + chrono::Duration::minutes(i64::from(minutes));
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
            LocalResult::None => self.resumed(wall),
        }
    }

    /// The first instant whose wall time in the zone is past `wall`, a wall time the clocks skipped: found to the
    /// second between the instants `wall` would be under any offset (no zone is more than a day off UTC).
    fn resumed(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        let instant = |second: i64| DateTime::from_timestamp(second, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let local = |second: i64| instant(second).with_timezone(&self.zone).naive_local();
        let around = wall.and_utc().timestamp();
        let (mut before, mut after) = (around - 30 * 3600, around + 30 * 3600);
        while after - before > 1 {
            let middle = before + (after - before) / 2;
            if local(middle) < wall {
                before = middle;
            } else {
                after = middle;
            }
        }
        instant(after)
    }

    /// The hours as they would be written in the settings.
    fn hours_text(&self) -> String {
        let days = [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];
        let spans: Vec<String> = days
            .iter()
            .zip(&self.hours)
            .flat_map(|(day, spans)| {
                spans.iter().map(move |(open, close)| {
                    format!("{day} {:02}:{:02}-{:02}:{:02}", open / 60, open % 60, close / 60, close % 60)
                })
            })
            .collect();
        spans.join(", ")
    }
}

/// `Mon-Fri 09:00-17:00, Sat 10:00-14:00` as each weekday's spans in minutes.
fn parse_hours(text: &str) -> Result<[Vec<(u32, u32)>; 7], CalendarError> {
    let wrong = || CalendarError::Hours(text.to_owned());
    let mut hours: [Vec<(u32, u32)>; 7] = Default::default();
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let (days, spans) = part.split_once(char::is_whitespace).ok_or_else(wrong)?;
        let (first, last) = days.split_once('-').unwrap_or((days, days));
        let (first, last) = (weekday(first).ok_or_else(wrong)?, weekday(last).ok_or_else(wrong)?);
        for span in spans.split_whitespace() {
            let (open, close) = span.split_once('-').ok_or_else(wrong)?;
            let (open, close) = (minutes(open).ok_or_else(wrong)?, minutes(close).ok_or_else(wrong)?);
            if open >= close {
                return Err(wrong());
            }
            let mut day = first;
            loop {
                hours[day as usize].push((open, close));
                if day == last {
                    break;
                }
                day = (day + 1) % 7;
            }
        }
    }
    for spans in &mut hours {
        spans.sort_unstable();
        if spans.windows(2).any(|pair| pair[0].1 > pair[1].0) {
            return Err(CalendarError::Overlap(text.to_owned()));
        }
    }
    if hours.iter().all(Vec::is_empty) {
        return Err(CalendarError::Empty);
    }
    Ok(hours)
}

/// `Mon` as 0 … `Sun` as 6.
fn weekday(text: &str) -> Option<u32> {
    let day: Weekday = text.parse().ok()?;
    Some(day.num_days_from_monday())
}

/// `09:30` as 570 minutes; `24:00` is the end of the day.
fn minutes(text: &str) -> Option<u32> {
    if text == "24:00" {
        return Some(24 * 60);
    }
    let time = NaiveTime::parse_from_str(text, "%H:%M").ok()?;
    Some(time.num_seconds_from_midnight() / 60)
}

#[cfg(test)]
mod tests;
