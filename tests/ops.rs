//! The operations endpoints of a running franz: `/metrics` passes `promtool check metrics` and keeps its names and
//! label sets (the embedded broker's included), its counters and lag follow the records produced, time to claim is
//! observed once per ticket, and `/readyz` follows the broker.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use franz::config::{BrokerKind, Config, Service};
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command as TicketCommand};
use rdkafka::producer::FutureRecord;

use crate::util::{Harness, Started, scratch, valid, wait_until};

fn config(harness: &Harness, data: &Path) -> Config {
    Config {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..harness.config(data, &[Service::Aufbereitung, Service::Absturz, Service::Akte])
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
                    // Sorted: the order labels are written in means nothing to a query.
                    let mut keys: Vec<&str> = labels
                        .trim_end_matches('}')
                        .split("\",")
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, _)| k)
                        .collect();
                    keys.sort_unstable();
                    format!("{name}{{{}}}", keys.join(","))
                }
            }
        })
        .collect()
}

/// The Grafana dashboard in `contrib/` shows every metric family of `text` and names no metric that does not exist.
fn dashboard_shows_exactly(text: &str) {
    let families: BTreeSet<&str> =
        text.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/grafana/franz.json");
    let dashboard = std::fs::read_to_string(path).unwrap();
    let named: BTreeSet<&str> = dashboard
        .match_indices("franz_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
        })
        .collect();
    let family_of = |name: &str| -> Option<String> {
        ["", "_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            families.contains(base).then(|| base.to_owned())
        })
    };
    let unknown: Vec<&&str> = named.iter().filter(|name| family_of(name).is_none()).collect();
    assert!(unknown.is_empty(), "{path} names metrics franz does not have: {unknown:?}");
    let shown: BTreeSet<String> = named.iter().filter_map(|name| family_of(name)).collect();
    let missing: Vec<&&str> = families.iter().filter(|family| !shown.contains(**family)).collect();
    assert!(missing.is_empty(), "{path} shows no panel for: {missing:?}");
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

/// Publishes `payloads` to `topic` at `bootstrap` and waits for every acknowledgement.
async fn publish(bootstrap: &str, topic: &str, payloads: &[(Option<&str>, Vec<u8>)]) {
    let producer = franz::kafka::producer(bootstrap).unwrap();
    for (key, payload) in payloads {
        let mut record = FutureRecord::<str, [u8]>::to(topic).payload(payload.as_slice());
        if let Some(key) = key {
            record = record.key(key);
        }
        producer.send(record, std::time::Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_scrape_passes_promtool_and_keeps_its_names_and_label_sets() {
    // franz runs its own broker here, so the scrape carries the broker's metrics too.
    let data = scratch();
    let config = Config {
        broker: BrokerKind::Embedded,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.path().to_path_buf(),
        partitions: 2,
        services: vec![Service::Aufbereitung, Service::Absturz, Service::Akte],
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    };
    let running = Started::start(&config).await;
    let base = format!("http://{}", running.ops_address.expect("the metrics are served"));
    let intake = config.topics.intake.clone();
    publish(&running.broker.bootstrap(), &intake, &[(None, valid("a ticket")), (None, b"not json".to_vec())]).await;
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
        "franz_broker_connections_accepted_total",
        "franz_broker_connections_dropped_total{reason}",
        "franz_broker_connections_evicted_total{kind}",
        "franz_broker_fsync_duration_seconds_bucket{le}",
        "franz_broker_fsync_duration_seconds_count",
        "franz_broker_fsync_duration_seconds_sum",
        "franz_broker_log_bytes{topic}",
        "franz_broker_received_bytes_total",
        "franz_broker_request_duration_seconds_bucket{api,le}",
        "franz_broker_request_duration_seconds_count{api}",
        "franz_broker_request_duration_seconds_sum{api}",
        "franz_broker_requests_total{api,error}",
        "franz_broker_sent_bytes_total",
        "franz_broker_up",
        "franz_broker_partitions",
        "franz_consumer_lag_records{group,topic}",
        "franz_dead_letters_total{error_type}",
        "franz_discord_refused_total{what}",
        "franz_imap_reconnects_total",
        "franz_mails_total{outcome}",
        "franz_ratings_total{rating}",
        "franz_records_in_total{service}",
        "franz_records_out_total{service,topic}",
        "franz_relay_retries_total{service}",
        "franz_service_up{service}",
        "franz_tickets{status}",
        "franz_time_to_claim_median_seconds",
        "franz_time_to_claim_seconds_bucket{le}",
        "franz_time_to_claim_seconds_count",
        "franz_time_to_claim_seconds_sum",
        "franz_webhook_paused",
        "franz_webhook_rate_limited_total",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let got = shapes(&text);
    assert_eq!(got, expected, "metric names or label sets changed; update dashboards (contrib/grafana) too\n{text}");
    dashboard_shows_exactly(&text);
    assert_eq!(sample(&text, "franz_dead_letters_total", "error_type=\"json_decode_error\""), Some(1.0), "{text}");
    assert!(sum(&text, "franz_broker_requests_total", "api=\"Produce\",error=\"NONE\"") >= 2.0, "{text}");
    assert!(sample(&text, "franz_broker_log_bytes", &format!("topic=\"{intake}\"")).is_some_and(|b| b > 0.0), "{text}");
    assert!(sample(&text, "franz_broker_connections", "").is_some_and(|c| c > 0.0), "{text}");
    running.stop().await.expect("franz stops cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_to_claim_is_observed_once_per_ticket_at_its_first_claim() {
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = config(&harness, data.path());
    config.services = vec![Service::Akte];
    let running = Started::start(&config).await;
    let url = format!("http://{}/metrics", running.ops_address.expect("the metrics are served"));
    let ticket = franz::schema::Ticket {
        id: "ticket-claimed".into(),
        contact: "pontatot".into(),
        origin: "Discord".into(),
        body: "please help".into(),
        date: "2026-02-24T08:32:23.255Z".into(),
        contact_id: None,
        guild_id: None,
        channel_id: None,
        follows: None,
        category: None,
        message_id: None,
        automatic: None,
        attachments: Vec::new(),
    };
    let id = Some(ticket.id.as_str());
    publish(&harness.bootstrap, &harness.topics.tickets, &[(id, serde_json::to_vec(&ticket).unwrap())]).await;
    wait_until("the ticket created", || async {
        sample(&get(&url).await.1, "franz_akte_events_total", "event=\"created\"") == Some(1.0)
    })
    .await;
    let claim = |who: &str| {
        let command = TicketCommand {
            command_id: format!("claim-by-{who}"),
            ticket_id: ticket.id.clone(),
            actor: Actor::staff(ActorSource::Api, who),
            action: Action::Claim,
        };
        (id, serde_json::to_vec(&command).unwrap())
    };
    publish(&harness.bootstrap, &harness.topics.commands, &[claim("ana"), claim("bo")]).await;
    wait_until("the claim decided and the second one refused", || async {
        let text = get(&url).await.1;
        sample(&text, "franz_akte_events_total", "event=\"claimed\"") == Some(1.0)
            && sample(&text, "franz_akte_events_total", "event=\"rejected\"") == Some(1.0)
    })
    .await;
    let text = get(&url).await.1;
    assert_eq!(sample(&text, "franz_time_to_claim_seconds_count", ""), Some(1.0), "{text}");
    assert_eq!(sample(&text, "franz_time_to_claim_seconds_bucket", "le=\"+Inf\""), Some(1.0), "{text}");
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
    assert!(screen.contains(&format!("broker: external at {}, up,", harness.bootstrap)), "{screen}");
    assert!(screen.contains("desk: not running"), "{screen}");

    let (ok, json, errors) = franz_status(&base, &["--json"]);
    assert!(ok, "{errors}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(json["readiness"]["status"], "ready");
    assert!(json["metrics"].as_array().is_some_and(|m| m.iter().any(|s| s["name"] == "franz_records_in_total")));

    running.stop().await.expect("franz stops cleanly");
    let (ok, _, errors) = franz_status(&base, &[]);
    assert!(!ok, "status succeeds with nothing running");
    assert!(errors.contains(&format!("no answer from {base} (found no connection")), "{errors}");
    assert!(errors.contains("franz up") && errors.contains("--url"), "says what to do: {errors}");
}

/// aufbereitung alone with one intake record waiting, whose first `refusals` deliveries the broker refuses (it
/// retries three times, then fails): the harness, franz's data, franz, and the base URL of its ops endpoints.
async fn aufbereitung_refused(refusals: usize) -> (Harness, tempfile::TempDir, Started, String) {
    let harness = Harness::new(1).await;
    harness.produce(&harness.topics.intake, &[(0, valid("a ticket"))]).await;
    harness.broker.refuse_next_produces(crate::util::TOPIC_AUTHORIZATION_FAILED, refusals);
    let data = scratch();
    let mut config = config(&harness, data.path());
    config.services = vec![Service::Aufbereitung];
    let running = Started::start(&config).await;
    let base = format!("http://{}", running.ops_address.expect("the metrics are served"));
    (harness, data, running, base)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_delivery_shows_as_the_services_last_problem_while_it_keeps_running() {
    // The first attempt and one retry are refused; the second retry is taken.
    let (harness, _data, running, base) = aufbereitung_refused(2).await;
    wait_until("the ticket delivered after its retries", || async {
        sample(&get(&format!("{base}/metrics")).await.1, "franz_relay_retries_total", "service=\"aufbereitung\"")
            == Some(2.0)
            && harness.count(&harness.topics.tickets).await == 1
    })
    .await;
    let (status, readyz) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "a service that recovered is ready: {readyz}");
    let readyz: serde_json::Value = serde_json::from_str(&readyz).unwrap();
    let problem = readyz["problems"]["aufbereitung"]["text"].as_str().unwrap_or_default().to_owned();
    let expected = format!("delivery to {} failed", harness.topics.tickets);
    assert!(problem.starts_with(&expected) && problem.ends_with("retry 2"), "{readyz}");
    let (ok, screen, errors) = franz_status(&base, &[]);
    assert!(ok, "status fails on a ready franz:\n{screen}{errors}");
    assert!(screen.contains(&problem), "{screen}");
    running.stop().await.expect("franz stops cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_status_fails_and_names_the_service_once_a_service_has_failed() {
    // aufbereitung's first attempt and its three retries are refused: it gives up and stops.
    let (_harness, _data, running, base) = aufbereitung_refused(4).await;
    wait_until("readyz 503 after aufbereitung failed", || async { get(&format!("{base}/readyz")).await.0 == 503 })
        .await;

    let (ok, screen, errors) = franz_status(&base, &[]);
    assert!(!ok, "status succeeds with a failed service:\n{screen}");
    assert!(screen.contains("aufbereitung   STOPPED"), "{screen}");
    assert!(errors.contains("aufbereitung stopped"), "{errors}");
    let (_, readyz) = get(&format!("{base}/readyz")).await;
    let readyz: serde_json::Value = serde_json::from_str(&readyz).unwrap();
    let failure = readyz["problems"]["aufbereitung"]["text"].as_str().unwrap_or_default().to_owned();
    assert!(failure.starts_with("failed: "), "/readyz says how aufbereitung failed: {readyz}");
    assert!(screen.contains(&failure), "the status screen shows the failure\n{screen}");
    let text = get(&format!("{base}/metrics")).await.1;
    assert_eq!(sample(&text, "franz_service_up", "service=\"aufbereitung\""), Some(0.0), "{text}");
    assert_eq!(sample(&text, "franz_relay_retries_total", "service=\"aufbereitung\""), Some(3.0), "{text}");
    let failure = running.stop().await.expect_err("franz reports the failed service");
    assert!(format!("{failure:#}").contains("aufbereitung failed"), "{failure:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_status_pointed_at_something_that_answers_without_end_stops_reading_and_says_so() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 1 << 20];
                while socket.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    let (ok, _, errors) = tokio::task::spawn_blocking(move || franz_status(&base, &[])).await.unwrap();
    assert!(!ok);
    assert!(errors.contains("answered more than 32 MiB"), "{errors}");
}

#[tokio::test(flavor = "multi_thread")]
async fn franz_status_shows_what_a_hostile_server_says_escaped_and_clipped() {
    let long = "y".repeat(10_000);
    let readyz = serde_json::json!({
        "status": "unready\u{1b}]0;owned\u{7}",
        "reasons": [format!("\u{1b}[2Jwiped\u{2028}{long}")],
        "services": {"akte\u{202e}": false},
        "problems": {"akte\u{202e}": {"at": "2026-12-01T10:00:00Z", "text": long}},
    });
    let app = axum::Router::new()
        .route(
            "/readyz",
            axum::routing::get(move || {
                let body = readyz.to_string();
                async move { (axum::http::StatusCode::SERVICE_UNAVAILABLE, body) }
            }),
        )
        .route("/metrics", axum::routing::get(|| async { "franz_broker_up 1\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let odd_path = format!("{base}/\u{1b}[2J");
    let (ok, screen, errors) = tokio::task::spawn_blocking(move || franz_status(&base, &[])).await.unwrap();
    assert!(!ok, "an unready franz fails the status");
    for text in [&screen, &errors] {
        assert!(!text.contains('\u{1b}') && !text.contains('\u{2028}') && !text.contains('\u{202e}'), "{text}");
        assert!(text.lines().all(|line| line.chars().count() < 400), "every field is clipped: {text}");
    }
    assert!(errors.contains("franz is not ready: \\u{1b}[2Jwiped\\u{2028}yyy"), "{errors}");
    assert!(screen.contains("unready\\u{1b}]0;owned\\u{7}"), "{screen}");
    assert!(screen.contains("akte\\u{202e}"), "{screen}");

    // A URL with a terminal escape in it is named percent-encoded, and a path the server does not know is no
    // franz: its HTTP status says why.
    let (ok, _, errors) = tokio::task::spawn_blocking(move || franz_status(&odd_path, &[])).await.unwrap();
    assert!(!ok);
    assert!(!errors.contains('\u{1b}') && errors.contains("/%1B[2J/readyz answered HTTP 404"), "{errors}");
}
