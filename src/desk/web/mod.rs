//! The web desk: server-rendered pages where staff work tickets, on the same store and commands as the API.
//!
//! Signing in: the personal link `franz staff add` prints shows a page with a button, and only pressing it (a POST
//! from that page) uses the link up and opens a session (an HttpOnly, SameSite=Strict cookie, `Secure` when the
//! desk is reached over HTTPS), then moves on to the board, leaving the token behind. Opening the link changes
//! nothing, so a chat app's link preview or a mail scanner that fetches it first cannot use it up. Every page needs a session; an ended one (signed out, removed, a new link made) leads
//! to a page that says how to get a new link. Every form that changes something carries the session's own token
//! and must come from the desk's own origin, so another site cannot act for a signed-in person.
//!
//! Ticket and user text is hostile: maud escapes everything it renders, and the Content-Security-Policy allows
//! only the desk's own script and style files (no inline script, no inline style, nothing from elsewhere). Pages
//! update live: `/live` (server-sent events) says when the store or the problem list changed, and `desk.js`
//! fetches the page again and swaps its parts marked `data-live`.

mod charts;
mod feedback;
mod live;
mod pages;

pub use live::{PER_SESSION as LIVE_PER_SESSION, Streams as LiveStreams};

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::api::{self, ApiError};
use super::{Desk, problems};
use crate::people::{self as staff, Session};
use crate::schema::lifecycle::{Action, Actor, ActorSource, Command, Person, Priority, Status};
use crate::store::query::{self, Filter};

type Shared = Arc<Desk>;

/// The session cookie's name over plain HTTP.
const COOKIE: &str = "franz_session";
/// Its name over HTTPS: the `__Host-` prefix makes browsers refuse it unless it is `Secure`, for the whole host and
/// set by the host itself, so a page elsewhere cannot plant one.
const SECURE_COOKIE: &str = "__Host-franz_session";
/// The largest form a page posts: a 4,000-character comment fits many times over.
const FORM_LIMIT: usize = 64 * 1024;

/// The pages' routes.
pub fn router(desk: Shared) -> Router {
    Router::new()
        .route("/", get(board))
        .route("/signin", get(sign_in).post(redeem))
        .route("/signout", post(sign_out))
        .route("/tickets/{id}", get(ticket).post(act))
        .route("/tickets/{id}/files/{sha256}", get(download))
        .route("/tickets/{id}/transcript.html", get(|desk, signed_in, id| transcript(desk, signed_in, id, true)))
        .route("/tickets/{id}/transcript.txt", get(|desk, signed_in, id| transcript(desk, signed_in, id, false)))
        .route("/feedback/{token}", get(feedback::page).post(feedback::rate))
        .route("/replies", get(saved_replies).post(save_reply))
        .route("/stats", get(stats))
        .route("/problems", get(problem_list))
        .route("/problems/{topic}/{partition}/{offset}", get(problem))
        .route("/live", get(live::stream))
        .route("/assets/desk.css", get(|| async { asset("text/css; charset=utf-8", include_str!("assets/desk.css")) }))
        .route(
            "/assets/desk.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("assets/desk.js")) }),
        )
        .route("/favicon.svg", get(|| async { asset("image/svg+xml", include_str!("assets/favicon.svg")) }))
        .fallback(|| async { error_page(StatusCode::NOT_FOUND, "there is no such page") })
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(axum::middleware::map_response(secure))
        .with_state(desk)
}

/// Headers on every page: the strict policy, nothing framed or sniffed, no referrer to other sites, and nothing
/// cached but the assets. (`same-origin`, not `no-referrer`: with no referrer at all, browsers send forms with
/// `Origin: null`, which the desk cannot tell from a forged one. The sign-in page sends only its origin.)
async fn secure(response: Response) -> Response {
    let mut response = as_error_page(response);
    let headers = response.headers_mut();
    // A download (a file kept for a ticket) is no page: nothing in it may run, even opened by itself.
    let policy = if headers.contains_key(header::CONTENT_DISPOSITION) {
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; sandbox"
    } else {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// An error that is no page yet (axum's own answers: a path that is no UTF-8, a wrong method) becomes one.
fn as_error_page(response: Response) -> Response {
    let status = response.status();
    let is_html = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_html || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    error_page(status, status.canonical_reason().unwrap_or("the desk cannot answer this request"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")];
    (headers, body).into_response()
}

/// A page that explains what went wrong, with the status it stands for.
fn error_page(status: StatusCode, message: &str) -> Response {
    (status, Html(pages::error(status, message).into_string())).into_response()
}

impl From<ApiError> for Response {
    fn from(error: ApiError) -> Response {
        error_page(error.status(), error.message())
    }
}

/// A signed-in person. A request without a live session is sent to the sign-in page.
pub struct SignedIn(pub Session);

impl FromRequestParts<Shared> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, desk: &Shared) -> Result<Self, Self::Rejection> {
        let secure = over_https(desk, &parts.headers);
        let ids = cookies(&parts.headers, cookie_name(secure));
        let id = match ids.as_slice() {
            [] => return Err(Redirect::to("/signin").into_response()),
            [id] => id.clone(),
            // Another page on this host (another port, over plain HTTP) planted one: trust neither.
            _ => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "this browser sent more than one franz session: another site on this host may have set one. \
                     Remove this site's cookies and sign in again, and run the desk on a host name of its own.",
                ));
            }
        };
        let shared = desk.clone();
        let found = tokio::task::spawn_blocking(move || shared.staff.session(&id)).await;
        match found {
            Ok(Ok(Some(session))) => Ok(SignedIn(session)),
            Ok(Ok(None)) => Err((clear_cookie(secure), Redirect::to("/signin?ended=1")).into_response()),
            Ok(Err(error)) => Err(ApiError::internal(error).into()),
            Err(error) => Err(ApiError::internal(error).into()),
        }
    }
}

fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// The values of cookie `name` in a request (a browser sends several when pages set it on several paths).
fn cookies(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value_trimmed().to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}

/// The session cookie, set (`Some(id)`) or cleared: strict, for scripts out of reach, on every path.
fn session_cookie(secure: bool, id: Option<&str>) -> [(header::HeaderName, String); 1] {
    let lifetime = if id.is_some() { staff::SESSION_LIFETIME.num_seconds() } else { 0 };
    let cookie = cookie::Cookie::build((cookie_name(secure), id.unwrap_or_default()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(lifetime))
        .secure(secure)
        .build();
    [(header::SET_COOKIE, cookie.to_string())]
}

fn clear_cookie(secure: bool) -> [(header::HeaderName, String); 1] {
    session_cookie(secure, None)
}

/// Whether the person reaches the desk over HTTPS: its public URL says so, or the TLS proxy in front does.
fn over_https(desk: &Desk, headers: &HeaderMap) -> bool {
    desk.public_url.as_deref().is_some_and(|url| url.starts_with("https://"))
        || headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Refuses a state change that another site could have caused: it must come from the desk's own origin (as the
/// browser says in `Sec-Fetch-Site` and `Origin`) and carry the session's form token.
fn same_site_form(desk: &Desk, headers: &HeaderMap, session: &Session, token: Option<&str>) -> Result<(), Forged> {
    let refuse = || Forged;
    same_origin(desk, headers)?;
    let expected = staff::hash(&session.csrf);
    match token {
        Some(token) if staff::same_hash(&staff::hash(token), &expected) => Ok(()),
        _ => Err(refuse()),
    }
}

/// Refuses a request that the browser says came from another site, in `Sec-Fetch-Site` or in `Origin`. A request
/// that says neither came from no browser page, so no other site can have caused it. `Origin: null` (a sandboxed
/// or privacy-sensitive context of any site) is never the desk's own.
fn same_origin(desk: &Desk, headers: &HeaderMap) -> Result<(), Forged> {
    let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if site.is_some_and(|site| !matches!(site, b"same-origin" | b"none")) {
        return Err(Forged);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| Forged)?;
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let own = !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        if !own && desk.public_url.as_deref() != Some(origin) {
            return Err(Forged);
        }
    }
    Ok(())
}

/// A form that may have come from another site.
struct Forged;

impl From<Forged> for Response {
    fn from(_: Forged) -> Response {
        error_page(StatusCode::FORBIDDEN, "this form did not come from the desk's own pages; nothing changed")
    }
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: Option<String>,
    ended: Option<String>,
}

/// `GET /signin?token=…`: a page with a button that signs in with the link's code. It changes nothing (nor does
/// `HEAD`, which axum answers with the same handler): link previews in chat apps and mail scanners fetch links
/// before the person does, and must not use the link up or get the session. Without a token it says how to get a
/// link.
async fn sign_in(Query(request): Query<SignIn>) -> Response {
    let Some(token) = request.token.filter(|t| !t.is_empty()) else {
        return Html(pages::signed_out(request.ended.is_some()).into_string()).into_response();
    };
    // Only the origin as referrer: the page's address holds the code, and nothing it loads or posts should carry it
    // on. (Not `no-referrer`, under which browsers post the button's form with `Origin: null`, which the desk
    // cannot tell from a forged one.)
    let referrer = [(header::REFERRER_POLICY, "strict-origin"), (header::CACHE_CONTROL, "no-store")];
    (referrer, Html(pages::sign_in(&token).into_string())).into_response()
}

#[derive(serde::Deserialize)]
struct Redeem {
    token: Option<String>,
}

/// `POST /signin`, the sign-in page's button: uses the link's code up, opens a session and moves on to the board
/// (whose address holds no token). Only the desk's own page may post it, as every other form: another site could
/// otherwise sign a browser in as someone else. A code that does not (or no longer) work gets a page that says
/// how to get a new link.
async fn redeem(
    State(desk): State<Shared>,
    headers: HeaderMap,
    form: Result<Form<Redeem>, axum::extract::rejection::FormRejection>,
) -> Response {
    // A browser always sends `Origin` with a form's POST: a request without one came from no page of the desk (a
    // mail scanner that submits forms, say) and must not use the link up.
    if !headers.contains_key(header::ORIGIN) {
        return Forged.into();
    }
    if let Err(forged) = same_origin(&desk, &headers) {
        return forged.into();
    }
    let Ok(Form(Redeem { token: Some(token) })) = form else {
        return (StatusCode::UNAUTHORIZED, Html(pages::link_refused().into_string())).into_response();
    };
    let shared = desk.clone();
    let started = tokio::task::spawn_blocking(move || shared.staff.start_session(&token)).await;
    let session = match started {
        Ok(Ok(Some(session))) => session,
        Ok(Ok(None)) => {
            return (StatusCode::UNAUTHORIZED, Html(pages::link_refused().into_string())).into_response();
        }
        Ok(Err(error)) => return ApiError::internal(error).into(),
        Err(error) => return ApiError::internal(error).into(),
    };
    tracing::info!("desk: {} signed in", session.name);
    // A redirect is enough now: the POST came from the desk's own page, so the browser counts the board it moves
    // on to as same-site and sends the SameSite=Strict cookie with it.
    let cookie = session_cookie(over_https(&desk, &headers), Some(&session.id));
    (cookie, Redirect::to("/")).into_response()
}

#[derive(serde::Deserialize)]
struct Token {
    csrf: Option<String>,
}

async fn sign_out(
    State(desk): State<Shared>,
    headers: HeaderMap,
    SignedIn(session): SignedIn,
    Form(form): Form<Token>,
) -> Response {
    if let Err(forged) = same_site_form(&desk, &headers, &session, form.csrf.as_deref()) {
        return forged.into();
    }
    let (shared, id) = (desk.clone(), session.id.clone());
    if let Ok(Err(error)) | Err(error) =
        tokio::task::spawn_blocking(move || shared.staff.end_session(&id)).await.map_err(anyhow::Error::from)
    {
        return ApiError::internal(error).into();
    }
    (clear_cookie(over_https(&desk, &headers)), Redirect::to("/signin?ended=1")).into_response()
}

/// The board's filters as they appear in its URL.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct BoardQuery {
    pub status: String,
    pub priority: String,
    pub label: String,
    pub origin: String,
    pub q: String,
    pub mine: String,
    pub unassigned: String,
    pub answered: String,
    /// Only tickets with a target due within a day, the soonest due first.
    pub due: String,
    /// Only tickets of this team (`triage`: of none).
    pub team: String,
    pub cursor: String,
}

impl BoardQuery {
    /// The store's filter for this query, for `me`; a value the desk does not know is a clear error.
    fn filter(&self, me: &str) -> Result<Filter, &'static str> {
        let given = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        let status = match given(&self.status) {
            None => None,
            Some(text) => Some(Status::parse(&text).ok_or("status is open, claimed, waiting or closed")?),
        };
        let priority = match given(&self.priority) {
            None => None,
            Some(text) => Some(Priority::parse(&text).ok_or("priority is low, normal, high or urgent")?),
        };
        Ok(Filter {
            status,
            priority,
            assignee: given(&self.mine).map(|_| Person::staff(me).key()),
            unassigned: given(&self.unassigned).is_some(),
            answered: given(&self.answered).is_some(),
            label: given(&self.label),
            origin: given(&self.origin),
            team: given(&self.team).filter(|team| team != ALL_TEAMS),
            q: given(&self.q),
            due_before: given(&self.due)
                .map(|_| crate::lifecycle::levels::stamp(chrono::Utc::now() + chrono::Duration::days(1))),
            // A list by due time is one page.
            cursor: given(&self.cursor).filter(|_| given(&self.due).is_none()),
            limit: Some(PAGE),
        })
    }

    /// This query's URL, on another page of results (`cursor`).
    pub fn url(&self, cursor: Option<&str>) -> String {
        let mut url = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("status", &self.status),
            ("priority", &self.priority),
            ("label", &self.label),
            ("origin", &self.origin),
            ("q", &self.q),
            ("mine", &self.mine),
            ("unassigned", &self.unassigned),
            ("answered", &self.answered),
            ("due", &self.due),
            ("team", &self.team),
        ] {
            if !value.trim().is_empty() {
                url.append_pair(key, value.trim());
            }
        }
        if let Some(cursor) = cursor {
            url.append_pair("cursor", cursor);
        }
        let query = url.finish();
        if query.is_empty() { "/".to_owned() } else { format!("/?{query}") }
    }
}

/// Tickets on one page of the board.
const PAGE: usize = 50;

async fn board(
    State(desk): State<Shared>,
    SignedIn(session): SignedIn,
    query: Result<Query<BoardQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(mut query)) = query else {
        return error_page(StatusCode::BAD_REQUEST, "the board's address has a filter it does not know");
    };
    // A member of teams sees their teams and triage unless they choose (`team=all`: every ticket).
    if query.team.trim().is_empty() {
        let teams = desk.staff.teams().unwrap_or_default();
        let mine: Vec<String> =
            teams.into_iter().filter(|team| team.members.contains(&session.name)).map(|team| team.name).collect();
        // More teams than one list may name (with triage): every ticket, as `team=all`.
        if !mine.is_empty() && mine.len() < query::TEAMS_MAX {
            query.team = format!("{},{}", mine.join(","), crate::lifecycle::routing::TRIAGE);
        }
    }
    let filter = match query.filter(&session.name) {
        Ok(filter) => filter,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, message),
    };
    let counts = match desk.numbers.counts().await.map_err(ApiError::internal) {
        Ok(counts) => counts,
        Err(error) => return error.into(),
    };
    let page = api::search(&desk, &session.name, move |conn| {
        query::list(conn, &filter).map_err(|error| match error {
            query::QueryError::Invalid(message) => ApiError::new(StatusCode::BAD_REQUEST, message),
            query::QueryError::Store(error) => ApiError::internal(error),
        })
    })
    .await;
    match page {
        Ok(page) => Html(pages::board(&session, &query, &page, counts, hours(&desk)).into_string()).into_response(),
        Err(error) => error.into(),
    }
}

/// The time now and the working hours, as the pages count in them.
fn hours(desk: &Desk) -> pages::Hours<'_> {
    pages::Hours { now: desk.clock.now(), calendar: desk.calendar.as_ref() }
}

/// The board's `team` that lists every ticket, whatever the teams of the person looking.
pub const ALL_TEAMS: &str = "all";

#[derive(serde::Deserialize)]
struct TicketQuery {
    answer: Option<String>,
}

async fn ticket(
    State(desk): State<Shared>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Query(request): Query<TicketQuery>,
) -> Response {
    let lookup = id.clone();
    let found = api::read(&desk, move |conn| {
        let ticket = query::ticket(conn, &lookup).map_err(ApiError::internal)?;
        let events = query::timeline(conn, &lookup, pages::TIMELINE_MAX).map_err(ApiError::internal)?;
        let answer = match &request.answer {
            Some(command) => {
                Some((command.clone(), query::answer(conn, &lookup, command).map_err(ApiError::internal)?))
            }
            None => None,
        };
        Ok((ticket, events, answer))
    })
    .await;
    let counts = desk.numbers.counts().await.map_err(ApiError::internal);
    match (found, counts) {
        (Ok((Some(ticket), (events, hidden), answer)), Ok(counts)) => {
            // The teams a ticket can move to; a ticket in a removed team shows that team too.
            let mut teams: Vec<String> =
                desk.staff.teams().unwrap_or_default().into_iter().map(|team| team.name).collect();
            teams.extend(ticket.team.clone().filter(|team| !teams.contains(team)));
            // Similar tickets are a search of their own: one that does not answer in its time leaves the page whole.
            let similar = api::similar_to(&desk, &session.name, ticket.id.clone()).await.ok();
            // The saved replies, each filled for this ticket by this person, to send or start from.
            let saved: Vec<(String, String)> = desk
                .staff
                .saved_replies("")
                .unwrap_or_default()
                .into_iter()
                .map(|reply| {
                    let values = crate::people::saved::Placeholders {
                        contact: &ticket.contact,
                        ticket: &ticket.id,
                        agent: &session.name,
                    };
                    (reply.name, crate::people::saved::fill(&reply.body, values))
                })
                .collect();
            let around = pages::Around { teams: &teams, similar: similar.as_ref(), saved: &saved };
            let page =
                pages::ticket(&session, &ticket, (&events, hidden), answer.as_ref(), counts, hours(&desk), around);
            Html(page.into_string()).into_response()
        }
        (Ok((None, ..)), _) => api::no_ticket(&id).into(),
        (Err(error), _) | (_, Err(error)) => error.into(),
    }
}

/// `GET /tickets/{id}/files/{sha256}`: a file kept for the ticket, as a download ([`api::download`]).
async fn download(
    State(desk): State<Shared>,
    SignedIn(_): SignedIn,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    api::download(&desk, id, name).await.unwrap_or_else(Into::into)
}

/// `GET /tickets/{id}/transcript.html|.txt`: the ticket's conversation as a download (`api::transcript_of`).
async fn transcript(State(desk): State<Shared>, SignedIn(_): SignedIn, Path(id): Path<String>, html: bool) -> Response {
    api::transcript_of(&desk, id, html).await.unwrap_or_else(Into::into)
}

/// `POST /tickets/{id}`: one of the ticket page's forms. The answer is the ticket page showing akte's decision.
async fn act(
    State(desk): State<Shared>,
    headers: HeaderMap,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_page(StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than the desk takes (64 KiB)");
        }
        Err(_) => {
            return error_page(StatusCode::BAD_REQUEST, "the form could not be read; reload the page and try again");
        }
    };
    if let Err(forged) = same_site_form(&desk, &headers, &session, form.get("csrf").map(String::as_str)) {
        return forged.into();
    }
    let action = match action_from(&form) {
        Ok(action) => action,
        Err(message) => return error_page(StatusCode::BAD_REQUEST, &message),
    };
    let command_id = form
        .get("command_id")
        .filter(|id| (1..=crate::lifecycle::NAME_MAX).contains(&id.len()))
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let action = match form.get("saved").map(|name| name.trim()).filter(|name| !name.is_empty()) {
        Some(saved) => match super::saved::with_saved(&desk, &id, saved, &session.name, action).await {
            Ok(action) => action,
            Err(error) => return error.into(),
        },
        None => action,
    };
    let actor = Actor::staff(ActorSource::Web, &session.name);
    let command = Command { command_id: command_id.clone(), ticket_id: id.clone(), actor, action };
    match api::submit(&desk, &command).await {
        // Akte's decision, or its absence (the page says the command waits): either way the ticket page tells.
        Ok(_) => {}
        Err(error) if error.status() == StatusCode::GATEWAY_TIMEOUT => {}
        Err(error) => return error.into(),
    }
    let mut url = form_urlencoded::Serializer::new(String::new());
    url.append_pair("answer", &command_id);
    Redirect::to(&format!("/tickets/{}?{}#answer", path_segment(&id), url.finish())).into_response()
}

/// Everything but RFC 3986's unreserved characters (letters, digits, `-._~`) is escaped in a path segment.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A ticket id as one path segment.
pub fn path_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// The action a ticket page form asks for.
fn action_from(form: &HashMap<String, String>) -> Result<Action, String> {
    // A browser sends a textarea's line breaks as CRLF, and its `maxlength` counts each as one character: a text as
    // typed (a saved reply picked into the box among them) is a text akte takes.
    let typed = |name: &str| form.get(name).map(|v| v.replace("\r\n", "\n").replace('\r', "\n")).unwrap_or_default();
    let field = |name: &str| typed(name).trim().to_owned();
    Ok(match form.get("action").map(String::as_str).unwrap_or_default() {
        "claim" => Action::Claim,
        "unclaim" => Action::Unclaim,
        "assign" => Action::Assign { to: field("to") },
        "comment" => Action::Comment { body: typed("body"), internal: form.get("internal").is_some(), via: None },
        "set_priority" => Action::SetPriority {
            priority: Priority::parse(&field("priority")).ok_or("priority is low, normal, high or urgent")?,
        },
        "add_label" => Action::AddLabel { label: field("label") },
        "remove_label" => Action::RemoveLabel { label: field("label") },
        "close" => Action::Close { reason: field("reason") },
        "reopen" => Action::Reopen,
        "move" => Action::Move {
            team: Some(field("team")).filter(|team| !team.is_empty() && team != crate::lifecycle::routing::TRIAGE),
            reason: field("reason"),
        },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(format!("the desk does not know the action {shown:?}"));
        }
    })
}

async fn stats(State(desk): State<Shared>, SignedIn(session): SignedIn) -> Response {
    let counts = match desk.numbers.counts().await {
        Ok(counts) => counts,
        Err(error) => return ApiError::internal(error).into(),
    };
    let snapshot = desk.numbers.stats().await;
    let since = (chrono::Utc::now() - chrono::Duration::hours(24)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let letters: Vec<problems::Problem> =
        desk.problems.recent().into_iter().filter(|p| p.is_dead_letter() && p.time >= since).collect();
    match snapshot {
        Ok(snapshot) => {
            Html(pages::stats(&session, counts, &snapshot, &letters, &desk.rules).into_string()).into_response()
        }
        Err(error) => ApiError::internal(error).into(),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ReplySearch {
    q: String,
}

/// `GET /replies`: the team's saved replies, searched by name and text.
async fn saved_replies(
    State(desk): State<Shared>,
    SignedIn(session): SignedIn,
    Query(search): Query<ReplySearch>,
) -> Response {
    let counts = match desk.numbers.counts().await.map_err(ApiError::internal) {
        Ok(counts) => counts,
        Err(error) => return error.into(),
    };
    let (shared, q) = (desk.clone(), search.q.clone());
    match tokio::task::spawn_blocking(move || shared.staff.saved_replies(&q)).await {
        Ok(Ok(replies)) => {
            Html(pages::saved_replies(&session, &replies, &search.q, counts).into_string()).into_response()
        }
        Ok(Err(error)) => ApiError::internal(error).into(),
        Err(error) => ApiError::internal(error).into(),
    }
}

/// `POST /replies`: a saved reply added, edited or deleted, from the desk's own page; then back to the list.
async fn save_reply(
    State(desk): State<Shared>,
    headers: HeaderMap,
    SignedIn(session): SignedIn,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "the form could not be read (at most 64 KiB); reload the page");
    };
    if let Err(forged) = same_site_form(&desk, &headers, &session, form.get("csrf").map(String::as_str)) {
        return forged.into();
    }
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let (name, body, action, by) = (field("name"), field("body"), field("action"), session.name.clone());
    let shared = desk.clone();
    let done = tokio::task::spawn_blocking(move || match action.as_str() {
        "save" => shared.staff.save_reply(&name, &body, &by).map(|_| Ok(())),
        "delete" => shared.staff.delete_reply(&name).map(|deleted| {
            if deleted { Ok(()) } else { Err(format!("there is no saved reply {name:?} (deleted meanwhile?)")) }
        }),
        _ => Ok(Err("the form asks for nothing the desk knows; reload the page".to_owned())),
    })
    .await;
    match done {
        Ok(Ok(Ok(()))) => Redirect::to("/replies").into_response(),
        Ok(Ok(Err(message))) => error_page(StatusCode::BAD_REQUEST, &message),
        // What the staff list refuses (a name or text out of bounds, too many) is the person's to mend.
        Ok(Err(error)) => error_page(StatusCode::BAD_REQUEST, &format!("{error:#}")),
        Err(error) => ApiError::internal(error).into(),
    }
}

async fn problem_list(State(desk): State<Shared>, SignedIn(session): SignedIn) -> Response {
    let counts = match desk.numbers.counts().await.map_err(ApiError::internal) {
        Ok(counts) => counts,
        Err(error) => return error.into(),
    };
    Html(pages::problems(&session, &desk.problems.recent(), counts).into_string()).into_response()
}

async fn problem(
    State(desk): State<Shared>,
    SignedIn(session): SignedIn,
    Path((topic, partition, offset)): Path<(String, i32, i64)>,
) -> Response {
    match desk.problems.find(&topic, partition, offset) {
        Some(problem) => Html(pages::problem(&session, &problem).into_string()).into_response(),
        None => error_page(
            StatusCode::NOT_FOUND,
            "the desk keeps the newest problems only, and this is not (or no longer) one of them",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(path_segment("../x y"), "..%2Fx%20y");
    }

    /// Regression (#33): "Mine" matched the assignee's name, so a Discord user called `ana` shared the desk's
    /// `ana`'s list; it names her staff identity now, even when her name looks like another identity's key.
    #[test]
    fn mine_is_the_signed_in_staff_members_identity() {
        let mine = BoardQuery { mine: "1".into(), ..BoardQuery::default() };
        assert_eq!(mine.filter("ana").unwrap().assignee.as_deref(), Some("staff:ana"));
        assert_eq!(mine.filter("discord:42").unwrap().assignee.as_deref(), Some("staff:discord:42"));
        assert_eq!(BoardQuery::default().filter("ana").unwrap().assignee, None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_every_copy_of_it_is_seen() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; franz_session=abc ; b=2"));
        assert_eq!(cookies(&headers, COOKIE), ["abc"]);
        assert!(cookies(&headers, SECURE_COOKIE).is_empty(), "over HTTPS only the __Host- cookie counts");
        headers.insert(header::COOKIE, HeaderValue::from_static("franz_session_x=1; franz_session="));
        assert!(cookies(&headers, COOKIE).is_empty());
        headers.insert(header::COOKIE, HeaderValue::from_static("franz_session=planted; franz_session=mine"));
        assert_eq!(cookies(&headers, COOKIE), ["planted", "mine"]);
        headers.insert(header::COOKIE, HeaderValue::from_static("franz_session=\"quoted\""));
        assert_eq!(cookies(&headers, COOKIE), ["quoted"]);
    }

    #[test]
    fn the_session_cookie_is_strict_http_only_on_every_path_and_secure_over_https() {
        let [(_, set)] = session_cookie(false, Some("abc"));
        for part in ["franz_session=abc", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set.contains("Secure"), "{set}");
        let [(_, secure)] = session_cookie(true, Some("abc"));
        assert!(secure.starts_with(&format!("{SECURE_COOKIE}=abc")) && secure.contains("Secure"), "{secure}");
        let [(_, cleared)] = clear_cookie(false);
        assert!(cleared.starts_with("franz_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    }

    #[test]
    fn every_form_action_becomes_its_command_and_unknown_ones_are_refused() {
        let form = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(action_from(&form(&[("action", "claim")])), Ok(Action::Claim));
        assert_eq!(
            action_from(&form(&[("action", "comment"), ("body", " hi "), ("internal", "on")])),
            Ok(Action::Comment { body: " hi ".into(), internal: true, via: None })
        );
        assert_eq!(
            action_from(&form(&[("action", "set_priority"), ("priority", "urgent")])),
            Ok(Action::SetPriority { priority: Priority::Urgent })
        );
        assert!(action_from(&form(&[("action", "set_priority"), ("priority", "x")])).is_err());
        assert!(action_from(&form(&[("action", "create")])).unwrap_err().contains("does not know"));
    }

    #[test]
    fn a_board_url_keeps_its_filters_and_drops_empty_ones() {
        let query = BoardQuery { status: "open".into(), q: "a&b".into(), ..Default::default() };
        assert_eq!(query.url(None), "/?status=open&q=a%26b");
        assert_eq!(query.url(Some("42")), "/?status=open&q=a%26b&cursor=42");
        assert_eq!(BoardQuery::default().url(None), "/");
    }
}
