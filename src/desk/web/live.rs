//! `/live`: server-sent events that tell an open page something changed (the ticket store applied events, a
//! problem arrived, or the team's numbers were counted again), so the page fetches itself again. Changes are coalesced: a busy store sends one `change`
//! every [`COALESCE`] at most. A stream ends when the desk shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use super::{Shared, SignedIn};

/// The shortest time between two `change` events on one stream.
const COALESCE: Duration = Duration::from_millis(200);

pub async fn stream(State(desk): State<Shared>, _signed_in: SignedIn) -> Response {
    Sse::new(changes(desk)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// One `change` event per burst of changes, until shutdown.
fn changes(desk: Shared) -> impl Stream<Item = Result<Event, Infallible>> {
    let store = desk.store.progress();
    let problems = desk.problems.subscribe();
    let numbers = desk.numbers.subscribe();
    let state = (desk, store, problems, numbers, 0u64);
    futures::stream::unfold(state, |(desk, mut store, mut problems, mut numbers, sent)| async move {
        store.borrow_and_update();
        problems.borrow_and_update();
        numbers.borrow_and_update();
        tokio::select! {
            _ = desk.shutdown.cancelled() => return None,
            changed = store.changed() => changed.ok()?,
            changed = problems.changed() => changed.ok()?,
            changed = numbers.changed() => changed.ok()?,
        }
        tokio::select! {
            _ = desk.shutdown.cancelled() => return None,
            _ = tokio::time::sleep(COALESCE) => {}
        }
        let event = Event::default().event("change").data((sent + 1).to_string());
        Some((Ok(event), (desk, store, problems, numbers, sent + 1)))
    })
}
