//! The bot's publishing path against the in-process broker: what the user is told, and what the topics hold.

use crate::util::TOPIC_AUTHORIZATION_FAILED;
use franz::kafka;
use franz::schema::IntakeRecord;
use franz::services::kummerkasten::{Invocation, report, submit};
use rdkafka::message::Message as _;

use crate::util::Harness;

fn alice() -> Invocation {
    Invocation {
        user_id: 80351110224678912,
        username: "alice".into(),
        display_name: Some("Alice".into()),
        guild_id: Some(1),
        channel_id: 2,
        interaction_id: 1177000000000000042,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_ticket_is_on_the_intake_topic_and_the_reply_carries_its_id() {
    let harness = Harness::new(3).await;
    let producer = kafka::producer(&harness.bootstrap).unwrap();
    let answer = submit(&producer, &harness.topics, &alice(), "The VPN drops every hour".into(), None).await.answer;

    let id = franz::schema::ticket_id_for_interaction("1177000000000000042");
    assert!(answer.starts_with("Ticket received") && answer.contains(&id), "{answer}");
    let stored = harness.read(&harness.topics.intake, 1).await.remove(0);
    assert_eq!(stored.key(), Some("80351110224678912".as_bytes()));
    let record: IntakeRecord = serde_json::from_slice(stored.payload().unwrap()).unwrap();
    assert_eq!((record.message.as_str(), record.username.as_str()), ("The VPN drops every hour", "alice"));
    assert_eq!(record.display_name.as_deref(), Some("Alice"));
    assert_eq!((record.guild_id.as_deref(), record.channel_id.as_deref()), (Some("1"), Some("2")));
    assert!(chrono::DateTime::parse_from_rfc3339(&record.timestamp).is_ok() && record.timestamp.ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_ticket_is_reported_as_not_received_and_to_the_errors_topic() {
    let harness = Harness::new(1).await;
    let producer = kafka::producer(&harness.bootstrap).unwrap();
    // The ticket's produce is refused (librdkafka may spend two requests on it); the error event gets through.
    harness.broker.refuse_next_produces(TOPIC_AUTHORIZATION_FAILED, 2);
    let outcome = submit(&producer, &harness.topics, &alice(), "printer on fire".into(), None).await;
    let answer = outcome.answer;
    assert!(answer.contains("**not** received") && !answer.contains("Ticket received"), "{answer}");
    report(&producer, &harness.topics, &alice(), outcome.failure.expect("the failure is kept for the report")).await;
    let events = harness.read_json(&harness.topics.errors, 1).await;
    assert_eq!(events[0]["service"], "kummerkasten");
    assert_eq!(events[0]["context"]["interaction_id"], "1177000000000000042");
    assert_eq!(harness.count(&harness.topics.intake).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_broker_down_the_user_is_told_to_try_again() {
    let harness = Harness::new(1).await;
    let producer: rdkafka::producer::FutureProducer =
        kafka::client_config("127.0.0.1:1").set("message.timeout.ms", "1000").create().unwrap();
    let answer = submit(&producer, &harness.topics, &alice(), "hello".into(), None).await.answer;
    assert!(answer.contains("**not** received") && answer.contains("try again"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_ticket_is_refused_without_publishing() {
    let harness = Harness::new(1).await;
    let producer = kafka::producer(&harness.bootstrap).unwrap();
    let outcome = submit(&producer, &harness.topics, &alice(), "   ".into(), None).await;
    assert!(outcome.answer.starts_with("That ticket cannot be submitted"), "{}", outcome.answer);
    assert_eq!(outcome.failure, None, "an invalid ticket is the user's to fix, not an operational error");
    assert_eq!(harness.count(&harness.topics.intake).await, 0);
}
