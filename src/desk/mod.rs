//! The desk: franz's HTTP server. The web pages where staff work tickets (`web`), and the JSON API under `/api/`
//! that the CLI and other programs use (`api`), on the same store and the same commands.
//!
//! Every request names who makes it: a browser's session, a staff member's token (`Authorization: Bearer`), or the
//! machine-local credential of the CLI. A command is published to `ticket-commands` on the ticket's partition and answered only
//! once akte's event is in the ticket store, so the caller reads its own write. The server binds to loopback unless
//! told otherwise, answers no cross-origin request (no CORS headers; every API call needs the `Authorization`
//! header, every form the session's token and the desk's own origin), caps request bodies, and bounds what a client can hold: connections, and the time to send a request.

pub mod api;
pub mod export;
mod listener;
pub mod numbers;
pub mod problems;
mod request;
pub mod saved;
mod tally;
pub mod web;

pub use listener::{HEAD_TIMEOUT, MAX_CONNECTIONS, MAX_PER_CLIENT, REQUEST_TIMEOUT, WRITE_STALL, serve_limited};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Topics;
use crate::people as staff;
use crate::store::Store;

/// What the handlers share.
pub struct Desk {
    pub store: Store,
    pub staff: staff::Staff,
    pub producer: crate::kafka::Producer,
    pub topics: Topics,
    /// Partitions of the commands topic, to put each command on its ticket's partition.
    pub partitions: i32,
    /// The hash of this run's local credential.
    pub local: [u8; 32],
    /// Recent dead letters and error reports, for the problems page.
    pub problems: problems::Problems,
    /// Where people reach the desk, when it is not the listen address (`desk.public_url`).
    pub public_url: Option<String>,
    /// Cancelled when franz stops: live streams end.
    pub shutdown: CancellationToken,
    /// The team's numbers: status counts and stats, counted off the request path.
    pub numbers: numbers::Numbers,
    /// The open live streams of the web pages.
    pub live: web::LiveStreams,
    /// The lists and searches running, by person (`api::search`).
    pub searches: tally::Tally<String>,
    /// The files kept for tickets (a mail's attachments), read from the files topic.
    pub files: crate::attachments::Cache,
    /// What time it is (a test's clock, or the system's).
    pub clock: crate::clock::Clock,
    /// The team's working hours when it set service levels, for the time left and spent on the pages.
    pub calendar: Option<crate::lifecycle::calendar::Calendar>,
    /// The names of the routing rules in force, in order (for the numbers page's use of each).
    pub rules: Vec<String>,
    /// The key of the feedback links mailed to submitters (`/feedback/TOKEN`).
    pub feedback: crate::feedback::Key,
    /// The satisfaction question and how long a rating is taken.
    pub satisfaction: crate::config::Satisfaction,
}

/// A desk ready to serve: its listener is bound, so its address is known.
pub struct Server {
    pub address: SocketAddr,
    listener: tokio::net::TcpListener,
    desk: Arc<Desk>,
    desk_dir: PathBuf,
    local_token: String,
    ops: axum::Router,
    bootstrap: String,
    problem_topics: Vec<String>,
}

/// Everything the desk needs to start.
pub struct Settings {
    pub listen: SocketAddr,
    pub bootstrap: String,
    pub topics: Topics,
    pub store: Store,
    pub desk_dir: PathBuf,
    /// Routes served beside the API without a credential: `/metrics`, `/healthz`, `/readyz` (see `crate::ops`).
    pub ops: axum::Router,
    /// `desk.public_url`.
    pub public_url: Option<String>,
    pub shutdown: CancellationToken,
    pub clock: crate::clock::Clock,
    /// The working hours of the team's service levels, if it set any.
    pub calendar: Option<crate::lifecycle::calendar::Calendar>,
    /// The names of the routing rules, in order.
    pub rules: Vec<String>,
    /// The satisfaction question and window (`satisfaction`).
    pub satisfaction: crate::config::Satisfaction,
}

impl Server {
    /// Binds the listener and prepares the handlers' state.
    pub async fn bind(settings: Settings) -> anyhow::Result<Server> {
        let listener = tokio::net::TcpListener::bind(settings.listen).await.with_context(|| {
            format!("the desk cannot listen on {}; pass --desk-listen with another address", settings.listen)
        })?;
        let address = listener.local_addr()?;
        let metadata =
            crate::kafka::admin::metadata(&settings.bootstrap, Some(&settings.topics.commands), REACH_TIMEOUT).await?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            anyhow::bail!("topic {} does not exist", settings.topics.commands);
        }
        let local_token = staff::new_token()?;
        let problem_topics = vec![settings.topics.dead_letters.clone(), settings.topics.errors.clone()];
        let desk = Desk {
            store: settings.store.clone(),
            staff: staff::Staff::open(&settings.desk_dir)?,
            producer: crate::kafka::producer(&settings.bootstrap)?,
            topics: settings.topics,
            partitions,
            local: staff::hash(&local_token),
            problems: problems::Problems::default(),
            public_url: settings.public_url,
            shutdown: settings.shutdown,
            numbers: numbers::Numbers::new(settings.store.clone()),
            live: web::LiveStreams::default(),
            searches: tally::Tally::default(),
            files: crate::attachments::Cache::open(&settings.desk_dir.join("files"))?,
            clock: settings.clock,
            calendar: settings.calendar,
            rules: settings.rules,
            feedback: crate::feedback::Key::in_dir(&settings.desk_dir)?,
            satisfaction: settings.satisfaction,
        };
        Ok(Server {
            address,
            listener,
            desk: Arc::new(desk),
            desk_dir: settings.desk_dir,
            local_token,
            ops: settings.ops,
            bootstrap: settings.bootstrap,
            problem_topics,
        })
    }

    /// The URL people and programs reach the desk at.
    pub fn url(&self) -> String {
        url_for(self.address)
    }

    /// Serves the pages, the API and the ops endpoints until `shutdown` is cancelled ([`serve_limited`]), and
    /// follows the problem topics for the problems page meanwhile.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let local = staff::Local { url: self.url(), token: self.local_token.clone() };
        staff::write_local(&self.desk_dir, &local)?;
        let problems = self.desk.problems.clone().follow(self.bootstrap.clone(), self.problem_topics, shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = problems.await {
                tracing::error!("the desk's problems page stopped updating: {error:#}");
            }
        });
        let files = self.desk.files.clone().follow(self.bootstrap, self.desk.topics.files.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = files.await {
                tracing::error!("the desk stopped reading the files kept for tickets: {error:#}");
            }
        });
        // The team's numbers are computed once the store has caught up, so that no page waits for them.
        let warm = self.desk.clone();
        tokio::spawn(async move {
            if warm.store.wait_for(std::time::Duration::from_secs(3600), |p| p.caught_up).await {
                let _ = warm.numbers.stats().await;
            }
        });
        let router = self
            .ops
            .merge(saved::router(self.desk.clone()))
            .merge(api::router(self.desk.clone()))
            .merge(web::router(self.desk));
        serve_limited(self.listener, router, shutdown).await
    }
}

/// How long the desk waits for the broker's metadata at start.
const REACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The URL for a listen address: an unspecified address (`0.0.0.0`) is reached on loopback from this machine.
pub fn url_for(address: SocketAddr) -> String {
    let host = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", address.port())
}

/// The sign-in link of a staff token.
pub fn sign_in_link(base: &str, token: &str) -> String {
    format!("{base}/signin?token={token}")
}
