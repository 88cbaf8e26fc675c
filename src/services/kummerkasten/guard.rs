//! Which server the bot serves. With `DISCORD_GUILD_ID` set, an interaction from any other server, or from a
//! direct message (which has no server), is answered with a private refusal and nothing else: no ticket is
//! published, no command reaches akte, no form opens. Without it, every interaction is served as before.
//!
//! The decision is one pure function, [`admits`], applied where interactions enter the bot: poise's
//! `command_check` for `/ticket` and `/tickets` (before cooldowns and before the command runs), and `on_event`
//! for the cards' buttons and forms. Who may press a card's buttons is not decided here (`staff::buttons`).

use poise::serenity_prelude as serenity;

use super::{NAME, connect, replies};
use crate::troubles::Troubles;

/// Whether an interaction from `from` (`None`: a direct message) is served by a bot that serves `served`
/// (`None`: any server). A leftover global registration, or another server that added the bot, must not feed
/// tickets into a bot set up for one server.
pub fn admits(served: Option<u64>, from: Option<serenity::GuildId>) -> bool {
    match served {
        None => true,
        Some(served) => from.is_some_and(|from| from.get() == served),
    }
}

/// The server a button press or form submit came from (`Some(None)` for a direct message); `None` for the
/// other kinds of interaction, which are not [`refuse`]d here (commands go through poise's `command_check`).
pub fn origin(interaction: &serenity::Interaction) -> Option<Option<serenity::GuildId>> {
    match interaction {
        serenity::Interaction::Component(press) => Some(press.guild_id),
        serenity::Interaction::Modal(submit) => Some(submit.guild_id),
        _ => None,
    }
}

/// Answers a button press or form submit from another server (or a direct message) with the private refusal,
/// and does nothing else with it.
pub async fn refuse(http: &serenity::Http, interaction: &serenity::Interaction, troubles: &Troubles) {
    let (id, token) = match interaction {
        serenity::Interaction::Component(press) => (press.id, press.token.as_str()),
        serenity::Interaction::Modal(submit) => (submit.id, submit.token.as_str()),
        _ => return,
    };
    tracing::info!(interaction = %id, "refused an interaction from outside the bot's server (DISCORD_GUILD_ID)");
    let body = replies::private_message(&replies::elsewhere());
    if let Err(error) = http.create_interaction_response(id, token, &body, Vec::new()).await {
        let problem = format!("could not refuse an interaction from another server: {}", connect::describe(&error));
        tracing::warn!(interaction = %id, "{problem}");
        troubles.report(NAME, problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_server_is_served_and_no_direct_message_when_one_is_configured() {
        let (home, other) = (serenity::GuildId::new(2), serenity::GuildId::new(3));
        assert!(admits(Some(2), Some(home)));
        assert!(!admits(Some(2), Some(other)), "another server");
        assert!(!admits(Some(2), None), "a direct message");
    }

    #[test]
    fn without_a_configured_server_everything_is_served_as_before() {
        assert!(admits(None, Some(serenity::GuildId::new(3))));
        assert!(admits(None, None));
    }
}
