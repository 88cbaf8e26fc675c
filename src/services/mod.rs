//! The services that `franz up` runs in-process, all in one shape.
//!
//! Each service module has a `plan` function: from the shared [`Context`] (the configuration, the broker's
//! address, the ticket store, the shutdown token) it decides whether it runs, with a status line for the ready
//! table, and returns the task that runs it until shutdown, finishing what it has in flight. Starting,
//! supervising and stopping the tasks is `app`'s job; a new service is one new module and one line in [`plan`].

pub mod absturz;
pub mod akte;
pub mod aufbereitung;
pub mod briefkasten;
pub mod desk;
pub mod kummerkasten;

use std::net::SocketAddr;
use std::path::PathBuf;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Service};
use crate::store::Store;

/// What every service is started from.
pub struct Context<'a> {
    pub config: &'a Config,
    /// Where the services reach the broker.
    pub bootstrap: String,
    /// The ticket store, open when a service that reads it runs.
    pub store: Option<Store>,
    /// Where the desk keeps its staff list and local credential.
    pub desk_dir: PathBuf,
    pub shutdown: CancellationToken,
    /// Where the services count what they do.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// `/metrics`, `/healthz` and `/readyz`, for the desk to serve beside its API.
    pub ops: axum::Router,
}

/// A service's task: runs until the shutdown token is cancelled, or fails.
pub type Task = BoxFuture<'static, anyhow::Result<()>>;

/// What a service will do.
pub enum Plan {
    /// It runs: its status line, its task, and the address it serves on, if any.
    Run { status: String, task: Task, serves: Option<SocketAddr> },
    /// It does not run, and this line says how to enable it.
    Off(String),
}

impl Plan {
    /// A running plan with no address of its own.
    pub fn run(status: String, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) -> Plan {
        Plan::Run { status, task: Box::pin(task), serves: None }
    }
}

/// Plans one service.
pub async fn plan(service: Service, context: &Context<'_>) -> anyhow::Result<Plan> {
    match service {
        Service::Kummerkasten => kummerkasten::plan(context).await,
        Service::Aufbereitung => aufbereitung::plan(context),
        Service::Absturz => absturz::plan(context),
        Service::Akte => akte::plan(context).await,
        Service::Desk => desk::plan(context).await,
        Service::Briefkasten => briefkasten::plan(context),
    }
}

/// Whether a service reads the ticket store: akte and the desk always; the bot when it runs, for `/tickets`, and for
/// the staff cards and the submitters' direct messages when they are on.
pub fn uses_store(service: Service, config: &Config) -> bool {
    match service {
        Service::Akte | Service::Desk => true,
        Service::Kummerkasten => config.discord.token.is_some(),
        Service::Briefkasten => config.mail.imap_url.is_some(),
        Service::Aufbereitung | Service::Absturz => false,
    }
}
