//! The desk as a `franz up` service: binds franz's HTTP server and runs it until shutdown. The server itself is
//! `crate::desk`.

use anyhow::Context as _;

use crate::desk::{Server, Settings};

/// `franz up`'s desk: runs whenever it is enabled (it opens the ticket store).
pub async fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let store = context.store.clone().context("the desk needs the ticket store")?;
    let server = Server::bind(Settings {
        listen: context.config.desk.listen,
        bootstrap: context.bootstrap.clone(),
        topics: context.config.topics.clone(),
        store,
        desk_dir: context.desk_dir.clone(),
        ops: context.ops.clone(),
        public_url: context.config.desk.public_url.clone(),
        shutdown: context.shutdown.clone(),
        clock: context.config.clock.clone(),
        rules: context.config.rules.iter().map(|rule| rule.name.clone()).collect(),
        satisfaction: context.config.satisfaction.clone(),
        calendar: context
            .config
            .service_levels
            .levels()
            .filter(|_| context.config.service_levels.has_targets())
            .map(|levels| levels.calendar),
    })
    .await?;
    let address = server.address;
    let url = context.config.desk.public_url.clone().unwrap_or_else(|| server.url());
    let status = format!("{url} (the web desk; API under /api/; `franz staff add NAME` prints a sign-in link)");
    let task = server.serve(context.shutdown.clone());
    Ok(super::Plan::Run { status, task: Box::pin(task), serves: Some(address) })
}
