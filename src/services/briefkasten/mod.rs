//! briefkasten (German: the letterbox): the service that takes tickets by email.
//!
//! It reads one IMAP mailbox (`mail.imap_url`): every mail not yet taken becomes an intake record with origin
//! `Email` on the intake topic, like a Discord ticket (aufbereitung normalizes it, akte opens it); a mail that
//! cannot be a ticket (too large, no sender) becomes a dead letter with what could be read of it; a delivery
//! status notification (a bounce) is reported on the errors topic, since franz sent no mail it could belong to.
//! Only once the broker acknowledged what a mail became is the mail marked as taken (flagged `\Seen`, or moved to
//! `mail.move_to`), so a crash in between reads it again, and its ticket id, derived from the mail
//! (`mail::interaction_id`), makes that the same ticket.
//!
//! It waits for new mail with IDLE where the server offers it, else looks every `mail.poll_secs`. A failed
//! connection is made again after a pause that doubles up to a minute (a refused sign-in waits a quarter of an
//! hour, so a wrong password does not lock the account), each failure reported in the log, `/readyz` and
//! `franz status`; nothing here ever stops franz.

pub mod imap;
pub mod mail;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::Topics;
use crate::intake;
use crate::kafka::{self, Producer, report_error};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::schema::{DeadLetter, ErrorType, MailRef, now_rfc3339};
use imap::{Account, Fetched, Mailbox, Refused};

/// The service's name in logs, metrics and error events.
pub const NAME: &str = "briefkasten";
/// The first pause after a failed connection; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The pause after the server refused the sign-in.
const REFUSED_PAUSE: Duration = Duration::from_secs(15 * 60);

/// What briefkasten needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub topics: Topics,
    pub account: Account,
    /// Where taken mails go; `None` flags them `\Seen` in place.
    pub move_to: Option<String>,
    /// How long between two looks without IDLE, and the longest IDLE.
    pub poll: Duration,
    /// The largest mail that becomes a ticket.
    pub max_bytes: usize,
    pub metrics: Arc<Metrics>,
}

/// Decides whether briefkasten runs: only with the mailbox, user and password all set.
pub fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let config = &context.config.mail;
    let (url, user, password) = match (&config.imap_url, &config.user, &config.password) {
        (None, None, None) => {
            return Ok(super::Plan::Off(
                "off: set mail.imap_url (FRANZ_MAIL_IMAP_URL), mail.user and mail.password to take tickets by email"
                    .to_owned(),
            ));
        }
        (Some(url), Some(user), Some(password)) => (url, user, password),
        _ => {
            let missing: Vec<&str> = [
                ("mail.imap_url (FRANZ_MAIL_IMAP_URL)", config.imap_url.is_none()),
                ("mail.user (FRANZ_MAIL_USER)", config.user.is_none()),
                ("mail.password (FRANZ_MAIL_PASSWORD)", config.password.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            bail!("tickets by email need the mailbox, its user and its password; missing: {}", missing.join(", "));
        }
    };
    if let Some(folder) = &config.move_to {
        folder_name(folder)?;
    }
    let settings = Settings {
        bootstrap: context.bootstrap.clone(),
        topics: context.config.topics.clone(),
        account: Account {
            url: url.clone(),
            user: user.clone(),
            password: password.clone(),
            ca_file: config.ca_file.clone(),
        },
        move_to: config.move_to.clone(),
        poll: Duration::from_secs(config.poll_secs),
        max_bytes: usize::try_from(config.max_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        metrics: context.metrics.clone(),
    };
    let status = format!("{url} as {user} -> {}", settings.topics.intake);
    Ok(super::Plan::run(status, run(settings, context.shutdown.clone()).boxed()))
}

/// A folder name franz can give IMAP as it is.
fn folder_name(folder: &str) -> anyhow::Result<()> {
    if folder.is_empty() || !folder.chars().all(|c| c.is_ascii_graphic() || c == ' ') || folder.contains(['"', '\\']) {
        bail!(
            "mail.move_to {folder:?} is not a folder name franz can use (ASCII letters, digits, spaces and \
             punctuation other than quotes and backslashes)"
        );
    }
    Ok(())
}

/// Runs until `shutdown`: takes the mailbox's mail, connecting again after every failure.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let producer = kafka::producer(&settings.bootstrap)?;
    let mut backoff = BACKOFF_FIRST;
    loop {
        let failure = match session(&settings, &producer, &shutdown, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        let pause = if failure.is::<Refused>() { REFUSED_PAUSE } else { backoff };
        let problem = format!("the mailbox {}: {failure:#}; trying again in {pause:?}", settings.account.url);
        tracing::warn!(service = NAME, "{problem}");
        settings.metrics.troubles.report(NAME, &problem);
        if failure.is::<Refused>() {
            report_error(&producer, &settings.topics.errors, NAME, problem, serde_json::Map::new()).await;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        settings.metrics.imap_reconnects.inc();
    }
}

/// One connection: takes what is there, then waits for more, until `shutdown` (`Ok`) or a failure.
async fn session(
    settings: &Settings,
    producer: &Producer,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let mut mailbox = tokio::select! {
        opened = Mailbox::open(&settings.account) => opened?,
        () = shutdown.cancelled() => return Ok(()),
    };
    *backoff = BACKOFF_FIRST;
    tracing::info!(service = NAME, idle = mailbox.idles(), "reading {}", settings.account.url);
    loop {
        let untaken = mailbox.untaken().await?;
        for batch in untaken.chunks(imap::FETCH_BATCH) {
            let fetched = mailbox.fetch(batch, settings.max_bytes).await?;
            let taken = take(settings, producer, &fetched, mailbox.uid_validity).await?;
            mailbox.mark(&taken, settings.move_to.as_deref()).await?;
            if shutdown.is_cancelled() {
                break;
            }
        }
        if shutdown.is_cancelled() {
            mailbox.close().await;
            return Ok(());
        }
        mailbox = mailbox.wait(settings.poll, shutdown).await?;
    }
}

/// What one mail becomes.
enum Outcome {
    Ticket(crate::schema::IntakeRecord),
    DeadLetter(DeadLetter),
    Bounce(String),
}

/// Publishes what each mail becomes, all at once, and returns the UIDs of the mails whose outcome the broker
/// acknowledged: every one, or an error (the batch is read again, to the same tickets).
async fn take(
    settings: &Settings,
    producer: &Producer,
    fetched: &[Fetched],
    uid_validity: u32,
) -> anyhow::Result<Vec<u32>> {
    let mailbox = settings.account.url.to_string();
    let publishing = fetched.iter().map(|mail| {
        let place = MailRef { mailbox: mailbox.clone(), uid_validity, uid: mail.uid, message_id: None };
        let outcome = outcome(mail, place, settings.max_bytes);
        async move {
            let (kind, result) = match outcome {
                Outcome::Ticket(record) => {
                    ("ticket", intake::publish_record(producer, &settings.topics.intake, &record).await.map(drop))
                }
                Outcome::DeadLetter(letter) => {
                    let payload = serde_json::to_vec(&letter).context("cannot encode a dead letter")?;
                    let published = kafka::publish(producer, &settings.topics.dead_letters, None, &payload).await;
                    ("dead_letter", published.map(drop).context("the broker did not acknowledge a dead letter"))
                }
                Outcome::Bounce(text) => {
                    report_error(producer, &settings.topics.errors, NAME, text, serde_json::Map::new()).await;
                    ("bounce", Ok(()))
                }
            };
            result.with_context(|| format!("mail UID {}", mail.uid))?;
            settings.metrics.mails.get_or_create(&OutcomeLabel { outcome: kind.to_owned() }).inc();
            anyhow::Ok(mail.uid)
        }
    });
    futures::future::try_join_all(publishing).await
}

/// What `fetched` becomes: a ticket, a dead letter that says why not, or a bounce to report.
fn outcome(fetched: &Fetched, mut place: MailRef, max_bytes: usize) -> Outcome {
    let read = mail::read(&fetched.bytes);
    place.message_id = read.message_id.clone();
    let refuse = |error: String| {
        Outcome::DeadLetter(DeadLetter::new(
            ErrorType::ValidationError,
            error,
            &fetched.bytes,
            place.clone(),
            now_rfc3339(),
        ))
    };
    if fetched.header_only {
        return refuse(format!(
            "the mail is {} bytes, over the limit of {max_bytes} (mail.max_mb); its header is kept here, the mail \
             in the mailbox",
            fetched.size
        ));
    }
    if read.bounce {
        return Outcome::Bounce(format!(
            "a delivery status notification arrived in {} (UID {}, from {}, subject {:?}); franz sent no mail it \
             could be about",
            place.mailbox,
            place.uid,
            read.from.as_deref().unwrap_or("nobody"),
            read.subject
        ));
    }
    let submission = match mail::submission(&read, &place) {
        Ok(submission) => submission,
        Err(mail::Refusal(why)) => return refuse(why),
    };
    match intake::record(submission) {
        Ok(record) => Outcome::Ticket(record),
        Err(error) => refuse(format!("{error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> MailRef {
        MailRef { mailbox: "imap://127.0.0.1:143/INBOX".into(), uid_validity: 1, uid: 9, message_id: None }
    }

    fn fetched(bytes: &str, header_only: bool) -> Fetched {
        Fetched { uid: 9, size: 20_000_000, bytes: bytes.as_bytes().to_vec(), header_only }
    }

    #[test]
    fn a_mail_over_the_limit_is_a_dead_letter_with_its_header_and_its_place() {
        let header = "From: a@example.com\r\nSubject: huge\r\nMessage-ID: <big@example.com>\r\n\r\n";
        let Outcome::DeadLetter(letter) = outcome(&fetched(header, true), place(), 10 << 20) else {
            panic!("not a dead letter")
        };
        assert!(letter.error.contains("20000000 bytes") && letter.error.contains("mail.max_mb"), "{}", letter.error);
        assert_eq!(letter.raw_value.as_deref(), Some(header));
        let crate::schema::LetterSource::Mail(source) = letter.source else { panic!("not a mail source") };
        assert_eq!(source.uid, 9);
        assert_eq!(source.message_id.as_deref(), Some("big@example.com"));
    }

    #[test]
    fn a_mail_becomes_an_email_intake_record_and_one_without_sender_a_dead_letter() {
        let Outcome::Ticket(record) =
            outcome(&fetched("From: a@example.com\r\nSubject: s\r\n\r\nt", false), place(), 1)
        else {
            panic!("not a ticket")
        };
        assert_eq!(record.origin.as_deref(), Some("Email"));
        assert_eq!(record.key(), "a@example.com");
        let Outcome::DeadLetter(letter) = outcome(&fetched("Subject: s\r\n\r\nt", false), place(), 1) else {
            panic!("not a dead letter")
        };
        assert!(letter.error.contains("no sender"), "{}", letter.error);
    }

    #[test]
    fn a_folder_name_with_quotes_or_control_characters_is_refused() {
        assert!(folder_name("Tickets/Taken").is_ok());
        assert!(folder_name("a\"b").is_err());
        assert!(folder_name("a\r\nb").is_err());
        assert!(folder_name("").is_err());
    }
}
