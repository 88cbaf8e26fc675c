//! The one path by which tickets enter franz: building an intake record from a submission and publishing it.
//!
//! `franz ticket` uses it now and the Discord bot will, so both publish the same schema with the same key and
//! producer settings, and both can tell the submitter the ticket id before aufbereitung has seen the record.
//! It checks a submission against the limits aufbereitung enforces, so a submitter hears about a bad ticket at
//! once instead of finding it among the dead letters.

use anyhow::{Context as _, bail};
use rdkafka::ClientContext;
use rdkafka::producer::FutureProducer;

use crate::kafka::publish;
use crate::schema::{IntakeRecord, now_rfc3339};
use crate::schema::{MAX_MESSAGE_CHARS, MAX_USERNAME_CHARS};

/// What someone submitted, and who they are.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub message: String,
    pub username: String,
    pub user_id: Option<String>,
    pub display_name: Option<String>,
    pub guild_id: Option<String>,
    pub channel_id: Option<String>,
    /// Decides the ticket id; a submission without one (the command line) gets a fresh one.
    pub interaction_id: Option<String>,
    /// The closed ticket the new one follows.
    pub follows: Option<String>,
    /// The team chosen in `/ticket`'s category menu.
    pub category: Option<String>,
    /// Where it came from when not Discord ([`crate::schema::ORIGINS`]).
    pub origin: Option<String>,
    /// Its id in its channel (a mail's Message-ID).
    pub message_id: Option<String>,
    /// Why it was sent by a program (an auto-reply, a list), if it was: it gets no automatic answer.
    pub automatic: Option<String>,
    /// The files it carries that franz keeps (published on the files topic before the record).
    pub attachments: Vec<crate::schema::lifecycle::Attachment>,
}

/// The broker's acknowledgement of a published ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub ticket_id: String,
    pub partition: i32,
    pub offset: i64,
}

/// The intake record for a submission, stamped now. Fails if aufbereitung would reject it.
pub fn record(submission: Submission) -> anyhow::Result<IntakeRecord> {
    let message_chars = submission.message.trim().chars().count();
    if message_chars == 0 || message_chars > MAX_MESSAGE_CHARS {
        bail!("the ticket text must be 1 to {MAX_MESSAGE_CHARS} characters, got {message_chars}");
    }
    let name_chars = submission.username.trim().chars().count();
    if name_chars == 0 || name_chars > MAX_USERNAME_CHARS {
        bail!("the user name must be 1 to {MAX_USERNAME_CHARS} characters, got {name_chars}");
    }
    Ok(IntakeRecord {
        message: submission.message,
        username: submission.username,
        timestamp: now_rfc3339(),
        user_id: submission.user_id,
        display_name: submission.display_name,
        guild_id: submission.guild_id,
        channel_id: submission.channel_id,
        interaction_id: Some(submission.interaction_id.unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()))),
        follows: submission.follows,
        category: submission.category,
        origin: submission.origin,
        message_id: submission.message_id,
        automatic: submission.automatic,
        attachments: submission.attachments,
    })
}

/// Publishes an intake record and waits for the broker's acknowledgement (idempotent, `acks=all`).
pub async fn publish_record<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    record: &IntakeRecord,
) -> anyhow::Result<Receipt> {
    let ticket_id = record.ticket_id().context("an intake record built by franz carries an interaction id")?;
    let payload = serde_json::to_vec(record).context("cannot encode the intake record")?;
    let (partition, offset) = publish(producer, topic, Some(record.key()), &payload)
        .await
        .with_context(|| format!("the broker did not acknowledge the ticket on {topic}"))?;
    Ok(Receipt { ticket_id, partition, offset })
}
