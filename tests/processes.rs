//! The `franz` binary as separate processes: scaling out with `--bootstrap` and `--only`, the start-up errors
//! a user sees when the broker they asked for is not there, and a quiet stop after being scraped.

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

#[tokio::test(flavor = "multi_thread")]
async fn a_franz_scraped_for_metrics_stops_without_logging_errors() {
    let dir = scratch();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let up = Up::embedded(dir.path(), "scraped", &["--only", "aufbereitung", "--metrics-listen", &listen]);
    let base = format!("http://{listen}");
    wait_until("franz ready", || async {
        reqwest::get(format!("{base}/readyz")).await.is_ok_and(|answer| answer.status() == 200)
    })
    .await;
    // A scrape reads consumer lag with clients of its own; they must be gone before the broker stops.
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("franz_consumer_lag_records{group=\"aufbereitung\""), "{metrics}");
    let log = up.terminate();
    assert!(log.contains("franz stopped cleanly"), "{log}");
    let errors: Vec<&str> = log.lines().filter(|line| line.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "errors logged while stopping:\n{}", errors.join("\n"));
}
