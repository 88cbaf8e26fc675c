//! kummerkasten: the Discord bot whose `/ticket` command puts tickets into the intake topic.
//!
//! `/ticket` takes the text from its option (or from a form when the option is left out), defers, and hands over
//! to [`submit`], a plain function: it builds the record, publishes it through the intake path that `franz ticket`
//! uses too, and picks the answer (texts in `replies`). The answer goes back as the interaction's follow-up, which
//! is a webhook post, so absturz's webhook delivery (rate limits, retries) carries it. `connect` checks the token
//! and registers the command before the gateway starts. The whole bot runs end to end in the tests against the
//! fake Discord of `crates/fake-discord` (REST through [`Settings::api_proxy`], the gateway from `GET /gateway`).
//! With a staff channel and role configured, the same session also runs the staff side (`staff`): a card per
//! ticket, and its buttons. What fails and is not the bot's end (a reply Discord refused, a card it could not
//! edit, a press it could not answer) is logged and reported as the bot's last problem (`/readyz`, `franz status`).
//! The staff side's followers (`staff::follow`) are tasks the bot watches: one that stops by itself (an error, a
//! panic) stops the bot with its error, as a failing service stops franz, rather than leave its duty undone unseen.
//! With `DISCORD_GUILD_ID` set, `guard` refuses every interaction from another server or a direct message, and
//! start-up removes a global registration left from before, so that only that server can feed tickets in.

pub mod category;
pub mod connect;
pub mod conversation;
pub mod guard;
pub mod rating;
pub mod replies;
pub mod staff;
pub mod threads;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use futures::FutureExt as _;
use poise::serenity_prelude as serenity;
use rdkafka::ClientContext;
use rdkafka::producer::FutureProducer;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Topics;
use crate::discord::webhook::{self, Policy, Webhook};
use crate::intake::{self, Submission};
use crate::kafka::{self, report_error};
use crate::store::opened::Opened;
use crate::store::{Store, query};
use crate::troubles::Troubles;

/// The service's name in logs and error events.
pub const NAME: &str = "kummerkasten";

/// What the bot needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub topics: Topics,
    pub token: SecretString,
    /// Register `/ticket` in this guild only (instant), instead of globally (can take up to an hour).
    pub guild_id: Option<u64>,
    /// How long a user waits between two tickets.
    pub cooldown: Duration,
    /// Send every REST call through this proxy (validated by `config`) instead of to discord.com.
    pub api_proxy: Option<String>,
    /// The staff side: the cards, when a staff channel and role are configured, and the submitters' direct
    /// messages; needs the ticket store.
    pub staff: Option<staff::Settings>,
    /// The ticket store, when it runs in this process: `/tickets` answers from it, and is registered only then.
    pub store: Option<Store>,
    /// Where the bot reports what went wrong with a command, a reply or a card (`/readyz`, `franz status`).
    pub troubles: Troubles,
    /// Partitions of `ticket-commands`, to put a submitter's message where akte decides its ticket.
    pub partitions: i32,
    /// How long after its close a submitter's message reopens a ticket (akte's rule; later messages open a new
    /// ticket that follows it).
    pub reopen_within: Duration,
    /// A private thread per ticket (`DISCORD_TICKET_THREADS`), if asked for: on once start-up finds the Message
    /// Content intent granted.
    pub threads: Option<threads::Threads>,
    /// Where the staff list is, whose teams `/ticket` offers as categories (`category`).
    pub staff_dir: std::path::PathBuf,
    /// The most open tickets one submitter may have; 0: no limit (`open_tickets_max`).
    pub open_tickets_max: u64,
    /// How long after its close a ticket takes its submitter's rating (`satisfaction.window_days`).
    pub rate_within: Duration,
    /// What time it is (a test's clock, or the system's): whether a rating is still in its window.
    pub clock: crate::clock::Clock,
}

/// What every command invocation can use.
pub struct Data {
    producer: kafka::Producer,
    topics: Topics,
    /// Every `/ticket` in progress holds a token, so shutdown can let them finish.
    in_flight: TaskTracker,
    /// Cancelled at shutdown: a form nobody submits stops waiting then.
    shutdown: CancellationToken,
    /// Where follow-ups are posted (the proxy or discord.com), and the client that posts them.
    api_base: String,
    replies: reqwest::Client,
    staff: Option<staff::Settings>,
    store: Option<Store>,
    troubles: Troubles,
    /// The one server served (`DISCORD_GUILD_ID`); interactions from elsewhere are refused (`guard`).
    guild: Option<u64>,
    /// The submitters' direct messages: their rate limit and order.
    conversations: conversation::Conversations,
    partitions: i32,
    reopen_within: Duration,
    /// The ticket threads, when they are on (configured, and the Message Content intent granted).
    threads: Option<threads::Threads>,
    /// The threads this process opened, before the ticket store has their records.
    threads_known: threads::Known,
    /// Where the staff list is, whose teams `/ticket` offers as categories.
    staff_dir: std::path::PathBuf,
    /// The most open tickets one submitter may have (0: no limit); counted in the store, when it runs here.
    open_tickets_max: u64,
    /// The tickets opened here that the store may not have yet, which the limit counts too.
    opened: Opened,
    /// How long after its close a ticket takes its submitter's rating.
    rate_within: Duration,
    clock: crate::clock::Clock,
}

/// How long shutdown waits for `/ticket` commands that are still publishing or replying.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(40);

/// How long an interaction's token lets the bot answer, from the moment the user invoked the command.
const INTERACTION_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// What a `/ticket` leaves of its token's lifetime for publishing the ticket and answering.
const ANSWER_MARGIN: Duration = Duration::from_secs(60);

/// How long a form waits to be submitted: the rest of its command's interaction lifetime, less a margin for the
/// reply.
const FORM_PATIENCE: Duration = Duration::from_secs(14 * 60);

type Error = Box<dyn std::error::Error + Send + Sync>;
type Context<'a> = poise::ApplicationContext<'a, Data, Error>;

/// Who submitted, where, through which interaction, as Discord tells it.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub user_id: u64,
    pub username: String,
    pub display_name: Option<String>,
    pub guild_id: Option<u64>,
    pub channel_id: u64,
    /// Decides the ticket id.
    pub interaction_id: u64,
}

impl Invocation {
    /// The intake submission for `message`, for the team of `category` if the submitter chose one.
    pub fn submission(&self, message: String, category: Option<String>) -> Submission {
        Submission {
            message,
            category,
            username: self.username.clone(),
            user_id: Some(self.user_id.to_string()),
            display_name: self.display_name.clone(),
            guild_id: self.guild_id.map(|g| g.to_string()),
            channel_id: Some(self.channel_id.to_string()),
            interaction_id: Some(self.interaction_id.to_string()),
            follows: None,
            message_id: None,
            automatic: None,
            origin: None,
            attachments: Vec::new(),
        }
    }
}

/// What became of a submission: what to tell the user, and what went wrong if the ticket was not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub answer: String,
    /// Whether the broker acknowledged the ticket.
    pub published: bool,
    /// Why publishing failed, for [`report`]; `None` when the ticket was published or refused as invalid.
    pub failure: Option<String>,
}

/// Publishes the ticket and returns what to tell the user. It says "received" only after the broker acknowledged
/// the record. A failure is for [`report`], after the user has been told: with the broker down, reporting can
/// take minutes of retries, and the user should not wait for them.
pub async fn submit<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topics: &Topics,
    who: &Invocation,
    message: String,
    category: Option<String>,
) -> Outcome {
    let record = match intake::record(who.submission(message, category)) {
        Ok(record) => record,
        Err(why) => return Outcome { answer: replies::rejected(&why.to_string()), published: false, failure: None },
    };
    match intake::publish_record(producer, &topics.intake, &record).await {
        Ok(receipt) => {
            Outcome { answer: replies::received(&receipt.ticket_id, &record.message), published: true, failure: None }
        }
        Err(error) => Outcome {
            answer: replies::not_received(),
            published: false,
            failure: Some(format!("a ticket from Discord could not be published: {error:#}")),
        },
    }
}

/// Reports a failed submission to the errors topic (retrying; if that fails too, the log says so).
pub async fn report<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topics: &Topics,
    who: &Invocation,
    failure: String,
) {
    let mut context = serde_json::Map::new();
    context.insert("user_id".into(), who.user_id.to_string().into());
    context.insert("interaction_id".into(), who.interaction_id.to_string().into());
    report_error(producer, &topics.errors, NAME, failure, context).await;
}

/// A form for tickets that need more room or line breaks.
#[derive(Debug, poise::Modal)]
#[name = "New ticket"]
pub struct TicketForm {
    #[name = "What is the problem?"]
    #[placeholder = "Describe the problem. Line breaks are fine."]
    #[paragraph]
    #[min_length = 1]
    #[max_length = 4000]
    message: String,
}

/// The form as Discord receives it (the interaction callback that opens it), for the snapshot.
pub fn form_definition(custom_id: &str) -> serde_json::Value {
    use poise::Modal as _;
    serde_json::to_value(TicketForm::create(None, custom_id.to_owned())).unwrap_or_default()
}

/// Submit a ticket to the team
#[poise::command(slash_command, guild_only, rename = "ticket")]
async fn ticket(
    ctx: Context<'_>,
    #[description = "What is the problem? Leave it out for a form with room for line breaks."]
    #[max_length = 4000]
    message: Option<String>,
) -> Result<(), Error> {
    let _in_flight = ctx.data().in_flight.token();
    let mut reserved = match over_limit(ctx).await {
        Ok(reserved) => reserved,
        Err(refusal) => {
            ctx.send(replies::reply(refusal)).await.map_err(|error| connect::describe(&error))?;
            return Ok(());
        }
    };
    let categories = category::offered(ctx).await;
    let (message, category) = match message {
        _ if !categories.is_empty() => {
            // The menu and then the form together end in time for the answer on this command's token (found by an
            // attack: each waiting its own 14 minutes, a slow user's ticket was published, its id never told).
            let within = token_lifetime_left(ctx.interaction.id).saturating_sub(ANSWER_MARGIN).max(ANSWER_MARGIN);
            match tokio::time::timeout(within, category::ask(ctx, &categories, message)).await {
                Ok(asked) => match asked? {
                    Some(asked) => asked,
                    None => return Ok(()), // no pick, the user closed the form, or franz is shutting down
                },
                Err(_) => return Ok(()),
            }
        }
        Some(text) => {
            // Publishing can take longer than Discord's 3-second window.
            ctx.defer_ephemeral().await.map_err(|error| connect::describe(&error))?;
            (text, None)
        }
        None => match open_form(ctx).await? {
            Some(text) => (text, None),
            None => return Ok(()), // the user closed the form, or franz is shutting down
        },
    };
    let who = Invocation {
        user_id: ctx.author().id.get(),
        username: ctx.author().name.clone(),
        display_name: ctx.author().global_name.clone(),
        guild_id: ctx.guild_id().map(|g| g.get()),
        channel_id: ctx.channel_id().get(),
        interaction_id: ctx.interaction.id.get(),
    };
    let outcome = submit(&ctx.data().producer, &ctx.data().topics, &who, message, category).await;
    if let Some(reserved) = &mut reserved {
        reserved.published = outcome.published;
    }
    drop(reserved);
    let replied = follow_up(ctx, outcome.answer).await;
    if let Some(failure) = outcome.failure {
        report(&ctx.data().producer, &ctx.data().topics, &who, failure).await;
    }
    replied
}

/// The ticket a `/ticket` is about to open, counted against its caller's limit while the command runs, then, once
/// published, until the ticket store has it (`store::opened`); forgotten if it never was published.
struct Reserved {
    opened: Opened,
    user: String,
    id: String,
    published: bool,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.opened.published(&self.user, &self.id, self.published);
    }
}

/// What to answer `/ticket` instead of a ticket (`Err`) when its caller has as many open tickets as one may have
/// (`open_tickets_max`), counted in the ticket store together with those this bot opened for them that the store
/// does not have yet; else the ticket this command may open, reserved (`None`: no limit, or no store in this
/// process). A store that cannot be read lets the ticket through, said in the log: nobody is kept from asking for
/// help by franz's own trouble.
async fn over_limit(ctx: Context<'_>) -> Result<Option<Reserved>, String> {
    let max = ctx.data().open_tickets_max;
    let Some(store) = ctx.data().store.clone().filter(|_| max > 0) else { return Ok(None) };
    let opened = ctx.data().opened.clone();
    let user = ctx.author().id.to_string();
    let id = crate::schema::ticket_id_for_interaction(&ctx.interaction.id.get().to_string());
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let (counting, who, ticket) = (opened.clone(), user.clone(), id.clone());
    let counted = tokio::task::spawn_blocking(move || -> anyhow::Result<Result<(), String>> {
        let conn = store.reader()?;
        // The count and the reservation are one step: a /ticket at the same time counts this one.
        Ok(counting.with(&conn, &who, |pending| -> rusqlite::Result<Result<(), String>> {
            let open = query::open_of_contact(&conn, &who, limit)?;
            let count = open.len() + pending.len();
            if count as u64 >= max {
                return Ok(Err(replies::over_limit(&open, count, max)));
            }
            pending.push((ticket, None));
            Ok(Ok(()))
        })??)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|counted| counted);
    match counted {
        Ok(Ok(())) => Ok(Some(Reserved { opened, user, id, published: false })),
        Ok(Err(refusal)) => Err(refusal),
        Err(error) => {
            let problem = format!("/ticket could not count the caller's open tickets: {error:#}; let it through");
            tracing::warn!("{problem}");
            ctx.data().troubles.report(NAME, problem);
            Ok(None)
        }
    }
}

/// Opens the form and waits for it to be submitted; `None` if it never is, or shutdown comes first. Only the wait
/// gives way to shutdown: a form that was submitted is acknowledged and its ticket published.
async fn open_form(ctx: Context<'_>) -> Result<Option<String>, Error> {
    use poise::Modal as _;
    // poise's convention, which the fake Discord's tests rely on too: the form's custom id is the command's
    // interaction id.
    let custom_id = ctx.interaction.id.to_string();
    let form = TicketForm::create(None, custom_id.clone());
    ctx.interaction.create_response(ctx.serenity_context(), form).await.map_err(|error| connect::describe(&error))?;
    ctx.has_sent_initial_response.store(true, std::sync::atomic::Ordering::SeqCst);
    await_form(ctx, custom_id).await
}

/// Waits for the form `custom_id` to be submitted and acknowledges it; `None` if it never is, or shutdown comes
/// first.
async fn await_form(ctx: Context<'_>, custom_id: String) -> Result<Option<String>, Error> {
    use poise::Modal as _;
    let served = ctx.data().guild;
    let submitted = serenity::ModalInteractionCollector::new(&ctx.serenity_context().shard)
        // A submit from elsewhere is refused in `on_event`; it must not be taken as this form's too.
        .filter(move |submit| submit.data.custom_id == custom_id && guard::admits(served, submit.guild_id))
        .timeout(FORM_PATIENCE);
    let submitted = tokio::select! {
        submitted = submitted => submitted,
        _ = ctx.data().shutdown.cancelled() => None,
    };
    let Some(submitted) = submitted else { return Ok(None) };
    // Closes the form in the user's client.
    submitted
        .create_response(ctx.serenity_context(), serenity::CreateInteractionResponse::Acknowledge)
        .await
        .map_err(|error| connect::describe(&error))?;
    match TicketForm::parse(submitted.data.clone()) {
        Ok(form) => Ok(Some(form.message)),
        Err(why) => Err(format!("the submitted form cannot be read: {why}").into()),
    }
}

/// Sends `answer` as the interaction's follow-up message, within Discord's rate limits, retrying 5xx and network
/// errors, until Discord accepts it or the interaction's token expires. Shutdown does not cut it short: a user whose
/// ticket was published learns its id.
async fn follow_up(ctx: Context<'_>, answer: String) -> Result<(), Error> {
    let reply = ctx.reply_builder(replies::reply(answer));
    let body =
        serde_json::to_value(reply.to_slash_followup_response(serenity::CreateInteractionResponseFollowup::new()))?;
    let url = format!(
        "{}/api/v10/webhooks/{}/{}",
        ctx.data().api_base,
        ctx.interaction.application_id,
        ctx.interaction.token
    );
    let policy = Policy { give_up_when_gone: true, backoff_max: Duration::from_secs(10), ..Policy::default() };
    let mut webhook = Webhook::with_client(ctx.data().replies.clone(), &SecretString::from(url), policy)?;
    let left = token_lifetime_left(ctx.interaction.id);
    match tokio::time::timeout(left, webhook.post(&body, &CancellationToken::new())).await {
        Ok(webhook::Outcome::Accepted) => Ok(()),
        Ok(webhook::Outcome::Rejected(why)) => {
            Err(format!("Discord refused the reply: {}", crate::discord::clip(&why, 300)).into())
        }
        Ok(webhook::Outcome::Cancelled) | Err(_) => {
            Err("the reply could not be delivered before the interaction expired".into())
        }
    }
}

/// How much of an interaction token's 15 minutes is left, by the interaction id's own timestamp.
fn token_lifetime_left(interaction: serenity::InteractionId) -> Duration {
    let created = SystemTime::UNIX_EPOCH
        + Duration::from_millis(((interaction.get() >> 22) + 1_420_070_400_000).min(i64::MAX as u64));
    let age = SystemTime::now().duration_since(created).unwrap_or_default();
    // A clock that disagrees with Discord's must not leave no time at all; Discord answers 404 if it is too late.
    INTERACTION_LIFETIME.saturating_sub(age).max(Duration::from_secs(30))
}

/// See your own tickets and where they stand
#[poise::command(slash_command, guild_only, rename = "tickets")]
async fn tickets(ctx: Context<'_>) -> Result<(), Error> {
    let _in_flight = ctx.data().in_flight.token();
    let answer = match ctx.data().store.clone() {
        // Registered only with a store; a stale registration from another configuration gets this.
        None => "Ticket status is not available from this bot.".to_owned(),
        Some(store) => {
            let user = ctx.author().id.to_string();
            type Found = Vec<(crate::lifecycle::TicketState, Option<crate::schema::lifecycle::Event>)>;
            let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Found> {
                let conn = store.reader()?;
                let tickets = query::by_contact(&conn, &user, replies::OWN_TICKETS_MAX)?;
                let with_last = tickets.into_iter().map(|ticket| Ok((query::last_message(&conn, &ticket.id)?, ticket)));
                with_last.map(|found| found.map(|(last, ticket)| (ticket, last))).collect()
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|found| found);
            match found {
                Ok(tickets) => replies::own_tickets(&tickets),
                Err(error) => {
                    let problem = format!("/tickets cannot read the ticket store: {error:#}");
                    tracing::error!(interaction = %ctx.id(), "{problem}");
                    ctx.data().troubles.report(NAME, problem);
                    "Your tickets cannot be listed right now. Please try again in a minute.".to_owned()
                }
            }
        }
    };
    ctx.send(replies::reply(answer)).await.map_err(|error| connect::describe(&error))?;
    Ok(())
}

/// `/tickets` as it is registered with Discord (the JSON body of the registration).
pub fn tickets_command_definition() -> serde_json::Value {
    serde_json::to_value(tickets().create_as_slash_command()).unwrap_or_default()
}

/// The `/ticket` command with the user cooldown applied.
fn ticket_command(cooldown: Duration) -> poise::Command<Data, Error> {
    let command = ticket();
    if let Ok(mut config) = command.cooldown_config.write() {
        config.user = Some(cooldown);
    }
    command
}

/// `/ticket` as it is registered with Discord (the JSON body of the registration).
pub fn command_definition() -> serde_json::Value {
    let command = ticket_command(Duration::from_secs(10)).create_as_slash_command();
    serde_json::to_value(command).unwrap_or_default()
}

async fn on_error(error: poise::FrameworkError<'_, Data, Error>) {
    match error {
        // `guard`'s refusal: a command from another server, or from a direct message (poise's guild-only check
        // comes first there) while the bot serves one server.
        poise::FrameworkError::CommandCheckFailed { error: None, ctx, .. } => refuse(ctx).await,
        poise::FrameworkError::GuildOnly { ctx, .. } if ctx.data().guild.is_some() => refuse(ctx).await,
        poise::FrameworkError::CooldownHit { remaining_cooldown, ctx, .. } => {
            if let Err(error) = ctx.send(replies::reply(replies::cooldown(remaining_cooldown))).await {
                let problem = format!("could not answer a user in cooldown: {}", connect::describe(&error));
                tracing::warn!("{problem}");
                ctx.data().troubles.report(NAME, problem);
            }
        }
        // The command's own errors are described without secrets; the user is not told, as the reply itself is
        // what failed (or Discord refused the interaction).
        poise::FrameworkError::Command { error, ctx, .. } => {
            let problem = format!("/{} failed: {error}", ctx.command().name);
            tracing::error!(interaction = %ctx.id(), "{problem}");
            ctx.data().troubles.report(NAME, problem);
        }
        other => {
            let troubles = other.ctx().map(|ctx| ctx.data().troubles.clone());
            if let Err(error) = poise::builtins::on_error(other).await {
                let problem = format!("the Discord bot could not report an error: {}", connect::describe(&error));
                tracing::error!("{problem}");
                if let Some(troubles) = troubles {
                    troubles.report(NAME, problem);
                }
            }
        }
    }
}

/// Answers a command from outside the bot's server privately, and does nothing else with it.
async fn refuse(ctx: poise::Context<'_, Data, Error>) {
    let command = &ctx.command().name;
    tracing::info!(interaction = %ctx.id(), "refused /{command} from outside the bot's server (DISCORD_GUILD_ID)");
    if let Err(error) = ctx.send(replies::reply(replies::elsewhere())).await {
        let problem = format!("could not refuse a command from another server: {}", connect::describe(&error));
        tracing::warn!("{problem}");
        ctx.data().troubles.report(NAME, problem);
    }
}

/// `franz up`'s bot: runs when a token is configured. With the staff cards on, a cards topic that holds records none
/// of which is a card (`topics.cards` naming some other topic) is refused here, before anything is written to it.
pub async fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let config = context.config;
    let Some(token) = &config.discord.token else {
        return Ok(super::Plan::Off("set DISCORD_TOKEN to run the /ticket bot (README: Discord bot)".into()));
    };
    let (channel, role) = (config.discord.staff_channel_id, config.discord.staff_role_id);
    let team = match (channel, role) {
        (Some(channel_id), Some(role_id)) => Some(crate::people::StaffChannel { channel_id, role_id }),
        _ => None,
    };
    let notify_submitter = config.discord.notify_submitter;
    let threads = config
        .discord
        .ticket_threads
        .map(|channel_id| threads::Threads { channel_id, staff_role: config.discord.staff_role_id });
    let staff_side = team.is_some() || notify_submitter || threads.is_some();
    let staff = context.store.as_ref().filter(|_| staff_side).map(|store| staff::Settings {
        cards: team,
        notify_submitter,
        threads,
        threads_known: threads::Known::default(),
        store: store.clone(),
        cards_topic: config.topics.cards.clone(),
        cards_path: staff::cards_path(store),
        staff_dir: context.desk_dir.clone(),
        partitions: config.partitions,
        commands_topic: config.topics.commands.clone(),
        desk_url: config.desk.public_url.clone(),
        troubles: context.metrics.troubles.clone(),
        errors_topic: config.topics.errors.clone(),
        refused: context.metrics.discord_refused.clone(),
        survey: config.satisfaction.ask.then(|| config.satisfaction.question.clone()),
        transcript_on_close: config.discord.transcript_on_close,
    });
    if staff.as_ref().is_some_and(|staff| staff.cards.is_some()) {
        staff::cards::check_topic(&context.bootstrap, &config.topics.cards).await?;
    }
    let settings = Settings {
        bootstrap: context.bootstrap.clone(),
        topics: config.topics.clone(),
        token: token.clone(),
        guild_id: config.discord.guild_id,
        cooldown: config.discord.cooldown,
        api_proxy: config.discord.api_proxy.clone(),
        staff,
        store: context.store.clone(),
        troubles: context.metrics.troubles.clone(),
        partitions: config.partitions,
        reopen_within: config.reopen_within,
        threads,
        staff_dir: context.desk_dir.clone(),
        open_tickets_max: config.open_tickets_max,
        rate_within: config.satisfaction.window,
        clock: config.clock.clone(),
    };
    let scope = config.discord.guild_id.map_or("globally".to_owned(), |g| format!("in guild {g}"));
    let proxy = config.discord.api_proxy.as_ref().map_or(String::new(), |p| format!(", REST through {p}"));
    // The staff side's lines continue the bot's row of the ready table.
    let indent = format!("\n{:15}", "");
    let staff_line = match (&settings.staff, team, staff::off_reason(channel, role)) {
        (Some(_), Some(team), _) => format!(
            "staff cards -> channel {} (buttons for role {}{}), from {}, card map {}",
            team.channel_id,
            team.role_id,
            accounts(&context.desk_dir),
            config.topics.events,
            config.topics.cards
        ),
        (None, Some(_), _) => "staff cards off: the ticket store is not open".to_owned(),
        (_, None, reason) => reason.unwrap_or_default().to_owned(),
    };
    let notify_line = match (&settings.staff, notify_submitter) {
        (Some(_), true) => "submitters told by direct message of claims, public replies and closes \
                            (DISCORD_NOTIFY_SUBMITTER=false turns it off)"
            .to_owned(),
        (None, true) => "submitters not told by direct message: the ticket store is not open".to_owned(),
        (_, false) => "submitters not told by direct message (DISCORD_NOTIFY_SUBMITTER=false)".to_owned(),
    };
    let tickets = match &settings.store {
        Some(_) => "/tickets lists a user's own tickets",
        None => "/tickets off: the ticket store is not open",
    };
    let threads_line = match (threads, &settings.staff) {
        (None, _) => String::new(),
        (Some(threads), Some(_)) => format!(
            "{indent}a private thread per ticket in channel {} (needs the Message Content intent, checked at start)",
            threads.channel_id
        ),
        (Some(_), None) => format!("{indent}ticket threads off: the ticket store is not open"),
    };
    let status = format!(
        "/ticket -> {} (registered {scope}{proxy}){indent}{staff_line}{indent}{notify_line}{indent}{tickets}{threads_line}",
        config.topics.intake
    );
    Ok(super::Plan::run(status, run(settings, context.shutdown.clone())))
}

/// Runs the bot until `shutdown` is cancelled. A token Discord refuses, or a registration it refuses, ends it with
/// an error at once; a lost gateway connection is re-established by serenity.
pub async fn run(mut settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let http = connect::http(&settings.token, settings.api_proxy.as_deref())?;
    let application = connect::application(&http).await?;
    // Asking for an intent the application was not granted would close the gateway (4014): without it, the threads
    // stay off and the conversation goes on in direct messages.
    if settings.threads.is_some() && !threads::message_content(&application) {
        tracing::warn!("{}", threads::NO_INTENT);
        settings.troubles.report(NAME, threads::NO_INTENT);
        settings.threads = None;
    }
    if let Some(staff) = settings.staff.as_mut() {
        staff.threads = settings.threads.filter(|_| settings.store.is_some());
    }
    if let Some(threads) = settings.threads {
        tracing::info!(
            "ticket threads on: a private thread per ticket from Discord in channel {}, with the Message Content intent",
            threads.channel_id
        );
    }
    let mut commands = vec![ticket_command(settings.cooldown)];
    if settings.store.is_some() {
        commands.push(tickets());
    }
    connect::register(&http, poise::builtins::create_application_commands(&commands), settings.guild_id).await?;
    if settings.guild_id.is_some() {
        // A global registration from an earlier configuration would still show the commands in every server
        // (and in direct messages); `guard` refuses those, but users should not be offered them at all.
        match connect::remove_global(&http).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                "removed {removed} globally registered command(s) left from before; with DISCORD_GUILD_ID the \
                 commands are registered in that server only"
            ),
            Err(error) => tracing::warn!("{error:#}"),
        }
    }

    let in_flight = TaskTracker::new();
    let data = Data {
        producer: kafka::producer(&settings.bootstrap)?,
        topics: settings.topics.clone(),
        in_flight: in_flight.clone(),
        shutdown: shutdown.clone(),
        api_base: connect::api_base(settings.api_proxy.as_deref()),
        replies: webhook::client(Policy::default().request_timeout)?,
        staff: settings.staff.clone(),
        store: settings.store.clone(),
        troubles: settings.troubles.clone(),
        guild: settings.guild_id,
        conversations: conversation::Conversations::default(),
        partitions: settings.partitions,
        reopen_within: settings.reopen_within,
        threads: settings.threads,
        threads_known: settings.staff.as_ref().map(|staff| staff.threads_known.clone()).unwrap_or_default(),
        staff_dir: settings.staff_dir.clone(),
        open_tickets_max: settings.open_tickets_max,
        opened: Opened::default(),
        rate_within: settings.rate_within,
        clock: settings.clock.clone(),
    };
    // The cards stop with franz, and also when the bot ends by itself (a token Discord refuses later) or fails to
    // start (the guard, on any early return): waiting for them would otherwise wait for a shutdown nobody started.
    let cards_stop = shutdown.child_token();
    let stop_cards = cards_stop.clone().drop_guard();
    // The followers are watched beside the gateway: one that ends before shutdown (an error, a panic) ends the bot.
    let mut followers = tokio::task::JoinSet::new();
    if let Some(staff) = settings.staff.clone() {
        let duties = staff.cards.map(staff::follow::Duty::Cards).into_iter();
        let notices = staff.notify_submitter || staff.threads.is_some();
        for duty in duties.chain(notices.then_some(staff::follow::Duty::Notices)) {
            // A client of each its own: the cards' channel routes and the direct messages have their own rate
            // limits anyway.
            let http = std::sync::Arc::new(connect::http(&settings.token, settings.api_proxy.as_deref())?);
            let (bootstrap, topic) = (settings.bootstrap.clone(), settings.topics.events.clone());
            let follower = staff::follow::run(staff.clone(), http, bootstrap, topic, duty, cards_stop.clone());
            followers.spawn(async move { (duty, AssertUnwindSafe(follower).catch_unwind().await) });
        }
    }
    let scope =
        settings.guild_id.map_or("globally (may take up to an hour to appear)".to_owned(), |g| format!("in guild {g}"));
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands,
            allowed_mentions: Some(serenity::CreateAllowedMentions::new()),
            // Before cooldowns and before a command runs; a refusal is answered in `on_error`.
            command_check: Some(|ctx| Box::pin(async move { Ok(guard::admits(ctx.data().guild, ctx.guild_id())) })),
            on_error: |error| Box::pin(on_error(error)),
            event_handler: |framework, event| Box::pin(on_event(framework, event)),
            // Owners are not used, and `connect::application` has asked for the application already.
            initialize_owners: false,
            ..Default::default()
        })
        .setup(move |_ctx, ready, _framework| {
            Box::pin(async move {
                tracing::info!(
                    "Discord bot {} ({}) is online; /ticket is registered {scope}",
                    ready.user.name,
                    application.name
                );
                Ok(data)
            })
        })
        .build();
    let mut intents = serenity::GatewayIntents::non_privileged();
    if settings.threads.is_some() {
        intents |= serenity::GatewayIntents::MESSAGE_CONTENT;
    }
    let mut client = serenity::ClientBuilder::new_with_http(http, intents)
        .framework(framework)
        .await
        .map_err(|error| anyhow!("cannot create the Discord client: {}", connect::describe(&error)))?;
    let shards = client.shard_manager.clone();
    // No new interactions from here on; the ones in progress still publish and reply over HTTP.
    let drain = || async {
        shards.shutdown_all().await;
        in_flight.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, in_flight.wait()).await.is_err() {
            tracing::warn!("{} /ticket commands were still running after {DRAIN_TIMEOUT:?}", in_flight.len());
        }
    };
    let bot = tokio::select! {
        // Shutdown first: a follower ends by itself once shutdown has begun, and that is no failure.
        biased;
        _ = shutdown.cancelled() => {
            drain().await;
            Ok(())
        }
        Some(joined) = followers.join_next() => {
            // A follower that stops alone leaves its duty undone, silently, while the bot looks well. So the bot
            // (and with it franz, as for any service task that fails, see `app`) stops with the follower's error:
            // the log, the bot's last problem, `/readyz` and franz's exit status say it, and a supervisor (systemd,
            // compose) starts franz again with its own backoff, which reads the card map anew. Restarting the
            // follower in the process instead would hide one that fails again at once behind a running bot.
            let problem = follower_ended(joined);
            tracing::error!("{problem}");
            settings.troubles.report(NAME, &problem);
            drain().await;
            Err(anyhow!(problem))
        }
        result = client.start() => result.map_err(|error| {
            anyhow!("the Discord bot stopped: {}; {}", connect::describe(&error), connect::TOKEN_HINT)
        }),
    };
    drop(stop_cards);
    let mut staff = Ok(());
    while let Some(joined) = followers.join_next().await {
        if !matches!(joined, Ok((_, Ok(Ok(()))))) {
            staff = staff.and(Err(anyhow!(follower_ended(joined))));
        }
    }
    bot.and(staff)
}

/// How a follower of the staff side ended: its task, then the follower itself (a panic is caught there, so that
/// the duty it belonged to is known).
type FollowerEnd = Result<(staff::follow::Duty, std::thread::Result<anyhow::Result<()>>), tokio::task::JoinError>;

/// Says how a follower of the staff side ended.
fn follower_ended(joined: FollowerEnd) -> String {
    let what = |duty: staff::follow::Duty| match duty {
        staff::follow::Duty::Cards(_) => "the staff cards",
        staff::follow::Duty::Notices => "the submitters' direct messages",
    };
    match joined {
        Ok((duty, Ok(Ok(())))) => format!("{} stopped without being asked to", what(duty)),
        Ok((duty, Ok(Err(error)))) => format!("{} stopped: {error:#}", what(duty)),
        Ok((duty, Err(panic))) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "without a message".to_owned());
            format!("{} stopped: a panic, {why}", what(duty))
        }
        Err(error) => format!("the staff side ended abnormally: {error}"),
    }
}

/// Events beyond commands: presses of the staff cards' buttons and their forms, refused from outside the bot's
/// server.
async fn on_event(
    framework: poise::FrameworkContext<'_, Data, Error>,
    event: &serenity::FullEvent,
) -> Result<(), Error> {
    let data = framework.user_data;
    let http = &framework.serenity_context.http;
    let _in_flight = data.in_flight.token();
    let interaction = match event {
        serenity::FullEvent::InteractionCreate { interaction } => interaction,
        // A direct message, or (with the Message Content intent, for the threads) a message in a server.
        serenity::FullEvent::Message { new_message } if new_message.guild_id.is_some() => {
            threads::received(http, data, new_message).await;
            return Ok(());
        }
        serenity::FullEvent::Message { new_message } => {
            conversation::received(http, data, new_message).await;
            return Ok(());
        }
        // A new session (a start, or a reconnect that could not resume): what was sent meanwhile is looked for.
        serenity::FullEvent::Ready { .. } => {
            let _one = conversation::one_look(data).await;
            conversation::catch_up(http, data).await;
            threads::catch_up(http, data).await;
            return Ok(());
        }
        _ => return Ok(()),
    };
    // A submitter's answer in direct messages acts on their own message only, so it is served from a DM even
    // with DISCORD_GUILD_ID set.
    if conversation::chosen(http, data, interaction).await {
        return Ok(());
    }
    // So is a submitter's rating, under the message that told them of the close (in their direct messages, or the
    // ticket's thread): only the submitter may give it.
    if rating::handle(http, data, interaction).await {
        return Ok(());
    }
    match guard::origin(interaction) {
        Some(from) if !guard::admits(data.guild, from) => guard::refuse(http, interaction, &data.troubles).await,
        _ => {
            if let Some(staff) = &data.staff {
                staff::buttons::handle(http, staff, &data.producer, &data.topics, interaction).await;
            }
        }
    }
    Ok(())
}

/// Who may press the cards' buttons beyond the role, as the staff list in `desk_dir` says: its linked Discord
/// accounts, once any was linked. The bot reads the list of its own data dir; a desk elsewhere keeps links this
/// bot does not see, so the line names the file.
fn accounts(desk_dir: &std::path::Path) -> String {
    let list = desk_dir.join("staff.sqlite");
    match crate::people::discord_links_in(desk_dir) {
        Ok(Some((linked, true))) => format!(" and a linked account: {linked} linked in {}", list.display()),
        Ok(_) => format!(
            "; no Discord account linked in {}, so the role alone decides: `franz staff link-discord` (README)",
            list.display()
        ),
        Err(error) => format!("; the staff list {} cannot be read: {error:#}", list.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerate with `FRANZ_BLESS=1 cargo test snapshot`, then review the diff.
    fn assert_snapshot(name: &str, got: serde_json::Value) {
        let path = format!("{}/fixtures/kummerkasten/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("FRANZ_BLESS").is_some() {
            std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        }
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(got, expected, "\nexpected {expected:#}\n     got {got:#}");
    }

    #[test]
    fn command_definition_matches_the_snapshot() {
        assert_snapshot("ticket-command.json", command_definition());
    }

    #[test]
    fn tickets_command_definition_matches_the_snapshot() {
        assert_snapshot("tickets-command.json", tickets_command_definition());
    }

    #[test]
    fn ticket_form_matches_the_snapshot() {
        assert_snapshot("ticket-form.json", form_definition("INTERACTION_ID"));
    }

    #[test]
    fn an_interaction_token_lives_fifteen_minutes_from_its_interaction_id() {
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        let made_at = |ago_ms: u64| serenity::InteractionId::new(((now_ms - ago_ms - 1_420_070_400_000) << 22) | 1);
        let fresh = token_lifetime_left(made_at(0));
        assert!(fresh > Duration::from_secs(14 * 60) && fresh <= INTERACTION_LIFETIME, "{fresh:?}");
        let old = token_lifetime_left(made_at(10 * 60 * 1000));
        assert!(old > Duration::from_secs(4 * 60) && old <= Duration::from_secs(5 * 60), "{old:?}");
        assert_eq!(token_lifetime_left(made_at(60 * 60 * 1000)), Duration::from_secs(30));
    }

    /// Found by an attack (#33): the followers were bare tasks nobody awaited until shutdown, so one that panicked
    /// stopped its duty unseen. Now the bot says which one stopped and why, a panic's message included.
    #[test]
    fn a_follower_that_stops_is_told_by_its_duty_and_why() {
        use staff::follow::Duty;
        let panicked: std::thread::Result<anyhow::Result<()>> = Err(Box::new("attempt to divide by zero"));
        assert_eq!(
            follower_ended(Ok((Duty::Notices, panicked))),
            "the submitters' direct messages stopped: a panic, attempt to divide by zero"
        );
        let team = crate::people::StaffChannel { channel_id: 7, role_id: 8 };
        let failed = Ok((Duty::Cards(team), Ok(Err(anyhow!("the group is gone")))));
        assert_eq!(follower_ended(failed), "the staff cards stopped: the group is gone");
    }

    #[test]
    fn ticket_command_is_guild_only_with_an_optional_message_of_at_most_4000_characters() {
        let definition = command_definition();
        assert_eq!(definition["name"], "ticket");
        let option = &definition["options"][0];
        assert_eq!(
            (option["name"].as_str(), option["max_length"].as_u64(), option["required"].as_bool()),
            (Some("message"), Some(4000), Some(false))
        );
        assert_eq!(definition["contexts"], serde_json::json!([0]), "guild only: {definition}");
    }
}

#[cfg(test)]
mod props {
    //! Property tests; `cargo xtask props` runs them with many more cases.
    use super::*;
    use crate::schema::{SourceRef, ticket_id_for_interaction};
    use crate::services::aufbereitung::normalize::normalize;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn props_any_ticket_text_round_trips_through_aufbereitung_with_the_promised_id(
            text in "[^\\s]\\PC{0,3998}[^\\s]|[^\\s]",
            name in "[a-z0-9_.]{2,32}",
            user_id in any::<u64>(),
            interaction_id in any::<u64>(),
        ) {
            let who = Invocation { user_id, username: name.clone(), interaction_id, channel_id: 1, guild_id: Some(2), display_name: None };
            let record = intake::record(who.submission(text.clone(), None)).unwrap();
            prop_assert_eq!(record.key(), user_id.to_string());
            let bytes = serde_json::to_vec(&record).unwrap();
            let ticket = normalize(&bytes, &SourceRef { topic: "discordMSG".into(), partition: 0, offset: 0 }).unwrap();
            prop_assert_eq!(&ticket.body, text.trim());
            prop_assert_eq!(&ticket.contact, &name);
            prop_assert_eq!(ticket.id, ticket_id_for_interaction(&interaction_id.to_string()));
        }
    }
}
