//! The calendar's arithmetic: worked examples across weekends, holidays and clock changes, and properties over
//! random calendars in zones with odd rules.

use super::*;

fn at(zone: &str, local: &str) -> DateTime<Utc> {
    let zone: Tz = zone.parse().unwrap();
    let wall = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
    zone.from_local_datetime(&wall).earliest().unwrap().with_timezone(&Utc)
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

fn berlin_office(holidays: &[&str]) -> Calendar {
    let holidays: Vec<String> = holidays.iter().map(|day| (*day).to_owned()).collect();
    Calendar::new("Europe/Berlin", "Mon-Fri 09:00-17:00", &holidays).unwrap()
}

#[test]
fn settings_that_are_no_calendar_are_refused_saying_what_to_write() {
    let no = |zone: &str, hours: &str, holidays: &[&str]| {
        let holidays: Vec<String> = holidays.iter().map(|day| (*day).to_owned()).collect();
        Calendar::new(zone, hours, &holidays).unwrap_err()
    };
    assert_eq!(no("Mars/Olympus", "Mon 09:00-17:00", &[]), CalendarError::Zone("Mars/Olympus".into()));
    assert!(no("UTC", "Mon-Fri 9-5", &[]).to_string().contains("\"Mon-Fri 09:00-17:00, Sat 10:00-14:00\""));
    assert!(matches!(no("UTC", "Mon 17:00-09:00", &[]), CalendarError::Hours(_)), "closing before opening");
    assert!(matches!(no("UTC", "Funday 09:00-17:00", &[]), CalendarError::Hours(_)));
    assert!(matches!(no("UTC", "Mon 09:00-25:00", &[]), CalendarError::Hours(_)));
    assert!(matches!(no("UTC", "Mon-Fri 09:00-17:00, Fri 16:00-18:00", &[]), CalendarError::Overlap(_)));
    assert_eq!(no("UTC", " , ", &[]), CalendarError::Empty);
    assert_eq!(no("UTC", "Mon 09:00-17:00", &["25.12.2026"]), CalendarError::Holiday("25.12.2026".into()));
    let calendar = Calendar::new("Europe/Berlin", "Sat-Mon 10:00-12:00 13:00-24:00", &[]).unwrap();
    assert_eq!(
        format!("{calendar:?}"),
        "Calendar(Europe/Berlin Mon 10:00-12:00, Mon 13:00-24:00, Sat 10:00-12:00, Sat 13:00-24:00, Sun 10:00-12:00, \
         Sun 13:00-24:00, 0 holidays)",
        "a range may wrap round the week's end"
    );
}

#[test]
fn always_counts_every_hour() {
    let calendar = Calendar::always();
    let start = at("UTC", "2026-12-05 23:30");
    assert_eq!(calendar.add(start, hours(2)), Some(start + chrono::Duration::hours(2)));
    assert_eq!(calendar.between(start, start + chrono::Duration::hours(49)), hours(49));
}

#[test]
fn working_time_skips_nights_weekends_and_holidays() {
    let office = berlin_office(&["2026-12-28"]);
    // Friday 16:00 and two hours of work: one on Friday, one on Tuesday (Monday is a holiday).
    let friday = at("Europe/Berlin", "2026-12-25 16:00");
    assert_eq!(office.add(friday, hours(2)), Some(at("Europe/Berlin", "2026-12-29 10:00")));
    assert_eq!(office.between(friday, at("Europe/Berlin", "2026-12-29 10:00")), hours(2));
    // Started on a Saturday night: nothing counts until the next opening, which is where no work at all ends.
    let saturday = at("Europe/Berlin", "2026-12-26 22:00");
    assert_eq!(office.add(saturday, Duration::ZERO), Some(at("Europe/Berlin", "2026-12-29 09:00")));
    assert_eq!(office.between(saturday, at("Europe/Berlin", "2026-12-29 08:59")), Duration::ZERO);
    // Exactly a day's work from an opening ends at that day's close, not the next opening.
    let tuesday = at("Europe/Berlin", "2026-12-29 09:00");
    assert_eq!(office.add(tuesday, hours(8)), Some(at("Europe/Berlin", "2026-12-29 17:00")));
    assert_eq!(office.between(at("Europe/Berlin", "2026-12-29 18:00"), tuesday), Duration::ZERO, "backwards");
}

#[test]
fn a_day_with_a_clock_change_has_its_wall_hours() {
    // Europe/Berlin springs forward on 2026-03-29 (02:00 becomes 03:00) and falls back on 2026-10-25.
    let whole_sundays = Calendar::new("Europe/Berlin", "Sun 00:00-24:00", &[]).unwrap();
    let spring = at("Europe/Berlin", "2026-03-29 00:00");
    assert_eq!(whole_sundays.between(spring, spring + chrono::Duration::days(2)), hours(23));
    let autumn = at("Europe/Berlin", "2026-10-25 00:00");
    assert_eq!(whole_sundays.between(autumn, autumn + chrono::Duration::days(2)), hours(25));
    // Office hours are the same eight hours on either day.
    let office = Calendar::new("Europe/Berlin", "Sun 09:00-17:00", &[]).unwrap();
    assert_eq!(office.between(spring, spring + chrono::Duration::days(1)), hours(8));
    assert_eq!(office.between(autumn, autumn + chrono::Duration::days(1)), hours(8));
    // An opening in the skipped hour opens when the clocks resume (03:00 summer time).
    let night = Calendar::new("Europe/Berlin", "Sun 02:30-04:00", &[]).unwrap();
    assert_eq!(night.add(spring, Duration::ZERO), Some(at("Europe/Berlin", "2026-03-29 03:00")));
    assert_eq!(night.between(spring, spring + chrono::Duration::days(1)), hours(1));
}

#[test]
fn a_calendar_of_holidays_only_ends_nowhere() {
    let mondays: Vec<String> = (0..600)
        .map(|week| (NaiveDate::from_ymd_opt(2026, 12, 7).unwrap() + Days::new(7 * week)).to_string())
        .collect();
    let calendar = Calendar::new("UTC", "Mon 09:00-10:00", &mondays).unwrap();
    assert_eq!(calendar.add(at("UTC", "2026-12-06 12:00"), hours(1)), None);
}

// Found by an attack (#26, calendar): each of these failed first on the calendar as it landed in 16e7e79.

/// A span of work longer than chrono can represent past the start must be `None` (past ten years), not a panic:
/// `from + left` overflows `DateTime` before the ten-year horizon is even consulted.
#[test]
fn finding_huge_work_is_none_not_a_panic() {
    let start = at("UTC", "2026-06-01 12:00");
    // 10^13 s (~317,000 years) converts to a chrono::Duration but not to an instant after 2026.
    assert_eq!(Calendar::always().add(start, Duration::from_secs(10_000_000_000_000)), None);
}

/// Instants at chrono's ends of time panicked: the close of the last representable day (`24:00`) overflowed
/// `NaiveDateTime`, and a start whose local date is out of range panicked in `date_naive`. Working time now exists
/// in the years 0001 to 9999 only, and outside them there is none, without a panic.
#[test]
fn finding_the_ends_of_time_do_not_panic() {
    let end = DateTime::<Utc>::MAX_UTC;
    assert_eq!(Calendar::always().between(end - chrono::Duration::hours(1), end), Duration::ZERO);
    let new_year = at("UTC", "9999-12-30 00:00");
    assert_eq!(Calendar::always().between(new_year, end), hours(24), "up to the last instant with working time");
}

#[test]
fn finding_the_end_of_time_in_a_zone_east_of_utc_does_not_panic() {
    // MAX_UTC is 00:59 on a day past chrono's last date in Berlin: no working time can follow it.
    assert_eq!(berlin_office(&[]).add(DateTime::<Utc>::MAX_UTC, Duration::ZERO), None);
}

#[test]
fn finding_the_start_of_time_in_a_zone_west_of_utc_does_not_panic() {
    let calendar = Calendar::new("America/New_York", "Mon-Sun 00:00-24:00", &[]).unwrap();
    assert_eq!(calendar.add(DateTime::<Utc>::MIN_UTC, hours(1)), None, "before the year 1");
    let start = at("UTC", "0001-01-03 00:00");
    assert_eq!(calendar.add(start, hours(1)), Some(start + chrono::Duration::hours(1)));
}

/// `between` silently stopped at the ten-year horizon: twenty years of every hour were reported as 3660 days, and the
/// additivity the module promises breaks.
#[test]
fn finding_between_is_not_cut_off_at_ten_years() {
    let calendar = Calendar::always();
    let (a, b, c) = (at("UTC", "2020-01-01 00:00"), at("UTC", "2030-01-01 00:00"), at("UTC", "2040-01-01 00:00"));
    assert_eq!(calendar.between(a, b) + calendar.between(b, c), calendar.between(a, c), "additive");
    assert_eq!(calendar.between(a, c), (c - a).to_std().unwrap(), "every hour of twenty years");
}

/// Samoa skipped Friday 2011-12-30 (Thursday 24:00 at -10 became Saturday 00:00 at +14). A day skipped whole
/// defeated the minute-by-minute probe: midnight of the skipped day found no wall time within 1440 probes and was read as UTC, so Thursday's
/// 24:00 lands at Thursday 14:00 local.
#[test]
fn finding_a_skipped_day_keeps_the_evening_before_it() {
    let thursday_evening = Calendar::new("Pacific/Apia", "Thu 20:00-24:00", &[]).unwrap();
    // 2011-12-29 20:00-24:00 at -10 is 2011-12-30 06:00-10:00 UTC: four hours.
    assert_eq!(thursday_evening.between(at("UTC", "2011-12-28 00:00"), at("UTC", "2011-12-31 00:00")), hours(4));
}

#[test]
fn finding_a_skipped_day_has_no_working_hours() {
    let fridays = Calendar::new("Pacific/Apia", "Fri 00:00-24:00", &[]).unwrap();
    // There was no Friday between Thursday 2011-12-29 and Saturday 2011-12-31 in Samoa.
    assert_eq!(fridays.between(at("UTC", "2011-12-28 00:00"), at("UTC", "2012-01-02 00:00")), Duration::ZERO);
    let kwajalein = Calendar::new("Pacific/Kwajalein", "Sat 00:00-24:00", &[]).unwrap();
    // Nor a Saturday 1993-08-21 on Kwajalein (-12 to +12).
    assert_eq!(kwajalein.between(at("UTC", "1993-08-19 00:00"), at("UTC", "1993-08-24 00:00")), Duration::ZERO);
}

/// The misplaced midnight makes spans overlap in UTC: more work ends sooner, and there is more working time
/// between two instants than time.
#[test]
fn finding_a_skipped_day_keeps_add_monotonic_and_between_within_the_wall_time() {
    let calendar = Calendar::new("Pacific/Apia", "Thu 15:00-16:00, Fri 00:00-24:00", &[]).unwrap();
    let start = at("UTC", "2011-12-29 00:00");
    let one = calendar.add(start, hours(1)).unwrap();
    let more = calendar.add(start, Duration::from_secs(5400)).unwrap();
    assert!(one <= more, "1h of work ends at {one}, 1h30m at {more}");
    let (from, to) = (at("UTC", "2011-12-30 00:00"), at("UTC", "2011-12-30 10:00"));
    assert!(calendar.between(from, to) <= hours(10), "{:?} of work in 10h", calendar.between(from, to));
}

/// West of UTC the misplaced midnight is too early: Manila skipped 1844-12-31 going from -15:56 to +08:04, and a
/// calendar of every hour, written as two halves a day, counts almost four hours twice.
#[test]
fn finding_a_skipped_day_west_of_utc_is_not_counted_twice() {
    let halves = Calendar::new("Asia/Manila", "Mon-Sun 00:00-12:00 12:00-24:00", &[]).unwrap();
    let (from, to) = (at("UTC", "1844-12-27 00:00"), at("UTC", "1845-01-04 00:00"));
    assert_eq!(halves.between(from, to), (to - from).to_std().unwrap());
}

/// Offsets were not whole minutes before standard time: Berlin went from LMT (+00:53:28) to CET at 1893-04-01
/// 00:00, skipping to 00:06:32. Probing minute by minute resumes at 00:07:00, so Friday gets 28 seconds too many
/// and Saturday opens 28 seconds late.
#[test]
fn finding_a_gap_that_ends_off_the_minute_opens_when_the_clocks_resume() {
    let saturdays = Calendar::new("Europe/Berlin", "Sat 00:00-24:00", &[]).unwrap();
    let friday = at("UTC", "1893-03-31 00:00");
    // 1893-04-01 00:06:32 CET is 1893-03-31 23:06:32 UTC.
    let resumed = DateTime::parse_from_rfc3339("1893-03-31T23:06:32Z").unwrap().with_timezone(&Utc);
    assert_eq!(saturdays.add(friday, Duration::ZERO), Some(resumed));
    let fridays = Calendar::new("Europe/Berlin", "Fri 00:00-24:00", &[]).unwrap();
    assert_eq!(fridays.between(at("UTC", "1893-03-30 00:00"), at("UTC", "1893-04-02 00:00")), hours(24));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Zones with the rules that break naive arithmetic: summer time in both hemispheres, a half-hour shift (Lord
    /// Howe), a half-hour offset without summer time (Kolkata), and none at all.
    const ZONES: [&str; 5] = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"];

    fn calendar() -> impl Strategy<Value = Calendar> {
        let span = (0u32..48, 1u32..=48).prop_map(|(open, length)| (open * 30, ((open + length) * 30).min(24 * 60)));
        let day = proptest::collection::vec(span, 0..3);
        (0..ZONES.len(), proptest::collection::vec(day, 7), proptest::collection::vec(0u64..120, 0..10))
            .prop_filter_map("some working hours, none overlapping", |(zone, days, holidays)| {
                let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
                let text: Vec<String> = names
                    .iter()
                    .zip(&days)
                    .flat_map(|(name, spans)| {
                        spans.iter().filter(|(open, close)| open < close).map(move |(open, close)| {
                            format!("{name} {:02}:{:02}-{:02}:{:02}", open / 60, open % 60, close / 60, close % 60)
                        })
                    })
                    .collect();
                let holidays: Vec<String> = holidays
                    .iter()
                    .map(|n| (NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() + Days::new(*n)).to_string())
                    .collect();
                Calendar::new(ZONES[zone], &text.join(", "), &holidays).ok()
            })
    }

    /// Instants over the spring and summer of 2026, where both clock changes of the north and the south fall.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..200 * 24 * 60).prop_map(|minutes| at("UTC", "2026-03-01 00:00") + chrono::Duration::minutes(minutes))
    }

    proptest! {
        #[test]
        fn props_the_work_between_a_start_and_its_end_is_the_work_added(
            calendar in calendar(), start in instant(), work in 0u64..200 * 3600
        ) {
            let work = Duration::from_secs(work);
            let end = calendar.add(start, work).expect("within ten years");
            prop_assert!(end >= start);
            prop_assert_eq!(calendar.between(start, end), work);
        }

        #[test]
        fn props_more_work_never_ends_sooner(
            calendar in calendar(), start in instant(), a in 0u64..100 * 3600, b in 0u64..100 * 3600
        ) {
            let (less, more) = (Duration::from_secs(a.min(b)), Duration::from_secs(a.max(b)));
            prop_assert!(calendar.add(start, less).unwrap() <= calendar.add(start, more).unwrap());
        }

        #[test]
        fn props_work_over_two_stretches_adds_up_and_never_exceeds_the_wall_time(
            calendar in calendar(), a in instant(), b in instant(), c in instant()
        ) {
            let mut points = [a, b, c];
            points.sort();
            let [a, b, c] = points;
            prop_assert_eq!(calendar.between(a, b) + calendar.between(b, c), calendar.between(a, c));
            prop_assert!(calendar.between(a, c) <= (c - a).to_std().unwrap());
        }
    }
}

/// Found by an attack (#26), failing first: `between` looks at "every local day that touches the stretch, and one
/// more" counted as whole 24-hour days of the stretch plus two. A stretch shorter than a day can touch three local
/// days when a day between is shorter than 24 hours (a spring-forward night, 23 hours; Samoa's skipped
/// 2011-12-30, none): the third day is never looked at and its working time is lost. A 24/7 team in Berlin whose
/// ticket waited on its submitter from Saturday 23:50 to Monday 00:10 over the spring-forward night (23h20m) has
/// 23h10m counted as waiting, so its resolution deadline comes ten minutes early.
#[test]
fn finding_a_stretch_over_a_short_day_counts_the_working_time_of_its_last_day() {
    let always = Calendar::new("Europe/Berlin", "Mon-Sun 00:00-24:00", &[]).unwrap();
    let (from, to) = (at("Europe/Berlin", "2026-03-28 23:50"), at("Europe/Berlin", "2026-03-30 00:10"));
    assert_eq!(always.between(from, to), (to - from).to_std().unwrap(), "every minute of {from} to {to} is worked");
    let samoa = Calendar::new("Pacific/Apia", "Mon-Sun 00:00-24:00", &[]).unwrap();
    let (from, to) = (at("Pacific/Apia", "2011-12-29 23:50"), at("Pacific/Apia", "2011-12-31 00:10"));
    assert_eq!(samoa.between(from, to), (to - from).to_std().unwrap(), "every minute of {from} to {to} is worked");
}
