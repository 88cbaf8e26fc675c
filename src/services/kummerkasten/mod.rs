//! kummerkasten: the Discord bot whose `/ticket` command puts tickets into the intake topic.
//!
//! The Discord gateway cannot be faked, so the poise glue here is thin: `/ticket` takes the text from its option
//! (or from a form when the option is left out), defers, and hands over to [`submit`], a plain function tested
//! against the in-process broker. `submit` builds the record and publishes it through the intake path that
//! `franz ticket` uses too; then it picks the answer. The texts are in `replies`.

pub mod replies;

use std::time::Duration;

use anyhow::anyhow;
use poise::serenity_prelude as serenity;
use rdkafka::producer::FutureProducer;
use secrecy::{ExposeSecret as _, SecretString};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Topics;
use crate::intake::{self, Submission};
use crate::kafka::{self, report_error};

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
}

/// What every command invocation can use.
pub struct Data {
    producer: FutureProducer,
    topics: Topics,
    /// Every `/ticket` in progress holds a token, so shutdown can let them finish.
    in_flight: TaskTracker,
}

/// How long shutdown waits for `/ticket` commands that are still publishing or replying.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(40);

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
    /// The intake submission for `message`.
    pub fn submission(&self, message: String) -> Submission {
        Submission {
            message,
            username: self.username.clone(),
            user_id: Some(self.user_id.to_string()),
            display_name: self.display_name.clone(),
            guild_id: self.guild_id.map(|g| g.to_string()),
            channel_id: Some(self.channel_id.to_string()),
            interaction_id: Some(self.interaction_id.to_string()),
        }
    }
}

/// Publishes the ticket and returns what to tell the user. It says "received" only after the broker acknowledged
/// the record; a failure is reported to the errors topic (or, if that fails too, the log).
pub async fn submit(producer: &FutureProducer, topics: &Topics, who: &Invocation, message: String) -> String {
    let record = match intake::record(who.submission(message)) {
        Ok(record) => record,
        Err(why) => return replies::rejected(&why.to_string()),
    };
    match intake::publish_record(producer, &topics.intake, &record).await {
        Ok(receipt) => replies::received(&receipt.ticket_id, &record.message),
        Err(error) => {
            let mut context = serde_json::Map::new();
            context.insert("user_id".into(), who.user_id.to_string().into());
            context.insert("interaction_id".into(), who.interaction_id.to_string().into());
            let message = format!("a ticket from Discord could not be published: {error:#}");
            report_error(producer, &topics.errors, NAME, message, context).await;
            replies::not_received()
        }
    }
}

/// A form for tickets that need more room or line breaks.
#[derive(Debug, poise::Modal)]
#[name = "New ticket"]
struct TicketForm {
    #[name = "What is the problem?"]
    #[placeholder = "Describe the problem. Line breaks are fine."]
    #[paragraph]
    #[min_length = 1]
    #[max_length = 4000]
    message: String,
}

/// Submit a ticket to the team
#[poise::command(slash_command, guild_only, rename = "ticket")]
async fn ticket(
    ctx: Context<'_>,
    #[description = "What is the problem? Leave it out for a form with room for line breaks."]
    #[max_length = 4000]
    message: Option<String>,
) -> Result<(), Error> {
    use poise::Modal as _;
    let _in_flight = ctx.data().in_flight.token();
    let message = match message {
        Some(text) => {
            // Publishing can take longer than Discord's 3-second window.
            ctx.defer_ephemeral().await?;
            text
        }
        None => match TicketForm::execute(ctx).await? {
            Some(form) => form.message,
            None => return Ok(()), // the user closed the form
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
    let answer = submit(&ctx.data().producer, &ctx.data().topics, &who, message).await;
    ctx.send(replies::reply(answer)).await?;
    Ok(())
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
        poise::FrameworkError::CooldownHit { remaining_cooldown, ctx, .. } => {
            if let Err(error) = ctx.send(replies::reply(replies::cooldown(remaining_cooldown))).await {
                tracing::warn!(%error, "could not answer a user in cooldown");
            }
        }
        other => {
            if let Err(error) = poise::builtins::on_error(other).await {
                tracing::error!(%error, "the Discord bot could not report an error");
            }
        }
    }
}

/// `franz up`'s bot: runs when a token is configured.
pub fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let config = context.config;
    let Some(token) = &config.discord.token else {
        return Ok(super::Plan::Off("set DISCORD_TOKEN to run the /ticket bot (README: Discord bot)".into()));
    };
    let settings = Settings {
        bootstrap: context.bootstrap.clone(),
        topics: config.topics.clone(),
        token: token.clone(),
        guild_id: config.discord.guild_id,
        cooldown: config.discord.cooldown,
    };
    let scope = config.discord.guild_id.map_or("globally".to_owned(), |g| format!("in guild {g}"));
    let status = format!("/ticket -> {} (registered {scope})", config.topics.intake);
    Ok(super::Plan::run(status, run(settings, context.shutdown.clone())))
}

/// Runs the bot until `shutdown` is cancelled. A token Discord refuses ends it with an error at once; a lost
/// gateway connection is re-established by serenity.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let in_flight = TaskTracker::new();
    let data = Data {
        producer: kafka::producer(&settings.bootstrap)?,
        topics: settings.topics.clone(),
        in_flight: in_flight.clone(),
    };
    let guild = settings.guild_id;
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: vec![ticket_command(settings.cooldown)],
            allowed_mentions: Some(serenity::CreateAllowedMentions::new()),
            on_error: |error| Box::pin(on_error(error)),
            ..Default::default()
        })
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                let commands = &framework.options().commands;
                match guild {
                    Some(id) => poise::builtins::register_in_guild(ctx, commands, serenity::GuildId::new(id)).await?,
                    None => poise::builtins::register_globally(ctx, commands).await?,
                }
                let scope =
                    guild.map_or("globally (may take up to an hour to appear)".to_owned(), |g| format!("in guild {g}"));
                tracing::info!("Discord bot {} is online; /ticket is registered {scope}", ready.user.name);
                Ok(data)
            })
        })
        .build();
    let mut client =
        serenity::ClientBuilder::new(settings.token.expose_secret(), serenity::GatewayIntents::non_privileged())
            .framework(framework)
            .await
            .map_err(|error| anyhow!("cannot create the Discord client: {error}"))?;
    let shards = client.shard_manager.clone();
    tokio::select! {
        result = client.start() => result.map_err(|error| {
            anyhow!("the Discord bot stopped: {error}; check DISCORD_TOKEN (Developer Portal → your application → Bot → Reset Token)")
        })?,
        _ = shutdown.cancelled() => {
            // No new interactions from here on; the ones in progress still publish and reply over HTTP.
            shards.shutdown_all().await;
            in_flight.close();
            if tokio::time::timeout(DRAIN_TIMEOUT, in_flight.wait()).await.is_err() {
                tracing::warn!("{} /ticket commands were still running after {DRAIN_TIMEOUT:?}", in_flight.len());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerate with `FRANZ_BLESS=1 cargo test command_definition`, then review the diff.
    const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/kummerkasten/ticket-command.json");

    #[test]
    fn command_definition_matches_the_snapshot() {
        let got = command_definition();
        if std::env::var_os("FRANZ_BLESS").is_some() {
            std::fs::write(SNAPSHOT, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        }
        let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(SNAPSHOT).unwrap()).unwrap();
        assert_eq!(got, expected, "\nexpected {expected:#}\n     got {got:#}");
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
            let record = intake::record(who.submission(text.clone())).unwrap();
            prop_assert_eq!(record.key(), user_id.to_string());
            let bytes = serde_json::to_vec(&record).unwrap();
            let ticket = normalize(&bytes, &SourceRef { topic: "discordMSG".into(), partition: 0, offset: 0 }).unwrap();
            prop_assert_eq!(&ticket.body, text.trim());
            prop_assert_eq!(&ticket.contact, &name);
            prop_assert_eq!(ticket.id, ticket_id_for_interaction(&interaction_id.to_string()));
        }
    }
}
