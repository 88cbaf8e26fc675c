//! `franz ticket`: publish one ticket as the Discord bot does (through `intake`, checked against aufbereitung's
//! bounds) and print its id.

use std::io::Write;

use crate::cli::TicketArgs;
use crate::config::Config;
use crate::intake::{self, Submission};
use crate::kafka::{self, admin};

/// `franz ticket`: publish one ticket as the Discord bot does and print its id.
pub async fn ticket(config: &Config, args: TicketArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let record = intake::record(Submission {
        message: args.message,
        username: args.user,
        user_id: args.user_id,
        ..Submission::default()
    })?;
    admin::metadata(&config.bootstrap, None, admin::REACH_TIMEOUT).await?;
    let producer = kafka::producer(&config.bootstrap)?;
    let receipt = intake::publish_record(&producer, &config.topics.intake, &record).await?;
    writeln!(out, "{}", receipt.ticket_id)?;
    tracing::info!(
        partition = receipt.partition,
        offset = receipt.offset,
        "ticket published to {}",
        config.topics.intake
    );
    Ok(())
}
