//! The `franz` binary as separate processes: scaling out with `--bootstrap` and `--only`, the start-up errors
//! a user sees when the broker they asked for is not there, a quiet stop after being scraped, and the broker alone
//! with its own metrics.

use std::time::{Duration, Instant};

use crate::util::{Harness, Reaped, Up, franz, scratch, valid, wait_until};

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
    let listen = free_address();
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

/// A free loopback port, as `127.0.0.1:PORT` (free when asked; nothing else here binds it).
fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_broker_alone_serves_its_own_metrics_and_readiness_and_stops_cleanly() {
    let dir = scratch();
    let (listen, metrics_listen) = (free_address(), free_address());
    let broker = Up::broker_alone(dir.path(), "broker", &listen, &["--metrics-listen", &metrics_listen]);
    let base = format!("http://{metrics_listen}");
    wait_until("the broker's /readyz answers 200", || async {
        reqwest::get(format!("{base}/readyz")).await.is_ok_and(|answer| answer.status() == 200)
    })
    .await;
    franz::kafka::admin::ensure_topics(&listen, &["measured"], 3, 1).await.expect("a client creates a topic");

    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    for wanted in [
        "franz_broker_partitions 3",
        "franz_broker_log_bytes{topic=\"measured\"} 0",
        "franz_broker_requests_total{api=\"CreateTopics\",error=\"NONE\"} 1",
    ] {
        assert!(metrics.lines().any(|line| line == wanted), "{wanted} in\n{metrics}");
    }
    for family in ["franz_alerts_", "franz_tickets", "franz_dead_letters", "franz_time_to_claim", "franz_service_up"] {
        assert!(!metrics.contains(family), "a broker alone has no {family}: it would read 0 for ever\n{metrics}");
    }
    let readyz: serde_json::Value = reqwest::get(format!("{base}/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(readyz["broker"], serde_json::json!({"kind": "embedded (ephemeral)", "address": listen}));
    assert_eq!(readyz["services"], serde_json::json!({}));

    // The URL the broker prints, as a person would copy it.
    let status = franz(dir.path(), None).args(["status", "--url", &format!("{base}/metrics")]).output().unwrap();
    let screen = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{screen}{}", String::from_utf8_lossy(&status.stderr));
    assert!(screen.contains(&format!("broker: embedded (ephemeral) at {listen}, up, 3 partitions,")), "{screen}");
    assert!(screen.contains("no services run here"), "{screen}");

    // A flood of requests to the endpoints is no flood of Kafka requests: what they read is read once a second.
    let metadata_requests = || async {
        let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        let line = "franz_broker_requests_total{api=\"Metadata\",error=\"NONE\"} ";
        text.lines().find_map(|l| l.strip_prefix(line)?.parse::<f64>().ok()).expect("Metadata requests are counted")
    };
    let before = metadata_requests().await;
    let began = Instant::now();
    let client = reqwest::Client::new();
    let requests = (0..200).map(|i| {
        let url = format!("{base}/{}", if i % 2 == 0 { "metrics" } else { "readyz" });
        let client = client.clone();
        async move { client.get(url).send().await.map(|answer| answer.status().as_u16()) }
    });
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(200))), "{answers:?}");
    let seconds = began.elapsed().as_secs() + 2;
    let spent = metadata_requests().await - before;
    // Per second at most one scrape reading (one request) and one readiness reading (two, a new client's own).
    assert!(spent <= (3 * seconds) as f64, "200 requests in {seconds} s cost {spent} Metadata requests");

    // A client that sends half a request does not hold up the stop (its head may take 10 s to time out).
    let mut half = std::net::TcpStream::connect(&metrics_listen).unwrap();
    std::io::Write::write_all(&mut half, b"GET /metrics HTTP/1.1\r\n").unwrap();
    let stopping = Instant::now();
    let log = broker.terminate();
    assert!(stopping.elapsed() < Duration::from_secs(5), "stopped in {:?}", stopping.elapsed());
    assert!(log.contains("broker stopped cleanly"), "{log}");
    let errors: Vec<&str> = log.lines().filter(|line| line.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "errors logged while stopping:\n{}", errors.join("\n"));
}

#[test]
fn franz_broker_with_a_taken_metrics_address_fails_saying_which_and_what_to_do() {
    let dir = scratch();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let output = franz(dir.path(), None)
        .args(["broker", "--ephemeral", "--listen", "127.0.0.1:0", "--metrics-listen", &taken])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{errors}");
    assert!(errors.contains(&format!("cannot serve the metrics on {taken}")), "{errors}");
    assert!(errors.contains("pass --metrics-listen with another address"), "{errors}");
    assert!(!errors.contains("embedded broker ready"), "no broker starts to go at once: {errors}");

    let same = free_address();
    let output = franz(dir.path(), None)
        .args(["broker", "--ephemeral", "--listen", &same, "--metrics-listen", &same])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{errors}");
    assert!(errors.contains(&format!("--metrics-listen {same} is the broker's own --listen address")), "{errors}");
}

/// What the README promises: the first signal ends `franz up` within this, whatever its cluster's state.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);
/// The exit status after a second signal (128 + SIGINT).
const EXIT_AT_ONCE: i32 = 130;

/// A `franz up --bootstrap` of the default services against a broker of the test's own, ready, with that broker
/// then stopped: franz's cluster is gone. Returns franz (killed when dropped) once it has noticed, and the address of
/// its `/metrics`.
async fn franz_with_its_cluster_gone(dir: &std::path::Path, name: &str) -> (Reaped, String) {
    let harness = Harness::new(3).await;
    let listen = free_address();
    let data = dir.join(format!("{name}-data"));
    let args = ["--desk-listen", "127.0.0.1:0", "--metrics-listen", &listen, "--data-dir", data.to_str().unwrap()];
    let up = Reaped(Up::start(dir, name, &harness, &args));
    let base = format!("http://{listen}");
    wait_until("franz ready", || async {
        reqwest::get(format!("{base}/readyz")).await.is_ok_and(|answer| answer.status() == 200)
    })
    .await;
    let broker = harness.broker;
    broker.stop().await;
    wait_until("franz to notice that its broker is gone", || async {
        let log = up.0.log();
        log.contains("Connection refused") || log.contains("AllBrokersDown") || log.contains("brokers are down")
    })
    .await;
    (up, listen)
}

/// Asks for `/metrics` on a connection of its own and leaves the request waiting: with the cluster gone, reading
/// the consumer lag waits for the broker's answers until they time out. Returns once a later request on another
/// connection has been answered, by when franz has read this one.
async fn leave_a_scrape_waiting(listen: &str) -> std::net::TcpStream {
    let mut waiting = std::net::TcpStream::connect(listen).unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {listen}\r\n\r\n");
    std::io::Write::write_all(&mut waiting, request.as_bytes()).unwrap();
    let answer = reqwest::get(format!("http://{listen}/healthz")).await.unwrap();
    assert_eq!(answer.status(), 200);
    waiting
}

/// Regression (#33, item 10): with its cluster gone, franz logged librdkafka's `AllBrokersDown` and its kin about
/// 40 times a second, and SIGTERM did not end it for over a minute.
#[tokio::test(flavor = "multi_thread")]
async fn with_its_cluster_gone_franz_logs_each_error_once_and_stops_within_the_deadline() {
    let dir = scratch();
    let (mut up, listen) = franz_with_its_cluster_gone(dir.path(), "gone").await;
    // A window of fixed length is what is measured here, so this wait is the measurement, not a guess.
    let window = Duration::from_secs(10);
    let before = up.0.log().lines().count();
    tokio::time::sleep(window).await;
    let window_log = up.0.log();
    let logged: Vec<&str> = window_log.lines().skip(before).collect();
    eprintln!("{} lines logged in {window:?} with the cluster gone", logged.len());

    // Both are measured before either is judged, so a failure reports both. A scrape left waiting is work in
    // flight that cannot finish.
    let _waiting = leave_a_scrape_waiting(&listen).await;
    let stopping = Instant::now();
    up.signal("TERM");
    let status = up.exit_within(SHUTDOWN_DEADLINE + Duration::from_secs(5));
    let took = stopping.elapsed();
    eprintln!("exited {status:?} {took:?} after SIGTERM");
    assert!(logged.len() < 20, "{} lines in {window:?}:\n{}", logged.len(), logged.join("\n"));
    let log = up.0.log();
    assert!(status.is_some(), "franz up still runs {took:?} after SIGTERM:\n{log}");
    assert!(took < SHUTDOWN_DEADLINE + Duration::from_secs(1), "took {took:?}:\n{log}");
    assert!(log.contains("franz stopped cleanly") || log.contains("without waiting longer for"), "{log}");
}

/// Regression (#33, item 10): SIGTERM and then two SIGINTs did not end a franz whose cluster was gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_ends_franz_at_once_while_the_first_shutdown_waits() {
    let dir = scratch();
    let (mut up, listen) = franz_with_its_cluster_gone(dir.path(), "twice").await;
    let _waiting = leave_a_scrape_waiting(&listen).await;
    up.signal("TERM");
    wait_until("franz to begin shutting down", || async { up.0.log().contains("shutting down") }).await;
    assert!(up.0.child.try_wait().unwrap().is_none(), "the first shutdown ended at once; nothing to interrupt");
    let stopping = Instant::now();
    up.signal("INT");
    let status = up.exit_within(Duration::from_secs(10));
    let took = stopping.elapsed();
    eprintln!("exited {status:?} {took:?} after the second signal");
    let log = up.0.log();
    let status = status.unwrap_or_else(|| panic!("franz up still runs {took:?} after a second signal:\n{log}"));
    assert!(took < Duration::from_secs(1), "took {took:?}:\n{log}");
    assert_eq!(status.code(), Some(EXIT_AT_ONCE), "{log}");
    assert_eq!(log.matches("second signal; exiting at once").count(), 1, "{log}");
}
