//! The public feedback page (`/feedback/TOKEN`): where the submitter of a ticket closed by mail rates it from the
//! link in the close mail, without signing in.
//!
//! The token (`crate::feedback`) names the ticket and proves franz made it; the page shows the question and five
//! choices, nothing of the ticket. Opening it changes nothing (a mail scanner or a link preview fetches it first);
//! only the form's POST, from the page itself, rates, as the ticket's submitter. Once a rating since the close is
//! recorded the page only thanks, and a send repeated has the command id of the first (`command_id`), so it is one
//! rating. akte decides as for every rating (closed, within the window).

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::{Forged, Shared, pages, same_origin};
use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Action, Actor, ActorSource, Change, Command, Status};

/// What a link that names no ticket is told: nothing about why (forged, cut, or a ticket that is gone).
const NOT_A_LINK: &str = "This feedback link does not work: it may be cut short or mistyped. Copy the whole link from \
                          the mail.";

#[derive(serde::Deserialize)]
pub(super) struct Rated {
    rating: Option<String>,
    comment: Option<String>,
}

/// `GET /feedback/{token}`: the form, or why it takes no rating. Changes nothing.
pub(super) async fn page(State(desk): State<Shared>, Path(token): Path<String>) -> Response {
    match ticket(&desk, &token).await {
        Ok(ticket) => match refusal(&desk, &ticket) {
            Some(said) => answer(StatusCode::OK, said),
            None => {
                // Only the origin as referrer: the address holds the token.
                let headers = [(header::REFERRER_POLICY, "strict-origin")];
                (headers, Html(pages::feedback(&desk.satisfaction.question, &token).into_string())).into_response()
            }
        },
        Err(response) => response,
    }
}

/// `POST /feedback/{token}`: the rating, from the page's own form only.
pub(super) async fn rate(
    State(desk): State<Shared>,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<Rated>, axum::extract::rejection::FormRejection>,
) -> Response {
    // A browser sends `Origin` with a form's POST: without one it came from no page (a scanner that submits forms).
    if !headers.contains_key(header::ORIGIN) || same_origin(&desk, &headers).is_err() {
        return Forged.into();
    }
    let ticket = match ticket(&desk, &token).await {
        Ok(ticket) => ticket,
        Err(response) => return response,
    };
    if let Some(said) = refusal(&desk, &ticket) {
        return answer(StatusCode::CONFLICT, said);
    }
    let Ok(Form(Rated { rating: Some(rating), comment })) = form else {
        return answer(StatusCode::BAD_REQUEST, "Pick a rating from 1 to 5, then send.");
    };
    let Some(rating) = rating.trim().parse::<u8>().ok().filter(|r| (1..=5).contains(r)) else {
        return answer(StatusCode::BAD_REQUEST, "Pick a rating from 1 to 5, then send.");
    };
    // A browser sends a textarea's line breaks as CRLF, and its `maxlength` counts each as one character: the
    // comment as typed. One akte would refuse is refused here, with why, before anything is sent.
    let comment = comment.map(|c| c.replace("\r\n", "\n").replace('\r', "\n")).filter(|c| !c.trim().is_empty());
    if let Some(count) = comment.as_deref().map(|c| c.trim().chars().count())
        && count > crate::lifecycle::RATING_COMMENT_MAX
    {
        return answer(
            StatusCode::BAD_REQUEST,
            &format!(
                "Your comment has {count} characters; it may have at most {}. Shorten it, then send again.",
                crate::lifecycle::RATING_COMMENT_MAX
            ),
        );
    }
    let (Some(actor), Some(closed_at)) = (submitter(&ticket), ticket.closed_at.as_deref()) else {
        return answer(StatusCode::CONFLICT, "This ticket takes no rating from this page.");
    };
    let command = Command {
        command_id: command_id(closed_at, rating, comment.as_deref()),
        ticket_id: ticket.id.clone(),
        actor,
        action: Action::Rate { rating, comment },
    };
    match super::api::submit(&desk, &command).await.map(|event| event.change) {
        Ok(Change::Rated { .. }) => answer(StatusCode::OK, "Thank you: your rating was recorded."),
        Ok(Change::Rejected { reason, .. }) => answer(StatusCode::CONFLICT, &format!("Not recorded: {reason}.")),
        Ok(_) => answer(StatusCode::OK, "Thank you."),
        Err(error) if error.status() == StatusCode::GATEWAY_TIMEOUT => {
            answer(StatusCode::ACCEPTED, "Thank you: your rating was sent and will be recorded shortly.")
        }
        Err(error) => error.into(),
    }
}

/// The command id of a send from the page: of this close and this rating and comment, so that a send repeated (a
/// double click, a reload that posts again) is one rating, while one that differs (after akte refused the first,
/// say) is a command of its own and not the refused one's answer again.
fn command_id(closed_at: &str, rating: u8, comment: Option<&str>) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{rating}\n{}", comment.unwrap_or_default()).as_bytes());
    let tag: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
    format!("feedback:{closed_at}:{tag}")
}

fn answer(status: StatusCode, text: &str) -> Response {
    (status, Html(pages::feedback_said(text).into_string())).into_response()
}

/// The ticket `token` names, or the page that says the link does not work.
async fn ticket(desk: &Shared, token: &str) -> Result<TicketState, Response> {
    let not_a_link = || answer(StatusCode::NOT_FOUND, NOT_A_LINK);
    let Some(id) = desk.feedback.ticket_of(token) else { return Err(not_a_link()) };
    let store = desk.store.clone();
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        Ok(crate::store::query::ticket(&*store.reader()?, &id)?)
    })
    .await;
    match found {
        Ok(Ok(Some(ticket))) => Ok(ticket),
        Ok(Ok(None)) => Err(not_a_link()),
        Ok(Err(error)) => Err(super::ApiError::internal(error).into()),
        Err(error) => Err(super::ApiError::internal(error).into()),
    }
}

/// Why the ticket takes no rating from the page now, if it does not.
fn refusal(desk: &Shared, ticket: &TicketState) -> Option<&'static str> {
    let Some(closed_at) = ticket.closed_at.as_deref().filter(|_| ticket.status == Status::Closed) else {
        return Some("This ticket is open again, so it takes no rating now; you will be asked when it is closed.");
    };
    if ticket.rating.as_ref().is_some_and(|rated| rated.at.as_str() >= closed_at) {
        return Some("Thank you: your rating was recorded.");
    }
    let closed = chrono::DateTime::parse_from_rfc3339(closed_at).ok()?;
    let age = desk.clock.now().signed_duration_since(closed).to_std().unwrap_or_default();
    (age > desk.satisfaction.window).then_some("The time to rate this ticket has passed. Thank you all the same.")
}

/// The ticket's submitter as a command's actor: the address of a ticket by mail, the account of one from Discord.
fn submitter(ticket: &TicketState) -> Option<Actor> {
    let id = crate::lifecycle::submitter_id(ticket)?.to_owned();
    let source = if ticket.origin == crate::schema::ORIGIN_EMAIL { ActorSource::Email } else { ActorSource::Discord };
    let name: String = ticket.contact.chars().take(crate::lifecycle::NAME_MAX).collect();
    Some(Actor { source, name, id: Some(id), staff: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_repeated_is_one_command_and_a_different_one_another() {
        let at = "2026-12-08T01:00:00.000Z";
        assert_eq!(command_id(at, 4, Some("ok")), command_id(at, 4, Some("ok")));
        assert_ne!(command_id(at, 4, Some("ok")), command_id(at, 4, None));
        assert_ne!(command_id(at, 4, None), command_id(at, 5, None));
        assert_ne!(command_id(at, 4, None), command_id("2026-12-09T01:00:00.000Z", 4, None), "another close");
        assert!(command_id(at, 4, Some(&"x".repeat(5000))).len() <= crate::lifecycle::NAME_MAX);
    }
}
