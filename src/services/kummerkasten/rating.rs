//! Satisfaction ratings in Discord: the five buttons under the message that tells a submitter their ticket was
//! closed, and the optional comment form a press opens.
//!
//! A press of `n` rates the ticket `n` at once (a form dismissed loses nothing) and opens the form; the form's
//! submit rates again with the comment, and the submitter learns akte's answer. A press after the window, on a
//! ticket reopened, or by anyone but the submitter is answered privately with why, and akte would refuse it anyway
//! (`lifecycle`: only the submitter, only a closed ticket, only within the window). A second press within the
//! window replaces the rating. Command ids come from the interaction ids, so an interaction Discord delivers twice
//! is one rating.

use poise::serenity_prelude as serenity;
use serde_json::{Value, json};

use super::conversation::problem;
use super::{Data, connect, replies};
use crate::discord::plain;
use crate::kafka::tickets::send_command;
use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Action, Actor, ActorSource, Change, Command, Status};

/// The buttons' `custom_id`s: `franz:rate:<ticket>:<1 to 5>`.
const PRESS: &str = "franz:rate:";
/// The comment form's: `franz:rated:<ticket>:<1 to 5>`.
const FORM: &str = "franz:rated:";
/// How long the submitter of a comment waits for akte's answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The row of five buttons a close message carries.
pub fn buttons(ticket_id: &str) -> Value {
    let button = |rating: u8| json!({"type": 2, "style": 2, "label": rating.to_string(), "custom_id": format!("{PRESS}{ticket_id}:{rating}")});
    json!({"type": 1, "components": (1..=5).map(button).collect::<Vec<_>>()})
}

/// The ticket and rating a `custom_id` with `prefix` names.
fn parse(custom_id: &str, prefix: &str) -> Option<(String, u8)> {
    let (ticket, rating) = custom_id.strip_prefix(prefix)?.rsplit_once(':')?;
    let rating = rating.parse::<u8>().ok().filter(|rating| (1..=5).contains(rating))?;
    (!ticket.is_empty()).then(|| (ticket.to_owned(), rating))
}

/// The comment form a press of `rating` opens (an interaction callback of type 9).
fn form(ticket_id: &str, rating: u8) -> Value {
    json!({
        "type": 9,
        "data": {
            "custom_id": format!("{FORM}{ticket_id}:{rating}"),
            "title": format!("Thank you: {rating} of 5"),
            "components": [{"type": 1, "components": [{
                "type": 4,
                "custom_id": "comment",
                "label": "Anything to add? (optional)",
                "style": 2,
                "required": false,
                "max_length": crate::lifecycle::RATING_COMMENT_MAX,
            }]}],
        },
    })
}

/// Handles `interaction` if it is a rating's press or comment; `false` leaves it to the others.
pub async fn handle(http: &serenity::Http, data: &Data, interaction: &serenity::Interaction) -> bool {
    let (id, token, user, ask) = match interaction {
        serenity::Interaction::Component(press) => match parse(&press.data.custom_id, PRESS) {
            Some(ask) => (press.id, press.token.as_str(), &press.user, (ask, None)),
            None => return false,
        },
        serenity::Interaction::Modal(submit) => match parse(&submit.data.custom_id, FORM) {
            Some(ask) => (submit.id, submit.token.as_str(), &submit.user, (ask, Some(comment(&submit.data)))),
            None => return false,
        },
        _ => return false,
    };
    let ((ticket, rating), comment) = ask;
    let respond = |body: Value| async move {
        if let Err(error) = http.create_interaction_response(id, token, &body, Vec::new()).await {
            problem(data, format!("could not answer a rating: {}", connect::describe(&error)));
        }
    };
    if let Some(why) = refusal(data, &ticket, user.id.get()).await {
        respond(replies::private_message(&why)).await;
        return true;
    }
    let command = Command {
        command_id: format!("discord-{id}"),
        ticket_id: ticket.clone(),
        actor: Actor {
            source: ActorSource::Discord,
            name: user.name.clone(),
            id: Some(user.id.to_string()),
            staff: None,
        },
        action: Action::Rate { rating, comment: comment.clone() },
    };
    let unsent = "Your rating could **not** be recorded right now. Please try again in a minute.";
    if comment.is_none() {
        // The rating goes at the press; the form only adds a comment to it.
        match send_command(&data.producer, &data.topics.commands, data.partitions, &command).await {
            Ok(()) => respond(form(&ticket, rating)).await,
            Err(error) => {
                problem(data, format!("a rating could not be published: {error:#}"));
                respond(replies::private_message(unsent)).await;
            }
        }
        return true;
    }
    respond(json!({"type": 5, "data": {"flags": 64}})).await;
    let text = match send_command(&data.producer, &data.topics.commands, data.partitions, &command).await {
        Err(error) => {
            problem(data, format!("a rating's comment could not be published: {error:#}"));
            unsent.to_owned()
        }
        Ok(()) => match answer(data, &command).await {
            Some(Change::Rejected { reason, .. }) => format!("Not recorded: {}.", plain(&reason)),
            Some(_) => format!("Thank you: your rating ({rating} of 5) and your comment were recorded."),
            None => "Thank you: your comment was sent and will be recorded shortly.".to_owned(),
        },
    };
    let body = json!({"content": text, "allowed_mentions": {"parse": []}});
    if let Err(error) = http.edit_original_interaction_response(token, &body, Vec::new()).await {
        problem(data, format!("could not tell a submitter akte's answer to a rating: {}", connect::describe(&error)));
    }
    true
}

/// The form's comment, empty when none was written.
fn comment(data: &serenity::ModalInteractionData) -> String {
    data.components
        .iter()
        .flat_map(|row| &row.components)
        .find_map(|component| match component {
            serenity::ActionRowComponent::InputText(input) if input.custom_id == "comment" => input.value.clone(),
            _ => None,
        })
        .unwrap_or_default()
}

/// akte's answer to `command`, once the ticket store has it (none without a store, or after the timeout).
async fn answer(data: &Data, command: &Command) -> Option<Change> {
    let store = data.store.as_ref()?;
    match store.answer(&command.ticket_id, &command.command_id, ANSWER_TIMEOUT).await {
        Ok(event) => event.map(|event| event.change),
        Err(error) => {
            problem(data, format!("cannot read akte's answer to a rating: {error:#}"));
            None
        }
    }
}

/// Why `user` cannot rate `ticket` now, as the ticket store says (akte decides anyway: without a store, or when
/// it cannot be read, the rating goes to akte).
async fn refusal(data: &Data, ticket: &str, user: u64) -> Option<String> {
    let store = data.store.clone()?;
    let id = ticket.to_owned();
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<TicketState>> {
        Ok(crate::store::query::ticket(&*store.reader()?, &id)?)
    })
    .await;
    let ticket = match found {
        Ok(Ok(Some(ticket))) => ticket,
        Ok(Ok(None)) => return Some("That ticket is not known here, so it cannot be rated.".to_owned()),
        _ => return None,
    };
    if crate::lifecycle::submitter_id(&ticket) != Some(user.to_string().as_str()) {
        return Some("Only the person who submitted the ticket can rate it.".to_owned());
    }
    let closed_at = ticket.closed_at.as_deref().filter(|_| ticket.status == Status::Closed);
    let Some(closed) = closed_at.and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok()) else {
        return Some(
            "That ticket is open again, so it takes no rating now; you will be asked when it is closed.".into(),
        );
    };
    let age = data.clock.now().signed_duration_since(closed).to_std().unwrap_or_default();
    (age > data.rate_within).then(|| {
        format!(
            "That ticket was closed more than {} ago, so its rating can no longer be given or changed.",
            crate::lifecycle::span(data.rate_within)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_press_names_its_ticket_and_rating_and_nothing_else_is_a_rating() {
        let row = buttons("8f0b16f3-85b5-56c7-8823-483334746b7e");
        let ids: Vec<&str> =
            row["components"].as_array().unwrap().iter().map(|b| b["custom_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 5);
        assert!(ids.iter().all(|id| id.len() <= 100), "Discord's limit on a custom_id: {ids:?}");
        assert_eq!(parse(ids[3], PRESS), Some(("8f0b16f3-85b5-56c7-8823-483334746b7e".into(), 4)));
        assert_eq!(parse("franz:rate:t:a:b:2", PRESS), Some(("t:a:b".into(), 2)), "a ticket id with colons");
        for other in
            ["franz:rate:t:0", "franz:rate:t:6", "franz:rate::3", "franz:rate:t", "franz:close:t", "franz:rated:t:3"]
        {
            assert_eq!(parse(other, PRESS), None, "{other}");
        }
        let form = form("t", 3);
        assert_eq!(parse(form["data"]["custom_id"].as_str().unwrap(), FORM), Some(("t".into(), 3)));
        assert_eq!(form["data"]["components"][0]["components"][0]["required"], json!(false), "the comment is optional");
    }
}
