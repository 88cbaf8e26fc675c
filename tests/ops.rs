//! The operations endpoints of a running franz: `/metrics` passes `promtool check metrics` and keeps its names and
//! label sets, its counters and lag follow the records produced, and `/readyz` follows the broker.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use franz::config::{BrokerKind, Config, Service};

use crate::util::{Harness, Started, scratch, valid, wait_until};

fn config(harness: &Harness, data: &Path) -> Config {
    Config {
        broker: BrokerKind::External,
        bootstrap: harness.bootstrap.clone(),
        data_dir: data.to_path_buf(),
        partitions: harness.partitions,
        services: vec![Service::Aufbereitung, Service::Absturz, Service::Akte],
        topics: harness.topics.clone(),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    }
}

async fn get(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The value of the sample `name{labels}` (labels as written, e.g. `service="aufbereitung"`), if present.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let wanted = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{labels}}}") };
    text.lines().find_map(|line| line.strip_prefix(&wanted)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every sample of `name` whose labels contain `containing`.
fn sum(text: &str, name: &str, containing: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(containing))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Each sample's name with its label names (not values): what dashboards and alerts depend on.
fn shapes(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
            match series.split_once('{') {
                None => series.to_owned(),
                Some((name, labels)) => {
                    let keys: Vec<&str> = labels
                        .trim_end_matches('}')
                        .split("\",")
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, _)| k)
                        .collect();
                    format!("{name}{{{}}}", keys.join(","))
                }
            }
        })
        .collect()
}

/// Runs `promtool check metrics` on `text`. A missing promtool fails with how to install it (under CI too: CI
/// installs it first).
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => panic!(
            "promtool cannot run ({error}); install it with `bash scripts/install-promtool.sh` (Debian's prometheus package){}",
            if std::env::var("CI").is_ok_and(|v| v == "true") { "; CI must install it before the tests" } else { "" }
        ),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scraped ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_scrape_passes_promtool_and_keeps_its_names_and_label_sets() {
    let harness = Harness::new(2).await;
    let data = scratch();
    let running = Started::start(&config(&harness, data.path())).await;
    let base = format!("http://{}", running.ops_address.expect("the metrics are served"));
    harness.produce(&harness.topics.intake, &[(0, valid("a ticket")), (1, b"not json".to_vec())]).await;
    wait_until("both records counted out and the ticket's created event decided", || async {
        let text = get(&format!("{base}/metrics")).await.1;
        sum(&text, "franz_records_out_total", "service=\"aufbereitung\"") >= 2.0
            && sample(&text, "franz_akte_events_total", "event=\"created\"") == Some(1.0)
    })
    .await;
    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    promtool_check(&text);

    let expected: BTreeSet<String> = [
        "franz_akte_events_total{event}",
        "franz_alerts_delivered_total",
        "franz_alerts_pending",
        "franz_broker_connections",
        "franz_broker_up",
        "franz_broker_partitions",
        "franz_consumer_lag_records{group,topic}",
        "franz_dead_letters_total{error_type}",
        "franz_records_in_total{service}",
        "franz_records_out_total{service,topic}",
        "franz_relay_retries_total{service}",
        "franz_service_up{service}",
        "franz_tickets{status}",
        "franz_time_to_claim_median_seconds",
        "franz_webhook_paused",
        "franz_webhook_rate_limited_total",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let got = shapes(&text);
    assert_eq!(got, expected, "metric names or label sets changed; update dashboards (contrib/grafana) too\n{text}");
    assert_eq!(sample(&text, "franz_dead_letters_total", "error_type=\"json_decode_error\""), Some(1.0), "{text}");
    running.stop().await.expect("franz stops cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn intake_records_move_the_counters_by_their_number_and_the_lag_drops_to_zero() {
    const N: usize = 25;
    let harness = Harness::new(3).await;
    let data = scratch();
    let running = Started::start(&config(&harness, data.path())).await;
    let url = format!("http://{}/metrics", running.ops_address.expect("the metrics are served"));
    let records: Vec<(i32, Vec<u8>)> = (0..N).map(|i| ((i % 3) as i32, valid(&format!("ticket {i}")))).collect();
    harness.produce(&harness.topics.intake, &records).await;
    let lag = "franz_consumer_lag_records";
    let intake_lag = format!("group=\"aufbereitung\",topic=\"{}\"", harness.topics.intake);
    wait_until(&format!("{N} records in and out of aufbereitung and its lag at 0"), || async {
        let text = get(&url).await.1;
        sample(&text, "franz_records_in_total", "service=\"aufbereitung\"") == Some(N as f64)
            && sum(&text, "franz_records_out_total", "service=\"aufbereitung\"") == N as f64
            && sample(&text, lag, &intake_lag) == Some(0.0)
    })
    .await;
    let text = get(&url).await.1;
    let tickets = format!("service=\"aufbereitung\",topic=\"{}\"", harness.topics.tickets);
    assert_eq!(sample(&text, "franz_records_out_total", &tickets), Some(N as f64), "{text}");
    running.stop().await.expect("franz stops cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_the_broker_is_down_and_200_once_it_is_back() {
    let harness = Harness::new(1).await;
    let data = scratch();
    let running = Started::start(&config(&harness, data.path())).await;
    let base = format!("http://{}", running.ops_address.expect("the metrics are served"));
    wait_until("ready", || async { get(&format!("{base}/readyz")).await.0 == 200 }).await;
    assert_eq!(get(&format!("{base}/healthz")).await, (200, r#"{"status":"ok"}"#.to_owned()));

    let (harness, down) = harness
        .with_broker_down(async {
            wait_until("readyz 503 with the broker down", || async { get(&format!("{base}/readyz")).await.0 == 503 })
                .await;
            (get(&format!("{base}/readyz")).await, get(&format!("{base}/healthz")).await.0)
        })
        .await;
    let ((_, reason), healthz) = down;
    assert!(reason.contains("does not answer"), "{reason}");
    assert_eq!(healthz, 200, "the process is alive while the broker is down");
    wait_until("readyz 200 once the broker is back", || async { get(&format!("{base}/readyz")).await.0 == 200 }).await;
    running.stop().await.expect("franz stops cleanly");
    drop(harness);
}

/// Runs the `franz status` binary against `base`; its exit success, stdout and stderr.
fn franz_status(base: &str, extra: &[&str]) -> (bool, String, String) {
    let dir = scratch();
    let output = crate::util::franz(dir.path(), None).args(["status", "--url", base]).args(extra).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_status_shows_a_ready_franz_and_fails_when_nothing_answers() {
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = config(&harness, data.path());
    config.services = vec![Service::Aufbereitung];
    let running = Started::start(&config).await;
    let base = format!("http://{}", running.ops_address.expect("the metrics are served"));
    wait_until("ready", || async { get(&format!("{base}/readyz")).await.0 == 200 }).await;

    let (ok, screen, errors) = franz_status(&base, &[]);
    assert!(ok, "status fails on a ready franz:\n{screen}{errors}");
    assert!(screen.starts_with(&format!("franz at {base}: ready\n")), "{screen}");
    assert!(screen.contains("aufbereitung   running"), "{screen}");
    assert!(screen.contains(&format!("aufbereitung   {}", harness.topics.intake)), "{screen}");

    let (ok, json, errors) = franz_status(&base, &["--json"]);
    assert!(ok, "{errors}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(json["readiness"]["status"], "ready");
    assert!(json["metrics"].as_array().is_some_and(|m| m.iter().any(|s| s["name"] == "franz_records_in_total")));

    running.stop().await.expect("franz stops cleanly");
    let (ok, _, errors) = franz_status(&base, &[]);
    assert!(!ok, "status succeeds with nothing running");
    assert!(errors.contains("nothing answers at") && errors.contains("franz up"), "{errors}");
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_status_fails_and_names_the_service_once_a_service_has_failed() {
    let harness = Harness::new(1).await;
    harness.produce(&harness.topics.intake, &[(0, valid("never delivered"))]).await;
    // aufbereitung's first attempt and its three retries are refused: it gives up and stops.
    harness.broker.refuse_next_produces(crate::util::TOPIC_AUTHORIZATION_FAILED, 4);
    let data = scratch();
    let mut config = config(&harness, data.path());
    config.services = vec![Service::Aufbereitung];
    let running = Started::start(&config).await;
    let base = format!("http://{}", running.ops_address.expect("the metrics are served"));
    wait_until("readyz 503 after aufbereitung failed", || async { get(&format!("{base}/readyz")).await.0 == 503 })
        .await;

    let (ok, screen, errors) = franz_status(&base, &[]);
    assert!(!ok, "status succeeds with a failed service:\n{screen}");
    assert!(screen.contains("aufbereitung   STOPPED"), "{screen}");
    assert!(errors.contains("aufbereitung stopped"), "{errors}");
    let text = get(&format!("{base}/metrics")).await.1;
    assert_eq!(sample(&text, "franz_service_up", "service=\"aufbereitung\""), Some(0.0), "{text}");
    assert_eq!(sample(&text, "franz_relay_retries_total", "service=\"aufbereitung\""), Some(3.0), "{text}");
    let failure = running.stop().await.expect_err("franz reports the failed service");
    assert!(format!("{failure:#}").contains("aufbereitung failed"), "{failure:#}");
}
