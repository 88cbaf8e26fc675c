//! The `franz` binary as separate processes: scaling out with `--bootstrap` and `--only`, and the start-up errors
//! a user sees when the broker they asked for is not there.

use std::time::{Duration, Instant};

use crate::util::{Harness, Up, franz, scratch, valid, wait_until};

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_broker_split_the_partitions_and_produce_each_ticket_once() {
    let harness = Harness::new(3).await;
    let dir = scratch();
    let a = Up::start(dir.path(), "a", &harness, &["--only", "aufbereitung"]);
    let b = Up::start(dir.path(), "b", &harness, &["--only", "aufbereitung"]);
    wait_until("both processes to own partitions", || async {
        let (in_a, in_b) = (a.owned(), b.owned());
        in_a >= 1 && in_b >= 1 && in_a + in_b == 3
    })
    .await;

    let records: Vec<(i32, Vec<u8>)> = (0..1500).map(|i| (i % 3, valid(&format!("ticket {i}")))).collect();
    harness.produce(&harness.topics.intake, &records).await;
    harness.read(&harness.topics.tickets, 1500).await;
    let (log_a, log_b) = (a.terminate(), b.terminate());
    for log in [&log_a, &log_b] {
        assert!(log.contains("aufbereitung stopped") && log.contains("franz stopped cleanly"), "{log}");
    }
    assert_eq!(harness.count(&harness.topics.tickets).await, 1500, "each ticket exactly once");
}

#[test]
fn container_broker_without_docker_fails_within_a_second_saying_what_to_do() {
    let dir = scratch();
    for kind in ["redpanda", "kafka"] {
        let started = Instant::now();
        let output = franz(dir.path(), None)
            .env("DOCKER_HOST", format!("unix://{}", dir.path().join("no-docker.sock").display()))
            .args(["up", "--broker", kind, "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(stderr.contains("no Docker engine at unix://") && stderr.contains("no-docker.sock"), "{stderr}");
        assert!(stderr.contains("--broker embedded") && stderr.contains("--bootstrap HOST:PORT"), "{stderr}");
    }
}

#[tokio::test]
async fn unreachable_bootstrap_is_reported_with_its_address_after_a_bounded_wait() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let error = franz::kafka::admin::metadata(&address, None, Duration::from_secs(1)).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.contains(&format!("cannot reach a Kafka broker at {address}")), "{error}");
}
