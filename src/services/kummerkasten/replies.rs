//! What the bot says to a user (a ticket received or not, the cooldown, the user's own tickets for `/tickets`),
//! and the one place that makes it private and mention-free.
//!
//! Texts are plain functions so they can be tested without Discord; `reply` wraps a text into the poise reply that
//! is always ephemeral (only the user sees it) and never pings anyone.

use std::time::Duration;

use poise::serenity_prelude as serenity;

use crate::discord::{clip, code_block, plain};
use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Change, Event, Status};

/// The most tickets `/tickets` lists: the newest ones.
pub const OWN_TICKETS_MAX: usize = 10;
/// The longest line of `/tickets`: ten of them and the heading fit in one message.
const LINE_MAX: usize = 190;

/// The answer once the broker has the ticket: the id, and a short, safe preview of what was submitted.
pub fn received(ticket_id: &str, message: &str) -> String {
    format!(
        "Ticket received. Its id is `{ticket_id}`; mention it if you follow up.\n{}",
        code_block("", &clip(message.trim(), 300), 400)
    )
}

/// The answer when the ticket could not be published. It was not received, so the user should try again.
pub fn not_received() -> String {
    "Your ticket was **not** received: the ticket system is not reachable right now. Please try again in a minute."
        .to_owned()
}

/// The answer when the text cannot become a ticket (empty, or too long for a ticket).
pub fn rejected(why: &str) -> String {
    format!("That ticket cannot be submitted: {}.", crate::discord::plain(why))
}

/// The answer to a user who submitted a moment ago.
pub fn cooldown(remaining: Duration) -> String {
    let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    let unit = if seconds == 1 { "second" } else { "seconds" };
    format!("You just submitted a ticket. You can submit the next one in {seconds} {unit}.")
}

/// The answer to `/tickets`: the caller's newest tickets (as the store returns them, newest first), where each
/// stands and the newest message of its conversation, within Discord's 2,000 characters.
pub fn own_tickets(tickets: &[(TicketState, Option<Event>)]) -> String {
    if tickets.is_empty() {
        return "You have no tickets here yet. Submit one with `/ticket`.".to_owned();
    }
    let mut lines = vec![format!("Your {} newest ticket(s), newest first:", tickets.len().min(OWN_TICKETS_MAX))];
    for (ticket, last) in tickets.iter().take(OWN_TICKETS_MAX) {
        let first_line = ticket.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("(no text)");
        let status = match (ticket.status, &ticket.assignee) {
            (Status::Closed, _) => match &ticket.close_reason {
                Some(reason) => format!("closed: {}", clip(&plain(reason), 120)),
                None => "closed".to_owned(),
            },
            (Status::Waiting, _) => "the team replied; waiting for your answer (reply to the bot's message)".to_owned(),
            (_, Some(who)) => format!("being worked on by {}", plain(&who.name)),
            _ => "open, waiting for the team".to_owned(),
        };
        let mut line = format!("• `{}` {}: {}", ticket.id, clip(&plain(first_line.trim()), 60), status);
        let said = |body: &str| match body.split_whitespace().collect::<Vec<_>>().join(" ") {
            text if text.is_empty() => "(a file)".to_owned(),
            text => clip(&plain(&text), 60),
        };
        match last.as_ref().map(|event| (&event.change, event)) {
            Some((Change::SubmitterWrote { body, .. }, _)) => line.push_str(&format!(" · last: you, “{}”", said(body))),
            Some((Change::Commented { body, .. }, event)) => {
                let who = plain(&event.actor.person().name);
                line.push_str(&format!(" · last: {who}, “{}”", said(body)));
            }
            _ => {}
        }
        // Each line within its share of the 2,000 characters, so that every ticket is listed.
        lines.push(clip(&line, LINE_MAX));
    }
    clip(&lines.join("\n"), 2000)
}

/// The answer to `/ticket` from someone with `count` open tickets, `open` of them (newest first) in the ticket store
/// already, `max` being the most one may have: which are open, and how to add to them; within Discord's 2,000
/// characters.
pub fn over_limit(open: &[TicketState], count: usize, max: u64) -> String {
    let mut lines = vec![format!(
        "You have {count} open ticket(s), the most one person may have here ({max}), so no new ticket was opened:"
    )];
    for ticket in open.iter().take(OWN_TICKETS_MAX) {
        let first_line = ticket.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("(no text)");
        lines.push(clip(&format!("• `{}` {}", ticket.id, clip(&plain(first_line.trim()), 80)), LINE_MAX));
    }
    lines.push(
        "To add to one, write to me in a direct message (reply to my message about it to choose which). Once one is \
         closed, you can open a new one."
            .to_owned(),
    );
    clip(&lines.join("\n"), 2000)
}

/// The answer to an interaction from another server or a direct message, when the bot serves one server
/// (`DISCORD_GUILD_ID`).
pub fn elsewhere() -> String {
    "Sorry, this bot only works in the Discord server it was set up for. Nothing was sent or changed; please use \
     it there."
        .to_owned()
}

/// An interaction response (type 4, a message) only the user sees, with mentions switched off, for the answers
/// that do not go through poise (the cards' buttons and forms).
pub fn private_message(text: &str) -> serde_json::Value {
    serde_json::json!({"type": 4, "data": {"content": text, "flags": 64, "allowed_mentions": {"parse": []}}})
}

/// A reply only the user sees, with mentions switched off.
pub fn reply(text: String) -> poise::CreateReply {
    poise::CreateReply::default().content(text).ephemeral(true).allowed_mentions(serenity::CreateAllowedMentions::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply as Discord receives it.
    fn wire(text: String) -> serde_json::Value {
        let message = reply(text).to_slash_initial_response(serenity::CreateInteractionResponseMessage::new());
        serde_json::to_value(message).unwrap()
    }

    #[test]
    fn replies_are_ephemeral_and_ping_nobody() {
        let sent = wire(received("8f0b16f3-85b5-56c7-8823-483334746b7e", "help"));
        assert_eq!(sent["flags"].as_u64().unwrap() & 64, 64, "ephemeral: {sent}");
        assert_eq!(sent["allowed_mentions"]["parse"], serde_json::json!([]), "{sent}");
        assert!(sent["content"].as_str().unwrap().contains("8f0b16f3-85b5-56c7-8823-483334746b7e"));
    }

    #[test]
    fn a_response_outside_poise_is_private_and_pings_nobody() {
        let body = private_message(&elsewhere());
        assert_eq!((&body["type"], &body["data"]["flags"]), (&serde_json::json!(4), &serde_json::json!(64)));
        assert_eq!(body["data"]["allowed_mentions"]["parse"], serde_json::json!([]));
        assert!(body["data"]["content"].as_str().unwrap().starts_with("Sorry, this bot only works"), "{body}");
    }

    #[test]
    fn user_text_in_a_reply_cannot_ping_or_break_the_formatting() {
        let text = received("id", "```\n@everyone <@123> **bold** `x` @here");
        assert!(!text.contains("@everyone") && !text.contains("@here") && !text.contains("<@123>"), "{text}");
        assert_eq!(text.matches("```").count(), 2, "one code block, closed: {text}");
    }

    #[test]
    fn own_tickets_say_where_each_stands_and_fit_in_a_message() {
        let ticket = |id: &str, body: &str| TicketState { id: id.into(), body: body.into(), ..TicketState::default() };
        assert!(own_tickets(&[]).contains("no tickets"));
        let none = |tickets: Vec<TicketState>| tickets.into_iter().map(|t| (t, None)).collect::<Vec<_>>();
        let closed = TicketState {
            status: Status::Closed,
            close_reason: Some("fixed <@1>".into()),
            ..ticket("t-2", "printer @everyone")
        };
        let claimed = TicketState {
            status: Status::Claimed,
            assignee: Some(crate::schema::lifecycle::Person::staff("ana")),
            ..ticket("t-1", "\nvpn\nmore")
        };
        let text = own_tickets(&none(vec![closed, claimed, ticket("t-0", "mail")]));
        assert!(text.contains("`t-2`") && text.contains("closed: fixed"), "{text}");
        assert!(text.contains("`t-1` vpn: being worked on by ana"), "{text}");
        assert!(text.contains("`t-0` mail: open"), "{text}");
        assert!(!text.contains("<@1>") && !text.contains("@everyone"), "{text}");
        let many: Vec<TicketState> = (0..50).map(|i| ticket(&format!("t-{i}"), &"x".repeat(4000))).collect();
        let text = own_tickets(&none(many));
        assert!(crate::discord::chars(&text) <= 2000 && text.lines().count() == OWN_TICKETS_MAX + 1, "{text}");
    }

    #[test]
    fn own_tickets_show_the_newest_message_of_each_conversation_defused() {
        let event = |change: Change| crate::schema::lifecycle::Event {
            event_id: "e".into(),
            ticket_id: "t-1".into(),
            version: Some(3),
            at: "2026-12-07T00:00:00Z".into(),
            actor: crate::schema::lifecycle::Actor::staff(crate::schema::lifecycle::ActorSource::Web, "ana"),
            caused_by: "c".into(),
            clocks: None,
            change,
        };
        let ticket =
            TicketState { id: "t-1".into(), body: "vpn".into(), status: Status::Waiting, ..TicketState::default() };
        let reply = event(Change::Commented { body: "Which\nclient <@1>?".into(), internal: false, via: None });
        let text = own_tickets(&[(ticket.clone(), Some(reply))]);
        assert!(text.contains("waiting for your answer") && text.contains("last: ana, “Which client"), "{text}");
        assert!(!text.contains("<@1>"), "{text}");
        let wrote = event(Change::SubmitterWrote {
            body: "the new one".into(),
            attachments: Vec::new(),
            via: crate::schema::lifecycle::Via::DiscordDm,
            message_id: None,
            reopened: false,
        });
        assert!(own_tickets(&[(ticket, Some(wrote))]).contains("last: you, “the new one”"));
    }

    /// Found by an attack (#25): `/tickets` lists the caller's ten newest tickets, and since it shows each one's newest
    /// message a line runs to some 250 characters. Ten tickets waiting for the submitter's answer no longer fit in
    /// Discord's 2,000: the whole text is clipped, so the oldest tickets vanish (the last one cut mid-line) while the
    /// heading still says ten.
    #[test]
    fn own_tickets_with_their_newest_messages_still_list_every_ticket() {
        let reply = |id: &str| Event {
            event_id: format!("e-{id}"),
            ticket_id: id.into(),
            version: Some(3),
            at: "2026-12-07T00:00:00Z".into(),
            actor: crate::schema::lifecycle::Actor::staff(crate::schema::lifecycle::ActorSource::Web, "ana"),
            caused_by: "c".into(),
            clocks: None,
            change: Change::Commented {
                body: "Which floor is the printer on, and what does its display say right now?".into(),
                internal: false,
                via: None,
            },
        };
        let tickets: Vec<(TicketState, Option<Event>)> = (0..OWN_TICKETS_MAX)
            .map(|i| {
                let id = format!("8f0b16f3-85b5-56c7-8823-48333474{i:04}");
                let ticket = TicketState {
                    id: id.clone(),
                    body: "x".repeat(4000),
                    status: Status::Waiting,
                    ..TicketState::default()
                };
                (ticket, Some(reply(&id)))
            })
            .collect();
        let text = own_tickets(&tickets);
        assert!(crate::discord::chars(&text) <= 2000, "{text}");
        for (ticket, _) in &tickets {
            assert!(text.contains(&format!("`{}`", ticket.id)), "ticket {} is left out: {text}", ticket.id);
        }
        assert_eq!(text.lines().count(), OWN_TICKETS_MAX + 1, "{text}");
    }

    #[test]
    fn cooldown_says_when_the_next_ticket_is_possible() {
        assert_eq!(
            cooldown(Duration::from_millis(9_200)),
            "You just submitted a ticket. You can submit the next one in 10 seconds."
        );
        assert!(cooldown(Duration::from_millis(400)).ends_with("in 1 second."));
    }

    #[test]
    fn a_failed_publish_never_claims_the_ticket_was_received() {
        assert!(not_received().contains("**not** received"));
        assert!(!not_received().contains("Ticket received"));
    }
}
