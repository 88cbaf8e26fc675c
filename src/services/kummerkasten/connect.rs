//! Everything the bot does with Discord before its gateway connection: the HTTP client (direct, or through a REST
//! proxy), the token check, the registration of `/ticket` (and the removal of a global one left from before); and
//! how a Discord error is told without secrets.
//!
//! Registration happens here and not in poise's setup, because poise swallows a failed setup and then hangs every
//! later event: a refused registration must stop `franz up` with its cause instead. Nothing here publishes a
//! ticket or answers a user.

use std::time::Duration;

use anyhow::anyhow;
use poise::serenity_prelude as serenity;
use secrecy::{ExposeSecret as _, SecretString};

/// What to do about a token Discord refuses.
pub const TOKEN_HINT: &str = "check DISCORD_TOKEN (Developer Portal → your application → Bot → Reset Token)";

/// The base URL of Discord's REST API that the bot's own requests go to: the proxy, or discord.com.
pub fn api_base(proxy: Option<&str>) -> String {
    proxy.unwrap_or("https://discord.com").trim_end_matches('/').to_owned()
}

/// How long one REST call to Discord may take. serenity's own client has no limit, and a call that never returns
/// would hold up a card, a presser's answer, or shutdown for good; a call that times out is retried or reported.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// serenity's HTTP client, on a client whose calls time out after [`REQUEST_TIMEOUT`]. Through a proxy, serenity's
/// own rate limiter is off: with it on, serenity ignores the proxy (serenity issue #1739), and the proxy keeps the
/// limits for every bot behind it anyway.
pub fn http(token: &SecretString, proxy: Option<&str>) -> anyhow::Result<serenity::Http> {
    let client = crate::discord::webhook::client(REQUEST_TIMEOUT)?;
    let builder = serenity::HttpBuilder::new(token.expose_secret()).client(client);
    Ok(match proxy {
        Some(proxy) => builder.proxy(proxy).ratelimiter_disabled(true).build(),
        None => builder.build(),
    })
}

/// Checks the token by asking for the bot's application, and remembers its id (needed to register commands
/// before the gateway's READY would tell it).
pub async fn application(http: &serenity::Http) -> anyhow::Result<serenity::CurrentApplicationInfo> {
    let application = http.get_current_application_info().await.map_err(|error| match status(&error) {
        Some(401) => anyhow!("Discord refused the bot token ({}); {TOKEN_HINT}", describe(&error)),
        _ => anyhow!("cannot reach Discord to check the bot token: {}", describe(&error)),
    })?;
    http.set_application_id(application.id);
    Ok(application)
}

/// Registers `commands` in `guild` (at once) or globally (Discord may take up to an hour to show them), replacing
/// what was registered before. An error names the cause and what to do.
pub async fn register(
    http: &serenity::Http,
    commands: Vec<serenity::CreateCommand>,
    guild: Option<u64>,
) -> anyhow::Result<()> {
    let (result, scope) = match guild {
        Some(id) => (serenity::GuildId::new(id).set_commands(http, commands).await, format!("in guild {id}")),
        None => (serenity::Command::set_global_commands(http, commands).await, "globally".to_owned()),
    };
    result.map(drop).map_err(|error| {
        let hint = match status(&error) {
            Some(401) => TOKEN_HINT,
            Some(403 | 404) if guild.is_some() => {
                "check DISCORD_GUILD_ID, and that the bot was added to that server with the applications.commands scope (README: The Discord bot)"
            }
            Some(403) => "add the bot to a server with the applications.commands scope (README: The Discord bot)",
            _ => "franz stops rather than run a bot whose command Discord does not know",
        };
        anyhow!("cannot register /ticket {scope}: {}; {hint}", describe(&error))
    })
}

/// Removes the application's global commands, if it has any, and returns how many there were. A bot that serves
/// one server (`DISCORD_GUILD_ID`) calls this after registering there, so that a global registration left from an
/// earlier configuration no longer offers the commands in other servers and direct messages.
pub async fn remove_global(http: &serenity::Http) -> anyhow::Result<usize> {
    let cannot = |error: serenity::Error| {
        anyhow!(
            "cannot remove the global commands left from before: {}; other servers may still show them, and the bot \
             refuses them there",
            describe(&error)
        )
    };
    let global = serenity::Command::get_global_commands(http).await.map_err(cannot)?;
    if global.is_empty() {
        return Ok(0);
    }
    serenity::Command::set_global_commands(http, Vec::new()).await.map_err(cannot)?;
    Ok(global.len())
}

/// The HTTP status of a refused request.
pub fn status(error: &serenity::Error) -> Option<u16> {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => {
            Some(response.status_code.as_u16())
        }
        _ => None,
    }
}

/// Whether a refusal with this HTTP status will be refused again, however often it is tried: every 4xx but 429
/// (a rate limit, which passes) and 408 (a timeout on the way).
pub fn refused_for_good(status: u16) -> bool {
    (400..500).contains(&status) && status != 429 && status != 408
}

/// Discord's JSON error code of a refusal (50007: the user accepts no direct messages), if Discord answered one.
pub fn code(error: &serenity::Error) -> Option<isize> {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => Some(response.error.code),
        _ => None,
    }
}

/// An error as it may be logged or shown: Discord's status, code and message, or what failed on the way there.
/// Never the request's URL, which holds interaction tokens and the proxy's address.
pub fn describe(error: &serenity::Error) -> String {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => format!(
            "Discord answered HTTP {}: {} (code {})",
            response.status_code,
            crate::discord::clip(&response.error.message, 300),
            response.error.code
        ),
        serenity::Error::Http(serenity::HttpError::Request(request)) => {
            format!("the request to Discord {}", crate::discord::webhook::unanswered(request))
        }
        serenity::Error::Http(_) | serenity::Error::Url(_) => "the request to Discord could not be made".to_owned(),
        other => other.to_string(),
    }
}
