//! `/live`: server-sent events that tell an open page something changed (the ticket store applied events, a
//! problem arrived, or the team's numbers were counted again), so the page fetches itself again. Changes are
//! coalesced: a busy store sends one `change` every [`COALESCE`] at most. A stream ends when the desk shuts down,
//! and within [`RECHECK`] of its session ending (sign-out, removal, a new link), however busy the desk is: the
//! recheck runs on a clock of its own that changes do not reset. Streams are bounded: a person
//! has at most [`PER_SESSION`] open, and all together at most [`MAX_STREAMS`], which leaves the rest of the desk's
//! connections to requests.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use super::{Shared, SignedIn, error_page};
use crate::desk::tally::{Held, Tally};
use crate::people::Session;

/// The shortest time between two `change` events on one stream.
const COALESCE: Duration = Duration::from_millis(200);
/// How often a stream checks that its session still holds.
const RECHECK: Duration = Duration::from_secs(15);
/// Live streams of one session at once.
pub const PER_SESSION: usize = 16;
/// Live streams at once, all sessions together.
pub const MAX_STREAMS: usize = 384;

/// The open streams, by session.
pub type Streams = Tally<String>;
type Open = Held<String>;

fn open(streams: &Streams, session: &str) -> Result<Open, &'static str> {
    streams.take(session.to_owned(), |held, total| {
        if total >= MAX_STREAMS {
            Err("the desk has as many live pages open as it serves; this page will not update by itself")
        } else if held >= PER_SESSION {
            Err("you have 16 live pages open; close some tabs and reload this one")
        } else {
            Ok(())
        }
    })
}

pub async fn stream(State(desk): State<Shared>, SignedIn(session): SignedIn) -> Response {
    let open = match open(&desk.live, &session.id) {
        Ok(open) => open,
        Err(message) => return error_page(StatusCode::TOO_MANY_REQUESTS, message),
    };
    Sse::new(changes(desk, session, open))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// What a stream waits for next.
enum Wake {
    Changed,
    Recheck,
    End,
}

/// One `change` event per burst of changes, until shutdown or the session's end.
fn changes(desk: Shared, session: Session, open: Open) -> impl Stream<Item = Result<Event, Infallible>> {
    let store = desk.store.progress();
    let problems = desk.problems.subscribe();
    let numbers = desk.numbers.subscribe();
    // A clock of its own, kept across the stream's events: a sleep started afresh on each wake was reset by every
    // change, so on a busy desk the session was never checked again and a removed person kept their stream (#33).
    // The first tick is due at once and the session was just checked, so the clock starts one period from now.
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (desk, session, open, store, problems, numbers, recheck, 0u64);
    futures::stream::unfold(state, |state| async move {
        let (desk, session, open, mut store, mut problems, mut numbers, mut recheck, mut sent) = state;
        loop {
            store.borrow_and_update();
            problems.borrow_and_update();
            numbers.borrow_and_update();
            // Biased: a due recheck goes before changes that are ready at the same time.
            let wake = tokio::select! {
                biased;
                _ = desk.shutdown.cancelled() => Wake::End,
                _ = recheck.tick() => Wake::Recheck,
                changed = store.changed() => if changed.is_ok() { Wake::Changed } else { Wake::End },
                changed = problems.changed() => if changed.is_ok() { Wake::Changed } else { Wake::End },
                changed = numbers.changed() => if changed.is_ok() { Wake::Changed } else { Wake::End },
            };
            match wake {
                Wake::End => return None,
                Wake::Recheck => {
                    let (shared, id) = (desk.clone(), session.id.clone());
                    let still = tokio::task::spawn_blocking(move || shared.staff.session(&id)).await;
                    if !matches!(still, Ok(Ok(Some(_)))) {
                        return None;
                    }
                }
                Wake::Changed => {
                    tokio::select! {
                        _ = desk.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(COALESCE) => {}
                    }
                    sent += 1;
                    let event = Event::default().event("change").data(sent.to_string());
                    let state = (desk, session, open, store, problems, numbers, recheck, sent);
                    return Some((Ok(event), state));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_streams_are_bounded_per_session_and_in_all() {
        let streams = Streams::default();
        let mine: Vec<Open> = (0..PER_SESSION).map(|_| open(&streams, "ana").unwrap()).collect();
        assert!(open(&streams, "ana").err().unwrap().contains("close some tabs"));
        let mut others = Vec::new();
        for n in 0..MAX_STREAMS - PER_SESSION {
            others.push(open(&streams, &format!("s{}", n / PER_SESSION)).unwrap());
        }
        assert!(open(&streams, "bo").err().unwrap().contains("as many live pages"));
        drop(mine);
        assert!(open(&streams, "ana").is_ok(), "closed streams make room");
    }

    /// Regression (#33): every change restarted the 15 s recheck, so on a desk busier than one change per 15 s a
    /// removed person's stream never ended. Changes here arrive every few hundred milliseconds (on a paused
    /// clock that the test moves), and the stream must still end within a recheck or two.
    #[tokio::test(start_paused = true)]
    async fn a_removed_persons_stream_ends_even_while_changes_keep_arriving() {
        use futures::StreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (store, mut writer) =
            crate::store::open(&dir.path().join("store/tickets.sqlite"), &crate::store::Identity::named("events"))
                .unwrap();
        let staff = crate::people::Staff::open(&dir.path().join("desk")).unwrap();
        staff.add("bo").unwrap();
        let session = staff.start_session(&staff.link("bo").unwrap()).unwrap().unwrap();
        let desk = std::sync::Arc::new(crate::desk::Desk {
            store: store.clone(),
            staff,
            // Never used here: nothing is produced, so no broker needs to answer.
            producer: crate::kafka::producer("127.0.0.1:9").unwrap(),
            topics: crate::config::Topics::default(),
            partitions: 1,
            local: [0; 32],
            problems: crate::desk::problems::Problems::default(),
            public_url: None,
            shutdown: tokio_util::sync::CancellationToken::new(),
            numbers: crate::desk::numbers::Numbers::new(store),
            live: Streams::default(),
            searches: Default::default(),
            files: crate::attachments::Cache::open(&dir.path().join("files")).unwrap(),
            clock: crate::clock::Clock::system(),
            calendar: None,
            rules: Vec::new(),
            feedback: crate::feedback::Key::in_dir(&dir.path().join("desk")).unwrap(),
            satisfaction: Default::default(),
        });
        let held = open(&desk.live, &session.id).unwrap();
        let mut stream = std::pin::pin!(changes(desk.clone(), session, held));
        desk.staff.remove("bo").unwrap();

        let started = tokio::time::Instant::now();
        let (mut offset, mut events) = (0, 0);
        let ended = loop {
            if started.elapsed() > RECHECK * 3 {
                break false;
            }
            // A record the store cannot read still moves its offsets on, which is a change to the stream.
            let record = crate::store::Record { partition: 0, offset, payload: b"busy" };
            writer.apply(&[record]).unwrap();
            offset += 1;
            match tokio::time::timeout(COALESCE * 2, stream.next()).await {
                Ok(None) => break true,
                Ok(Some(_)) => events += 1,
                Err(_) => {}
            }
        };
        assert!(events > 10, "changes kept the stream busy ({events} events)");
        assert!(ended, "the stream of a removed person still ran after {:?} of changes", started.elapsed());
    }
}
