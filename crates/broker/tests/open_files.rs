//! The broker under a small open-file limit (its own test binary, because the limit applies to the whole process).
//!
//! Regression: under the common limit of 1,024 open files, a client created two 600-partition topics; the second
//! failed with KAFKA_STORAGE_ERROR but left its files, and the broker could not start again ("Too many open files").

mod common;

use common::*;

#[tokio::test]
async fn under_1024_open_files_partitions_beyond_the_limit_are_refused_and_the_broker_starts_again() {
    // Both limits, so the broker cannot raise its soft limit past them.
    rlimit::setrlimit(rlimit::Resource::NOFILE, 1024, 1024).expect("a lower limit can always be set");
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    // What the limit allows: 1,024 less a reserve, half of that for connections, the rest for partitions.
    let mut refused = Vec::new();
    let mut held = 0;
    for (name, partitions) in [("six-hundred-a", 600), ("six-hundred-b", 600)].into_iter().chain((0..10).map(|i| {
        (
            [
                "hundred-0",
                "hundred-1",
                "hundred-2",
                "hundred-3",
                "hundred-4",
                "hundred-5",
                "hundred-6",
                "hundred-7",
                "hundred-8",
                "hundred-9",
            ][i],
            100,
        )
    })) {
        match try_create_topic(&mut client, name, partitions).await {
            (0, _) => held += partitions,
            (37, _) => refused.push(name),
            (other, message) => panic!("{name}: error {other} {message}"),
        }
    }
    assert!(refused.contains(&"six-hundred-b") && refused.contains(&"hundred-9"), "refused: {refused:?}");
    assert!(held >= 300, "the limit still leaves room for hundreds of partitions ({held})");
    assert_eq!(produce(&mut client, "hundred-0", batch(&[(1, "kept")], (-1, -1, -1)), -1).await, (0, 0));
    drop(client);
    broker.stop().await;
    let topics: Vec<String> = std::fs::read_dir(dir.path().join("topics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &refused {
        assert!(!topics.contains(&name.to_string()), "a refused create leaves nothing: {topics:?}");
    }
    for _ in 0..2 {
        let broker = start(settings(dir.path())).await;
        let mut client = Client::connect(broker.address()).await;
        assert_eq!(list_offset(&mut client, "hundred-0", -1).await, (0, 1));
        drop(client);
        broker.stop().await;
    }

    // Data written under a higher limit than this process has (here: a topic of 1,400 partitions, written by
    // hand) cannot all be opened: the broker says so and what to do, instead of "Too many open files".
    let crowded = tempfile::tempdir().unwrap();
    let topic = crowded.path().join("topics").join("wide");
    std::fs::create_dir_all(&topic).unwrap();
    std::fs::write(topic.join("topic.json"), r#"{"id":"5f0c6a4e-0d7e-4f43-9b8e-4d3a4b6f1a2c","partitions":1400}"#)
        .unwrap();
    let refused = franz_broker::EmbeddedBroker::start(settings(crowded.path())).await.expect_err("refused");
    let message = format!("{refused:#}");
    assert!(message.contains("open-file limit") && message.contains("ulimit -n"), "{message}");
}
