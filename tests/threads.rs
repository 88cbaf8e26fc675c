//! A private Discord thread per ticket (`DISCORD_TICKET_THREADS`), end to end against the fake Discord: a ticket
//! from `/ticket` gets a private thread with its submitter in it; what the submitter writes there is their message
//! on the ticket, what staff write there is a public reply under their name that is not posted back; replies from
//! the desk are posted there and internal notes never are; a message written while franz was down is taken at the
//! next start; and without the Message Content intent the bot says so and stays with direct messages.

use fake_discord::{DirectMessage, FakeDiscord, Options, Thread, User};
use franz::schema::lifecycle::Action;
use serde_json::{Value, json};

use crate::kummerkasten_staff::{STAFF_ROLE, Team, ana, events_of, from_the_desk, only_ticket, ponta, submit};
use crate::util::{Harness, wait_until};

/// The channel the threads are opened in.
const THREADS: u64 = 1177000000000000066;

async fn with_threads() -> Team {
    let team = Team::start_with(2, |config| config.discord.ticket_threads = Some(THREADS)).await;
    // The staff role has Manage Threads there: its members see and write in every private thread.
    team.discord.moderate_threads(STAFF_ROLE);
    team
}

/// The one thread in the thread channel, once there is one.
async fn the_thread(discord: &FakeDiscord) -> Thread {
    wait_until("a thread in the ticket channel", || async { !discord.threads_in(THREADS).is_empty() }).await;
    let threads = discord.threads_in(THREADS);
    assert_eq!(threads.len(), 1, "one thread per ticket: {threads:?}");
    threads[0].clone()
}

/// The bot's messages in `thread`, once one contains `text`.
async fn thread_says(discord: &FakeDiscord, thread: u64, text: &str) -> Vec<String> {
    let contents = || -> Vec<String> {
        discord.channel_messages(thread).iter().map(|m| m.body["content"].as_str().unwrap_or("").to_owned()).collect()
    };
    wait_until(&format!("the thread to say {text:?}"), || async { contents().iter().any(|c| c.contains(text)) }).await;
    contents()
}

/// The ticket's events, once `ready` holds for them.
async fn ticket_events(harness: &Harness, ticket: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let of_ticket = || async {
        let total = harness.count(&harness.topics.events).await;
        let events = harness.read_json(&harness.topics.events, total).await;
        events.into_iter().filter(|e| e["ticket_id"] == ticket).collect::<Vec<_>>()
    };
    wait_until("the ticket's events", || async { ready(&of_ticket().await) }).await;
    of_ticket().await
}

fn written(events: &[Value], body: &str) -> Vec<Value> {
    events.iter().filter(|e| e["type"] == "submitter_wrote" && e["body"] == body).cloned().collect()
}

/// Waits for the bot's ✅ on message `id` in `thread`.
async fn receipt(discord: &FakeDiscord, thread: u64, id: u64) {
    wait_until("the receipt in the thread", || async { discord.reactions(thread, id).contains(&"✅".to_owned()) })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_gets_a_private_thread_with_its_submitter_where_the_conversation_goes_both_ways_and_notes_never_go() {
    let mut team = with_threads().await;
    let (harness, discord) = (&team.harness, &team.discord);
    submit(discord, "printer on fire").await;
    let ticket = only_ticket(harness).await;

    let thread = the_thread(discord).await;
    assert_eq!((thread.kind, thread.invitable), (12, false), "a private thread nobody else can be invited to");
    assert_eq!(thread.members, vec![ponta().id], "the submitter is added, nobody else");
    assert!(thread.name.contains(&ticket) && thread.name.contains("printer on fire"), "{}", thread.name);
    let opening = &discord.channel_messages(thread.id)[0];
    assert!(opening.body["content"].as_str().unwrap().contains(&ticket), "{}", opening.body);
    assert_eq!(opening.body["allowed_mentions"], json!({"parse": [], "users": [ponta().id.to_string()]}));
    let events = ticket_events(harness, &ticket, |e| e.iter().any(|e| e["type"] == "delivery")).await;
    let opened = events.iter().find(|e| e["type"] == "delivery").unwrap();
    assert_eq!((&opened["via"], &opened["channel_id"]), (&json!("discord_thread"), &json!(thread.id.to_string())));

    // The submitter writes in the thread.
    let said = DirectMessage::new("it smells of smoke now");
    let id = discord.thread_message(&ponta(), thread.id, said).expect("a member writes");
    receipt(discord, thread.id, id).await;
    let events = ticket_events(harness, &ticket, |e| !written(e, "it smells of smoke now").is_empty()).await;
    assert_eq!(written(&events, "it smells of smoke now")[0]["via"], "discord_thread");

    // Staff write there: a public reply under their name, not posted back into the thread.
    let staff = DirectMessage::new("Unplug it <@1> **now**");
    let id = discord.thread_message(&ana(discord), thread.id, staff).expect("a moderator writes");
    receipt(discord, thread.id, id).await;
    let events = ticket_events(harness, &ticket, |e| e.iter().any(|e| e["type"] == "commented")).await;
    let reply = events.iter().find(|e| e["type"] == "commented").unwrap();
    assert_eq!(
        (&reply["body"], &reply["internal"], &reply["via"], &reply["actor"]["id"]),
        (&json!("Unplug it <@1> **now**"), &json!(false), &json!("discord_thread"), &json!("42"))
    );

    // From the desk: a note, then a public reply; only the reply reaches the thread, and no direct message is sent.
    let note = Action::Comment { body: "they sound upset".into(), internal: true, via: None };
    from_the_desk(harness, &ticket, 1, note).await;
    from_the_desk(
        harness,
        &ticket,
        2,
        Action::Comment { body: "Try the other socket".into(), internal: false, via: None },
    )
    .await;
    let said = thread_says(discord, thread.id, "Try the other socket").await;
    assert!(!said.iter().any(|m| m.contains("they sound upset")), "a note reached the thread: {said:?}");
    assert!(!said.iter().any(|m| m.contains("Unplug it")), "a reply written in the thread came back: {said:?}");
    assert!(discord.direct_messages(&ponta()).is_empty(), "the thread, not direct messages");
    let events = ticket_events(harness, &ticket, |e| e.iter().filter(|e| e["type"] == "delivery").count() >= 2).await;
    let deliveries: Vec<&Value> = events.iter().filter(|e| e["type"] == "delivery").collect();
    assert!(deliveries.iter().all(|d| d["via"] == "discord_thread" && d["delivered"] == true), "{deliveries:?}");

    // Someone who is neither a member nor staff cannot write in the private thread at all.
    assert_eq!(discord.thread_message(&User::new(7, "bob"), thread.id, DirectMessage::new("hi")), None);
    team.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thread_message_written_while_franz_was_down_is_taken_once_at_the_next_start() {
    let mut team = with_threads().await;
    submit(&team.discord, "the printer is on fire").await;
    let ticket = only_ticket(&team.harness).await;
    let thread = the_thread(&team.discord).await;
    team.down().await;
    let id = team.discord.thread_message_while_away(&ponta(), thread.id, "still burning").expect("a member writes");
    team.up().await;
    receipt(&team.discord, thread.id, id).await;
    let events = ticket_events(&team.harness, &ticket, |e| !written(e, "still burning").is_empty()).await;
    assert_eq!(written(&events, "still burning").len(), 1);
    team.down().await;
    team.up().await;
    // The second start finds it handled (its ✅) and records nothing again.
    let events = ticket_events(&team.harness, &ticket, |_| true).await;
    assert_eq!(written(&events, "still burning").len(), 1, "{events:?}");
    team.down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_message_content_intent_the_bot_says_so_and_answers_by_direct_message() {
    let discord = FakeDiscord::start_with(Options { message_content: false, ..Options::default() }).await.unwrap();
    let mut team = Team::start_on(discord, 2, |config| config.discord.ticket_threads = Some(THREADS)).await;
    let (harness, discord) = (&team.harness, &team.discord);
    assert_eq!(discord.gateway().refused, 0, "the bot did not ask for an intent it does not have");
    let troubles = team.running.as_ref().expect("franz runs").ops.metrics.troubles.clone();
    let problem = troubles.all().remove("kummerkasten").expect("the bot says why").text;
    assert!(problem.contains("Message Content") && problem.contains("direct message"), "{problem}");

    submit(discord, "printer on fire").await;
    let ticket = only_ticket(harness).await;
    from_the_desk(
        harness,
        &ticket,
        1,
        Action::Comment { body: "Try the other socket".into(), internal: false, via: None },
    )
    .await;
    crate::kummerkasten_staff::direct_messages(discord, &ponta(), 1).await;
    assert!(discord.threads_in(THREADS).is_empty(), "no thread without the intent");
    let _ = events_of(harness, "delivery", 1).await;
    team.down().await;
}
