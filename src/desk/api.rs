//! The JSON API under `/api/`: list and search tickets, one ticket with its history, send a command and get
//! akte's answer, the team's numbers. Every answer is JSON; every error is `{"error": "..."}` with a status that
//! says what kind (400 bad input, 401 no or a wrong credential, 404 no such ticket, 409 refused by the lifecycle,
//! 504 akte did not answer in time).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::Desk;
pub use super::request::{ApiError, Caller};
use crate::kafka::tickets::send_command;
use crate::lifecycle::NAME_MAX;
use crate::schema::lifecycle::{Action, Actor, Change, Command, Event};
use crate::store::query::{self, Filter};
use crate::store::{ReadError, Reads};

/// The largest request body: a command with a 4,000-character comment fits many times over.
const BODY_LIMIT: usize = 64 * 1024;
/// How long a command waits for akte's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

type Shared = Arc<Desk>;

/// The API's routes.
pub fn router(desk: Shared) -> Router {
    Router::new()
        .route("/api/tickets", get(list))
        .route("/api/tickets/{id}", get(show))
        .route("/api/tickets/{id}/commands", post(command))
        .route("/api/tickets/{id}/files/{sha256}", get(file))
        .route("/api/tickets/{id}/similar", get(similar))
        .route("/api/tickets/{id}/transcript", get(transcript))
        .route("/api/export", get(export))
        .route("/api/stats", get(stats))
        .route("/api/me", get(me))
        .route(
            "/api/{*rest}",
            axum::routing::any(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") }),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(secure))
        .with_state(desk)
}

/// Headers on every answer: nothing is cached, sniffed, framed or sent on as a referrer. An error that is not JSON
/// yet (axum's own answers: 405, a path that is no UTF-8, a timeout) becomes `{"error": ...}` like every other.
async fn secure(response: Response) -> Response {
    let mut response = as_json_error(response).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    response
}

async fn as_json_error(response: Response) -> Response {
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        text => text.to_owned(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(json!({ "error": message }).to_string()))
}

/// The status of a request the API cannot take: 413 for a body over the limit, 400 for everything else.
fn client_error(status: StatusCode) -> StatusCode {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => status,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// How long one read of the store for the desk may run before it is stopped.
pub const READ_TIME_MAX: Duration = Duration::from_secs(10);
/// How many lists and searches one person may have running at once.
pub const SEARCHES_PER_PERSON: usize = 2;

/// Runs a read on the store's connection pool, off the async workers. A read is stopped after [`READ_TIME_MAX`]
/// and a store with no free connection within a few seconds answers, both with 503, so no request holds a
/// connection for long.
pub(super) async fn read<T: Send + 'static>(
    desk: &Shared,
    work: impl FnOnce(&rusqlite::Connection) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    read_holding(desk, Reads::Lookups, (), work).await
}

/// [`read`] for a list or search by `who`, the reads whose cost the caller chooses: a person has at most
/// [`SEARCHES_PER_PERSON`] running (429 beyond), so one person's searches cannot hold the store for the team.
pub(super) async fn search<T: Send + 'static>(
    desk: &Shared,
    who: &str,
    work: impl FnOnce(&rusqlite::Connection) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let held = desk.searches.take(who.to_owned(), |running, _| match running < SEARCHES_PER_PERSON {
        true => Ok(()),
        false => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("you have {running} searches of the ticket store running; wait for them to finish"),
        )),
    })?;
    read_holding(desk, Reads::Searches, held, work).await
}

/// [`read`], keeping `held` until the read ends, even when the request that started it is gone.
async fn read_holding<T: Send + 'static, H: Send + 'static>(
    desk: &Shared,
    kind: Reads,
    held: H,
    work: impl FnOnce(&rusqlite::Connection) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = desk.store.clone();
    tokio::task::spawn_blocking(move || {
        let _held = held;
        let unavailable = |error: ReadError| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string());
        let conn = store.reader_within(kind, READ_TIME_MAX).map_err(unavailable)?;
        work(&conn).map_err(|error| match conn.stopped() {
            true => unavailable(conn.explain(anyhow::anyhow!("stopped"))),
            false => error,
        })
    })
    .await
    .map_err(ApiError::internal)?
}

async fn list(
    State(desk): State<Shared>,
    Caller(caller): Caller,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) =
        filter.map_err(|rejection| ApiError::new(client_error(rejection.status()), rejection.body_text()))?;
    let page = search(&desk, &caller.name, move |conn| {
        query::list(conn, &filter).map_err(|error| match error {
            query::QueryError::Invalid(message) => ApiError::new(StatusCode::BAD_REQUEST, message),
            query::QueryError::Store(error) => ApiError::internal(error),
        })
    })
    .await?;
    Ok(Json(page).into_response())
}

/// `GET /api/tickets/{id}/similar`: the closed tickets most like this one, best first, and what they suggest
/// ([`similar_to`]).
async fn similar(
    State(desk): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (similar, suggested) = similar_to(&desk, &caller.name, id).await?;
    Ok(Json(json!({ "similar": similar, "suggested": suggested })).into_response())
}

/// The closed tickets most like ticket `id` ([`crate::lifecycle::routing::SIMILAR_SHOWN`] at most, best first) and
/// the labels and team they suggest: a search of the store by `who`, with a search's time limit.
pub(super) async fn similar_to(
    desk: &Shared,
    who: &str,
    id: String,
) -> Result<(Vec<crate::lifecycle::TicketState>, crate::lifecycle::routing::Suggested), ApiError> {
    use crate::lifecycle::routing::{SIMILAR_SHOWN, suggest};
    search(desk, who, move |conn| {
        let ticket = query::ticket(conn, &id).map_err(ApiError::internal)?.ok_or_else(|| no_ticket(&id))?;
        let similar = query::similar(conn, &ticket, SIMILAR_SHOWN).map_err(ApiError::internal)?;
        let suggested = suggest(&ticket, &similar);
        Ok((similar, suggested))
    })
    .await
}

/// `GET /api/tickets/{id}/files/{sha256}`: a file kept for the ticket ([`download`]).
async fn file(
    State(desk): State<Shared>,
    _caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    download(&desk, id, name).await
}

/// A file kept for ticket `id` (named `name`, its SHA-256), as a download under the name it came with. It is never
/// shown inline and never sniffed (`application/octet-stream`, `Content-Disposition: attachment`; the web pages add
/// a sandbox to their policy), so a file made to look like a page runs nothing on the desk's origin; and only a
/// file an event of this ticket names is served.
pub async fn download(desk: &Shared, id: String, name: String) -> Result<Response, ApiError> {
    let lookup = (id.clone(), name.clone());
    let described = read(desk, move |conn| query::file(conn, &lookup.0, &lookup.1).map_err(ApiError::internal)).await?;
    let Some(file) = described else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("ticket {id} has no file {name}")));
    };
    let files = desk.files.clone();
    let lookup = name.clone();
    let bytes = tokio::task::spawn_blocking(move || files.read(&lookup)).await.map_err(ApiError::internal)?;
    let Some(bytes) = bytes else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the desk has not read this file from the files topic yet; try again in a moment (if it stays away, \
             franz's log says why)",
        ));
    };
    let disposition = HeaderValue::from_str(&content_disposition(&file.name))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    Ok(response)
}

/// `Content-Disposition` for a download named `name`: an ASCII stand-in for old clients (anything but letters,
/// digits, dots, dashes and underscores made `_`), and the name itself percent-encoded (RFC 6266).
fn content_disposition(name: &str) -> String {
    let plain: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

/// What `GET /api/tickets/{id}/transcript` takes: `format=text` (the default) or `html`.
#[derive(Debug, Deserialize)]
struct TranscriptQuery {
    format: Option<String>,
}

/// `GET /api/tickets/{id}/transcript?format=text|html`: the ticket's conversation as a download ([`transcript_of`]).
async fn transcript(
    State(desk): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
    asked: Result<Query<TranscriptQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(asked) =
        asked.map_err(|rejection| ApiError::new(client_error(rejection.status()), rejection.body_text()))?;
    let html = match asked.format.as_deref() {
        None | Some("text") => false,
        Some("html") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("no transcript format {other:?}; text or html"),
            ));
        }
    };
    transcript_of(&desk, id, html).await
}

/// Ticket `id`'s transcript (`crate::transcript`) as a download: HTML with its own strict policy, or plain text.
pub(super) async fn transcript_of(desk: &Shared, id: String, html: bool) -> Result<Response, ApiError> {
    let lookup = id.clone();
    let (ticket, history) = read(desk, move |conn| {
        let ticket = query::ticket(conn, &lookup).map_err(ApiError::internal)?.ok_or_else(|| no_ticket(&lookup))?;
        Ok((ticket, query::history(conn, &lookup).map_err(ApiError::internal)?))
    })
    .await?;
    let (body, content_type, extension) = match html {
        true => (crate::transcript::html(&ticket, &history), "text/html; charset=utf-8", "html"),
        false => (crate::transcript::text(&ticket, &history), "text/plain; charset=utf-8", "txt"),
    };
    Ok(attachment(body.into(), content_type, &crate::transcript::file_name(&ticket, extension)))
}

/// `body` as a download named `name`, of `content_type`, never shown in place.
fn attachment(body: axum::body::Body, content_type: &'static str, name: &str) -> Response {
    let disposition =
        HeaderValue::from_str(&content_disposition(name)).unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    response
}

/// How long a page of an export waits for one of its caller's searches to be free.
const EXPORT_PAGE_PATIENCE: Duration = Duration::from_secs(60);

/// What `GET /api/export` takes.
#[derive(Debug, Deserialize)]
struct ExportQuery {
    since: String,
    format: Option<String>,
}

/// `GET /api/export?since=DATE&format=csv|jsonl`: every ticket created since `since`, streamed (`super::export`).
async fn export(
    State(desk): State<Shared>,
    Caller(caller): Caller,
    asked: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    use super::export::{Format, PAGE, since, stream};
    let Query(asked) =
        asked.map_err(|rejection| ApiError::new(client_error(rejection.status()), rejection.body_text()))?;
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let format = Format::parse(asked.format.as_deref().unwrap_or("csv")).map_err(invalid)?;
    let since = since(&asked.since).map_err(invalid)?;
    let name = format!("franz-tickets-since-{}.{}", &since[..10], format.extension());
    // Each page a search read of its own, by the caller: a short hold of the store, and their share of searches.
    let (who, from) = (caller.name.clone(), since.clone());
    let read = move |after: Option<query::ExportMark>| {
        let (desk, who, from) = (desk.clone(), who.clone(), from.clone());
        async move {
            // A page waits for one of its caller's searches to end (their desk tabs, another export) rather than
            // cut the export: for up to a minute, then it fails as every search would.
            let waiting_since = std::time::Instant::now();
            loop {
                let (from, after) = (from.clone(), after.clone());
                let page = search(&desk, &who, move |conn| {
                    query::export_page(conn, &from, after.as_ref(), PAGE).map_err(ApiError::internal)
                });
                match page.await {
                    Err(error)
                        if error.status() == StatusCode::TOO_MANY_REQUESTS
                            && waiting_since.elapsed() < EXPORT_PAGE_PATIENCE =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    page => return page.map_err(|error| error.message().to_owned()),
                }
            }
        }
    };
    Ok(attachment(stream(read, format), format.content_type(), &name))
}

async fn show(State(desk): State<Shared>, _caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let lookup = id.clone();
    let (ticket, events) = read(&desk, move |conn| {
        let ticket = query::ticket(conn, &lookup).map_err(ApiError::internal)?;
        let events = query::history(conn, &lookup).map_err(ApiError::internal)?;
        Ok((ticket, events))
    })
    .await?;
    match ticket {
        Some(ticket) => Ok(Json(json!({ "ticket": ticket, "events": events })).into_response()),
        None => Err(no_ticket(&id)),
    }
}

pub(super) fn no_ticket(id: &str) -> ApiError {
    let shown: String = id.chars().take(NAME_MAX).collect();
    ApiError::new(StatusCode::NOT_FOUND, format!("there is no ticket {shown}"))
}

/// A command as the API takes it: the action's fields, and optionally the caller's own command id (a UUID they
/// reuse when they retry, so the retry has no second effect).
#[derive(Debug, Deserialize)]
struct CommandRequest {
    #[serde(default)]
    command_id: Option<String>,
    /// A saved reply to send as the comment's body or the close's reason, filled for the ticket.
    #[serde(default)]
    saved: Option<String>,
    #[serde(flatten)]
    action: Action,
}

async fn command(
    State(desk): State<Shared>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: Result<Json<CommandRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::new(
            client_error(rejection.status()),
            format!(
                "{}; a command is JSON like {{\"action\": \"close\", \"reason\": \"fixed\"}} (actions: claim, unclaim, \
                 assign, comment, set_priority, add_label, remove_label, close, reopen, move)",
                rejection.body_text()
            ),
        )
    })?;
    if matches!(request.action, Action::Create { .. }) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "tickets are created from the intake (`franz ticket`, /ticket)",
        ));
    }
    if matches!(
        request.action,
        Action::Write { .. } | Action::RecordDelivery(_) | Action::Tick { .. } | Action::Rate { .. }
    ) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the submitter writes and rates through their channel (a Discord direct message or thread, a mail, the \
             feedback page), and franz records deliveries and keeps the time; the team answers with a comment",
        ));
    }
    if matches!(request.action, Action::Comment { via: Some(_), .. }) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`via` is for replies written in the ticket's Discord thread, which the bot records; a reply from the \
             API is delivered to the submitter, so leave `via` out",
        ));
    }
    let command_id = match request.command_id {
        // franz's own commands (time commands, deliveries, Discord's and mail's messages) have ids of these forms,
        // and an id once answered is answered for good: one taken here would silence them.
        Some(given) if given.contains(':') || given.starts_with("discord-") || given.starts_with("mail-") => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a command_id with ':' or starting with discord- or mail- is franz's own; choose another (a UUID)",
            ));
        }
        Some(given) if (1..=NAME_MAX).contains(&given.len()) => given,
        Some(_) => return Err(ApiError::new(StatusCode::BAD_REQUEST, "command_id has 1 to 64 characters")),
        None => uuid::Uuid::new_v4().to_string(),
    };
    // A blank name is no saved reply, as in the reply form (a client may send the key always).
    let action = match request.saved.as_deref().map(str::trim).filter(|saved| !saved.is_empty()) {
        Some(saved) => super::saved::with_saved(&desk, &id, saved, &actor.person().display(), request.action).await?,
        None => request.action,
    };
    let command = Command { command_id, ticket_id: id.clone(), actor, action };
    let event = submit(&desk, &command).await?;
    let lookup = id.clone();
    let ticket = read(&desk, move |conn| query::ticket(conn, &lookup).map_err(ApiError::internal)).await?;
    let status = match event.change {
        Change::Rejected { .. } => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    let mut body = json!({ "event": event, "ticket": ticket });
    if let Change::Rejected { reason, .. } = &event.change {
        body["error"] = json!(reason);
    }
    Ok((status, Json(body)).into_response())
}

/// Sends `command` and waits for akte's answer: the event it decided (a `rejected` one included). A command id
/// that was decided before answers with its earlier event (a retry has no second effect), unless it was used for
/// another command (409).
pub(super) async fn submit(desk: &Shared, command: &Command) -> Result<Event, ApiError> {
    let (id, command_id) = (&command.ticket_id, &command.command_id);
    // A move goes to a team `franz team add` made (or to triage): a typo must not invent a team nobody is in. (A
    // name no team may have is akte's to refuse, with why.)
    if let Action::Move { team: Some(team), .. } = &command.action
        && crate::lifecycle::routing::team_name(team).is_ok()
    {
        let teams = desk.staff.teams().map_err(ApiError::internal)?;
        if !teams.iter().any(|known| known.name == *team) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("there is no team {team:?} (see `franz team list`; `franz team add` makes one)"),
            ));
        }
    }
    let (lookup, earlier_id) = (id.clone(), command_id.clone());
    let (exists, earlier) = read(desk, move |conn| {
        let exists = query::ticket(conn, &lookup).map_err(ApiError::internal)?.is_some();
        Ok((exists, query::answer(conn, &lookup, &earlier_id).map_err(ApiError::internal)?))
    })
    .await?;
    if !exists {
        return Err(no_ticket(id));
    }
    let event = match earlier {
        // A retry: the command was decided already; its answer is the answer.
        Some(event) => event,
        None => {
            // One deadline for taking the command and deciding it: a broker that does not answer must not hold the
            // caller for librdkafka's delivery timeout (the request then ended in a bodiless 408 after 30 s).
            let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
            let unanswered = |what: &str| ApiError {
                status: StatusCode::GATEWAY_TIMEOUT,
                body: json!({
                    "error": format!(
                        "{what} within {} s; send it again with the same command_id to learn the outcome",
                        ANSWER_TIMEOUT.as_secs()
                    ),
                    "command_id": command_id,
                }),
            };
            match tokio::time::timeout_at(deadline, publish(desk, command)).await {
                Ok(published) => published?,
                Err(_) => {
                    return Err(unanswered(
                        "the broker has not taken the command; is it running? The command may still be delivered",
                    ));
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            answer(desk, id, command_id, left).await?.ok_or_else(|| {
                unanswered(
                    "akte has not answered; is akte running? The command is queued and will be decided when it runs",
                )
            })?
        }
    };
    if event.actor.name != command.actor.name
        || event.actor.source != command.actor.source
        || event.change.action() != command.action.name()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("command_id {command_id} was used for another command on this ticket; choose a new one"),
        ));
    }
    Ok(event)
}

/// Publishes a command on its ticket's partition of the commands topic.
async fn publish(desk: &Shared, command: &Command) -> Result<(), ApiError> {
    send_command(&desk.producer, &desk.topics.commands, desk.partitions, command).await.map_err(|error| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the broker did not take the command: {error:#}"))
    })
}

/// Waits until the store holds the event that answers command `command_id` of ticket `ticket_id`, for at most
/// `within`.
async fn answer(desk: &Shared, ticket_id: &str, command_id: &str, within: Duration) -> Result<Option<Event>, ApiError> {
    desk.store.answer(ticket_id, command_id, within).await.map_err(ApiError::internal)
}

/// The team's numbers: the status counts as of now, the rest as of `as_of` (see `numbers`).
async fn stats(State(desk): State<Shared>, _caller: Caller) -> Result<Response, ApiError> {
    let (open, claimed, waiting, closed) = desk.numbers.counts().await.map_err(ApiError::internal)?;
    let snapshot = desk.numbers.stats().await.map_err(ApiError::internal)?;
    let mut body = serde_json::to_value(&*snapshot.stats).map_err(ApiError::internal)?;
    body["open"] = json!(open);
    body["claimed"] = json!(claimed);
    body["waiting"] = json!(waiting);
    body["closed"] = json!(closed);
    body["as_of"] = json!(snapshot.as_of.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    Ok(Json(body).into_response())
}

async fn me(Caller(actor): Caller) -> Json<Actor> {
    Json(actor)
}
