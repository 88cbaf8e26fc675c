//! Saved replies on the desk: the API that keeps them (`GET /api/replies`, `PUT` and `DELETE /api/replies/NAME`),
//! and a saved reply filled for one ticket, which a reply or a close sends (`"saved": NAME` in a command, the web
//! desk's reply form, `franz tickets comment ID --saved NAME`). The list itself is `people::saved`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::Desk;
use super::request::{ApiError, Caller};
use crate::people::saved::{Placeholders, SavedReply, fill};
use crate::schema::lifecycle::Action;
use crate::store::query;

type Shared = Arc<Desk>;

/// The routes of the saved replies' API.
pub fn router(desk: Shared) -> Router {
    Router::new()
        .route("/api/replies", axum::routing::get(list))
        .route("/api/replies/{name}", axum::routing::put(save).delete(delete))
        .with_state(desk)
}

#[derive(Debug, Default, Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
}

async fn list(
    State(desk): State<Shared>,
    Caller(_): Caller,
    Query(search): Query<Search>,
) -> Result<Response, ApiError> {
    let replies = staff(&desk, move |desk| desk.staff.saved_replies(&search.q)).await?;
    Ok(Json(json!({ "replies": replies })).into_response())
}

#[derive(Debug, Deserialize)]
struct Text {
    body: String,
}

async fn save(
    State(desk): State<Shared>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    body: Result<Json<Text>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(Text { body }) = body.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("{}; send {{\"body\": \"the text\"}}", rejection.body_text()))
    })?;
    let by = actor.person().display();
    let (new, reply) = staff(&desk, move |desk| {
        let new = desk.staff.save_reply(&name, &body, &by).map_err(|error| bad(&error))?;
        Ok((new, desk.staff.saved_reply(&name)?))
    })
    .await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "reply": reply }))).into_response())
}

async fn delete(State(desk): State<Shared>, Caller(_): Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let shown = name.clone();
    match staff(&desk, move |desk| desk.staff.delete_reply(&name)).await? {
        true => Ok(Json(json!({ "deleted": shown })).into_response()),
        false => Err(no_reply(&shown)),
    }
}

/// Work on the staff list, off the runtime; an error the work marks as the caller's (`bad`) stays a 400.
async fn staff<T: Send + 'static>(
    desk: &Shared,
    work: impl FnOnce(&Desk) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let desk = desk.clone();
    match tokio::task::spawn_blocking(move || work(&desk)).await.map_err(ApiError::internal)? {
        Ok(value) => Ok(value),
        Err(error) => match error.downcast::<Refused>() {
            Ok(Refused(message)) => Err(ApiError::new(StatusCode::BAD_REQUEST, message)),
            Err(error) => Err(ApiError::internal(format!("{error:#}"))),
        },
    }
}

/// A saved reply refused for what the caller sent (a name or text out of bounds, too many).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn bad(error: &anyhow::Error) -> anyhow::Error {
    Refused(format!("{error:#}")).into()
}

fn no_reply(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("there is no saved reply {name:?} (the desk's Saved replies page lists them)"),
    )
}

/// The saved reply `name` filled for ticket `ticket_id`, sent by `agent`.
pub async fn filled(desk: &Shared, ticket_id: &str, name: &str, agent: &str) -> Result<String, ApiError> {
    let (lookup, wanted) = (name.to_owned(), name.to_owned());
    let reply: Option<SavedReply> = staff(desk, move |desk| desk.staff.saved_reply(&lookup)).await?;
    let reply = reply.ok_or_else(|| no_reply(&wanted))?;
    let id = ticket_id.to_owned();
    let store = desk.store.clone();
    let ticket =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> { Ok(query::ticket(&*store.reader()?, &id)?) })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    let contact = ticket.as_ref().map_or("", |ticket| ticket.contact.as_str());
    Ok(fill(&reply.body, Placeholders { contact, ticket: ticket_id, agent }))
}

/// `action` with the saved reply `saved` as its text: a reply's body, or a close's reason (which must be empty in
/// `action`: one text or the other).
pub async fn with_saved(
    desk: &Shared,
    ticket_id: &str,
    saved: &str,
    agent: &str,
    action: Action,
) -> Result<Action, ApiError> {
    let text = filled(desk, ticket_id, saved, agent).await?;
    let both = || ApiError::new(StatusCode::BAD_REQUEST, "send a saved reply or a text of your own, not both");
    // Filled, a saved reply can be longer than it was saved (a long name, a long id): refused here, with why,
    // before anything is sent (akte would refuse it too, on the ticket's history and under the command's id).
    let fits = |what: &str, max: usize| {
        let count = text.trim().chars().count();
        if count <= max {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the saved reply {saved:?}, filled for this ticket, has {count} characters; {what} has at most {max}"
            ),
        ))
    };
    match action {
        Action::Comment { body, internal, via } if body.trim().is_empty() => {
            fits("a comment", crate::lifecycle::COMMENT_MAX)?;
            Ok(Action::Comment { body: text, internal, via })
        }
        Action::Close { reason } if reason.trim().is_empty() => {
            fits("a close reason", crate::lifecycle::REASON_MAX)?;
            Ok(Action::Close { reason: text })
        }
        Action::Comment { .. } | Action::Close { .. } => Err(both()),
        _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "a saved reply is the text of a comment or a close reason")),
    }
}
