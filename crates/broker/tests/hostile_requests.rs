//! Requests a hostile or careless client can send, over a raw socket: topic names that look like the broker's own
//! files, requests that repeat one entry thousands of times, producer ids and epochs the broker never handed out.
//! Each test is named after the bound it proves, and the regressions say what broke.

mod common;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable as _, StrBytes};

/// Regression: topics named `.deleted-events` or `.creating-x` (legal Kafka names) lost all their acknowledged
/// records at a clean restart, because the broker staged its own creates and deletes under those names.
#[tokio::test]
async fn topics_named_like_the_brokers_own_work_keep_their_acknowledged_records_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    let names = [".deleted-events", ".creating-x", ".deleted-0000"];
    for name in names {
        create_topic(&mut client, name, 1).await;
        for i in 0..20 {
            let (error, _) = produce(&mut client, name, batch(&[(1_000 + i, "acknowledged")], (-1, -1, -1)), -1).await;
            assert_eq!(error, 0);
        }
    }
    drop(client);
    broker.stop().await;
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    for name in names {
        assert_eq!(list_offset(&mut client, name, -1).await, (0, 20), "{name} keeps its 20 records");
    }
    broker.stop().await;
}

/// Regression: a 16 KB Metadata request naming one 1,000-partition topic 2,000 times got a 52 MB answer and drove
/// the broker's memory from 15 MB to 400 MB. Each topic is now answered once.
#[tokio::test]
async fn a_metadata_request_naming_a_topic_thousands_of_times_is_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "wide", 1000).await;
    let named = metadata_request::MetadataRequestTopic::default().with_name(Some(topic("wide")));
    let request = MetadataRequest::default().with_topics(Some(vec![named; 2000]));
    let answer = client.call_raw(ApiKey::Metadata, 1, &request).await;
    assert!(answer.len() < 100_000, "the answer has {} bytes", answer.len());
    let decoded = MetadataResponse::decode(&mut answer.clone(), 1).unwrap();
    assert_eq!(decoded.topics.len(), 1);
    assert_eq!(decoded.topics[0].partitions.len(), 1000);
    broker.stop().await;
}

#[tokio::test]
async fn a_partition_named_twice_in_list_offsets_is_refused_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "t", 1).await;
    let partition = list_offsets_request::ListOffsetsPartition::default().with_timestamp(0);
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default().with_name(topic("t")).with_partitions(vec![partition; 1000]),
    ]);
    let answer: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 5, &request).await;
    let codes: Vec<i16> = answer.topics[0].partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(codes[0], 0);
    assert!(codes[1..].iter().all(|c| *c == 42), "duplicates get INVALID_REQUEST");
    broker.stop().await;
}

#[tokio::test]
async fn list_offsets_by_timestamp_finds_the_first_batch_at_or_after_it_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.log.segment_bytes = 2_000;
    settings.log.index_interval = 300;
    let broker = start(settings.clone()).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "timed", 1).await;
    for i in 0..200i64 {
        let (error, offset) =
            produce(&mut client, "timed", batch(&[(10_000 + i * 10, "a record of some length")], (-1, -1, -1)), -1)
                .await;
        assert_eq!((error, offset), (0, i));
    }
    for (wanted, expected) in [(0, 0), (10_000, 0), (10_005, 1), (10_010, 1), (11_000, 100), (11_990, 199)] {
        assert_eq!(list_offset(&mut client, "timed", wanted).await, (0, expected), "timestamp {wanted}");
    }
    assert_eq!(list_offset(&mut client, "timed", 50_000).await, (0, -1), "nothing that late");
    // After a restart the closed segments' time indexes are read back from disk and give the same answers.
    drop(client);
    broker.stop().await;
    let broker = start(settings).await;
    let mut client = Client::connect(broker.address()).await;
    for (wanted, expected) in [(10_005, 1), (11_000, 100), (11_990, 199)] {
        assert_eq!(
            list_offset(&mut client, "timed", wanted).await,
            (0, expected),
            "timestamp {wanted} after a restart"
        );
    }
    broker.stop().await;
}

/// Regression: InitProducerId with any producer id and epoch answered with that id and the next epoch, so a
/// client could take over an id it never held, at any epoch.
#[tokio::test]
async fn init_producer_id_hands_out_only_ids_it_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    let fresh: InitProducerIdResponse = client
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!((fresh.error_code, fresh.producer_epoch), (0, 0));
    let bump = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(777_777))
        .with_producer_epoch(5);
    let answer: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &bump).await;
    assert_eq!(answer.error_code, 0);
    assert_ne!(answer.producer_id, ProducerId(777_777), "a named id is never handed out as is");
    assert_ne!(answer.producer_id, fresh.producer_id, "every answer is a new id");
    assert_eq!(answer.producer_epoch, 0);
    // The holder of an id may bump its current epoch (KIP-360) and keeps its id; a stale epoch may not.
    let bump = |epoch| {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(fresh.producer_id)
            .with_producer_epoch(epoch)
    };
    let bumped: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &bump(0)).await;
    assert_eq!((bumped.producer_id, bumped.producer_epoch), (fresh.producer_id, 1));
    let stale: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &bump(0)).await;
    assert_ne!(stale.producer_id, fresh.producer_id);
    broker.stop().await;
}

/// Regression: a batch with another producer's id and epoch 32767 raised that id's epoch and fenced its owner.
#[tokio::test]
async fn a_forged_epoch_an_unissued_id_or_a_guessed_id_cannot_take_an_owners_place() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut owner = Client::connect(broker.address()).await;
    let mut forger = Client::connect(broker.address()).await;
    create_topic(&mut owner, "owned", 1).await;
    let pid = producer_id(&mut owner).await;
    assert_eq!(produce(&mut owner, "owned", batch(&[(1, "mine")], (pid, 0, 0)), -1).await, (0, 0));
    let (forged, _) = produce(&mut forger, "owned", batch(&[(1, "forged")], (pid, i16::MAX, 0)), -1).await;
    assert_eq!(forged, 47, "INVALID_PRODUCER_EPOCH");
    let (unissued, _) = produce(&mut forger, "owned", batch(&[(1, "forged")], (pid + (1 << 50), 0, 0)), -1).await;
    assert_eq!(unissued, 59, "UNKNOWN_PRODUCER_ID");
    // Regression: ids were 0, 1, 2, ..., so a forger writing the owner's next sequence under id 0 made the owner's
    // own batch look like a retry: acknowledged, and never written. Ids now carry random bits; a guess is another
    // producer.
    for guess in [0, 1, pid ^ 1] {
        let (error, _) = produce(&mut forger, "owned", batch(&[(1, "forged")], (guess, 0, 1)), -1).await;
        assert!(error == 0 || error == 45, "a guessed id is a producer of its own or out of order: {error}");
    }
    let (error, offset) = produce(&mut owner, "owned", batch(&[(2, "still mine")], (pid, 0, 1)), -1).await;
    assert_eq!(error, 0);
    assert!(offset >= 1, "written, not taken for a retry of someone else's batch");
    let mut reader = Client::connect(broker.address()).await;
    let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
        fetch_request::FetchTopic::default().with_topic(topic("owned")).with_partitions(vec![
            fetch_request::FetchPartition::default().with_fetch_offset(offset).with_partition_max_bytes(1 << 20),
        ]),
    ]);
    let answer: FetchResponse = reader.call(ApiKey::Fetch, 11, &request).await;
    let records = answer.responses[0].partitions[0].records.clone().unwrap();
    assert!(records.windows(10).any(|w| w == b"still mine"), "the owner's record is in the log");
    broker.stop().await;
}

#[tokio::test]
async fn a_topic_that_does_not_fit_the_partition_limit_is_refused_with_a_reason_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.max_partitions = Some(10);
    let broker = start(settings).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "fits", 6).await;
    let (error, message) = try_create_topic(&mut client, "too-many", 6).await;
    assert_eq!(error, 37, "INVALID_PARTITIONS");
    assert!(message.contains("max_partitions"), "{message}");
    assert!(!dir.path().join("topics").join("too-many").exists());
    broker.stop().await;
}

/// Regression: with `--listen 0.0.0.0:9092` the broker advertised `127.0.0.1`, so clients on other machines
/// failed while raw clients still got in, and there was no way to set the advertised address.
#[tokio::test]
async fn listening_on_every_interface_needs_an_advertised_address_which_metadata_then_carries() {
    let dir = tempfile::tempdir().unwrap();
    let mut everywhere = franz_broker::Settings::new("0.0.0.0:0".parse().unwrap(), dir.path().to_path_buf());
    let refused = franz_broker::EmbeddedBroker::start(everywhere.clone()).await.expect_err("refused");
    assert!(matches!(refused, franz_broker::StartError::NoAdvertisedAddress { .. }), "{refused:?}");
    assert!(refused.to_string().contains("Settings::advertise"), "{refused}");
    everywhere.advertise = Some(("broker.example.internal".into(), 19092));
    let broker = start(everywhere).await;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], broker.address().port()));
    let mut client = Client::connect(loopback).await;
    let answer: MetadataResponse =
        client.call(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None)).await;
    assert_eq!(answer.brokers[0].host.as_str(), "broker.example.internal");
    assert_eq!(answer.brokers[0].port, 19092);
    let coordinator: FindCoordinatorResponse = client
        .call(ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")))
        .await;
    assert_eq!((coordinator.host.as_str(), coordinator.port), ("broker.example.internal", 19092));
    assert_eq!(broker.advertised(), "broker.example.internal:19092", "what franz's /readyz shows");
    broker.stop().await;
}

#[tokio::test]
async fn an_ipv6_listen_address_is_advertised_with_its_host_in_brackets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(franz_broker::Settings::new("[::1]:0".parse().unwrap(), dir.path().to_path_buf())).await;
    assert_eq!(broker.advertised(), format!("[::1]:{}", broker.address().port()));
    broker.stop().await;
}

/// Regression: under fsync durability an `acks=1` produce was answered before the fsync (the docs said
/// otherwise). On one node `acks=1` now means what `acks=all` means: the answer comes once the record is on disk,
/// which is also when readers may see it, so the high watermark already covers it when the answer arrives.
#[tokio::test]
async fn a_record_acknowledged_with_acks_1_is_already_on_disk_and_visible() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "one", 1).await;
    for expected in 0..50 {
        assert_eq!(produce(&mut client, "one", batch(&[(1, "x")], (-1, -1, -1)), 1).await, (0, expected));
        assert_eq!(list_offset(&mut client, "one", -1).await, (0, expected + 1), "visible, so fsynced, when answered");
    }
    broker.stop().await;
}

/// Regression: commits of -5 and -2^63 were accepted and kept across restarts.
#[tokio::test]
async fn a_negative_committed_offset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "t", 1).await;
    for offset in [-5, i64::MIN] {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic("t")).with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(offset),
                ]),
            ]);
        let answer: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 5, &request).await;
        assert_eq!(answer.topics[0].partitions[0].error_code, 1, "OFFSET_OUT_OF_RANGE for {offset}");
    }
    broker.stop().await;
}

/// Regression: a 193-byte CreateTopics of 9,000 partitions held the topics lock (and a runtime thread) through
/// every file creation and fsync, freezing every other client for 27 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_create_does_not_hold_up_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut creator = Client::connect(broker.address()).await;
    let mut other = Client::connect(broker.address()).await;
    create_topic(&mut other, "busy", 1).await;
    let topics = (0..3)
        .map(|i| {
            create_topics_request::CreatableTopic::default()
                .with_name(topic(&format!("large-{i}")))
                .with_num_partitions(500)
                .with_replication_factor(1)
        })
        .collect();
    let request = CreateTopicsRequest::default().with_timeout_ms(60_000).with_topics(topics);
    let creating = tokio::spawn(async move {
        let answer: CreateTopicsResponse = creator.call(ApiKey::CreateTopics, 5, &request).await;
        answer.topics.iter().all(|t| t.error_code == 0)
    });
    // Wait until the create is under way (its first directory exists), then another client must be served while
    // it goes on.
    let staging = dir.path().join("staging");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) == 0
        && !dir.path().join("topics").join("large-0").exists()
    {
        assert!(tokio::time::Instant::now() < deadline, "the create starts");
        tokio::task::yield_now().await;
    }
    let (error, _) = produce(&mut other, "busy", batch(&[(1, "meanwhile")], (-1, -1, -1)), -1).await;
    assert_eq!(error, 0);
    let last = dir.path().join("topics").join("large-2").join("499");
    assert!(!last.exists(), "the other client was answered while the create was still going on");
    assert!(creating.await.unwrap(), "the create succeeds");
    broker.stop().await;
}

/// Regression: a client that read a producer's id from a fetched batch header wrote the producer's next sequence
/// first; the producer's own batch was then taken for a retry, acknowledged, and never written. Without
/// authentication the write cannot be prevented, but the owner is now told instead of silently losing a record.
#[tokio::test]
async fn a_batch_written_under_a_known_producer_id_makes_the_owner_fail_loudly_instead_of_losing_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut owner = Client::connect(broker.address()).await;
    let mut forger = Client::connect(broker.address()).await;
    create_topic(&mut owner, "known", 1).await;
    let pid = producer_id(&mut owner).await;
    assert_eq!(produce(&mut owner, "known", batch(&[(1, "LEGIT-0")], (pid, 0, 0)), -1).await, (0, 0));
    assert_eq!(produce(&mut forger, "known", batch(&[(1, "FORGED")], (pid, 0, 1)), -1).await, (0, 1));
    let (error, _) = produce(&mut owner, "known", batch(&[(1, "LEGIT-1")], (pid, 0, 1)), -1).await;
    assert_eq!(error, 87, "INVALID_RECORD: the owner learns its batch was not written");
    let retry = batch(&[(1, "FORGED")], (pid, 0, 1));
    assert_eq!(produce(&mut forger, "known", retry, -1).await, (0, 1), "a true retry is still answered as one");
    broker.stop().await;
}
