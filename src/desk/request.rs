//! What every API request shares, below the handlers that use it (`api`, `saved`, the web desk): who is calling
//! ([`Caller`], a staff token or the CLI's local credential) and how an error answers ([`ApiError`], a status and
//! `{"error": "..."}`).

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Desk, staff};
use crate::schema::lifecycle::{Actor, ActorSource};

type Shared = Arc<Desk>;

/// An error answer: a status and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) body: serde_json::Value,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, body: json!({ "error": message.into() }) }
    }

    pub(super) fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!("desk: {error}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the desk failed; its log says why")
    }
}

impl ApiError {
    pub(super) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message for people.
    pub(super) fn message(&self) -> &str {
        self.body["error"].as_str().unwrap_or("error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Who is calling: a staff member (by token) or the CLI on this machine (by the local credential).
pub struct Caller(pub Actor);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, desk: &Shared) -> Result<Self, Self::Rejection> {
        let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // The scheme is case-insensitive (RFC 7235).
        let bearer = header.and_then(|h| h.split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
        let Some(token) = bearer.map(|(_, token)| token.trim()).filter(|t| !t.is_empty()) else {
            return Err(unauthorized(
                "send `Authorization: Bearer <token>`; `franz staff add NAME` prints a token and a sign-in link",
            ));
        };
        if staff::same_hash(&staff::hash(token), &desk.local) {
            // UTF-8 as it is (the CLI sends names like "josé" unchanged); bytes that are not UTF-8 are refused, not
            // taken for "local".
            let name = match parts.headers.get("x-franz-as") {
                None => "local",
                Some(value) => std::str::from_utf8(value.as_bytes())
                    .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "X-Franz-As must be UTF-8 text".to_owned()))?,
            };
            let name = crate::lifecycle::name("X-Franz-As", name)
                .map_err(|reason| ApiError::new(StatusCode::BAD_REQUEST, reason))?;
            return Ok(Caller(Actor::staff(ActorSource::Cli, &name)));
        }
        let (shared, token) = (desk.clone(), token.to_owned());
        let verified =
            tokio::task::spawn_blocking(move || shared.staff.verify(&token)).await.map_err(ApiError::internal)?;
        match verified {
            Ok(Some(name)) => Ok(Caller(Actor::staff(ActorSource::Api, &name))),
            Ok(None) => {
                Err(unauthorized("this token is not (or no longer) valid; ask for a new link (`franz staff add NAME`)"))
            }
            Err(error) => Err(ApiError::internal(error)),
        }
    }
}
