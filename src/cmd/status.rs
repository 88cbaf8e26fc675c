//! `franz status`: one screen on how a running franz is doing, read from its `/readyz` and `/metrics`.
//!
//! It finds the running franz from `--url`, else the desk's local credential file (which names the desk's URL,
//! where the ops endpoints are served too), else `metrics_listen`, else the desk's configured address. It only reads
//! and prints; it fails (a non-zero exit) when nothing answers or when franz is not ready.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::config::Config;
use crate::discord::clip;
use crate::ops::Readiness;
use crate::terminal::visible;

/// How long each request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One sample of the exposition: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a classic text exposition; lines that are not samples are skipped.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
            };
            Some(Sample { name: name.to_owned(), labels, value })
        })
        .collect()
}

/// `a="x",b="y"` as a map. franz's label values hold no quotes or commas (service, topic and group names).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

/// Where the running franz serves its ops endpoints.
fn base_url(config: &Config, url: Option<String>) -> anyhow::Result<String> {
    if let Some(url) = url {
        return base_of(&url);
    }
    if let Some(local) = crate::people::read_local(&crate::people::dir(config))? {
        return Ok(local.url);
    }
    Ok(crate::desk::url_for(config.metrics_listen.unwrap_or(config.desk.listen)))
}

/// The base of the ops endpoints in what a person passes as `--url`: the address franz printed (`.../metrics`), one
/// of the endpoints, or the base itself, with any query or fragment left out. What is no http(s) URL, or carries a
/// password, is refused with what to pass instead (and without repeating the password).
fn base_of(url: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url.trim())
        .map_err(|error| anyhow::anyhow!("--url {} is no URL ({error}); pass it as http://HOST:PORT", shown(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!("--url {} is no http:// or https:// URL; pass it as http://HOST:PORT", shown(url));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        anyhow::bail!("--url carries a user name or password, which franz's endpoints do not take; leave it out");
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    let path = parsed.path().trim_end_matches('/');
    let path = ["/metrics", "/readyz", "/healthz"].iter().find_map(|end| path.strip_suffix(end)).unwrap_or(path);
    let path = path.to_owned();
    parsed.set_path(&path);
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// Writes `text`; a reader that stopped reading (`franz status --json | head`) is no error of franz's.
fn emit(out: &mut impl Write, text: &str) -> anyhow::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// `franz status [--json] [--url URL]`.
pub async fn status(config: &Config, json_out: bool, url: Option<String>, out: &mut impl Write) -> anyhow::Result<()> {
    let base = base_url(config, url)?;
    let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
    let unreachable = |error: reqwest::Error| {
        anyhow::anyhow!(
            "no answer from {} ({}); is franz running there (`franz up`, or `franz broker --metrics-listen`)? Pass \
             --url with its desk or --metrics-listen address",
            shown(&base),
            crate::discord::webhook::unanswered(&error)
        )
    };
    let readyz = client.get(format!("{base}/readyz")).send().await.map_err(unreachable)?;
    // franz answers 200 or 503; anything else is something else at that address.
    let answered = readyz.status();
    if !matches!(answered.as_u16(), 200 | 503) {
        anyhow::bail!("{}/readyz answered HTTP {answered}: that is not franz's /readyz", shown(&base));
    }
    let readyz = read_body(readyz, &format!("{base}/readyz")).await?;
    let readiness: Readiness =
        serde_json::from_slice(&readyz).with_context(|| format!("{base}/readyz is not franz's"))?;
    let metrics = client.get(format!("{base}/metrics")).send().await.map_err(unreachable)?;
    let text = String::from_utf8_lossy(&read_body(metrics, &format!("{base}/metrics")).await?).into_owned();
    let samples = parse_samples(&text);
    if json_out {
        let metrics: Vec<Value> =
            samples.iter().map(|s| json!({"name": s.name, "labels": s.labels, "value": s.value})).collect();
        emit(out, &format!("{}\n", json!({"url": base, "readiness": readiness, "metrics": metrics})))?;
    } else {
        emit(out, &render(&base, &readiness, &samples))?;
    }
    if readiness.reasons.is_empty() {
        Ok(())
    } else {
        let reasons: Vec<String> = readiness.reasons.iter().map(|reason| shown(reason)).collect();
        anyhow::bail!("franz is not ready: {}", reasons.join("; "))
    }
}

/// The most of an answer that is read: far more than franz sends (a scrape of 10,000 topics is about 3 MB), far
/// less than what would hurt if something else answers at the address.
const MAX_BODY: usize = 32 << 20;

/// The body of `response`, refused past [`MAX_BODY`].
async fn read_body(mut response: reqwest::Response, url: &str) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.with_context(|| format!("reading {url}"))? {
        if body.len() + chunk.len() > MAX_BODY {
            anyhow::bail!("{url} answered more than {} MiB; is that franz?", MAX_BODY >> 20);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The most of one field the screen shows: a line, not a page, whatever the server sends.
const FIELD_CHARS: usize = 300;

/// What the server said, shown and not acted on (a terminal escape in it must not drive the terminal), and clipped.
fn shown(text: &str) -> String {
    clip(&visible(text), FIELD_CHARS)
}

/// The human screen.
pub fn render(base: &str, readiness: &Readiness, samples: &[Sample]) -> String {
    // Indexed once: a franz with thousands of topics sends tens of thousands of samples.
    let mut by_name: HashMap<&str, Vec<&Sample>> = HashMap::new();
    for sample in samples {
        by_name.entry(sample.name.as_str()).or_default().push(sample);
    }
    let named = |name: &str| by_name.get(name).map_or(&[][..], Vec::as_slice);
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        named(name)
            .iter()
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k).is_some_and(|x| x == v)))
            .map(|s| s.value)
            // Not `sum()`: a float sum of nothing is -0, which would print as "-0".
            .fold(0.0, |total, value| total + value)
    };
    let mut out = format!("franz at {}: {}\n", shown(base), shown(&readiness.status));
    for reason in &readiness.reasons {
        out.push_str(&format!("  - {}\n", shown(reason)));
    }
    let broker = &readiness.broker;
    out.push_str(&format!(
        "\nbroker: {} at {}, {}, {} partitions",
        if broker.kind.is_empty() { "?".to_owned() } else { shown(&broker.kind) },
        if broker.address.is_empty() { "?".to_owned() } else { shown(&broker.address) },
        if value("franz_broker_up", None) > 0.0 { "up" } else { "not answering" },
        value("franz_broker_partitions", None),
    ));
    // Only the embedded broker reports these.
    if !named("franz_broker_connections").is_empty() {
        out.push_str(&format!(
            ", {} connections, log {}",
            value("franz_broker_connections", None),
            bytes(value("franz_broker_log_bytes", None))
        ));
    }
    if readiness.services.is_empty() {
        out.push_str("\n\nno services run here (a broker alone, or every service is off)\n");
        return out;
    }
    out.push_str("\n\nservice        state    records in  records out  last problem\n");
    for (name, running) in &readiness.services {
        let label = Some(("service", name.as_str()));
        let problem =
            readiness.problems.get(name).map_or("-".to_owned(), |p| format!("{} {}", clock(&p.at), shown(&p.text)));
        out.push_str(&format!(
            "{:<14} {:<8} {:>10}  {:>11}  {problem}\n",
            shown(name),
            if *running { "running" } else { "STOPPED" },
            value("franz_records_in_total", label),
            value("franz_records_out_total", label),
        ));
    }
    out.push_str("\ngroup          topic                          lag\n");
    for sample in named("franz_consumer_lag_records") {
        let group = shown(sample.labels.get("group").map_or("", String::as_str));
        let topic = shown(sample.labels.get("topic").map_or("", String::as_str));
        out.push_str(&format!("{group:<14} {topic:<30} {}\n", sample.value));
    }
    out.push_str(&format!(
        "\nalerts: {} delivered, {} pending, {} rate limited (429), webhook {}\n",
        value("franz_alerts_delivered_total", None),
        value("franz_alerts_pending", None),
        value("franz_webhook_rate_limited_total", None),
        if value("franz_webhook_paused", None) > 0.0 { "PAUSED (gone or misconfigured)" } else { "ok" },
    ));
    out.push_str(&format!(
        "dead letters: {}\ntickets: {} open, {} claimed, {} closed\n",
        value("franz_dead_letters_total", None),
        value("franz_tickets", Some(("status", "open"))),
        value("franz_tickets", Some(("status", "claimed"))),
        value("franz_tickets", Some(("status", "closed"))),
    ));
    match &readiness.desk {
        Some(desk) => out.push_str(&format!("desk: {}\n", shown(desk))),
        None => out.push_str("desk: not running\n"),
    }
    if let Some(mailbox) = &readiness.mailbox {
        out.push_str(&mailbox_lines(mailbox, &|outcome| value("franz_mails_total", Some(("outcome", outcome)))));
    }
    out
}

/// An RFC 3339 time as the screen shows it, to the second: `2026-12-01 10:45:41`.
fn clock(at: &str) -> String {
    shown(&at.chars().take(19).collect::<String>().replace('T', " "))
}

/// The mailbox of tickets by email: what it does, what its mails became, where the replies went; `mails` counts
/// the mails (and replies) of an outcome.
fn mailbox_lines(mailbox: &crate::mailbox::MailboxState, mails: &dyn Fn(&str) -> f64) -> String {
    let mut out = format!(
        "mailbox: {} at {}, {} since {}",
        shown(&mailbox.user),
        shown(&mailbox.mailbox),
        shown(&mailbox.state),
        clock(&mailbox.since)
    );
    if let Some(at) = &mailbox.last_taken {
        out.push_str(&format!(", last mail taken {}", clock(at)));
    }
    out.push_str(&format!(
        "\nmails: {} tickets, {} answers, {} notes, {} dead letters, {} bounces\n",
        mails("ticket"),
        mails("answer"),
        mails("note"),
        mails("dead_letter"),
        mails("bounce"),
    ));
    match &mailbox.replies {
        Some(smtp) => out.push_str(&format!(
            "replies by mail: {} sent, {} refused, {} waiting for {}\n",
            mails("reply_sent"),
            mails("reply_refused"),
            mailbox.replies_waiting,
            shown(smtp)
        )),
        None => out.push_str("replies by mail: off (set mail.smtp_url)\n"),
    }
    out
}

/// `1536` as `1.5 KiB`.
fn bytes(count: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value} B") } else { format!("{value:.1} {}", units[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels_and_comments_are_skipped() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{service=\"akte\",topic=\"t-1\"} 3\nup 1\n";
        let samples = parse_samples(text);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "x_total");
        assert_eq!(samples[0].labels["service"], "akte");
        assert_eq!(samples[0].labels["topic"], "t-1");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1], Sample { name: "up".into(), labels: BTreeMap::new(), value: 1.0 });
    }

    #[test]
    fn a_stopped_service_and_the_reasons_show_on_the_screen() {
        let readiness = Readiness {
            status: "unready".into(),
            reasons: vec!["aufbereitung stopped".into()],
            services: [("aufbereitung".to_owned(), false)].into(),
            problems: [(
                "aufbereitung".to_owned(),
                crate::troubles::Trouble {
                    at: "2026-12-01T10:45:41.7Z".into(),
                    text: "failed: \u{1b}[2Jrefused".into(),
                },
            )]
            .into(),
            broker: crate::ops::BrokerInfo { kind: "embedded".into(), address: "127.0.0.1:9092".into() },
            desk: None,
            mailbox: Some(crate::mailbox::MailboxState {
                mailbox: "imaps://imap.example.com:993/INBOX".into(),
                user: "support@example.com".into(),
                state: "not connected: refused\u{1b}[2J; trying again in 8s".into(),
                since: "2026-12-01T10:45:41.7Z".into(),
                last_taken: Some("2026-12-01T10:40:00Z".into()),
                replies: Some("smtps://smtp.example.com:465".into()),
                replies_waiting: 2,
            }),
        };
        let samples = "franz_mails_total{outcome=\"ticket\"} 4\nfranz_mails_total{outcome=\"reply_sent\"} 3\n\
                       franz_broker_up 1\nfranz_broker_connections 3\nfranz_broker_log_bytes{topic=\"a\"} 1024\nfranz_broker_log_bytes{topic=\"b\"} 512\n";
        let screen = render("http://127.0.0.1:8080", &readiness, &parse_samples(samples));
        assert!(screen.starts_with("franz at http://127.0.0.1:8080: unready\n  - aufbereitung stopped\n"), "{screen}");
        assert!(screen.contains("aufbereitung   STOPPED"), "{screen}");
        assert!(screen.contains("2026-12-01 10:45:41 failed: \\u{1b}[2Jrefused"), "{screen}");
        assert!(!screen.contains('\u{1b}'), "no terminal escape reaches the terminal: {screen}");
        assert!(
            screen.contains("broker: embedded at 127.0.0.1:9092, up, 0 partitions, 3 connections, log 1.5 KiB"),
            "{screen}"
        );
        assert!(screen.contains("desk: not running"), "{screen}");
        assert!(
            screen.contains(
                "mailbox: support@example.com at imaps://imap.example.com:993/INBOX, not connected: \
                 refused\\u{1b}[2J; trying again in 8s since 2026-12-01 10:45:41, last mail taken 2026-12-01 10:40:00\n\
                 mails: 4 tickets, 0 answers, 0 notes, 0 dead letters, 0 bounces\n\
                 replies by mail: 3 sent, 0 refused, 2 waiting for smtps://smtp.example.com:465\n"
            ),
            "{screen}"
        );
    }

    #[test]
    fn the_url_franz_prints_and_each_endpoint_lead_to_the_same_base() {
        for url in [
            "http://127.0.0.1:9100",
            "http://127.0.0.1:9100/",
            "http://127.0.0.1:9100/metrics",
            "http://127.0.0.1:9100/readyz/",
            " http://127.0.0.1:9100/healthz?x=1#top ",
        ] {
            assert_eq!(base_of(url).unwrap(), "http://127.0.0.1:9100", "{url}");
        }
        assert_eq!(base_of("https://ops.example/franz/metrics").unwrap(), "https://ops.example/franz");
    }

    #[test]
    fn a_url_that_is_none_or_carries_a_password_is_refused_saying_what_to_pass() {
        for url in ["127.0.0.1:9100", "", "http://127.0.0.1:99999", "ftp://127.0.0.1:9100"] {
            let error = base_of(url).unwrap_err().to_string();
            assert!(error.contains("pass it as http://HOST:PORT"), "{url}: {error}");
        }
        let error = base_of("http://ana:hunter2@127.0.0.1:9100").unwrap_err().to_string();
        assert!(error.contains("user name or password") && !error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_reader_that_stops_reading_is_no_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(emit(&mut Closed, "franz at ...").is_ok());
    }

    #[test]
    fn a_broker_alone_shows_its_broker_line_and_no_empty_service_tables() {
        let readiness = Readiness {
            status: "ready".into(),
            reasons: Vec::new(),
            services: BTreeMap::new(),
            problems: BTreeMap::new(),
            broker: crate::ops::BrokerInfo { kind: "embedded".into(), address: "127.0.0.1:9092".into() },
            desk: None,
            mailbox: None,
        };
        let samples = "franz_broker_up 1\nfranz_broker_partitions 6\nfranz_broker_connections 2\n";
        let screen = render("http://127.0.0.1:9100", &readiness, &parse_samples(samples));
        assert_eq!(
            screen,
            "franz at http://127.0.0.1:9100: ready\n\nbroker: embedded at 127.0.0.1:9092, up, 6 partitions, \
             2 connections, log 0 B\n\nno services run here (a broker alone, or every service is off)\n"
        );
    }
}
