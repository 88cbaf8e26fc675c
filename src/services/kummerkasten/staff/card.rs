//! A ticket's card in the staff channel: the message body (one embed and its buttons) built from the ticket's
//! current state, and the `custom_id`s of its buttons and of the close-reason form.
//!
//! Pure functions from a [`TicketState`] to the JSON Discord takes, so the card is tested without Discord. Ticket
//! text is hostile: it sits in a code block or goes through `discord::plain`, every field is clipped to Discord's
//! embed limits, and `allowed_mentions` is empty. Sending the card, and remembering where it is, is `follow`'s job.

use serde_json::{Value, json};

use crate::discord::{clip, code_block, plain};
use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Person, Priority, Status};

/// Discord's limits on one embed (title, description, a field's name and value, footer, all text together).
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_VALUE_MAX: usize = 1024;
const FOOTER_MAX: usize = 2048;
pub const EMBED_TOTAL_MAX: usize = 6000;

/// The prefix of every `custom_id` franz gives a button or form, so other interactions are left alone.
const PREFIX: &str = "franz";

/// What a button of a card asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    Claim,
    /// Opens the form for a public reply; the form's submit sends it to the submitter.
    Reply,
    /// Opens the form for the reason; the form's submit closes.
    Close,
    Reopen,
}

impl Press {
    const ALL: [Press; 4] = [Press::Claim, Press::Reply, Press::Close, Press::Reopen];

    fn name(self) -> &'static str {
        match self {
            Press::Claim => "claim",
            Press::Reply => "reply",
            Press::Close => "close",
            Press::Reopen => "reopen",
        }
    }
}

/// A card's form: the close reason, or a public reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Reason,
    Reply,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Reason => "close-reason",
            Form::Reply => "reply-text",
        }
    }
}

/// The `custom_id` of a button: `franz:<press>:<ticket id>` (a ticket id has at most 64 characters, so it stays
/// within Discord's 100).
pub fn button_id(press: Press, ticket_id: &str) -> String {
    format!("{PREFIX}:{}:{ticket_id}", press.name())
}

/// The button and ticket a `custom_id` names; `None` for any other component.
pub fn parse_button(custom_id: &str) -> Option<(Press, &str)> {
    let (press, ticket) = custom_id.strip_prefix("franz:")?.split_once(':')?;
    let press = Press::ALL.into_iter().find(|p| p.name() == press)?;
    (!ticket.is_empty()).then_some((press, ticket))
}

/// The `custom_id` of a form of a ticket: `franz:close-reason:<ticket>` or `franz:reply-text:<ticket>`.
pub fn form_id(form: Form, ticket_id: &str) -> String {
    format!("{PREFIX}:{}:{ticket_id}", form.name())
}

/// The form and ticket a form's `custom_id` names; `None` for any other form.
pub fn parse_form(custom_id: &str) -> Option<(Form, &str)> {
    let (form, ticket) = custom_id.strip_prefix("franz:")?.split_once(':')?;
    let form = [Form::Reason, Form::Reply].into_iter().find(|f| f.name() == form)?;
    (!ticket.is_empty()).then_some((form, ticket))
}

/// The form of a ticket (an interaction callback of type 9): the reason of a close, or a public reply, in its one
/// text input (`reason` or `body`).
pub fn form(form: Form, ticket_id: &str) -> Value {
    let (title, input, label, max, placeholder) = match form {
        Form::Reason => (
            "Close ticket",
            "reason",
            "Why is it closed?",
            crate::lifecycle::REASON_MAX,
            "Fixed in the new release; duplicate of …; no answer for a week",
        ),
        Form::Reply => (
            "Reply to the submitter",
            "body",
            "Your reply (the submitter gets it)",
            crate::lifecycle::COMMENT_MAX,
            "What the submitter reads, by direct message",
        ),
    };
    json!({
        "type": 9,
        "data": {
            "custom_id": form_id(form, ticket_id),
            "title": title,
            "components": [{"type": 1, "components": [{
                "type": 4, "custom_id": input, "style": 2, "label": label,
                "min_length": 1, "max_length": max, "required": true, "placeholder": placeholder
            }]}]
        }
    })
}

/// The colour of a card: its ticket's priority; red once a service-level target was missed, amber once one is due
/// soon; grey once closed.
pub fn colour(state: &TicketState) -> u32 {
    if state.status == Status::Closed {
        return 0x95_a5_a6;
    }
    match late(state) {
        Some((_, true)) => return 0xe7_4c_3c,
        Some((_, false)) => return 0xf1_c4_0f,
        None => {}
    }
    match state.priority {
        Priority::Low => 0x2e_cc_71,
        Priority::Normal => 0x34_98_db,
        Priority::High => 0xe6_7e_22,
        Priority::Urgent => 0xe7_4c_3c,
    }
}

/// The team's target of an open ticket that was missed (`true`), or else one due soon (`false`); the submitter's
/// silence is not the team's lateness.
fn late(state: &TicketState) -> Option<(crate::lifecycle::levels::Target, bool)> {
    use crate::lifecycle::levels::Target;
    let team = || state.clocks.iter().filter(|clock| clock.target != Target::Silence);
    team()
        .find(|clock| clock.breached)
        .map(|c| (c.target, true))
        .or(team().find(|c| c.warned).map(|c| (c.target, false)))
}

/// The card's message body: for the first post (with a nonce derived from the ticket, so Discord drops a repeated
/// post) and for every edit (the same fields without the nonce). With the desk's public URL, the card links to the
/// ticket's page.
pub fn message(state: &TicketState, nonce: Option<&str>, desk_url: Option<&str>) -> Value {
    let mut buttons = buttons(state);
    if let Some(desk) = desk_url {
        let url = format!("{desk}/tickets/{}", crate::desk::web::path_segment(&state.id));
        buttons.push(json!({"type": 2, "style": 5, "label": "Open in desk", "url": url}));
    }
    let mut message = json!({
        "content": "",
        "embeds": [embed(state)],
        "components": [{"type": 1, "components": buttons}],
        "allowed_mentions": {"parse": []},
    });
    if let Some(nonce) = nonce {
        message["nonce"] = nonce.into();
        message["enforce_nonce"] = true.into();
    }
    message
}

/// The card's embed.
pub fn embed(state: &TicketState) -> Value {
    let status = match (state.status, &state.assignee) {
        (Status::Closed, _) => "closed".to_owned(),
        (Status::Waiting, Some(who)) => format!("waiting on the submitter (held by {})", plain(&who.display())),
        (Status::Waiting, None) => "waiting on the submitter".to_owned(),
        (_, Some(who)) => format!("claimed by {}", plain(&who.display())),
        (Status::Claimed, None) | (Status::Open, None) => "open".to_owned(),
    };
    let status = if state.answered { format!("{status} · submitter answered") } else { status };
    let first_line = state.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("(no text)");
    let mut fields = vec![
        field("Status", &status, true),
        field("Priority", state.priority.name(), true),
        field("Contact", &plain(&state.contact), true),
        field("Origin", &plain(&state.origin), true),
    ];
    if let Some(team) = &state.team {
        fields.push(field("Team", &plain(team), true));
    }
    if !state.labels.is_empty() {
        let labels: Vec<String> = state.labels.iter().map(|l| plain(l)).collect();
        fields.push(field("Labels", &labels.join(", "), false));
    }
    if state.comments > 0 {
        fields.push(field("Comments", &state.comments.to_string(), true));
    }
    if state.status != Status::Closed {
        match late(state) {
            Some((target, true)) => {
                fields.push(field("Service level", &format!("the {} was missed", target.describe()), false))
            }
            Some((target, false)) => {
                fields.push(field("Service level", &format!("the {} is due soon", target.describe()), false))
            }
            None => {}
        }
    }
    if state.status == Status::Closed {
        fields.push(field(
            "Closed by",
            &plain(&state.closed_by.as_ref().map_or("someone".to_owned(), Person::display)),
            true,
        ));
        fields.push(field("Reason", &plain(state.close_reason.as_deref().unwrap_or("(none given)")), false));
    }
    let mut embed = json!({
        "title": clip(&plain(first_line), TITLE_MAX),
        "description": "",
        "color": colour(state),
        "fields": fields,
        "footer": {"text": clip(&format!("ticket {} · last change {}", state.id, state.updated_at), FOOTER_MAX)},
        "timestamp": state.created_at,
    });
    // Discord refuses the whole message when its embed holds more than 6,000 characters, and every field above is
    // clipped on its own only: the body gets what the rest leaves, so the card as a whole always fits.
    let room = EMBED_TOTAL_MAX.saturating_sub(embed_chars(&embed)).min(DESCRIPTION_MAX);
    embed["description"] = code_block("", state.body.trim(), room).into();
    embed
}

fn field(name: &str, value: &str, inline: bool) -> Value {
    json!({"name": name, "value": clip(value, FIELD_VALUE_MAX), "inline": inline})
}

/// The buttons: Claim, Reply (for a ticket with a Discord submitter) and Close while the ticket is not closed,
/// Reopen once it is.
fn buttons(state: &TicketState) -> Vec<Value> {
    let button = |press: Press, label: &str, style: u8| json!({"type": 2, "style": style, "label": label, "custom_id": button_id(press, &state.id)});
    match state.status {
        Status::Closed => vec![button(Press::Reopen, "Reopen", 2)],
        // Reply only where a reply can reach someone: a ticket with a Discord submitter.
        Status::Open | Status::Claimed | Status::Waiting => [
            Some(button(Press::Claim, "Claim", 1)),
            crate::discord::submitter(state).map(|_| button(Press::Reply, "Reply", 2)),
            Some(button(Press::Close, "Close", 4)),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// The characters of an embed that count towards Discord's 6,000 (title, description, field names and values,
/// footer).
pub fn embed_chars(embed: &Value) -> usize {
    let text = |value: &Value| value.as_str().map_or(0, crate::discord::chars);
    let fields = embed["fields"]
        .as_array()
        .map_or(0, |fields| fields.iter().map(|f| text(&f["name"]) + text(&f["value"])).sum());
    text(&embed["title"]) + text(&embed["description"]) + text(&embed["footer"]["text"]) + fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ticket(body: &str) -> TicketState {
        TicketState {
            id: "8f0b16f3-85b5-56c7-8823-483334746b7e".into(),
            contact: "pontatot".into(),
            contact_id: Some("80351110224678912".into()),
            origin: "Discord".into(),
            body: body.into(),
            created_at: "2026-02-24T08:32:24Z".into(),
            updated_at: "2026-02-24T08:32:24Z".into(),
            ..TicketState::default()
        }
    }

    #[test]
    fn an_open_card_offers_claim_reply_and_close_a_closed_one_reopen_and_says_who_closed_it_and_why() {
        let open = message(&ticket("printer on fire"), Some("n"), None);
        let ids: Vec<&str> = open["components"][0]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["custom_id"].as_str().unwrap())
            .collect();
        let id = "8f0b16f3-85b5-56c7-8823-483334746b7e";
        assert_eq!(ids, [format!("franz:claim:{id}"), format!("franz:reply:{id}"), format!("franz:close:{id}")]);
        let nobody = TicketState { contact_id: None, ..ticket("from franz ticket") };
        let labels: Vec<Value> = message(&nobody, None, None)["components"][0]["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["label"].clone())
            .collect();
        assert_eq!(labels, [json!("Claim"), json!("Close")], "no Reply where a reply reaches nobody");
        assert_eq!((&open["nonce"], &open["enforce_nonce"]), (&json!("n"), &json!(true)));
        assert_eq!(open["allowed_mentions"]["parse"], json!([]));

        let closed = TicketState {
            status: Status::Closed,
            closed_by: Some(Person::staff("ana")),
            close_reason: Some("fixed <@1>".into()),
            ..ticket("printer on fire")
        };
        let card = message(&closed, None, None);
        assert!(card.get("nonce").is_none(), "an edit carries no nonce: {card}");
        assert_eq!(card["components"][0]["components"][0]["label"], "Reopen");
        let fields = card["embeds"][0]["fields"].to_string();
        assert!(fields.contains("Closed by") && fields.contains("ana") && fields.contains("fixed"), "{fields}");
        assert!(!fields.contains("<@1>"), "no mention survives: {fields}");
    }

    #[test]
    fn a_card_turns_amber_when_a_target_is_due_soon_and_red_when_it_was_missed() {
        use crate::lifecycle::levels::{Clock, Target};
        let mut state = ticket("printer on fire");
        let normal = colour(&state);
        let clock = |warned, breached| Clock {
            target: Target::FirstResponse,
            started: "2026-12-07T10:00:00.000Z".into(),
            target_secs: 3600,
            paused_secs: 0,
            paused_since: None,
            soon: None,
            due: Some("2026-12-07T11:00:00.000Z".into()),
            warned,
            warned_for: Vec::new(),
            breached,
            stopped: None,
        };
        state.clocks = vec![clock(true, false)];
        let card = embed(&state);
        assert_eq!(card["color"], 0xf1_c4_0f);
        assert!(card["fields"].to_string().contains("the first response is due soon"), "{card}");
        state.clocks = vec![clock(true, true)];
        let card = embed(&state);
        assert_eq!(card["color"], 0xe7_4c_3c);
        assert!(card["fields"].to_string().contains("the first response was missed"), "{card}");
        state.clocks = vec![Clock { target: Target::Silence, ..clock(true, true) }];
        assert_eq!(colour(&state), normal, "the submitter's silence is not the team's lateness");
    }

    #[test]
    fn with_the_desks_public_url_a_card_links_to_its_ticket_page() {
        let card = message(&ticket("printer on fire"), None, Some("https://desk.example.com"));
        let link = &card["components"][0]["components"][3];
        assert_eq!(link["style"], 5, "a link button: {link}");
        assert_eq!(link["label"], "Open in desk");
        assert_eq!(link["url"], "https://desk.example.com/tickets/8f0b16f3-85b5-56c7-8823-483334746b7e");
        assert!(link.get("custom_id").is_none(), "a link button has no custom_id");
        let without = message(&ticket("printer on fire"), None, None);
        assert_eq!(without["components"][0]["components"].as_array().unwrap().len(), 3, "claim, reply, close");
    }

    #[test]
    fn buttons_and_forms_are_told_apart_from_other_components() {
        assert_eq!(parse_button(&button_id(Press::Close, "t-1")), Some((Press::Close, "t-1")));
        assert_eq!(parse_button(&button_id(Press::Reply, "t-1")), Some((Press::Reply, "t-1")));
        assert_eq!(parse_form(&form_id(Form::Reason, "t-1")), Some((Form::Reason, "t-1")));
        assert_eq!(parse_form(&form_id(Form::Reply, "t:1")), Some((Form::Reply, "t:1")));
        for other in ["1177000000000000042", "franz:claim:", "franz:delete:t-1", "franz:close-reason:", ""] {
            assert_eq!(parse_button(other), None, "{other}");
            assert_eq!(parse_form(other), None, "{other}");
        }
    }

    /// Found by an attack (#25): the Reply form takes up to 4,000 characters ("Your reply (the submitter gets it)"), and
    /// the presser is told "the submitter gets your reply", but the direct message quoted at most 1,500 of them and
    /// pointed nowhere for the rest: the submitter, who has no desk, never read most of a long reply. Now a long
    /// reply goes on in as many messages as it needs, each within Discord's 2,000 characters.
    #[test]
    fn a_reply_as_long_as_the_form_takes_reaches_the_submitter_whole() {
        let reply_form = form(Form::Reply, "t-1");
        let input = &reply_form["data"]["components"][0]["components"][0];
        let max = input["max_length"].as_u64().expect("a maximum") as usize;
        let body = "y".repeat(max);
        let event = crate::schema::lifecycle::Event {
            event_id: "e".into(),
            ticket_id: "t-1".into(),
            version: Some(2),
            at: "2026-12-07T00:00:00Z".into(),
            actor: crate::schema::lifecycle::Actor::staff(crate::schema::lifecycle::ActorSource::Discord, "ana"),
            caused_by: "c".into(),
            clocks: None,
            change: crate::schema::lifecycle::Change::Commented { body: body.clone(), internal: false, via: None },
        };
        let notice = super::super::notify::notice(&event).expect("a public reply is told");
        let parts =
            super::super::notify::texts(&notice, &TicketState { id: "t-1".into(), ..ticket("printer on fire") });
        assert!(parts.iter().all(|part| crate::discord::chars(part) <= 2000), "{parts:?}");
        let quoted: String =
            parts.iter().flat_map(|part| part.lines()).filter_map(|line| line.strip_prefix("> ")).collect();
        assert!(quoted.contains(&body), "a reply of {max} characters, as the form allows, reaches the submitter cut");
    }

    /// Text of up to `max` characters, often as long as it may be and made of what `plain` and `code_block`
    /// lengthen (markdown, `@`, backticks), so that every clipped field reaches its limit together.
    fn hostile(max: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            2 => proptest::sample::select(vec!['*', '@', '`', '_', '<', '\\', 'é']).prop_map(move |c| c.to_string().repeat(max)),
            1 => proptest::string::string_regex(&format!("[*_`@<>:|#\\[\\]()~\\\\]{{1,{max}}}")).unwrap(),
            1 => proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).unwrap(),
        ]
    }

    proptest! {
        /// Regression: a card's fields were clipped one by one, never as a whole, so a long body of markdown
        /// characters with many long labels and a long close reason made Discord refuse the card (400, 50035).
        #[test]
        fn props_any_ticket_makes_a_card_within_discords_limits_that_pings_nobody(
            body in hostile(crate::lifecycle::BODY_MAX),
            contact in hostile(crate::lifecycle::CONTACT_MAX),
            reason in hostile(crate::lifecycle::REASON_MAX),
            who in hostile(crate::lifecycle::NAME_MAX).prop_map(|name| Person {
                source: crate::schema::lifecycle::PersonSource::Discord,
                id: "4".repeat(crate::lifecycle::NAME_MAX),
                name,
            }),
            labels in proptest::collection::btree_set(
                (0..1000u32, hostile(crate::lifecycle::LABEL_MAX - 3)).prop_map(|(n, l)| format!("{n:03}{l}")),
                0..=crate::lifecycle::LABELS_MAX,
            ),
            status in prop_oneof![Just(Status::Open), Just(Status::Claimed), Just(Status::Closed)],
            comments in any::<u64>(),
            desk in proptest::option::of(Just("https://desk.example.com")),
        ) {
            let state = TicketState {
                contact,
                status,
                assignee: (status == Status::Claimed).then(|| who.clone()),
                closed_by: (status == Status::Closed).then(|| who.clone()),
                close_reason: (status == Status::Closed).then_some(reason),
                labels,
                comments,
                ..ticket(&body)
            };
            let card = message(&state, Some("n"), desk);
            let embed = &card["embeds"][0];
            prop_assert!(embed_chars(embed) <= EMBED_TOTAL_MAX, "{} characters", embed_chars(embed));
            prop_assert!(crate::discord::chars(embed["title"].as_str().unwrap()) <= TITLE_MAX);
            prop_assert!(crate::discord::chars(embed["description"].as_str().unwrap()) <= DESCRIPTION_MAX);
            prop_assert!(embed["description"].as_str().unwrap().ends_with("```"), "the code block closes");
            let fields = embed["fields"].as_array().unwrap();
            prop_assert!(fields.len() <= 25);
            for field in fields {
                prop_assert!(crate::discord::chars(field["name"].as_str().unwrap()) <= 256);
                prop_assert!(crate::discord::chars(field["value"].as_str().unwrap()) <= FIELD_VALUE_MAX);
            }
            let rows = card["components"].as_array().unwrap();
            prop_assert!(rows.len() <= 5);
            for row in rows {
                let buttons = row["components"].as_array().unwrap();
                prop_assert!(buttons.len() <= 5);
                for button in buttons {
                    prop_assert!(button.get("custom_id").is_none_or(|id| crate::discord::chars(id.as_str().unwrap()) <= 100));
                    prop_assert!(crate::discord::chars(button["label"].as_str().unwrap()) <= 80);
                }
            }
            prop_assert_eq!(&card["allowed_mentions"]["parse"], &json!([]));
        }
    }
}
