//! Presses of a card's buttons and submits of its close-reason form: only members with the staff role (or, in a
//! team's own staff channel, that team's role for that team's tickets) may act,
//! and, once any Discord account is linked to the staff list (`franz staff link-discord`), only with a linked
//! account; each press becomes a lifecycle command whose actor is the Discord user and, when linked, the staff
//! member they are (`Actor::staff`), and the presser learns akte's answer.
//!
//! A press by anyone else is refused privately and changes nothing. Claim and Reopen are deferred (privately),
//! sent to akte, and answered with akte's decision once the ticket store has it; Close opens a form for the reason,
//! whose submit is the close command, and Reply one for a public reply, whose submit is the comment the submitter
//! gets. The command id comes from the interaction id, so an interaction Discord
//! delivers twice is one command. Interactions that are not a card's are left to poise.

use std::time::Duration;

use poise::serenity_prelude as serenity;
use serde_json::{Value, json};

use super::Settings;
use super::card::{self, Press};
use crate::config::Topics;
use crate::discord::plain;
use crate::kafka::tickets::send_command;
use crate::people::{self, DiscordAccount, StaffChannel};
use crate::schema::lifecycle::{Action, Actor, ActorSource, Change, Command};
use crate::services::kummerkasten::{NAME, connect, replies};
use crate::store::query;

/// How long a presser waits for akte's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a press or submit asks akte for, once it is known to be a card's.
#[derive(Debug, Clone, PartialEq)]
enum Ask {
    /// Open a form: for the close reason, or for a public reply. `offer_saved`: a close offers the team's saved
    /// replies as its reason first, when it has any.
    Form { form: card::Form, ticket: String, offer_saved: bool },
    /// Close the ticket with the saved reply of this name as the reason.
    CloseWith { ticket: String, saved: String },
    /// Send this action.
    Act { ticket: String, action: Action },
}

/// The select menu of saved replies a Close offers: `franz:close-with:<ticket>`.
const CLOSE_WITH: &str = "franz:close-with:";
/// The button beside it that opens the reason form instead: `franz:close-own:<ticket>`.
const CLOSE_OWN: &str = "franz:close-own:";
/// The most options of a select menu (Discord's limit).
const OPTIONS_MAX: usize = 25;

/// Handles `interaction` if it is a card's button or form; anything else is left alone.
pub async fn handle(
    http: &serenity::Http,
    settings: &Settings,
    producer: &crate::kafka::Producer,
    topics: &Topics,
    interaction: &serenity::Interaction,
) {
    let Some(staff_channel) = settings.cards else { return };
    let (id, token, member, channel, ask) = match interaction {
        serenity::Interaction::Component(press) => {
            let Some(ask) = pressed(&press.data.custom_id, &press.data.kind) else { return };
            (press.id, press.token.as_str(), press.member.as_ref(), press.channel_id, ask)
        }
        serenity::Interaction::Modal(submit) => {
            let Some(ask) = submitted(&submit.data) else { return };
            (submit.id, submit.token.as_str(), submit.member.as_ref(), submit.channel_id, ask)
        }
        _ => return,
    };
    let respond = |body: Value| async move {
        if let Err(error) = http.create_interaction_response(id, token, &body, Vec::new()).await {
            let problem = format!("could not answer a press of a card: {}", connect::describe(&error));
            tracing::warn!(interaction = %id, "{problem}");
            settings.troubles.report(NAME, problem);
        }
    };
    let ticket = match &ask {
        Ask::Form { ticket, .. } | Ask::CloseWith { ticket, .. } | Ask::Act { ticket, .. } => ticket.clone(),
    };
    let roles = match roles_in(settings, staff_channel, channel.get(), &ticket).await {
        Ok(roles) => roles,
        Err(error) => {
            let problem = format!("cannot read the teams for a press of a card: {error:#}");
            tracing::error!("{problem}");
            settings.troubles.report(NAME, problem);
            respond(replies::private_message(
                "Nothing was changed: the staff list cannot be read right now. Please try again in a minute.",
            ))
            .await;
            return;
        }
    };
    let Some(member) = member.filter(|m| m.roles.iter().any(|role| roles.contains(&role.get()))) else {
        respond(replies::private_message(
            "Only members of the staff role (or of the ticket's team, in its channel) can work this ticket; nothing \
             was changed.",
        ))
        .await;
        return;
    };
    let staff = match account(settings, member.user.id.get()).await {
        Ok(DiscordAccount::Linked(name)) => Some(name),
        Ok(DiscordAccount::RoleDecides) => None,
        Ok(DiscordAccount::Unlinked) => {
            respond(replies::private_message(&format!(
                "Your Discord account is not linked to anyone on the staff list, so it cannot work tickets; nothing \
                 was changed. Ask an admin to run `franz staff link-discord YOUR_STAFF_NAME {}`.",
                member.user.id
            )))
            .await;
            return;
        }
        Err(error) => {
            let problem = format!("cannot read the staff list for a press of a card: {error:#}");
            tracing::error!("{problem}");
            settings.troubles.report(NAME, problem);
            respond(replies::private_message(
                "Nothing was changed: the staff list cannot be read right now. Please try again in a minute.",
            ))
            .await;
            return;
        }
    };
    // Who sends a saved reply, as its {agent} names them.
    let agent = staff.clone().unwrap_or_else(|| member.user.name.clone());
    let (ticket, action) = match ask {
        Ask::Form { form: card::Form::Reason, ticket, offer_saved: true } => {
            let offered = saved_reasons(settings, &ticket, &agent).await;
            if offered.is_empty() {
                return respond(card::form(card::Form::Reason, &ticket)).await;
            }
            return respond(close_pick(&ticket, &offered)).await;
        }
        Ask::Form { form, ticket, .. } => return respond(card::form(form, &ticket)).await,
        Ask::CloseWith { ticket, saved } => {
            let offered = saved_reasons(settings, &ticket, &agent).await;
            let Some((_, reason)) = offered.into_iter().find(|(name, _)| *name == saved) else {
                return respond(replies::private_message(
                    "That saved reply is gone or no longer fits as a reason; nothing was changed. Press Close again.",
                ))
                .await;
            };
            (ticket, Action::Close { reason })
        }
        Ask::Act { ticket, action } => (ticket, action),
    };
    respond(json!({"type": 5, "data": {"flags": 64}})).await;
    let actor = Actor {
        source: ActorSource::Discord,
        name: member.user.name.clone(),
        id: Some(member.user.id.to_string()),
        staff,
    };
    let command = Command { command_id: format!("discord-{id}"), ticket_id: ticket, actor, action };
    let text = decide(settings, producer, topics, &command).await;
    let body = json!({"content": text, "allowed_mentions": {"parse": []}});
    if let Err(error) = http.edit_original_interaction_response(token, &body, Vec::new()).await {
        let problem = format!("could not tell a presser akte's answer: {}", connect::describe(&error));
        tracing::warn!(interaction = %id, "{problem}");
        settings.troubles.report(NAME, problem);
    }
}

/// Sends the command and returns what to tell the presser: what happened, or akte's reason for refusing.
async fn decide(settings: &Settings, producer: &crate::kafka::Producer, topics: &Topics, command: &Command) -> String {
    if let Err(error) = send_command(producer, &topics.commands, settings.partitions, command).await {
        let problem = format!("a command from a card could not be published: {error:#}");
        tracing::error!("{problem}");
        settings.troubles.report(NAME, problem);
        return "Nothing was changed: the ticket system is not reachable right now. Please try again in a minute."
            .to_owned();
    }
    match settings.store.answer(&command.ticket_id, &command.command_id, ANSWER_TIMEOUT).await {
        Ok(Some(event)) => match event.change {
            Change::Rejected { reason, .. } => format!("Not done: {}.", plain(&reason)),
            Change::Claimed { .. } => "You claimed the ticket; its card shows it.".to_owned(),
            Change::Closed { reason } => format!("Closed, with the reason: {}", plain(&reason)),
            Change::Reopened => "Reopened; the ticket is open again.".to_owned(),
            Change::Commented { internal: false, .. } => replied(settings, &command.ticket_id).await,
            other => format!("Done ({}).", other.name()),
        },
        Ok(None) => format!(
            "akte has not answered within {} s; the request is queued and the card will show the outcome.",
            ANSWER_TIMEOUT.as_secs()
        ),
        Err(error) => {
            let problem = format!("cannot read akte's answer to a command from a card: {error:#}");
            tracing::error!("{problem}");
            settings.troubles.report(NAME, problem);
            "The request was sent; the card will show the outcome.".to_owned()
        }
    }
}

/// What a presser is told of a public reply: who gets it.
async fn replied(settings: &Settings, ticket: &str) -> String {
    let (store, id) = (settings.store.clone(), ticket.to_owned());
    let found = tokio::task::spawn_blocking(move || query::ticket(&*store.reader().ok()?, &id).ok().flatten()).await;
    match found.ok().flatten().as_ref().and_then(crate::discord::submitter) {
        Some(_) => "Replied; the submitter gets your reply, and the ticket waits for their answer.".to_owned(),
        None => "Replied on the ticket; it has no Discord submitter, so nobody is sent the reply.".to_owned(),
    }
}

/// The roles whose members may work the card of `ticket` in `channel`: the staff role, and the role of the ticket's
/// team when `channel` is that team's own staff channel (short local reads, on the blocking pool). A team's role
/// works its team's tickets only: not a card left behind in its channel by a ticket moved away (its delete refused,
/// or not done yet), nor the cards of a channel it shares with the staff channel or another team.
async fn roles_in(settings: &Settings, staff: StaffChannel, channel: u64, ticket: &str) -> anyhow::Result<Vec<u64>> {
    let (dir, store, id) = (settings.staff_dir.clone(), settings.store.clone(), ticket.to_owned());
    let (teams, team) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let teams = people::teams_in(&dir)?;
        let team = query::ticket(&*store.reader()?, &id)?.and_then(|state| state.team);
        Ok((teams, team))
    })
    .await
    .map_err(|error| anyhow::anyhow!("a read of the staff list ended abnormally: {error}"))??;
    let theirs = teams
        .into_iter()
        .filter(|known| team.as_deref() == Some(known.name.as_str()))
        .filter_map(|team| team.discord)
        .filter(|place| place.channel_id == channel);
    Ok(std::iter::once(staff.role_id).chain(theirs.map(|place| place.role_id)).collect())
}

/// What the staff list says of Discord account `user_id` (a short local read, on the blocking pool).
pub(in crate::services::kummerkasten) async fn account(
    settings: &Settings,
    user_id: u64,
) -> anyhow::Result<DiscordAccount> {
    let dir = settings.staff_dir.clone();
    tokio::task::spawn_blocking(move || people::discord_account_in(&dir, user_id))
        .await
        .map_err(|error| anyhow::anyhow!("a read of the staff list ended abnormally: {error}"))?
}

fn pressed(custom_id: &str, kind: &serenity::ComponentInteractionDataKind) -> Option<Ask> {
    let own = |prefix: &str| custom_id.strip_prefix(prefix).filter(|ticket| !ticket.is_empty()).map(str::to_owned);
    if let Some(ticket) = own(CLOSE_OWN) {
        return Some(Ask::Form { form: card::Form::Reason, ticket, offer_saved: false });
    }
    if let Some(ticket) = own(CLOSE_WITH) {
        let serenity::ComponentInteractionDataKind::StringSelect { values } = kind else { return None };
        return Some(Ask::CloseWith { ticket, saved: values.first()?.clone() });
    }
    let (press, ticket) = card::parse_button(custom_id)?;
    let ticket = ticket.to_owned();
    Some(match press {
        Press::Claim => Ask::Act { ticket, action: Action::Claim },
        Press::Reopen => Ask::Act { ticket, action: Action::Reopen },
        Press::Close => Ask::Form { form: card::Form::Reason, ticket, offer_saved: true },
        Press::Reply => Ask::Form { form: card::Form::Reply, ticket, offer_saved: false },
    })
}

/// The team's saved replies that can close `ticket` as its reason, by name, filled for it and for `agent`: those
/// that fit a reason's length, the first [`OPTIONS_MAX`] by name. None when the list cannot be read (the reason form
/// still works).
async fn saved_reasons(settings: &Settings, ticket: &str, agent: &str) -> Vec<(String, String)> {
    let (dir, store, id, agent) =
        (settings.staff_dir.clone(), settings.store.clone(), ticket.to_owned(), agent.to_owned());
    let read = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, String)>> {
        let replies = people::saved::saved_replies_in(&dir)?;
        if replies.is_empty() {
            return Ok(Vec::new());
        }
        let contact = query::ticket(&*store.reader()?, &id)?.map(|ticket| ticket.contact).unwrap_or_default();
        let values = people::saved::Placeholders { contact: &contact, ticket: &id, agent: &agent };
        Ok(replies
            .into_iter()
            .map(|reply| (reply.name, people::saved::fill(&reply.body, values)))
            .filter(|(_, reason)| reason.chars().count() <= crate::lifecycle::REASON_MAX)
            .take(OPTIONS_MAX)
            .collect())
    })
    .await;
    match read {
        Ok(Ok(offered)) => offered,
        Ok(Err(error)) => {
            let problem = format!("cannot read the saved replies for a Close: {error:#}");
            tracing::warn!("{problem}");
            settings.troubles.report(NAME, problem);
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// What a Close offers when the team has saved replies that fit (a private message, type 4): a menu of them as the
/// reason, and a button to write one instead.
fn close_pick(ticket: &str, offered: &[(String, String)]) -> Value {
    let cut = |text: &str, max: usize| -> String { text.chars().take(max).collect() };
    let options: Vec<Value> = offered
        .iter()
        .map(|(name, reason)| {
            let line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            json!({"label": cut(name, 100), "value": cut(name, 100), "description": cut(&line, 100)})
        })
        .collect();
    json!({"type": 4, "data": {
        "content": "Close with a saved reply as the reason (the submitter reads it), or write one.",
        "flags": 64,
        "allowed_mentions": {"parse": []},
        "components": [
            {"type": 1, "components": [{"type": 3, "custom_id": format!("{CLOSE_WITH}{ticket}"),
                "placeholder": "A saved reply as the reason", "options": options}]},
            {"type": 1, "components": [{"type": 2, "style": 2, "label": "Write a reason",
                "custom_id": format!("{CLOSE_OWN}{ticket}")}]},
        ],
    }})
}

fn submitted(data: &serenity::ModalInteractionData) -> Option<Ask> {
    let (form, ticket) = card::parse_form(&data.custom_id)?;
    let text = |id: &str| {
        data.components
            .iter()
            .flat_map(|row| &row.components)
            .find_map(|component| match component {
                serenity::ActionRowComponent::InputText(input) if input.custom_id == id => input.value.clone(),
                _ => None,
            })
            .unwrap_or_default()
    };
    let action = match form {
        card::Form::Reason => Action::Close { reason: text("reason") },
        card::Form::Reply => Action::Comment { body: text("body"), internal: false, via: None },
    };
    Some(Ask::Act { ticket: ticket.to_owned(), action })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_press_asks_for_the_reason_and_claim_and_reopen_act_at_once() {
        let button = serenity::ComponentInteractionDataKind::Button;
        let pressed = |id: &str| pressed(id, &button);
        let form = |form, offer_saved| Some(Ask::Form { form, ticket: "t-1".into(), offer_saved });
        assert_eq!(pressed("franz:close:t-1"), form(card::Form::Reason, true));
        assert_eq!(pressed("franz:close-own:t-1"), form(card::Form::Reason, false));
        assert_eq!(pressed("franz:reply:t-1"), form(card::Form::Reply, false));
        assert_eq!(pressed("franz:claim:t-1"), Some(Ask::Act { ticket: "t-1".into(), action: Action::Claim }));
        assert_eq!(pressed("franz:reopen:t-1"), Some(Ask::Act { ticket: "t-1".into(), action: Action::Reopen }));
        assert_eq!(pressed("1177000000000000042"), None, "the /ticket form's id is not a card's");
        assert_eq!(pressed("franz:close-with:t-1"), None, "a menu's pick, not a button");
        let pick = serenity::ComponentInteractionDataKind::StringSelect { values: vec!["refund".into()] };
        assert_eq!(
            super::pressed("franz:close-with:t-1", &pick),
            Some(Ask::CloseWith { ticket: "t-1".into(), saved: "refund".into() })
        );
    }
}
