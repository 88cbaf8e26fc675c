//! Conversations in Discord direct messages, end to end: franz (the bot, aufbereitung, akte and the ticket store)
//! against the fake Discord. The submitter's answer to one of the bot's direct messages lands on that message's
//! ticket, an older one's too; a plain message goes to the only open ticket, or the bot asks which with a select
//! menu, or offers a new ticket; a closed ticket reopens within the window and is followed by a new ticket after
//! it; a flood is cut at the limit; hostile or oversized text is kept safely or refused with the reason; and where
//! each reply went (or why it could not) is in the ticket's history.

use std::time::Duration;

use fake_discord::{Attachment, DirectMessage, Endpoint, FakeDiscord, User};
use franz::schema::lifecycle::Action;
use serde_json::{Value, json};

use crate::kummerkasten_staff::{
    Team, ana, answer, button, card_shows, events_of, field, from_the_desk, only_ticket, ponta, submit, told,
};
use crate::util::{Harness, wait_until};

/// A public reply from the desk.
fn reply(text: &str) -> Action {
    Action::Comment { body: text.into(), internal: false, via: None }
}

/// The bot's direct message to `user` whose text contains `text`, once it is there.
async fn dm_saying(discord: &FakeDiscord, user: &User, text: &str) -> fake_discord::ChannelMessage {
    let found =
        || discord.direct_messages(user).into_iter().find(|m| m.body["content"].as_str().unwrap_or("").contains(text));
    wait_until(&format!("a direct message saying {text:?}"), || async { found().is_some() }).await;
    found().expect("it is there")
}

/// The events of `ticket` on the topic, once `ready` holds for them.
async fn history(harness: &Harness, ticket: &str, what: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let of_ticket = || async {
        let total = harness.count(&harness.topics.events).await;
        let events = harness.read_json(&harness.topics.events, total).await;
        events.into_iter().filter(|e| e["ticket_id"] == ticket).collect::<Vec<_>>()
    };
    wait_until(what, || async { ready(&of_ticket().await) }).await;
    of_ticket().await
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Waits for the bot's ✅ on the user's message `id`.
async fn receipt(discord: &FakeDiscord, user: &User, id: u64) {
    let channel = discord.dm_channel_of(user).expect("the user has a DM channel");
    wait_until("the receipt on the message", || async { discord.reactions(channel, id).contains(&"✅".to_owned()) })
        .await;
}

/// The one ticket created after the first, once there is one.
/// The `created` event of the ticket that is not `first`, once there is one (the topic's partitions are read one
/// after the other, so the events' order is not the tickets').
async fn second_ticket(harness: &Harness, first: &str) -> Value {
    let created = events_of(harness, "created", 2).await;
    created.into_iter().find(|e| e["ticket_id"] != first).expect("a second ticket")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dm_reply_lands_on_the_ticket_of_the_message_it_answers_an_older_one_too_and_its_delivery_is_recorded() {
    let mut team = Team::start(2).await;
    let (harness, discord) = (&team.harness, &team.discord);
    submit(discord, "printer on fire").await;
    let first = only_ticket(harness).await;
    discord.command(&ponta(), "ticket", &[("message", "and the scanner too")]);
    let second = second_ticket(harness, &first).await["ticket_id"].as_str().unwrap().to_owned();

    from_the_desk(harness, &first, 1, reply("Is it still burning?")).await;
    let about_first = dm_saying(discord, &ponta(), "Is it still burning?").await;
    from_the_desk(harness, &second, 2, reply("Which scanner?")).await;
    let about_second = dm_saying(discord, &ponta(), "Which scanner?").await;
    // Each reply's delivery is on its ticket, with the message id an answer finds the ticket by.
    for (ticket, sent) in [(&first, &about_first), (&second, &about_second)] {
        let events = history(harness, ticket, "the delivery", |e| !of_type(e, "delivery").is_empty()).await;
        let delivery = of_type(&events, "delivery")[0];
        let replied = of_type(&events, "commented")[0];
        assert_eq!((&delivery["of"], &delivery["delivered"]), (&replied["event_id"], &json!(true)), "{delivery}");
        assert_eq!((&delivery["via"], &delivery["message_id"]), (&json!("discord_dm"), &json!(sent.id.to_string())));
    }

    // The answer to the older message goes to the older ticket, though the newer one was answered last.
    let answer = DirectMessage { reply_to: Some(about_first.id), ..DirectMessage::new("Yes, flames everywhere") };
    let id = discord.direct_message_with(&ponta(), answer);
    receipt(discord, &ponta(), id).await;
    let events = history(harness, &first, "the answer", |e| !of_type(e, "submitter_wrote").is_empty()).await;
    let wrote = of_type(&events, "submitter_wrote")[0];
    assert_eq!((&wrote["body"], &wrote["via"]), (&json!("Yes, flames everywhere"), &json!("discord_dm")));
    assert_eq!(wrote["actor"], json!({"source": "discord", "name": "pontatot", "id": ponta().id.to_string()}));
    let to_newer = DirectMessage { reply_to: Some(about_second.id), ..DirectMessage::new("The one on floor 2") };
    let id = discord.direct_message_with(&ponta(), to_newer);
    receipt(discord, &ponta(), id).await;
    history(harness, &second, "the second answer", |e| {
        of_type(e, "submitter_wrote").iter().any(|w| w["body"] == "The one on floor 2")
    })
    .await;
    team.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_dm_goes_to_the_only_open_ticket_with_several_the_bot_asks_and_with_none_it_offers_a_new_one() {
    // A bot that serves one server (DISCORD_GUILD_ID) opens tickets there only: it points to `/ticket`.
    let mut team = Team::start(1).await;
    let id = team.discord.direct_message(&ponta(), "my mouse is gone");
    let pointer = dm_saying(&team.discord, &ponta(), "use `/ticket` in the server").await;
    assert_eq!(pointer.body["message_reference"]["message_id"], json!(id.to_string()));
    assert_eq!(team.harness.count(&team.harness.topics.intake).await, 0);
    team.down().await;

    let mut team = Team::start_with(1, |config| config.discord.guild_id = None).await;
    let (harness, discord) = (&team.harness, &team.discord);
    // None open: the bot offers a ticket, and the button opens one with the message.
    let id = discord.direct_message(&ponta(), "my mouse is gone");
    let offer = dm_saying(discord, &ponta(), "You have no open ticket").await;
    assert_eq!(offer.body["message_reference"]["message_id"], json!(id.to_string()));
    let press = discord.press(&ponta(), &offer, &button_of(&offer));
    wait_until("the offer's answer", || async { !discord.answers_to(&press).is_empty() }).await;
    let created = events_of(harness, "created", 1).await.remove(0);
    assert_eq!(
        (&created["body"], &created["contact_id"]),
        (&json!("my mouse is gone"), &json!(ponta().id.to_string()))
    );
    let first = created["ticket_id"].as_str().unwrap().to_owned();

    // One open: a plain message goes there.
    let id = discord.direct_message(&ponta(), "found it under the desk");
    receipt(discord, &ponta(), id).await;
    history(harness, &first, "the message on the only ticket", |e| !of_type(e, "submitter_wrote").is_empty()).await;

    // Two open: the bot asks, and the choice is honoured.
    discord.command(&ponta(), "ticket", &[("message", "and the keyboard")]);
    let second = second_ticket(harness, &first).await["ticket_id"].as_str().unwrap().to_owned();
    let id = discord.direct_message(&ponta(), "it is the left shift key");
    let question = dm_saying(discord, &ponta(), "Which one is this message about?").await;
    let menu = &question.body["components"][0]["components"][0];
    let offered: Vec<&str> = menu["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert_eq!(offered.len(), 2, "{menu}");
    assert!(offered.contains(&first.as_str()) && offered.contains(&second.as_str()));
    let choice = discord.select(&ponta(), &question, menu["custom_id"].as_str().unwrap(), &[&second]);
    wait_until("the choice's answer", || async { !discord.answers_to(&choice).is_empty() }).await;
    let answered = &discord.answers_to(&choice)[0];
    assert_eq!(answered.body["type"], 7, "the question is replaced by the answer: {:?}", answered.body);
    receipt(discord, &ponta(), id).await;
    history(harness, &second, "the chosen ticket", |e| {
        of_type(e, "submitter_wrote").iter().any(|w| w["body"] == "it is the left shift key")
    })
    .await;
    // Someone else cannot steer ponta's message.
    let bob = User::new(55, "bob");
    let stolen = discord.select(&bob, &question, menu["custom_id"].as_str().unwrap(), &[&first]);
    wait_until("the refusal", || async { !discord.answers_to(&stolen).is_empty() }).await;
    let events = history(harness, &first, "the first ticket", |_| true).await;
    assert_eq!(of_type(&events, "submitter_wrote").len(), 1, "only the message sent there: {events:#?}");
    team.down().await;
}

/// The custom id of a message's only button.
fn button_of(message: &fake_discord::ChannelMessage) -> String {
    message.body["components"][0]["components"][0]["custom_id"].as_str().expect("a button").to_owned()
}

/// A ticket submitted, claimed by ana and closed from the desk: its id, and the bot's direct message about the close
/// once its delivery is recorded (so that an answer to it finds the ticket).
async fn closed_ticket(team: &Team) -> (String, fake_discord::ChannelMessage) {
    let (harness, discord) = (&team.harness, &team.discord);
    let posted = submit(discord, "printer on fire").await;
    let ticket = only_ticket(harness).await;
    told(discord, &discord.press(&ana(discord), &posted, &button(&posted, "Claim"))).await;
    from_the_desk(harness, &ticket, 1, Action::Close { reason: "toner replaced".into() }).await;
    let closed = dm_saying(discord, &ponta(), "Reason: toner replaced").await;
    history(harness, &ticket, "the close's delivery", |e| of_type(e, "delivery").len() >= 2).await;
    (ticket, closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_to_a_closed_ticket_reopens_it_within_the_window_and_past_it_opens_a_ticket_that_follows_it() {
    let mut team = Team::start(1).await;
    let (ticket, closed) = closed_ticket(&team).await;
    let (harness, discord) = (&team.harness, &team.discord);
    let answer = DirectMessage { reply_to: Some(closed.id), ..DirectMessage::new("it burns again") };
    let id = discord.direct_message_with(&ponta(), answer);
    receipt(discord, &ponta(), id).await;
    let events = history(harness, &ticket, "the reopening answer", |e| !of_type(e, "submitter_wrote").is_empty()).await;
    assert_eq!(of_type(&events, "submitter_wrote")[0]["reopened"], json!(true));
    team.down().await;

    // With a window of 0 days, any answer to a closed ticket opens a new one that follows it.
    let mut team = Team::start_with(1, |config| config.reopen_within = Duration::ZERO).await;
    let (ticket, closed) = closed_ticket(&team).await;
    let (harness, discord) = (&team.harness, &team.discord);
    let answer = DirectMessage { reply_to: Some(closed.id), ..DirectMessage::new("it burns again") };
    discord.direct_message_with(&ponta(), answer);
    let created = second_ticket(harness, &ticket).await;
    assert_eq!((&created["follows"], &created["body"]), (&json!(ticket), &json!("it burns again")));
    let follower = created["ticket_id"].as_str().unwrap().to_owned();
    dm_saying(discord, &ponta(), "opened a new ticket").await;

    // Found by an attack (#25): every answer to that message opened another ticket, so a submitter who answered
    // the close message twice ("it burns again", "and it smells") got two. The second goes to the first's ticket.
    let second = DirectMessage { reply_to: Some(closed.id), ..DirectMessage::new("and it smells") };
    let id = discord.direct_message_with(&ponta(), second);
    receipt(discord, &ponta(), id).await;
    history(harness, &follower, "the second answer on the new ticket", |e| {
        of_type(e, "submitter_wrote").iter().any(|w| w["body"] == "and it smells")
    })
    .await;
    assert_eq!(events_of(harness, "created", 2).await.len(), 2, "no third ticket");
    team.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_is_cut_at_the_limit_and_hostile_or_oversized_messages_are_kept_safely_or_refused_with_the_reason() {
    let mut team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    submit(discord, "printer on fire").await;
    let ticket = only_ticket(harness).await;

    let hostile = "<@1> @everyone **bold** \u{0007}bell ||spoiler|| https://evil.example/x";
    let id = discord.direct_message(&ponta(), hostile);
    receipt(discord, &ponta(), id).await;
    let too_long = discord.direct_message(&ponta(), &"x".repeat(4001));
    let refusal = dm_saying(discord, &ponta(), "4001 characters").await;
    assert_eq!(refusal.body["message_reference"]["message_id"], json!(too_long.to_string()));
    assert_eq!(refusal.body["allowed_mentions"]["parse"], json!([]));
    let file = |n: usize| Attachment {
        filename: format!("shot{n}.png"),
        size: 1000,
        content_type: Some("image/png".into()),
        url: format!("https://cdn.discordapp.com/attachments/1/2/shot{n}.png"),
    };
    let with_files = DirectMessage { attachments: (0..2).map(file).collect(), ..DirectMessage::new("") };
    let id = discord.direct_message_with(&ponta(), with_files);
    receipt(discord, &ponta(), id).await;

    // Three messages so far count towards the limit (the refused one too); a hundred more leave seven recorded.
    for n in 0..100 {
        discord.direct_message(&ponta(), &format!("message {n}"));
    }
    let events = history(harness, &ticket, "ten messages", |e| of_type(e, "submitter_wrote").len() >= 9).await;
    let wrote = of_type(&events, "submitter_wrote");
    assert_eq!(wrote[0]["body"], json!(hostile.trim()), "kept as written; the desk and Discord escape it");
    assert_eq!(wrote[1]["attachments"].as_array().map(Vec::len), Some(2));
    let warned = dm_saying(discord, &ponta(), "faster than the ticket can take them").await;
    assert_eq!(warned.body["allowed_mentions"]["parse"], json!([]));
    // Ten were admitted, and every admitted one is written: nothing more can arrive within the minute.
    let events = history(harness, &ticket, "the messages", |_| true).await;
    assert_eq!(of_type(&events, "submitter_wrote").len(), 9, "hostile, files and seven of the flood");
    team.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_the_submitter_cannot_get_is_recorded_as_not_delivered_with_the_reason() {
    let mut team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    discord.refuse_dms(&ponta());
    submit(discord, "printer on fire").await;
    let ticket = only_ticket(harness).await;
    from_the_desk(harness, &ticket, 1, reply("Have you tried turning it off?")).await;
    let events = history(harness, &ticket, "the failed delivery", |e| !of_type(e, "delivery").is_empty()).await;
    let delivery = of_type(&events, "delivery")[0];
    assert_eq!(delivery["delivered"], json!(false));
    assert_eq!(delivery["detail"], json!("the user does not accept direct messages from the bot"));
    team.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_messages_from_before_a_restart_are_not_recorded_twice() {
    let mut team = Team::start(1).await;
    submit(&team.discord, "printer on fire").await;
    let ticket = only_ticket(&team.harness).await;
    let id = team.discord.direct_message(&ponta(), "still burning");
    receipt(&team.discord, &ponta(), id).await;
    team.down().await;
    team.up().await;
    // Discord sends the message again (as after a lost acknowledgement): it is the same command, one message.
    let channel = team.discord.dm_channel_of(&ponta()).unwrap();
    let again = json!({
        "id": id.to_string(), "channel_id": channel.to_string(), "type": 0, "content": "still burning",
        "author": {"id": ponta().id.to_string(), "username": "pontatot", "discriminator": "0", "avatar": null,
                   "global_name": "Ponta"},
        "timestamp": "2026-12-07T00:00:00.000000+00:00", "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
        "pinned": false, "flags": 0,
    });
    team.discord.dispatch("MESSAGE_CREATE", again);
    let (harness, discord) = (&team.harness, &team.discord);
    let marker = discord.direct_message(&ponta(), "and smoking");
    receipt(discord, &ponta(), marker).await;
    let events = history(harness, &ticket, "the marker", |e| {
        of_type(e, "submitter_wrote").iter().any(|w| w["body"] == "and smoking")
    })
    .await;
    let bodies: Vec<&Value> = of_type(&events, "submitter_wrote").iter().map(|w| &w["body"]).collect();
    assert_eq!(bodies, [&json!("still burning"), &json!("and smoking")]);
    team.down().await;
}

/// Found by an attack (#25): the lock that keeps one person's messages in order is one lock for everybody, and
/// `received` holds it while `find` waits up to ten seconds (`SENT_PATIENCE`) for the store to learn which ticket the
/// bot message a reply answers is about. The bot's own answers (the pointer to `/ticket`, the question, a refusal) are
/// never recorded, so a Discord reply to one of them (what a confused submitter does) holds every other submitter's
/// direct messages for ten seconds; ten such replies a minute stall the bot's DMs for everyone.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_to_the_bots_own_answer_holds_up_no_other_submitter() {
    let mut team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    submit(discord, "printer on fire").await;
    only_ticket(harness).await;
    let start = std::time::Instant::now();
    let id = discord.direct_message(&ponta(), "still burning");
    receipt(discord, &ponta(), id).await;
    let usual = start.elapsed();

    // Bob has no ticket: the bot points him to /ticket, and he answers the pointer with Discord's reply, twice.
    let bob = User::new(55, "bob");
    discord.direct_message(&bob, "hello?");
    let pointer = dm_saying(discord, &bob, "use `/ticket` in the server").await;
    for text in ["how?", "hello??"] {
        discord.direct_message_with(&bob, DirectMessage { reply_to: Some(pointer.id), ..DirectMessage::new(text) });
    }
    let start = std::time::Instant::now();
    let id = discord.direct_message(&ponta(), "and smoking");
    receipt(discord, &ponta(), id).await;
    let took = start.elapsed();
    assert!(
        took < usual + Duration::from_secs(5),
        "ponta's message took {took:?} (usually {usual:?}): it waited for bob's answers to the bot's pointer"
    );
    team.down().await;
}

/// Found by an attack (#25): a bot that serves one server (DISCORD_GUILD_ID) opens tickets only there; in a direct
/// message it points to `/ticket` instead of offering the "Open a ticket" button. But `chosen` honours an open press
/// whatever the configuration and whatever message it was made on (it never checks that the custom id came from a
/// message with that button, which Discord tells apps to check): `conv:open:` with the id of one's own message opens a
/// ticket from a direct message all the same, for someone who may not even be in that server.
#[tokio::test(flavor = "multi_thread")]
async fn an_open_press_the_bot_never_offered_opens_no_ticket() {
    let mut team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    let bob = User::new(55, "bob");
    let id = discord.direct_message(&bob, "let me in");
    let pointer = dm_saying(discord, &bob, "use `/ticket` in the server").await;
    let press = discord.press(&bob, &pointer, &format!("conv:open:{id}"));
    wait_until("the press's answer", || async { !discord.answers_to(&press).is_empty() }).await;
    let said = discord.answers_to(&press)[0].body["data"]["content"].clone();
    assert_eq!(harness.count(&harness.topics.intake).await, 0, "a ticket was opened from a direct message: {said}");
    team.down().await;
}

/// Found by an attack (#25): one Discord message is meant to be one message on one ticket however often it is handled
/// (its command id comes from the message), but the command id is only unique per ticket, and `chosen` honours every
/// choice: two quick picks in the question (the second before the bot replaced the menu, say to correct a wrong pick)
/// put the same message on both tickets.
#[tokio::test(flavor = "multi_thread")]
async fn two_quick_picks_put_the_message_on_one_ticket() {
    let mut team = Team::start_with(1, |config| config.discord.guild_id = None).await;
    let (harness, discord) = (&team.harness, &team.discord);
    discord.command(&ponta(), "ticket", &[("message", "my mouse is gone")]);
    discord.command(&ponta(), "ticket", &[("message", "and the keyboard")]);
    let created = events_of(harness, "created", 2).await;
    let tickets: Vec<String> = created.iter().map(|c| c["ticket_id"].as_str().unwrap().to_owned()).collect();
    discord.direct_message(&ponta(), "it is the left shift key");
    let question = dm_saying(discord, &ponta(), "Which one is this message about?").await;
    let menu = question.body["components"][0]["components"][0]["custom_id"].as_str().unwrap().to_owned();
    let picks: Vec<_> = tickets.iter().map(|t| discord.select(&ponta(), &question, &menu, &[t])).collect();
    for pick in &picks {
        wait_until("the pick's answer", || async { !discord.answers_to(pick).is_empty() }).await;
    }
    // One partition: once a later command on each ticket is decided, so are the picks' messages.
    for (n, ticket) in tickets.iter().enumerate() {
        from_the_desk(harness, ticket, n + 1, Action::AddLabel { label: "marker".into() }).await;
    }
    let mut written = 0;
    for ticket in &tickets {
        let events = history(harness, ticket, "the marker", |e| !of_type(e, "label_added").is_empty()).await;
        written += of_type(&events, "submitter_wrote").len();
    }
    assert_eq!(written, 1, "the one message is on {written} tickets");
    team.down().await;
}

/// Staff hold the conversation from the card too: Reply opens a form whose submit the submitter gets.
#[tokio::test(flavor = "multi_thread")]
async fn a_whole_conversation_is_held_from_the_staff_card_and_tickets_shows_its_newest_message() {
    let mut team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    let posted = submit(discord, "printer on fire").await;
    let ticket = only_ticket(harness).await;
    let ana = ana(discord);

    // Reply opens a form; its submit is a public reply, which the submitter gets.
    let form = answer(discord, &discord.press(&ana, &posted, &button(&posted, "Reply")), Endpoint::Callback).await;
    assert_eq!(form.body["type"], 9, "a form: {:?}", form.body);
    let form_id = form.body["data"]["custom_id"].as_str().unwrap().to_owned();
    let text = told(discord, &discord.modal_submit(&ana, &form_id, &[("body", "Which floor? <@1>")])).await;
    assert!(text.contains("Replied"), "{text}");
    let asked = dm_saying(discord, &ponta(), "Which floor?").await;
    let waiting = |c: &Value| field(c, "Status").is_some_and(|s| s.starts_with("waiting"));
    card_shows(discord, posted.id, "waiting", waiting).await;

    // The submitter answers; the card says so, and /tickets shows the answer as the newest message.
    history(harness, &ticket, "the reply's delivery", |e| !of_type(e, "delivery").is_empty()).await;
    let answered = DirectMessage { reply_to: Some(asked.id), ..DirectMessage::new("3rd") };
    let id = discord.direct_message_with(&ponta(), answered);
    receipt(discord, &ponta(), id).await;
    let told_so = |c: &Value| field(c, "Status").is_some_and(|s| s.contains("submitter answered"));
    card_shows(discord, posted.id, "the answer", told_so).await;
    let status = discord.command(&ponta(), "tickets", &[]);
    let listed = answer(discord, &status, Endpoint::Callback).await;
    let text = listed.body["data"]["content"].as_str().unwrap();
    assert!(text.contains("last: you, “3rd”"), "{text}");
    team.down().await;
}

/// A message sent while franz was not listening (stopped, or killed between receiving it and publishing it) is not
/// sent again by Discord: the bot looks for it when it starts, records it once, and leaves alone what it handled.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_while_franz_was_down_is_recorded_once_when_it_starts_again() {
    let mut team = Team::start(1).await;
    submit(&team.discord, "printer on fire").await;
    let ticket = only_ticket(&team.harness).await;
    let before = team.discord.direct_message(&ponta(), "still burning");
    receipt(&team.discord, &ponta(), before).await;
    team.down().await;
    let during = team.discord.direct_message_while_away(&ponta(), "sent while franz was down");
    team.up().await;
    let (harness, discord) = (&team.harness, &team.discord);
    receipt(discord, &ponta(), during).await;
    let after = discord.direct_message(&ponta(), "and after");
    receipt(discord, &ponta(), after).await;
    let events = history(harness, &ticket, "the three messages", |e| of_type(e, "submitter_wrote").len() >= 3).await;
    let bodies: Vec<&Value> = of_type(&events, "submitter_wrote").iter().map(|w| &w["body"]).collect();
    assert_eq!(bodies, [&json!("still burning"), &json!("sent while franz was down"), &json!("and after")]);
    team.down().await;
}

/// Bob's ticket, then ponta's tickets with `texts`, each created before the next: a start looks first at the
/// submitters whose tickets changed last, so at ponta's messages before bob's, and a message of bob's taken shows
/// that ponta's were looked at. Returns bob and ponta's ticket ids, oldest first.
async fn bob_then_ponta(team: &Team, texts: &[&str]) -> (User, Vec<String>) {
    let bob = User::new(55, "bob");
    team.discord.command(&bob, "ticket", &[("message", "bob's printer")]);
    events_of(&team.harness, "created", 1).await;
    for (n, text) in texts.iter().enumerate() {
        team.discord.command(&ponta(), "ticket", &[("message", text)]);
        events_of(&team.harness, "created", n + 2).await;
    }
    let created = events_of(&team.harness, "created", texts.len() + 1).await;
    let ponta: Vec<String> = created
        .iter()
        .filter(|e| e["contact"] == "pontatot")
        .map(|e| e["ticket_id"].as_str().unwrap().to_owned())
        .collect();
    (bob, ponta)
}

/// Found by an attack (#25): a message the rate limit refused silently (the submitter had been told "this one and the
/// next ones in this minute are **not** recorded; please send them again") carries neither the receipt nor an answer,
/// so `unhandled` takes it at the next gateway session and a fresh limiter records it: a refused message lands on the
/// ticket after a restart (after the one that was told, which stays refused), and again beside the copy the submitter
/// sent as asked.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_refused_by_the_rate_limit_is_marked_and_not_recorded_at_the_next_session() {
    let mut team = Team::start(1).await;
    let (bob, tickets) = bob_then_ponta(&team, &["printer on fire"]).await;
    let ticket = tickets[0].clone();
    let discord = &team.discord;
    let flood: Vec<u64> = (0..11).map(|n| discord.direct_message(&ponta(), &format!("message {n}"))).collect();
    dm_saying(discord, &ponta(), "faster than the ticket can take them").await;
    let channel = discord.dm_channel_of(&ponta()).unwrap();
    let received = |id: u64| discord.reactions(channel, id).contains(&"✅".to_owned());
    wait_until("ten receipts", || async { flood.iter().filter(|id| received(**id)).count() >= 10 }).await;
    // Within the same minute, one more: refused without a word (the submitter was told already).
    let heartbeats = discord.gateway().heartbeats;
    let refused = discord.direct_message(&ponta(), "and one more");
    wait_until("the bot to be past that message", || async { discord.gateway().heartbeats >= heartbeats + 2 }).await;
    assert!(!received(refused), "precondition: the limit refused it");
    team.down().await;
    let marker = team.discord.direct_message_while_away(&bob, "still there?");
    team.up().await;
    let (harness, discord) = (&team.harness, &team.discord);
    // Bob's message is taken after ponta's were looked at.
    receipt(discord, &bob, marker).await;
    assert!(
        !discord.reactions(channel, refused).contains(&"✅".to_owned()),
        "a message the rate limit refused (and said so) was recorded at the next start"
    );
    let events = history(harness, &ticket, "ponta's ticket", |_| true).await;
    let bodies: Vec<&Value> = of_type(&events, "submitter_wrote").iter().map(|w| &w["body"]).collect();
    assert!(!bodies.contains(&&json!("and one more")), "{bodies:?}");
    team.down().await;
}

/// Found by an attack (#25): `unhandled` takes only the messages after the newest one the bot handled. A message sent
/// while franz was down is lost for good when the submitter writes again after the start and that message is handled
/// before the catch-up reads the channel (the catch-up waits up to two minutes for the store, then reads a hundred
/// channels one after the other): the new message carries the receipt, so the older one counts as handled.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_while_away_is_taken_though_a_newer_one_was_handled_first() {
    let mut team = Team::start(1).await;
    submit(&team.discord, "printer on fire").await;
    let ticket = only_ticket(&team.harness).await;
    team.down().await;
    let during = team.discord.direct_message_while_away(&ponta(), "sent while franz was down");
    // The catch-up's read of the channel is slow.
    team.discord.script(Endpoint::ChannelHistory, &[fake_discord::Answer::Hold]);
    team.up().await;
    let (harness, discord) = (&team.harness, &team.discord);
    let after = discord.direct_message(&ponta(), "and after");
    receipt(discord, &ponta(), after).await;
    discord.release();
    wait_until("the catch-up's read", || async { !discord.received_at(Endpoint::ChannelHistory).is_empty() }).await;
    receipt(discord, &ponta(), during).await;
    let events = history(harness, &ticket, "both messages", |e| of_type(e, "submitter_wrote").len() >= 2).await;
    let bodies: Vec<&Value> = of_type(&events, "submitter_wrote").iter().map(|w| &w["body"]).collect();
    assert!(bodies.contains(&&json!("sent while franz was down")), "{bodies:?}");
    team.down().await;
}

/// Found by an attack (#25): a catch-up runs at every READY, and nothing tells one catch-up that another is handling
/// the same message (the per-person lock orders them, but the second one read the channel before the first answered).
/// A new session while a catch-up is still going (an invalid session, a reconnect storm; a catch-up of a hundred
/// channels takes a while) handles the same message twice: the submitter is asked twice which ticket it is about (and
/// a message to a ticket closed long ago would be routed twice).
#[tokio::test(flavor = "multi_thread")]
async fn two_overlapping_catch_ups_ask_about_a_message_once() {
    let mut team = Team::start(1).await;
    let (bob, _) = bob_then_ponta(&team, &["my mouse is gone", "and the keyboard"]).await;
    crate::kummerkasten_staff::cards(&team.discord, 3).await;
    team.down().await;
    let asked = team.discord.direct_message_while_away(&ponta(), "it is the left shift key");
    let marker = team.discord.direct_message_while_away(&bob, "still there?");
    let base = team.discord.received_at(Endpoint::ChannelHistory).len();
    // The first catch-up's question is slow to arrive.
    team.discord.script(Endpoint::ChannelMessages, &[fake_discord::Answer::Hold]);
    team.up().await;
    let discord = &team.discord;
    let reads = || discord.received_at(Endpoint::ChannelHistory).len() - base;
    wait_until("the first catch-up's question", || async { discord.holding() == 1 }).await;
    assert_eq!(reads(), 1, "one read of ponta's channel so far");
    // A new session (not resumable) starts a second catch-up while the first still asks: it waits for the first,
    // then reads the channel with the question there.
    let sessions = discord.gateway().identifies;
    discord.fault(fake_discord::Fault::InvalidSession { resumable: false });
    wait_until("the new session", || async { discord.gateway().identifies > sessions }).await;
    discord.release();
    receipt(discord, &bob, marker).await;
    wait_until("both catch-ups past ponta's messages", || async { reads() >= 4 }).await;
    let questions: Vec<_> = discord
        .direct_messages(&ponta())
        .into_iter()
        .filter(|m| m.body["message_reference"]["message_id"] == json!(asked.to_string()))
        .collect();
    assert_eq!(questions.len(), 1, "the one message was handled {} times: {questions:#?}", questions.len());
    team.down().await;
}

/// Found by an attack (#25): when a choice cannot be recorded (the message could not be read again, or the broker
/// refused the command), `chosen` answers "Please choose again in a minute" with an update of type 7 whose
/// `components` are empty: the menu is gone, there is nothing to choose again with, and since the question answers
/// the message, no later catch-up takes it either. The message is lost while the submitter is told to retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_choice_that_could_not_be_recorded_leaves_a_way_to_choose_again() {
    let mut team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    discord.command(&ponta(), "ticket", &[("message", "my mouse is gone")]);
    discord.command(&ponta(), "ticket", &[("message", "and the keyboard")]);
    let created = events_of(harness, "created", 2).await;
    let first = created[0]["ticket_id"].as_str().unwrap().to_owned();
    discord.direct_message(&ponta(), "it is the left shift key");
    let question = dm_saying(discord, &ponta(), "Which one is this message about?").await;
    let menu = question.body["components"][0]["components"][0]["custom_id"].as_str().unwrap().to_owned();
    // Reading the message again fails once (a Discord hiccup).
    discord.script(Endpoint::FetchMessage, &[fake_discord::Answer::Status(500)]);
    let choice = discord.select(&ponta(), &question, &menu, &[&first]);
    wait_until("the choice's answer", || async { !discord.answers_to(&choice).is_empty() }).await;
    let answered = discord.answers_to(&choice).remove(0).body;
    let text = answered["data"]["content"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("choose again"), "precondition: the submitter is told to choose again: {answered}");
    assert_ne!(
        answered["data"]["components"],
        json!([]),
        "the submitter is told to choose again, but the answer takes the menu away: {answered}"
    );
    team.down().await;
}

/// Found by an attack (#25): the card offers Reply on every ticket, and its submit answers "Replied; the submitter gets
/// your reply, and the ticket waits for their answer" whatever the ticket. A ticket without a Discord submitter (from
/// `franz ticket`, or any intake record without a user id) has nobody to send it to (the notices follower skips it
/// without a word): the presser is told the submitter gets a reply nobody gets, and the ticket waits for an answer
/// that cannot come.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_from_the_card_to_a_ticket_nobody_can_receive_is_not_offered_nor_said_to_reach_anyone() {
    let mut team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    harness.produce(&harness.topics.intake, &[(0, crate::util::valid("printer on fire"))]).await;
    let posted = crate::kummerkasten_staff::cards(discord, 1).await.remove(0);
    let ana = ana(discord);
    let buttons = posted.body["components"][0]["components"].as_array().unwrap().clone();
    assert!(buttons.iter().all(|b| b["label"] != "Reply"), "no Reply where a reply reaches nobody: {buttons:?}");
    // A form submitted all the same (an old card, a forged interaction).
    let ticket = only_ticket(harness).await;
    let submitted = discord.modal_submit(&ana, &format!("franz:reply-text:{ticket}"), &[("body", "Which floor?")]);
    // Whatever the answer's shape (a private message, or the deferred answer's edit), its text.
    let said = || {
        discord
            .answers_to(&submitted)
            .iter()
            .find_map(|r| r.body["content"].as_str().or(r.body["data"]["content"].as_str()).map(str::to_owned))
    };
    wait_until("the answer to the reply", || async { said().is_some() }).await;
    let text = said().expect("it is there");
    assert!(!text.contains("the submitter gets your reply"), "nobody can get this reply: {text}");
    assert!(text.contains("nobody is sent the reply"), "{text}");
    team.down().await;
}

/// Found by an attack (#25): `unhandled` decides what the bot handled from what shows in Discord only (its ✅, or an
/// answer), never from the ticket store, which has the message (`submitter_wrote` with its `message_id`). A message
/// recorded whose receipt Discord refused (a hiccup; the bot only logs it) is handled again at the next start, routed
/// afresh: with a second ticket opened meanwhile, the submitter is asked which ticket a message is about that is on
/// one already (and a pick of the other puts it on both, the command id being unique per ticket only).
#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_message_whose_receipt_failed_is_not_routed_again_at_the_next_start() {
    let mut team = Team::start(1).await;
    let (bob, tickets) = bob_then_ponta(&team, &["printer on fire"]).await;
    let ticket = tickets[0].clone();
    team.discord.script(Endpoint::Reaction, &[fake_discord::Answer::Status(500)]);
    let recorded = team.discord.direct_message(&ponta(), "still burning");
    history(&team.harness, &ticket, "the message on the ticket", |e| {
        of_type(e, "submitter_wrote").iter().any(|w| w["body"] == "still burning")
    })
    .await;
    let channel = team.discord.dm_channel_of(&ponta()).unwrap();
    assert!(!team.discord.reactions(channel, recorded).contains(&"✅".to_owned()), "precondition: no receipt");
    team.discord.command(&ponta(), "ticket", &[("message", "and the scanner")]);
    events_of(&team.harness, "created", 3).await;
    team.down().await;
    let marker = team.discord.direct_message_while_away(&bob, "still there?");
    team.up().await;
    let discord = &team.discord;
    receipt(discord, &bob, marker).await;
    let about: Vec<_> = discord
        .direct_messages(&ponta())
        .into_iter()
        .filter(|m| m.body["message_reference"]["message_id"] == json!(recorded.to_string()))
        .collect();
    assert!(about.is_empty(), "a message recorded on {ticket} was routed again: {about:#?}");
    team.down().await;
}
