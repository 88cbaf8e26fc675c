//! The intake path: what `franz ticket` (and the bot) publish is what aufbereitung turns into the promised ticket.

use franz::intake::{self, Submission};
use franz::kafka;
use franz::schema::{IntakeRecord, SourceRef};
use franz::services::aufbereitung::normalize::normalize;
use rdkafka::message::Message as _;

use crate::util::Harness;

#[tokio::test(flavor = "multi_thread")]
async fn published_ticket_is_acknowledged_with_the_id_aufbereitung_will_give_it() {
    let harness = Harness::new(3).await;
    let record = intake::record(Submission {
        message: "  printer on fire  ".into(),
        username: "pontatot".into(),
        user_id: Some("80351110224678912".into()),
        interaction_id: Some("1177".into()),
        ..Submission::default()
    })
    .unwrap();
    let producer = kafka::producer(&harness.bootstrap).unwrap();
    let receipt = intake::publish_record(&producer, &harness.topics.intake, &record).await.unwrap();

    let stored = harness.read(&harness.topics.intake, 1).await.remove(0);
    assert_eq!(stored.key(), Some("80351110224678912".as_bytes()), "keyed by user id");
    assert_eq!((stored.partition(), stored.offset()), (receipt.partition, receipt.offset));
    let parsed: IntakeRecord = serde_json::from_slice(stored.payload().unwrap()).unwrap();
    assert_eq!(parsed, record);
    let source =
        SourceRef { topic: harness.topics.intake.clone(), partition: receipt.partition, offset: receipt.offset };
    let ticket = normalize(stored.payload().unwrap(), &source).unwrap();
    assert_eq!(ticket.id, receipt.ticket_id);
    assert_eq!(ticket.body, "printer on fire");
}

#[test]
fn submissions_aufbereitung_would_reject_are_refused_before_publishing() {
    let too_long = "x".repeat(4001);
    for (message, username) in [("   ", "u"), (too_long.as_str(), "u"), ("fine", " ")] {
        let submission = Submission { message: message.into(), username: username.into(), ..Submission::default() };
        assert!(intake::record(submission).is_err(), "{message:?} from {username:?} should be refused");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_to_an_unreachable_broker_fails_with_an_error() {
    let record =
        intake::record(Submission { message: "m".into(), username: "u".into(), ..Submission::default() }).unwrap();
    // A port nobody listens on: the delivery times out instead of being reported as a success.
    let producer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:1")
        .set("message.timeout.ms", "1000")
        .create()
        .unwrap();
    let error = intake::publish_record(&producer, "discordMSG", &record).await.unwrap_err();
    assert!(format!("{error:#}").contains("did not acknowledge"), "{error:#}");
}
