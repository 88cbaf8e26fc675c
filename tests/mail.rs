//! Tickets by email against real mail servers: Postfix and Dovecot, started on loopback for each test by
//! `scripts/mail-servers.sh`, with mail sent and mailboxes read by another client (`scripts/mail-client.py`, Python's
//! smtplib and imaplib), never by franz's own code. Without root the servers cannot be had: the tests then say
//! "not run", and under CI (`CI=true`) they fail.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz::config::{Config, ImapUrl, Mail, Service, SmtpUrl};
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command as Lifecycle, Delivery, Via};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::util::{Harness, PATIENCE, Reaped, Started, Up, scratch, wait_until};

/// The mailbox franz reads, and its password (the script's test users all have it).
const SUPPORT: &str = "support@franz.test";
const CUSTOMER: &str = "customer@franz.test";
const PASSWORD: &str = "secret";
/// A customer whose mail server defers every mail to them (mail-servers.sh: 452 at RCPT).
const DEFERRED: &str = "deferred@franz.test";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// One Postfix and one Dovecot, removed with their mail when dropped.
struct MailServers {
    env: HashMap<String, String>,
}

impl MailServers {
    /// Starts a set, or `None` where none can be had (not root), which fails the test under CI.
    fn start() -> Option<MailServers> {
        let output = Command::new("bash")
            .arg(script("mail-servers.sh"))
            .arg("start")
            .env("FRANZ_MAIL_WATCH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0) => {}
            Some(3) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("the mail servers cannot be had here, and CI needs them: {stderr}")
            }
            Some(3) => {
                eprintln!("not run: the mail servers cannot be had here: {stderr}");
                return None;
            }
            _ => panic!("scripts/mail-servers.sh start failed ({}): {stderr}", output.status),
        }
        let env = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Some(MailServers { env })
    }

    fn get(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("mail-servers.sh printed no {key}"))
    }

    /// franz's configuration reading support@'s INBOX, with the rest from `harness`.
    fn config(&self, harness: &Harness, data: &Path, services: &[Service]) -> Config {
        let (host, port) = self.get("FRANZ_MAIL_IMAP").rsplit_once(':').expect("HOST:PORT");
        Config {
            mail: Mail {
                imap_url: Some(ImapUrl {
                    tls: false,
                    host: host.to_owned(),
                    port: port.parse().unwrap(),
                    mailbox: "INBOX".into(),
                }),
                user: Some(SUPPORT.into()),
                password: Some(PASSWORD.into()),
                // Only IDLE can bring a mail in within a test's patience.
                poll_secs: 3600,
                ..Mail::default()
            },
            ..harness.config(data, services)
        }
    }

    /// Sends `message` (headers and body, `\n` line ends) from `from` to support@, through Postfix.
    fn send(&self, from: &str, message: &str) {
        self.send_to(from, SUPPORT, message)
    }

    fn send_to(&self, from: &str, to: &str, message: &str) {
        let raw = message.replace("\r\n", "\n").replace('\n', "\r\n");
        client(&["send", self.get("FRANZ_MAIL_SMTP"), from, to], raw.as_bytes());
    }

    /// support@'s mails in `mailbox`, as the other client sees them: uid, seen, subject, message_id.
    fn mails_in(&self, mailbox: &str) -> Vec<Value> {
        self.mails_of(SUPPORT, mailbox)
    }

    /// `user`'s mails in `mailbox`: uid, seen, subject, message_id, from, in_reply_to, references, text.
    fn mails_of(&self, user: &str, mailbox: &str) -> Vec<Value> {
        let listed = client(&["list", self.get("FRANZ_MAIL_IMAP"), user, PASSWORD, mailbox], b"");
        listed.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
    }

    /// franz's configuration as `config` gives it, sending replies through Postfix as support@.
    fn replying(&self, harness: &Harness, data: &Path) -> Config {
        let mut config = self.config(harness, data, &[Service::Briefkasten, Service::Aufbereitung, Service::Akte]);
        let (host, port) = self.get("FRANZ_MAIL_SMTP").rsplit_once(':').expect("HOST:PORT");
        config.mail.smtp_url = Some(SmtpUrl { tls: false, host: host.to_owned(), port: port.parse().unwrap() });
        config.mail.from = Some("Franz Support <support@franz.test>".into());
        // The acknowledgements have a test of their own; here they would only come first in every mailbox.
        config.mail.acknowledge = false;
        config
    }

    /// [`MailServers::replying`] with the desk, on a free port of its own.
    fn replying_with_desk(&self, harness: &Harness, data: &Path) -> Config {
        let mut config = self.replying(harness, data);
        config.services.push(Service::Desk);
        config.desk = franz::config::Desk { listen: "127.0.0.1:0".parse().unwrap(), public_url: None };
        config
    }

    /// [`MailServers::replying`], sending replies to the SMTP server on this machine's `port` instead of Postfix.
    fn replying_to(&self, port: u16, harness: &Harness, data: &Path) -> Config {
        let mut config = self.replying(harness, data);
        config.mail.smtp_url = Some(SmtpUrl { tls: false, host: "127.0.0.1".into(), port });
        config
    }

    fn mails(&self) -> Vec<Value> {
        self.mails_in("INBOX")
    }

    /// Whether support@'s INBOX holds `count` mails, every one read.
    fn all_seen(&self, count: usize) -> bool {
        let mails = self.mails();
        mails.len() == count && mails.iter().all(|mail| mail["seen"] == true)
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        if let Some(dir) = self.env.get("FRANZ_MAIL_DIR") {
            let _ = Command::new("bash").arg(script("mail-servers.sh")).args(["clean", dir]).output();
        }
    }
}

/// Runs `scripts/mail-client.py` with `stdin`; fails the test with its error output unless it succeeds.
fn client(args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("python3")
        .arg(script("mail-client.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "mail-client.py {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The tickets on the tickets topic once there are `count`.
async fn tickets(harness: &Harness, count: i64) -> Vec<Value> {
    wait_until(&format!("{count} tickets"), || async { harness.count(&harness.topics.tickets).await >= count }).await;
    harness.read_json(&harness.topics.tickets, count).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_of_every_kind_become_email_tickets_from_their_senders_and_are_then_marked_read() {
    let Some(servers) = MailServers::start() else { return };
    servers.send(
        CUSTOMER,
        "From: Ann Customer <customer@franz.test>\nTo: support@franz.test\nSubject: Locked out\n\
         Message-ID: <plain@franz.test>\n\nI cannot sign in since this morning.\n",
    );
    servers.send(
        CUSTOMER,
        "From: customer@franz.test\nSubject: Only HTML\nMessage-ID: <html@franz.test>\nMIME-Version: 1.0\n\
         Content-Type: text/html; charset=utf-8\n\n<p>Hello <b>desk</b></p><script>alert(1)</script>\n",
    );
    servers.send(
        CUSTOMER,
        "From: =?ISO-8859-1?Q?J=F6rg?= <customer@franz.test>\nSubject: =?ISO-8859-1?Q?Gr=FC=DFe?=\n\
         Message-ID: <latin1@franz.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n\
         Content-Transfer-Encoding: quoted-printable\n\nK=F6ln ist sch=F6n\n",
    );
    servers.send(
        CUSTOMER,
        "From: customer@franz.test\nSubject: Invoice\nMessage-ID: <files@franz.test>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nsee attached\n--m\n\
         Content-Type: application/pdf\nContent-Disposition: attachment; filename=\"invoice.pdf\"\n\
         Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--m--\n",
    );
    wait_until("four mails in support's INBOX", || async { servers.mails().len() == 4 }).await;

    let harness = Harness::new(1).await;
    let data = scratch();
    let franz =
        Started::start(&servers.config(&harness, data.path(), &[Service::Briefkasten, Service::Aufbereitung])).await;
    let tickets = tickets(&harness, 4).await;
    let body = |subject: &str| {
        let ticket = tickets.iter().find(|t| t["body"].as_str().unwrap().starts_with(subject));
        let ticket = ticket.unwrap_or_else(|| panic!("no ticket about {subject:?} in {tickets:?}"));
        assert_eq!(ticket["origin"], "Email", "{ticket}");
        assert_eq!(ticket["contact"], CUSTOMER, "{ticket}");
        ticket["body"].as_str().unwrap().to_owned()
    };
    assert_eq!(body("Locked out"), "Locked out\n\nI cannot sign in since this morning.");
    let html = body("Only HTML");
    assert!(html.contains("Hello desk") && !html.contains('<') && !html.contains("alert"), "{html}");
    assert_eq!(body("Grüße"), "Grüße\n\nKöln ist schön");
    assert_eq!(body("Invoice"), "Invoice\n\nsee attached", "the kept file is not in the text");
    let invoice = tickets.iter().find(|t| t["body"].as_str().unwrap().starts_with("Invoice")).unwrap();
    assert_eq!(invoice["attachments"][0]["name"], "invoice.pdf", "{invoice}");
    assert_eq!(invoice["attachments"][0]["sha256"], franz::attachments::name_of(b"%PDF-1.4\n"), "{invoice}");
    wait_until("every mail marked read", || async { servers.all_seen(4) }).await;
    franz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_read_again_after_franz_stopped_before_marking_it_is_the_same_ticket() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let config = servers.config(&harness, data.path(), &[Service::Briefkasten, Service::Aufbereitung]);
    let franz = Started::start(&config).await;
    // Sent while franz waits in IDLE with an hour between looks: only IDLE brings it in.
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Twice?\nMessage-ID: <once@franz.test>\n\nhello\n");
    let first = tickets(&harness, 1).await;
    wait_until("the mail marked read", || async { servers.all_seen(1) }).await;
    franz.stop().await.unwrap();

    // As if franz had died after publishing and before marking: the mail is unread again.
    client(&["unsee", servers.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD], b"");
    assert!(!servers.all_seen(1));
    let franz = Started::start(&config).await;
    wait_until("the mail marked read again", || async { servers.all_seen(1) }).await;
    let both = tickets(&harness, 2).await;
    assert_eq!(both[1]["id"], first[0]["id"], "read twice, one ticket id: {both:?}");
    franz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_over_the_size_limit_becomes_a_dead_letter_with_its_headers_and_the_rest_goes_on() {
    let Some(servers) = MailServers::start() else { return };
    let big = format!(
        "From: customer@franz.test\nSubject: Huge scan\nMessage-ID: <huge@franz.test>\n\n{}\n",
        "0123456789abcdef".repeat(96 * 1024)
    );
    servers.send(CUSTOMER, &big);
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Small\nMessage-ID: <small@franz.test>\n\nhi\n");
    wait_until("two mails in support's INBOX", || async { servers.mails().len() == 2 }).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.config(&harness, data.path(), &[Service::Briefkasten, Service::Aufbereitung]);
    config.mail.max_mb = 1;
    let franz = Started::start(&config).await;
    let tickets = tickets(&harness, 1).await;
    assert!(tickets[0]["body"].as_str().unwrap().starts_with("Small"), "{tickets:?}");
    wait_until("a dead letter", || async { harness.count(&harness.topics.dead_letters).await >= 1 }).await;
    let letter = &harness.read_json(&harness.topics.dead_letters, 1).await[0];
    assert!(letter["error"].as_str().unwrap().contains("over the limit of 1048576"), "{letter}");
    let raw = letter["raw_value"].as_str().unwrap();
    assert!(raw.contains("Subject: Huge scan") && !raw.contains("0123456789abcdef"), "{raw}");
    assert_eq!(letter["source"]["message_id"], "huge@franz.test", "{letter}");
    wait_until("both mails marked read", || async { servers.all_seen(2) }).await;
    franz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_imap_server_restarts_mid_idle_franz_connects_again_and_takes_new_mail() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz =
        Started::start(&servers.config(&harness, data.path(), &[Service::Briefkasten, Service::Aufbereitung])).await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Before\nMessage-ID: <before@franz.test>\n\n1\n");
    tickets(&harness, 1).await;
    wait_until("the first mail marked read", || async { servers.all_seen(1) }).await;
    let restarted = Command::new("bash")
        .arg(script("mail-servers.sh"))
        .args(["restart-imap", servers.get("FRANZ_MAIL_DIR")])
        .output()
        .unwrap();
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: After\nMessage-ID: <after@franz.test>\n\n2\n");
    let both = tickets(&harness, 2).await;
    assert!(both[1]["body"].as_str().unwrap().starts_with("After"), "{both:?}");
    wait_until("the second mail marked read", || async { servers.all_seen(2) }).await;
    let metrics = franz.ops.metrics.imap_reconnects.get();
    assert!(metrics >= 1, "the reconnect is counted");
    franz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_is_reported_as_an_error_and_is_no_ticket_and_taken_mail_moves_to_its_folder() {
    let Some(servers) = MailServers::start() else { return };
    // Mail from support@ to an unknown user comes back to support@ as a delivery status notification.
    servers.send_to(SUPPORT, "nobody@franz.test", "From: support@franz.test\nSubject: Re: ticket\n\nreply\n");
    wait_until("the bounce in support's INBOX", || async { servers.mails().len() == 1 }).await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Real\nMessage-ID: <real@franz.test>\n\nhelp\n");
    wait_until("two mails in support's INBOX", || async { servers.mails().len() == 2 }).await;
    client(&["create", servers.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD, "Taken"], b"");
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.config(&harness, data.path(), &[Service::Briefkasten, Service::Aufbereitung]);
    config.mail.move_to = Some("Taken".into());
    let franz = Started::start(&config).await;
    wait_until("both mails moved to Taken", || async {
        servers.mails().is_empty() && servers.mails_in("Taken").len() == 2
    })
    .await;
    // Both were published before they were moved: one intake record, one error event.
    assert_eq!(harness.count(&harness.topics.intake).await, 1);
    let tickets = tickets(&harness, 1).await;
    assert!(tickets[0]["body"].as_str().unwrap().starts_with("Real"), "{tickets:?}");
    wait_until("the bounce reported", || async { harness.count(&harness.topics.errors).await >= 1 }).await;
    let event = &harness.read_json(&harness.topics.errors, 1).await[0];
    assert_eq!(event["service"], "briefkasten", "{event}");
    assert!(event["message"].as_str().unwrap().contains("delivery status notification"), "{event}");
    franz.stop().await.unwrap();
}

/// Mail servers and a franz (briefkasten, aufbereitung, akte) on a harness of its own, reading support@'s INBOX and
/// replying through Postfix, with its data directory; `None` where the servers cannot be had.
async fn replying_franz() -> Option<(MailServers, Harness, tempfile::TempDir, Started)> {
    let servers = MailServers::start()?;
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.replying(&harness, data.path())).await;
    Some((servers, harness, data, franz))
}

/// A staff member's public reply to `ticket`, as the desk sends it.
async fn reply(harness: &Harness, ticket: &str, body: &str, id: &str) {
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    let command = Lifecycle {
        command_id: id.into(),
        ticket_id: ticket.into(),
        actor: Actor::staff(ActorSource::Web, "ana"),
        action: Action::Comment { body: body.into(), internal: false, via: None },
    };
    franz::kafka::tickets::send_command(&producer, &harness.topics.commands, harness.partitions, &command)
        .await
        .unwrap();
}

/// The first event on the ticket events topic that satisfies `found`, waiting for it up to [`PATIENCE`].
async fn event_where(harness: &Harness, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let count = harness.count(&harness.topics.events).await;
        if count > 0
            && let Some(event) = harness.read_json(&harness.topics.events, count).await.into_iter().find(|e| found(e))
        {
            return event;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {PATIENCE:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_reply_reaches_the_customer_threaded_under_their_mail_and_their_answer_lands_on_the_ticket() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    servers.send(
        CUSTOMER,
        "From: Ann Customer <customer@franz.test>\nSubject: Locked out\nMessage-ID: <opening@franz.test>\n\nhelp\n",
    );
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    assert_eq!(created["contact_id"], CUSTOMER, "{created}");

    reply(&harness, &ticket, "Try <b>again</b> now.", "reply-1").await;
    wait_until("the reply in the customer's INBOX", || async { !servers.mails_of(CUSTOMER, "INBOX").is_empty() }).await;
    let mail = servers.mails_of(CUSTOMER, "INBOX").remove(0);
    let subject = mail["subject"].as_str().unwrap();
    assert!(subject.starts_with("Re: Locked out [franz #") && subject.ends_with(']'), "{mail}");
    assert_eq!(mail["in_reply_to"], "<opening@franz.test>", "{mail}");
    assert!(mail["references"].as_str().unwrap().contains("<opening@franz.test>"), "{mail}");
    assert!(mail["from"].as_str().unwrap().contains("support@franz.test"), "{mail}");
    assert!(mail["text"].as_str().unwrap().starts_with("Try <b>again</b> now."), "sent as plain text: {mail}");
    let delivery = event_where(&harness, "the delivery recorded", |e| e["type"] == "delivery").await;
    assert_eq!((&delivery["delivered"], &delivery["via"]), (&Value::Bool(true), &Value::from("email")), "{delivery}");
    let reply_id = mail["message_id"].as_str().unwrap().trim_matches(['<', '>']).to_owned();
    assert_eq!(delivery["message_id"], reply_id.as_str(), "{delivery}");

    // The customer answers from their client: threaded by In-Reply-To, with the quoted reply below.
    servers.send(
        CUSTOMER,
        &format!(
            "From: Ann Customer <customer@franz.test>\nSubject: {subject}\nMessage-ID: <answer@franz.test>\n\
             In-Reply-To: <{reply_id}>\nReferences: <opening@franz.test> <{reply_id}>\n\n\
             It works, thanks!\n\nOn Mon, Franz Support wrote:\n> Try again now.\n"
        ),
    );
    let wrote = event_where(&harness, "the answer on the ticket", |e| e["type"] == "submitter_wrote").await;
    assert_eq!(wrote["ticket_id"], ticket.as_str(), "{wrote}");
    assert_eq!(wrote["body"], "It works, thanks!", "{wrote}");
    assert_eq!((&wrote["via"], &wrote["message_id"]), (&Value::from("email"), &Value::from("answer@franz.test")));

    // Another, whose client kept only the subject's token.
    servers.send(
        CUSTOMER,
        &format!("From: customer@franz.test\nSubject: {subject}\nMessage-ID: <token@franz.test>\n\nOne more\n"),
    );
    event_where(&harness, "the token-only answer on the ticket", |e| {
        e["type"] == "submitter_wrote" && e["body"] == "One more" && e["ticket_id"] == ticket.as_str()
    })
    .await;
    // And one from a stranger naming the reply: a note on the ticket that says who wrote it.
    servers.send(
        "other@franz.test",
        &format!("From: other@franz.test\nSubject: {subject}\nMessage-ID: <stranger@franz.test>\nIn-Reply-To: <{reply_id}>\n\nme too\n"),
    );
    let note =
        event_where(&harness, "the stranger's note", |e| e["type"] == "commented" && e["internal"] == true).await;
    assert!(note["body"].as_str().unwrap().starts_with("A mail from other@franz.test, who is not"), "{note}");
    assert_eq!(harness.count(&harness.topics.intake).await, 1, "answers open no tickets");
    franz.stop().await.unwrap();
}

/// The issue's "done when", through the desk's own API as a new user's team works: a customer mails the support
/// mailbox, the ticket is on the desk, a reply from the desk reaches the customer threaded under their mail, they
/// answer from their client, and the answer is on the ticket on the desk, with the reply shown as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_mails_the_team_answers_from_the_desk_and_the_customers_answer_is_on_the_desk() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let config = servers.replying_with_desk(&harness, data.path());
    let franz = Started::start(&config).await;
    let desk = format!("http://{}", franz.desk.expect("the desk runs"));
    let (token, _) = franz::people::Staff::open(&config.data_dir.join("desk")).unwrap().add("ana").unwrap();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("{desk}{path}")).bearer_auth(&token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    servers.send(
        CUSTOMER,
        "From: Ann Customer <customer@franz.test>\nSubject: Printer on fire\nMessage-ID: <fire@franz.test>\n\n\
         It smokes.\n",
    );
    wait_until("the ticket on the desk", || async { get("/api/tickets".into()).await["tickets"][0]["id"].is_string() })
        .await;
    let ticket = get("/api/tickets".into()).await["tickets"][0].clone();
    assert_eq!((&ticket["origin"], &ticket["contact_id"]), (&Value::from("Email"), &Value::from(CUSTOMER)), "{ticket}");
    let id = ticket["id"].as_str().unwrap().to_owned();

    let answer = http
        .post(format!("{desk}/api/tickets/{id}/commands"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"action": "comment", "body": "Unplug it, please."}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
    wait_until("the reply in the customer's INBOX", || async { !servers.mails_of(CUSTOMER, "INBOX").is_empty() }).await;
    let mail = servers.mails_of(CUSTOMER, "INBOX").remove(0);
    assert_eq!(mail["in_reply_to"], "<fire@franz.test>", "{mail}");
    let subject = mail["subject"].as_str().unwrap().to_owned();
    let reply_id = mail["message_id"].as_str().unwrap().to_owned();

    servers.send(
        CUSTOMER,
        &format!(
            "From: Ann Customer <customer@franz.test>\nSubject: {subject}\nMessage-ID: <unplugged@franz.test>\n\
             In-Reply-To: {reply_id}\nReferences: <fire@franz.test> {reply_id}\n\nUnplugged. Thanks!\n\n\
             On Mon, Franz Support wrote:\n> Unplug it, please.\n"
        ),
    );
    let has =
        |events: &Value, kind: &str| events.as_array().is_some_and(|events| events.iter().any(|e| e["type"] == kind));
    wait_until("the answer and the delivery on the desk", || async {
        let events = get(format!("/api/tickets/{id}")).await["events"].clone();
        has(&events, "submitter_wrote") && has(&events, "delivery")
    })
    .await;
    let shown = get(format!("/api/tickets/{id}")).await;
    let events = shown["events"].as_array().unwrap();
    let wrote = events.iter().find(|e| e["type"] == "submitter_wrote").unwrap();
    assert_eq!(wrote["body"], "Unplugged. Thanks!", "only the new text: {wrote}");
    let delivery = events.iter().find(|e| e["type"] == "delivery").unwrap();
    assert_eq!(delivery["delivered"], true, "{delivery}");
    assert_eq!(shown["ticket"]["status"], "open", "the customer's answer makes it the team's turn: {shown}");
    franz.stop().await.unwrap();
}

/// A mail's attachments within `mail.attachment_max_mb` are kept and downloaded from the desk byte for byte (one
/// larger than a record may be on the topic too); a larger one is listed on the ticket as not kept; an answer is
/// recorded without its quoted history, and its whole text is kept beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_kept_and_downloaded_from_the_desk_a_larger_one_is_noted_and_an_answers_whole_text_kept() {
    use base64::Engine as _;
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.replying_with_desk(&harness, data.path());
    config.mail.attachment_max_mb = 1;
    let franz = Started::start(&config).await;
    let desk = format!("http://{}", franz.desk.expect("the desk runs"));
    let (token, _) = franz::people::Staff::open(&config.data_dir.join("desk")).unwrap().add("ana").unwrap();
    let http = reqwest::Client::new();
    let get = |path: String| http.get(format!("{desk}{path}")).bearer_auth(&token).send();

    // Bytes no text encoding survives, over one chunk (512 KiB) and within the 1 MiB kept.
    let scan: Vec<u8> = (0..700_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let large = vec![7u8; 1_200_000];
    let part = |name: &str, kind: &str, bytes: &[u8]| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let lines: Vec<&str> = encoded.as_bytes().chunks(76).map(|l| std::str::from_utf8(l).unwrap()).collect();
        format!(
            "--m\nContent-Type: {kind}\nContent-Disposition: attachment; filename=\"{name}\"\n\
             Content-Transfer-Encoding: base64\n\n{}\n",
            lines.join("\n")
        )
    };
    servers.send(
        CUSTOMER,
        &format!(
            "From: Ann Customer <customer@franz.test>\nSubject: Scanner broken\nMessage-ID: <scan@franz.test>\n\
             MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\n\
             The scan and the log are attached.\n{}{}--m--\n",
            part("scan.tiff", "image/tiff", &scan),
            part("huge.log", "text/plain", &large)
        ),
    );
    wait_until("the ticket on the desk", || async {
        get("/api/tickets".into()).await.unwrap().json::<Value>().await.unwrap()["tickets"][0]["id"].is_string()
    })
    .await;
    let tickets = get("/api/tickets".into()).await.unwrap().json::<Value>().await.unwrap();
    let id = tickets["tickets"][0]["id"].as_str().unwrap().to_owned();
    let shown = get(format!("/api/tickets/{id}")).await.unwrap().json::<Value>().await.unwrap();
    let created = &shown["events"][0];
    assert_eq!(created["attachments"].as_array().map(Vec::len), Some(1), "{created}");
    let file = &created["attachments"][0];
    assert_eq!((&file["name"], &file["size"]), (&Value::from("scan.tiff"), &Value::from(700_000)), "{file}");
    let body = created["body"].as_str().unwrap();
    assert!(
        body.ends_with("Attachments not kept:\n- huge.log (text/plain, 1.1 MB): over the 1.0 MB franz keeps of a file"),
        "{body}"
    );
    let download = format!("/api/tickets/{id}/files/{}", file["sha256"].as_str().unwrap());
    wait_until("the file on the desk", || async { get(download.clone()).await.unwrap().status() == 200 }).await;
    let bytes = get(download).await.unwrap().bytes().await.unwrap();
    assert!(bytes.as_ref() == scan.as_slice(), "the download is the file as sent ({} bytes)", bytes.len());

    servers.send(
        CUSTOMER,
        "From: Ann Customer <customer@franz.test>\nSubject: Re: Scanner broken\nMessage-ID: <scan2@franz.test>\n\
         In-Reply-To: <scan@franz.test>\n\nIt works again.\n\nOn Mon, Ann wrote:\n> The scan and the log are attached.\n",
    );
    let wrote = event_where(&harness, "the answer on the ticket", |e| e["type"] == "submitter_wrote").await;
    assert_eq!(wrote["body"], "It works again.", "{wrote}");
    let whole = &wrote["attachments"][0];
    assert_eq!(whole["name"], "whole-mail.txt", "{wrote}");
    let download = format!("/api/tickets/{id}/files/{}", whole["sha256"].as_str().unwrap());
    wait_until("the whole text on the desk", || async { get(download.clone()).await.unwrap().status() == 200 }).await;
    let text = get(download).await.unwrap().text().await.unwrap();
    assert!(text.starts_with("It works again.") && text.contains("> The scan and the log are attached."), "{text}");
    franz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_the_mail_server_refuses_for_good_is_recorded_as_not_delivered_with_its_reason() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    // A customer at a domain the server does not relay to.
    servers.send(
        "someone@elsewhere.test",
        "From: someone@elsewhere.test\nSubject: Hello\nMessage-ID: <far@elsewhere.test>\n\nhi\n",
    );
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    reply(&harness, created["ticket_id"].as_str().unwrap(), "Hello back", "reply-far").await;
    let delivery = event_where(&harness, "the delivery recorded", |e| e["type"] == "delivery").await;
    assert_eq!(delivery["delivered"], false, "{delivery}");
    let detail = delivery["detail"].as_str().unwrap();
    assert!(detail.contains("5.7.1") || detail.to_lowercase().contains("relay"), "{detail}");
    franz.stop().await.unwrap();
}

/// Found by an attack (#34, replies), failing first: a reply the server defers (`452` at RCPT: the customer's
/// mailbox is full, or greylisting) was tried again and again with a growing pause while every reply after it, to
/// every other customer, waited behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_the_server_defers_waits_on_its_own_while_the_replies_after_it_go_out() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let config =
        Config { metrics_listen: Some("127.0.0.1:0".parse().unwrap()), ..servers.replying(&harness, data.path()) };
    let franz = Started::start(&config).await;
    servers.send(DEFERRED, "From: deferred@franz.test\nSubject: Full\nMessage-ID: <full@franz.test>\n\nhelp\n");
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Fine\nMessage-ID: <fine@franz.test>\n\nhelp\n");
    let ticket_of = |sender: &'static str| {
        let harness = &harness;
        async move {
            let created = event_where(harness, sender, |e| e["type"] == "created" && e["contact_id"] == sender).await;
            created["ticket_id"].as_str().unwrap().to_owned()
        }
    };
    let (full, fine) = (ticket_of(DEFERRED).await, ticket_of(CUSTOMER).await);
    reply(&harness, &full, "To the full mailbox", "reply-full").await;
    reply(&harness, &fine, "To the fine one", "reply-fine").await;
    let delivery = event_where(&harness, "the reply after the deferred one delivered", |e| {
        e["type"] == "delivery" && e["ticket_id"] == fine.as_str()
    })
    .await;
    assert_eq!(delivery["delivered"], true, "{delivery}");
    let mails = servers.mails_of(CUSTOMER, "INBOX");
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0]["text"].as_str().unwrap().starts_with("To the fine one"), "{mails:?}");
    let events = harness.read_json(&harness.topics.events, harness.count(&harness.topics.events).await).await;
    assert!(
        !events.iter().any(|e| e["type"] == "delivery" && e["ticket_id"] == full.as_str()),
        "the deferred reply is neither sent nor given up: {events:?}"
    );
    // `franz status` says one reply waits, and what the mailbox does.
    let url = format!("http://{}", franz.ops_address.expect("metrics_listen serves /readyz"));
    let mut screen = Vec::new();
    franz::cmd::status::status(&config, false, Some(url), &mut screen).await.unwrap();
    let screen = String::from_utf8(screen).unwrap();
    let mailbox = format!("mailbox: support@franz.test at imap://{}/INBOX, ", servers.get("FRANZ_MAIL_IMAP"));
    assert!(screen.contains(&mailbox), "{screen}");
    assert!(screen.contains("mails: 2 tickets, 0 answers"), "{screen}");
    let replies =
        format!("replies by mail: 1 sent, 0 refused, 1 waiting for smtp://{}\n", servers.get("FRANZ_MAIL_SMTP"));
    assert!(screen.contains(&replies), "{screen}");
    assert!(franz.ops.readiness().await.mailbox.unwrap().last_taken.is_some());
    wait_until("the mailbox waiting with IDLE", || async {
        franz.ops.readiness().await.mailbox.is_some_and(|m| m.state == "waiting for mail (IDLE)")
    })
    .await;
    franz.stop().await.unwrap();
}

/// kill -9 of franz between publish and mark: the mails of a batch are on the intake topic, the command that
/// marks them read is on its way to the server (held by the relay), and the process is killed. Started again, it
/// reads them again and finds their tickets (or publishes them again, to the same ticket ids): none doubled, none
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franz_killed_between_publishing_mails_and_marking_them_doubles_no_ticket_and_loses_none() {
    let Some(servers) = MailServers::start() else { return };
    const MAILS: usize = 300;
    servers.append_many(MAILS, "crash");
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_IMAP").to_owned())).await;
    *relay.hold_once_on.lock().unwrap() = Some(b"UID STORE".to_vec());
    let harness = Harness::new(1).await;
    let dir = scratch();
    let env = [
        ("FRANZ_MAIL_IMAP_URL", format!("imap://{}/INBOX", relay.address)),
        ("FRANZ_MAIL_USER", SUPPORT.to_owned()),
        ("FRANZ_MAIL_PASSWORD", PASSWORD.to_owned()),
        ("FRANZ_MAIL_POLL_SECS", "3600".to_owned()),
        // All 300 mails come from one customer: each is its own ticket only without a limit on open ones.
        ("FRANZ_OPEN_TICKETS_MAX", "0".to_owned()),
    ];
    let only = ["--only", "briefkasten,aufbereitung,akte"];
    let mut first = Reaped(Up::start_with_env(dir.path(), "first", &harness, &only, &env));
    wait_until("franz about to mark its first batch", || async { relay.holding.load(Ordering::SeqCst) }).await;
    let published = harness.count(&harness.topics.intake).await;
    assert!(published > 0, "the batch is published before it is marked");
    first.kill();
    // The held command never reaches the server (released, it would: bytes franz had sent before it died).
    assert_eq!(servers.count_in("INBOX"), (MAILS as u64, MAILS as u64), "nothing was marked read");

    let second = Reaped(Up::start_with_env(dir.path(), "second", &harness, &only, &env));
    wait_until("every mail read", || async { servers.all_seen(MAILS) }).await;
    // One more, after all of them: once it is a ticket, akte has decided every record published before it.
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Last\nMessage-ID: <last@franz.test>\n\nlast\n");
    event_where(&harness, "the last mail's ticket", |e| e["type"] == "created" && e["message_id"] == "last@franz.test")
        .await;
    let intake = harness.count(&harness.topics.intake).await;
    // A mail of the killed batch is published again, or, where the ticket store has its ticket already, known
    // and only marked: at most the killed batch twice.
    assert!((MAILS as i64 + 1..=MAILS as i64 + 1 + published).contains(&intake), "{intake} intake records");
    let events = harness.read_json(&harness.topics.events, harness.count(&harness.topics.events).await).await;
    let created: Vec<&Value> = events.iter().filter(|e| e["type"] == "created").collect();
    let tickets: std::collections::BTreeSet<&str> = created.iter().map(|e| e["ticket_id"].as_str().unwrap()).collect();
    assert_eq!((created.len(), tickets.len()), (MAILS + 1, MAILS + 1), "one ticket per mail");
    second.terminate();
}

/// Found by an attack (#34, waiting replies), failing first: the connection to the SMTP server drops once while franz sends the
/// first of two replies to one ticket (a network blip; as well a greylisting or a full mailbox lifted between two
/// tries). The first reply waits for its next try, 1 s later, while the second, written right after it to the
/// SAME ticket, goes out at once: the customer reads "As I wrote below, ..." before what it refers to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replies_to_one_ticket_reach_the_customer_in_the_order_they_were_written() {
    let Some(servers) = MailServers::start() else { return };
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_SMTP").to_owned())).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.replying_to(relay.address.port(), &harness, data.path())).await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Order\nMessage-ID: <order@franz.test>\n\nhelp\n");
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    *relay.cut_once_on.lock().unwrap() = Some(b"RCPT TO".to_vec());
    reply(&harness, &ticket, "First: please restart the router.", "reply-first").await;
    reply(&harness, &ticket, "Second: if restarting it (see my mail before) did not help, call us.", "reply-second")
        .await;
    wait_until("both replies in the customer's INBOX", || async { servers.mails_of(CUSTOMER, "INBOX").len() >= 2 })
        .await;
    let texts: Vec<String> = servers
        .mails_of(CUSTOMER, "INBOX")
        .iter()
        .map(|mail| mail["text"].as_str().unwrap().lines().next().unwrap_or("").to_owned())
        .collect();
    let events = harness.read_json(&harness.topics.events, harness.count(&harness.topics.events).await).await;
    let delivered: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "delivery" && e["delivered"] == true)
        .map(|e| e["of"].as_str().unwrap())
        .collect();
    let first = franz::schema::lifecycle::event_id_for(&ticket, "reply-first");
    let second = franz::schema::lifecycle::event_id_for(&ticket, "reply-second");
    assert_eq!(
        delivered,
        [first.as_str(), second.as_str()],
        "the replies were taken by the server out of order; the customer's INBOX reads {texts:?}"
    );
    assert!(texts[0].starts_with("First"), "the customer's INBOX reads {texts:?}");
    franz.stop().await.unwrap();
}

/// A scripted SMTP server for the attack on the waiting replies: every `RCPT TO` is deferred (`452`) while `defer`
/// is set, and taken otherwise; it notes each try and each mail taken, with the name of the listener it came to.
#[derive(Default)]
struct Scripted {
    defer: AtomicBool,
    /// (listener, RCPT line, deferred)
    tries: Mutex<Vec<(&'static str, String, bool)>>,
    /// (listener, the mail as sent after DATA)
    taken: Mutex<Vec<(&'static str, String)>>,
}

impl Scripted {
    /// A listener named `name` on loopback, speaking for `self`.
    async fn listen(self: &Arc<Self>, name: &'static str) -> SocketAddr {
        use tokio::io::AsyncBufReadExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = tokio::io::BufReader::new(read).lines();
                    if write.write_all(b"220 scripted ESMTP\r\n").await.is_err() {
                        return;
                    }
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let answer: &[u8] = if upper.starts_with("EHLO") {
                            b"250-scripted\r\n250 AUTH PLAIN\r\n"
                        } else if upper.starts_with("AUTH") {
                            b"235 2.7.0 ok\r\n"
                        } else if upper.starts_with("RCPT") {
                            let deferred = state.defer.load(Ordering::SeqCst);
                            state.tries.lock().unwrap().push((name, line.clone(), deferred));
                            if deferred { b"452 4.2.2 Mailbox full, try again later\r\n" } else { b"250 2.1.5 ok\r\n" }
                        } else if upper == "DATA" {
                            if write.write_all(b"354 go on\r\n").await.is_err() {
                                return;
                            }
                            let mut mail = String::new();
                            while let Ok(Some(line)) = lines.next_line().await {
                                if line == "." {
                                    break;
                                }
                                mail.push_str(&line);
                                mail.push('\n');
                            }
                            state.taken.lock().unwrap().push((name, mail));
                            b"250 2.0.0 queued\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        if write.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }
}

/// Found by an attack (#34, waiting replies), failing first: franz A held a reply the server deferred; a second
/// franz joined, the group gave it the reply's partition, and it sent the reply; A, which learnt of the rebalance
/// only after its next try and never asked whether the reply was delivered meanwhile, sent it again (the attack's
/// test with two franz took up to three minutes). Here the delivery the other franz records is published by the
/// test: A must find it before its next try and send nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_reply_delivered_meanwhile_by_another_franz_is_not_sent_again() {
    let Some(servers) = MailServers::start() else { return };
    let scripted = Arc::new(Scripted::default());
    scripted.defer.store(true, Ordering::SeqCst);
    let smtp = scripted.listen("A").await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.replying_to(smtp.port(), &harness, data.path())).await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Once\nMessage-ID: <once@franz.test>\n\nhelp\n");
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    reply(&harness, &ticket, "Only once, please.", "reply-once").await;
    wait_until("the reply deferred", || async { !scripted.tries.lock().unwrap().is_empty() }).await;
    let of = franz::schema::lifecycle::event_id_for(&ticket, "reply-once");
    let delivered_elsewhere = Lifecycle {
        command_id: format!("mail-delivery:{of}"),
        ticket_id: ticket.clone(),
        actor: Actor { source: ActorSource::Franz, name: "briefkasten".into(), id: None, staff: None },
        action: Action::RecordDelivery(Delivery {
            of: of.clone(),
            via: Via::Email,
            delivered: true,
            detail: Some("sent by another franz".into()),
            message_id: None,
            channel_id: None,
        }),
    };
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    franz::kafka::tickets::send_command(&producer, &harness.topics.commands, harness.partitions, &delivered_elsewhere)
        .await
        .unwrap();
    event_where(&harness, "the delivery recorded", |e| e["type"] == "delivery").await;
    scripted.defer.store(false, Ordering::SeqCst);
    wait_until("no reply waiting", || async {
        franz.ops.readiness().await.mailbox.is_some_and(|m| m.replies_waiting == 0)
    })
    .await;
    let taken = scripted.taken.lock().unwrap().len();
    assert_eq!(taken, 0, "the reply was sent again after another franz delivered it");
    franz.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// From an attack on briefkasten: hostile mails, hostile or failing servers, odd settings. Each test says what the
// attack did and what went wrong before the fix ("failing first"), or that it found nothing.
// ---------------------------------------------------------------------------------------------------------------

impl MailServers {
    /// Puts `raw` into support@'s `mailbox` unread with IMAP APPEND, past Postfix and its limits, as another client,
    /// a migration tool or a laxer mail server would.
    fn append(&self, mailbox: &str, raw: &[u8]) {
        client(&["append", self.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD, mailbox], raw);
    }

    /// Puts `count` small mails from customer@ into support@'s INBOX, Message-IDs `<prefix-N@franz.test>`.
    fn append_many(&self, count: usize, prefix: &str) {
        client(&["append-many", self.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD, &count.to_string(), prefix], b"");
    }

    /// How many mails `mailbox` holds, and how many of them are unread.
    fn count_in(&self, mailbox: &str) -> (u64, u64) {
        let counted: Value =
            serde_json::from_str(&client(&["count", self.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD, mailbox], b""))
                .unwrap();
        (counted["exists"].as_u64().unwrap(), counted["unseen"].as_u64().unwrap())
    }

    /// franz's configuration reading support@'s INBOX through `address` (a [`Relay`]) instead of Dovecot directly.
    fn config_via(&self, address: SocketAddr, harness: &Harness, data: &Path, services: &[Service]) -> Config {
        let mut config = self.config(harness, data, services);
        let url = config.mail.imap_url.as_mut().unwrap();
        url.port = address.port();
        config
    }
}

/// A TCP relay between franz and Dovecot that can slow the server's side to a rate, stop it once franz sends a
/// given command (a server that hangs), or cut the connection once at a given command (a server that goes away).
struct Relay {
    address: SocketAddr,
    /// Server-to-franz bytes per second; 0 for no limit.
    rate: Arc<AtomicUsize>,
    /// Once franz sends bytes containing this, nothing more of that connection's server side reaches franz.
    stall_on: Arc<Mutex<Option<Vec<u8>>>>,
    /// The first time franz sends bytes containing this, the connection is closed (then it is forgotten).
    cut_once_on: Arc<Mutex<Option<Vec<u8>>>>,
    /// How many connections franz made.
    connections: Arc<AtomicUsize>,
    /// How many connections stalled at `stall_on`.
    stalls: Arc<AtomicUsize>,
    /// Everything franz sent, all connections together.
    sent: Arc<Mutex<Vec<u8>>>,
    /// The first time franz sends bytes containing this, they are held back from the server (`holding` is set)
    /// until `release` is notified.
    hold_once_on: Arc<Mutex<Option<Vec<u8>>>>,
    holding: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

impl Relay {
    /// Relays to `upstream` (`HOST:PORT`); `upstream` `None` accepts connections and never says a word.
    async fn start(upstream: Option<String>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            address: listener.local_addr().unwrap(),
            rate: Arc::default(),
            stall_on: Arc::default(),
            cut_once_on: Arc::default(),
            connections: Arc::default(),
            stalls: Arc::default(),
            sent: Arc::default(),
            hold_once_on: Arc::default(),
            holding: Arc::default(),
            release: Arc::default(),
        };
        let (hold, holding, release) = (relay.hold_once_on.clone(), relay.holding.clone(), relay.release.clone());
        let (rate, stall_on, cut, connections, stalls) = (
            relay.rate.clone(),
            relay.stall_on.clone(),
            relay.cut_once_on.clone(),
            relay.connections.clone(),
            relay.stalls.clone(),
        );
        let sent = relay.sent.clone();
        tokio::spawn(async move {
            loop {
                let Ok((franz, _)) = listener.accept().await else { return };
                connections.fetch_add(1, Ordering::SeqCst);
                let Some(upstream) = upstream.clone() else {
                    // Accepts, says nothing, and keeps the connection open until franz closes it.
                    tokio::spawn(async move {
                        let mut franz = franz;
                        let mut buf = [0u8; 1024];
                        while franz.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                    });
                    continue;
                };
                let (rate, stall_on, cut, stalls, sent) =
                    (rate.clone(), stall_on.clone(), cut.clone(), stalls.clone(), sent.clone());
                let (hold, holding, release) = (hold.clone(), holding.clone(), release.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    let (mut from_franz, mut to_franz) = franz.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let stalled = Arc::new(AtomicBool::new(false));
                    let stalled_up = stalled.clone();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from_franz.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let chunk = &buf[..n];
                            sent.lock().unwrap().extend_from_slice(chunk);
                            let has = |pattern: &[u8]| chunk.windows(pattern.len()).any(|w| w == pattern);
                            if stall_on.lock().unwrap().as_deref().is_some_and(has)
                                && !stalled_up.swap(true, Ordering::SeqCst)
                            {
                                stalls.fetch_add(1, Ordering::SeqCst);
                            }
                            {
                                let mut cut = cut.lock().unwrap();
                                if cut.as_deref().is_some_and(has) {
                                    *cut = None;
                                    return;
                                }
                            }
                            let held = {
                                let mut hold = hold.lock().unwrap();
                                let held = hold.as_deref().is_some_and(has);
                                if held {
                                    *hold = None;
                                }
                                held
                            };
                            if held {
                                let released = release.notified();
                                holding.store(true, Ordering::SeqCst);
                                released.await;
                            }
                            if to_server.write_all(chunk).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let rate = rate.load(Ordering::SeqCst);
                            let most = if rate == 0 { buf.len() } else { (rate / 10).clamp(1, buf.len()) };
                            let n = match from_server.read(&mut buf[..most]).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if stalled.load(Ordering::SeqCst) {
                                std::future::pending::<()>().await;
                            }
                            if to_franz.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                            if rate != 0 {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    };
                    // Either side ending ends the connection (both halves dropped).
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                    }
                });
            }
        });
        relay
    }
}

/// Waits like [`wait_until`], but on timeout fails with what `explain` says about the state then.
async fn wait_or_explain<F, Fut, E, EFut>(what: &str, patience: Duration, mut condition: F, explain: E)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
    E: FnOnce() -> EFut,
    EFut: std::future::Future<Output = String>,
{
    let start = Instant::now();
    while !condition().await {
        if start.elapsed() > patience {
            panic!("timed out after {patience:?} waiting for {what}: {}", explain().await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The error events on the errors topic so far.
async fn error_events(harness: &Harness) -> Vec<Value> {
    let count = harness.count(&harness.topics.errors).await;
    if count == 0 { Vec::new() } else { harness.read_json(&harness.topics.errors, count).await }
}

/// Stops franz; fails unless it stops cleanly within 10 s.
async fn stop_promptly(franz: Started, while_what: &str) {
    let start = Instant::now();
    let stopped = franz.stop().await;
    let took = start.elapsed();
    assert!(
        stopped.is_ok() && took < Duration::from_secs(10),
        "stopping franz {while_what} took {took:?} and ended with {stopped:?}"
    );
}

/// Found by an attack (#34), failing first: `mail.move_to` names a folder the server does not have (a typo, or it was deleted later). The mail is
/// published, the MOVE is refused (`NO [TRYCREATE]`), the connection is made again, and since the backoff was reset
/// by the successful sign-in the same mail is published again about every second, for ever: the intake topic
/// grows without end, a bounce or a dead letter in the batch alerts again each time, and nobody is told on the
/// errors topic (only the log and /readyz say it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_folder_that_does_not_exist_is_reported_and_the_mail_is_not_published_again_and_again() {
    let Some(servers) = MailServers::start() else { return };
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Once\nMessage-ID: <once-nope@franz.test>\n\nhi\n");
    wait_until("the mail in support's INBOX", || async { servers.mails().len() == 1 }).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.config(&harness, data.path(), &[Service::Briefkasten, Service::Aufbereitung]);
    config.mail.move_to = Some("Nope".into());
    let franz = Started::start(&config).await;
    tickets(&harness, 1).await;
    // What people see: an event on the errors topic (absturz alerts on it) that names the folder.
    wait_or_explain(
        "an error event naming the folder Nope",
        Duration::from_secs(30),
        || async { error_events(&harness).await.iter().any(|e| e["message"].as_str().unwrap().contains("Nope")) },
        || async {
            format!(
                "none; meanwhile the one mail was published {} times to the intake topic (troubles: {:?})",
                harness.count(&harness.topics.intake).await,
                franz.ops.metrics.troubles.all()
            )
        },
    )
    .await;
    let published = harness.count(&harness.topics.intake).await;
    assert_eq!(published, 1, "the one mail was published {published} times");
    franz.stop().await.unwrap();
}

/// Found by an attack (#34), failing first: a slow link to the mail server (here 50 KB/s). A batch is one `UID FETCH` of up to 100 mails of up to
/// `mail.max_mb` each, all under one deadline of 60 s (`COMMAND_PATIENCE`): once a batch's bytes take longer than a
/// minute to arrive, the fetch fails, the connection is made again, and the same batch is fetched again, never
/// finishing, so no mail is ever taken. Four mails of 900 KB are 72 s at this rate; each alone is 18 s. In the
/// wild: 100 mails of 10 MiB (the default limit) need 17 MB/s; ten of 8 MB need 11 Mbit/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_slower_than_the_command_deadline_is_still_taken_mail_by_mail() {
    let Some(servers) = MailServers::start() else { return };
    for n in 0..4 {
        servers.send(
            CUSTOMER,
            &format!(
                "From: customer@franz.test\nSubject: Scan {n}\nMessage-ID: <scan-{n}@franz.test>\n\n{}\n",
                "0123456789abcdef".repeat(56 * 1024)
            ),
        );
    }
    wait_until("four mails in support's INBOX", || async { servers.mails().len() == 4 }).await;
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_IMAP").to_owned())).await;
    relay.rate.store(50 * 1024, Ordering::SeqCst);
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.config_via(relay.address, &harness, data.path(), &[Service::Briefkasten]);
    config.mail.max_mb = 1;
    let franz = Started::start(&config).await;
    wait_or_explain(
        "the first of four 900 KB mails published (each takes 18 s at 50 KB/s)",
        Duration::from_secs(80),
        || async { harness.count(&harness.topics.intake).await >= 1 },
        || async {
            format!(
                "none after {} connections; troubles: {:?}",
                relay.connections.load(Ordering::SeqCst),
                franz.ops.metrics.troubles.all()
            )
        },
    )
    .await;
    franz.stop().await.unwrap();
}

/// Found by an attack (#34), failing first: the server stops answering in the middle of a FETCH (it hangs, or a firewall drops the packets), and
/// franz is stopped then. Commands wait up to 60 s for an answer and the batch loop does not look at the shutdown,
/// so stopping takes about a minute instead of a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_franz_while_the_server_hangs_mid_fetch_is_prompt() {
    let Some(servers) = MailServers::start() else { return };
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Hang\nMessage-ID: <hang@franz.test>\n\nhi\n");
    wait_until("the mail in support's INBOX", || async { servers.mails().len() == 1 }).await;
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_IMAP").to_owned())).await;
    *relay.stall_on.lock().unwrap() = Some(b"BODY.PEEK[]".to_vec());
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz =
        Started::start(&servers.config_via(relay.address, &harness, data.path(), &[Service::Briefkasten])).await;
    wait_until("franz sent the FETCH the server hangs on", || async { relay.stalls.load(Ordering::SeqCst) >= 1 }).await;
    assert_eq!(harness.count(&harness.topics.intake).await, 0);
    stop_promptly(franz, "while the server hung mid-FETCH").await;
}

/// Found by an attack (#34), failing first: the server stops answering while franz waits in IDLE, and franz is stopped: ending IDLE (`DONE`) waits up
/// to 60 s for the server, and after it the loop searches the mailbox once more before it looks at the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_franz_while_the_server_hangs_in_idle_is_prompt() {
    let Some(servers) = MailServers::start() else { return };
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_IMAP").to_owned())).await;
    // The server goes silent once franz is idling: the DONE that ends IDLE is never answered.
    *relay.stall_on.lock().unwrap() = Some(b"DONE".to_vec());
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz =
        Started::start(&servers.config_via(relay.address, &harness, data.path(), &[Service::Briefkasten])).await;
    wait_until("franz in IDLE", || async { relay.sent.lock().unwrap().windows(6).any(|w| w == b"IDLE\r\n") }).await;
    stop_promptly(franz, "while the server hung in IDLE").await;
}

/// An attack that found nothing (#34), kept as a test: a "server" that accepts the connection and never says a word. franz waits for the greeting
/// (at most 60 s) and stops promptly when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_greets_does_not_hang_franz_stopping() {
    let relay = Relay::start(None).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = harness.config(data.path(), &[Service::Briefkasten]);
    config.mail = Mail {
        imap_url: Some(ImapUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port: relay.address.port(),
            mailbox: "INBOX".into(),
        }),
        user: Some(SUPPORT.into()),
        password: Some(PASSWORD.into()),
        ..Mail::default()
    };
    let franz = Started::start(&config).await;
    wait_until("franz connected", || async { relay.connections.load(Ordering::SeqCst) >= 1 }).await;
    stop_promptly(franz, "while the server said nothing").await;
}

/// An attack that found nothing (#34), kept as a test: the connection is cut in the middle of the first FETCH of the bodies. franz connects again and
/// takes every mail once: each published (the ids stay the same), each marked read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cut_mid_fetch_loses_no_mail() {
    let Some(servers) = MailServers::start() else { return };
    servers.append_many(30, "cut");
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_IMAP").to_owned())).await;
    *relay.cut_once_on.lock().unwrap() = Some(b"BODY.PEEK[]".to_vec());
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz =
        Started::start(&servers.config_via(relay.address, &harness, data.path(), &[Service::Briefkasten])).await;
    wait_until("all 30 mails marked read", || async { servers.count_in("INBOX") == (30, 0) }).await;
    assert!(relay.connections.load(Ordering::SeqCst) >= 2, "the cut made franz connect again");
    let records = harness.read_json(&harness.topics.intake, 30).await;
    let ids: std::collections::BTreeSet<_> = records.iter().map(|r| r["interaction_id"].to_string()).collect();
    assert_eq!(ids.len(), 30, "{records:?}");
    franz.stop().await.unwrap();
}

/// An attack that found nothing (#34), kept as a test: 500 mails wait when franz starts (five batches of 100). Every one becomes one intake record
/// with its own ticket id and is marked read; none is doubled. Prints how long it took (no timed assertion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_waiting_mails_all_become_tickets_once() {
    let Some(servers) = MailServers::start() else { return };
    servers.append_many(500, "bulk");
    assert_eq!(servers.count_in("INBOX"), (500, 500));
    let harness = Harness::new(1).await;
    let data = scratch();
    let start = Instant::now();
    let franz = Started::start(&servers.config(&harness, data.path(), &[Service::Briefkasten])).await;
    wait_until("500 mails published", || async { harness.count(&harness.topics.intake).await >= 500 }).await;
    let published = start.elapsed();
    wait_until("all 500 marked read", || async { servers.count_in("INBOX") == (500, 0) }).await;
    eprintln!(
        "500 mails: published within {published:?}, all marked read within {:?} of franz's start",
        start.elapsed()
    );
    let records = harness.read_json(&harness.topics.intake, 500).await;
    assert_eq!(records.len(), 500, "no mail published twice");
    let ids: std::collections::BTreeSet<_> = records.iter().map(|r| r["interaction_id"].to_string()).collect();
    assert_eq!(ids.len(), 500);
    franz.stop().await.unwrap();
}

/// Found by an attack (#34), failing first: a new mail arrives while franz moves a batch of 100 taken mails to `mail.move_to`. The server reports
/// each moved mail (`* n EXPUNGE`, 100 of them, and a `COPYUID`) and then the new one (`* n EXISTS`) as untagged
/// responses; async-imap keeps at most 100 of those in its channel and drops the rest (`try_send`), so the EXISTS is
/// lost, `Mailbox::wait` finds only expunges, and franz goes into IDLE with the new mail unseen: it waits until
/// IDLE is renewed (`mail.poll_secs`, 60 s by default, an hour here) instead of about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_arrives_while_a_full_batch_is_moved_is_taken_without_waiting_for_the_poll() {
    let Some(servers) = MailServers::start() else { return };
    client(&["create", servers.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD, "Taken"], b"");
    servers.append_many(100, "batch");
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_IMAP").to_owned())).await;
    *relay.hold_once_on.lock().unwrap() = Some(b"UID MOVE".to_vec());
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.config_via(relay.address, &harness, data.path(), &[Service::Briefkasten]);
    config.mail.move_to = Some("Taken".into());
    let franz = Started::start(&config).await;
    wait_until("franz about to move the first 100 mails", || async { relay.holding.load(Ordering::SeqCst) }).await;
    // The new mail lands while the MOVE is on its way: the server announces it in the MOVE's answer.
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Late\nMessage-ID: <late@franz.test>\n\nhi\n");
    wait_until("the new mail in support's INBOX", || async { servers.count_in("INBOX").0 == 101 }).await;
    relay.release.notify_one();
    wait_until("the 100 mails moved", || async { servers.count_in("Taken").0 >= 100 }).await;
    wait_or_explain(
        "the late mail published too",
        Duration::from_secs(30),
        || async { harness.count(&harness.topics.intake).await >= 101 },
        || async {
            format!(
                "{} of 101 published; INBOX (mails, unread): {:?}; franz idles until mail.poll_secs",
                harness.count(&harness.topics.intake).await,
                servers.count_in("INBOX")
            )
        },
    )
    .await;
    franz.stop().await.unwrap();
}

/// Found by an attack (#34), failing first: a mail without a sender (so it becomes a dead letter) whose Message-ID is 1.5 MB, put in the mailbox
/// past Postfix (whose header_size_limit of 100 KB would cut it): by another client, or by a laxer mail server.
/// `MailRef::message_id` is not bounded, so the dead letter is larger than a Kafka record may be, the publish fails,
/// the whole batch fails (`try_join_all` drops the other mails' publishing with it), and franz reads the same batch
/// again every second or two, for ever: no mail of the batch, nor any after it, is ever taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_with_a_huge_message_id_does_not_block_the_mailbox() {
    let Some(servers) = MailServers::start() else { return };
    let poison = format!("Subject: no sender\r\nMessage-ID: <{}@franz.test>\r\n\r\nhi\r\n", "x".repeat(1_500_000));
    servers.append("INBOX", poison.as_bytes());
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Fine\nMessage-ID: <fine@franz.test>\n\nhi\n");
    wait_until("two mails in support's INBOX", || async { servers.count_in("INBOX").0 == 2 }).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.config(&harness, data.path(), &[Service::Briefkasten])).await;
    wait_or_explain(
        "both mails marked read",
        Duration::from_secs(30),
        || async { servers.count_in("INBOX") == (2, 0) },
        || async {
            format!(
                "INBOX (mails, unread) {:?}; the good mail published {} times; dead letters {}; troubles {:?}",
                servers.count_in("INBOX"),
                harness.count(&harness.topics.intake).await,
                harness.count(&harness.topics.dead_letters).await,
                franz.ops.metrics.troubles.all()
            )
        },
    )
    .await;
    assert_eq!(harness.count(&harness.topics.intake).await, 1);
    assert_eq!(harness.count(&harness.topics.dead_letters).await, 1);
    franz.stop().await.unwrap();
}

/// An attack that found nothing (#34), kept as a test: two franz processes read the same mailbox at once (scaled out). Both may publish a mail, but
/// never under two ticket ids: the intake holds one id per mail, and every mail is marked read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_franz_reading_one_mailbox_give_each_mail_one_ticket_id() {
    let Some(servers) = MailServers::start() else { return };
    servers.append_many(200, "twice");
    let harness = Harness::new(1).await;
    let (one, two) = (scratch(), scratch());
    let first = Started::start(&servers.config(&harness, one.path(), &[Service::Briefkasten])).await;
    let second = Started::start(&servers.config(&harness, two.path(), &[Service::Briefkasten])).await;
    wait_until("all 200 marked read", || async { servers.count_in("INBOX") == (200, 0) }).await;
    servers.append_many(50, "later");
    wait_until("the 50 later ones marked read", || async { servers.count_in("INBOX") == (250, 0) }).await;
    let count = harness.count(&harness.topics.intake).await;
    let records = harness.read_json(&harness.topics.intake, count).await;
    let ids: std::collections::BTreeSet<_> = records.iter().map(|r| r["interaction_id"].to_string()).collect();
    eprintln!("two readers: {count} intake records for 250 mails");
    assert_eq!(ids.len(), 250, "one id per mail");
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

/// Found by an attack (#34), failing first: the same Message-ID from two senders must be two tickets (holds); the same Message-ID from the same
/// sender twice is one ticket id even when the second mail is genuinely new (other subject and text): akte keeps
/// the first, and the second mail is silently lost. That is the documented exactly-once rule; this test keeps the
/// first half and records the second as it is (a note for the report, not an assertion of a defect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_id_from_two_senders_is_two_tickets() {
    let Some(servers) = MailServers::start() else { return };
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Mine\nMessage-ID: <same@franz.test>\n\none\n");
    servers.send("other@franz.test", "From: other@franz.test\nSubject: Theirs\nMessage-ID: <same@franz.test>\n\ntwo\n");
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: New one\nMessage-ID: <same@franz.test>\n\nthree\n");
    wait_until("three mails in support's INBOX", || async { servers.count_in("INBOX").0 == 3 }).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.config(&harness, data.path(), &[Service::Briefkasten])).await;
    wait_until("all marked read", || async { servers.count_in("INBOX") == (3, 0) }).await;
    let records = harness.read_json(&harness.topics.intake, 3).await;
    let id = |subject: &str| {
        records.iter().find(|r| r["message"].as_str().unwrap().starts_with(subject)).unwrap()["interaction_id"].clone()
    };
    assert_ne!(id("Mine"), id("Theirs"));
    assert_eq!(id("Mine"), id("New one"), "the same sender's second mail with a reused Message-ID: one ticket id");
    franz.stop().await.unwrap();
}

/// An attack that found nothing (#34), kept as a test: a mail of exactly `mail.max_mb` bytes is a ticket; one byte more is a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_exactly_at_the_size_limit_is_a_ticket_and_one_byte_over_a_dead_letter() {
    let Some(servers) = MailServers::start() else { return };
    let sized = |name: &str, size: usize| {
        let head = format!("From: customer@franz.test\r\nSubject: {name}\r\nMessage-ID: <{name}@franz.test>\r\n\r\n");
        let mut raw = head.into_bytes();
        raw.resize(size - 2, b'a');
        raw.extend_from_slice(b"\r\n");
        raw
    };
    servers.append("INBOX", &sized("at", 1 << 20));
    servers.append("INBOX", &sized("over", (1 << 20) + 1));
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.config(&harness, data.path(), &[Service::Briefkasten]);
    config.mail.max_mb = 1;
    let franz = Started::start(&config).await;
    wait_until("both marked read", || async { servers.count_in("INBOX") == (2, 0) }).await;
    let records = harness.read_json(&harness.topics.intake, 1).await;
    assert!(records[0]["message"].as_str().unwrap().starts_with("at\n"), "{records:?}");
    let letters = harness.read_json(&harness.topics.dead_letters, 1).await;
    assert_eq!(letters[0]["source"]["message_id"], "over@franz.test", "{letters:?}");
    assert_eq!((records.len(), letters.len()), (1, 1));
    franz.stop().await.unwrap();
}

/// Found by an attack (#34), failing first: a wrong password, with the log turned up as someone chasing a mail problem would (`FRANZ_LOG=trace`,
/// or `FRANZ_LOG=async_imap=trace`). The refusal is reported (holds), but async-imap logs every command it sends at
/// trace level through the `log` crate, which franz's subscriber takes in: `LOGIN "support@franz.test"
/// "<password>"` lands in the log, against the README's "the logs show only that they are set" (and every
/// mail's full text with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_password_never_appears_in_the_log_even_at_trace_level() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let dir = scratch();
    let password = "Wr0ng-hunter2-password";
    let env = [
        ("FRANZ_MAIL_IMAP_URL", format!("imap://{}/INBOX", servers.get("FRANZ_MAIL_IMAP"))),
        ("FRANZ_MAIL_USER", SUPPORT.to_owned()),
        ("FRANZ_MAIL_PASSWORD", password.to_owned()),
        ("FRANZ_LOG", "trace".to_owned()),
    ];
    let franz = Reaped(Up::start_with_env(dir.path(), "franz", &harness, &["--only", "briefkasten"], &env));
    wait_until("the refused sign-in reported on the errors topic", || async {
        error_events(&harness).await.iter().any(|e| e["message"].as_str().unwrap().contains("refused the sign-in"))
    })
    .await;
    let log = franz.terminate();
    for event in error_events(&harness).await {
        assert!(!event.to_string().contains(password), "the password in an error event: {event}");
    }
    let leaks: Vec<&str> = log.lines().filter(|line| line.contains(password)).collect();
    assert!(leaks.is_empty(), "the password in {} log lines, e.g. {:?}", leaks.len(), leaks.first());
}

/// An attack that found nothing (#34), kept as a test: `mail.imap_url` names a mailbox the server does not have. franz keeps trying (1 s doubling to a
/// minute), says which mailbox in /readyz's troubles, and stops promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_that_does_not_exist_is_named_in_the_troubles() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.config(&harness, data.path(), &[Service::Briefkasten]);
    config.mail.imap_url.as_mut().unwrap().mailbox = "Nope".into();
    let franz = Started::start(&config).await;
    wait_until("the trouble naming the mailbox", || async {
        franz.ops.metrics.troubles.all().get("briefkasten").is_some_and(|t| t.text.contains("SELECT Nope"))
    })
    .await;
    let state = franz.ops.readiness().await.mailbox.expect("the mailbox in /readyz").state;
    assert!(state.starts_with("not connected: ") && state.contains("SELECT Nope"), "{state}");
    stop_promptly(franz, "while it retried a missing mailbox").await;
}

/// An attack that found nothing (#34), kept as a test: hostile mails through the real server (put there by APPEND, past Postfix's limits): 10,000
/// nested multiparts, 20,000 attachments, a 5,000-line subject full of markup, NUL bytes and 8-bit text without a
/// charset, a From of 300 characters, an empty mail, a mail that is only headers. Each becomes a ticket or a dead
/// letter, every one is marked read, and no ticket carries markup from the HTML part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mails_in_the_mailbox_each_become_a_ticket_or_a_dead_letter() {
    let Some(servers) = MailServers::start() else { return };
    let mut nested = String::from(
        "From: customer@franz.test\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n",
    );
    for i in 0..10_000 {
        nested.push_str(&format!("--b{i}\r\nContent-Type: multipart/mixed; boundary=\"b{}\"\r\n\r\n", i + 1));
    }
    nested.push_str("--b10000\r\nContent-Type: text/html\r\n\r\n<p>deep <script>alert(1)</script></p>\r\n");
    let mut files = String::from(
        "From: customer@franz.test\r\nSubject: files\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\n\r\nhi\r\n",
    );
    for i in 0..20_000 {
        files.push_str(&format!("--m\r\nContent-Disposition: attachment; filename=\"f{i}.bin\"\r\n\r\nx\r\n"));
    }
    files.push_str("--m--\r\n");
    let mut subject = String::from("From: customer@franz.test\r\nSubject: start");
    for i in 0..5_000 {
        subject.push_str(&format!("\r\n line {i} <b>x</b>"));
    }
    subject.push_str("\r\n\r\nbody\r\n");
    let mails: Vec<Vec<u8>> = vec![
        nested.into_bytes(),
        files.into_bytes(),
        subject.into_bytes(),
        b"From: customer@franz.test\r\nSubject: a\0b\r\n\r\nK\xf6ln \0 caf\xe9\r\n".to_vec(),
        format!("From: {}@franz.test\r\nSubject: long sender\r\n\r\nhi\r\n", "a".repeat(300)).into_bytes(),
        b"\r\n".to_vec(),
        b"From: customer@franz.test\r\nSubject: only headers\r\n".to_vec(),
    ];
    let count = mails.len() as u64;
    for mail in &mails {
        servers.append("INBOX", mail);
    }
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz =
        Started::start(&servers.config(&harness, data.path(), &[Service::Briefkasten, Service::Aufbereitung])).await;
    wait_until("every mail marked read", || async { servers.count_in("INBOX") == (count, 0) }).await;
    let tickets = harness.count(&harness.topics.intake).await;
    let letters = harness.count(&harness.topics.dead_letters).await;
    assert_eq!((tickets + letters) as u64, count, "{tickets} tickets and {letters} dead letters for {count} mails");
    let tickets = self::tickets(&harness, tickets).await;
    assert!(tickets.iter().all(|t| !t["body"].as_str().unwrap().contains("<script")), "{tickets:?}");
    franz.stop().await.unwrap();
}

/// Found by an attack (#34), failing first: another client deletes a mail between franz's SEARCH (and size FETCH) and its FETCH of the bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_deleted_between_search_and_fetch_is_skipped_and_the_rest_taken() {
    let Some(servers) = MailServers::start() else { return };
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Gone\nMessage-ID: <gone@franz.test>\n\nbye\n");
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Stays\nMessage-ID: <stays@franz.test>\n\nhi\n");
    wait_until("two mails in support's INBOX", || async { servers.count_in("INBOX").0 == 2 }).await;
    let relay = Relay::start(Some(servers.get("FRANZ_MAIL_IMAP").to_owned())).await;
    *relay.hold_once_on.lock().unwrap() = Some(b"BODY.PEEK[]".to_vec());
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz =
        Started::start(&servers.config_via(relay.address, &harness, data.path(), &[Service::Briefkasten])).await;
    wait_until("franz about to fetch the bodies", || async { relay.holding.load(Ordering::SeqCst) }).await;
    client(&["delete", servers.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD, "<gone@franz.test>"], b"");
    assert_eq!(servers.count_in("INBOX").0, 1);
    relay.release.notify_one();
    wait_until("the other mail marked read", || async { servers.count_in("INBOX") == (1, 0) }).await;
    let records = harness.read_json(&harness.topics.intake, 1).await;
    assert!(records[0]["message"].as_str().unwrap().starts_with("Stays"), "{records:?}");
    let letters = harness.count(&harness.topics.dead_letters).await;
    let letters = if letters > 0 { harness.read_json(&harness.topics.dead_letters, letters).await } else { vec![] };
    assert!(letters.is_empty(), "the deleted mail became a dead letter: {letters:?}");
    assert_eq!(harness.count(&harness.topics.intake).await, 1);
    franz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_new_ticket_is_acknowledged_with_its_token_and_automatic_mail_own_mail_and_floods_never_are() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.replying(&harness, data.path());
    config.mail.acknowledge = true;
    config.mail.acknowledge_text = Some("Got it, thanks.".into());
    let franz = Started::start(&config).await;
    // Mail no program should answer: an auto-reply, a list, and franz's own address.
    servers.send("other@franz.test", "From: other@franz.test\nSubject: Away\nAuto-Submitted: auto-replied\n\nout\n");
    servers.send("other@franz.test", "From: other@franz.test\nSubject: News\nList-Id: <news.franz.test>\n\nnews\n");
    servers.send(SUPPORT, "From: support@franz.test\nSubject: Myself\nMessage-ID: <self@franz.test>\n\nme\n");
    // A flood from one person: four new tickets, three acknowledgements.
    for n in 0..4 {
        servers.send(
            CUSTOMER,
            &format!("From: customer@franz.test\nSubject: Flood {n}\nMessage-ID: <flood-{n}@franz.test>\n\n{n}\n"),
        );
    }
    wait_until("seven tickets", || async { harness.count(&harness.topics.intake).await >= 7 }).await;
    // Then a person's mail from the address whose auto-reply and list mail got nothing: its acknowledgement comes
    // after theirs would have, since one partition holds every event in order.
    servers.send(
        "other@franz.test",
        "From: Olga <other@franz.test>\nSubject: Real\nMessage-ID: <real-olga@franz.test>\n\nhi\n",
    );
    wait_until("Olga's acknowledgement", || async { !servers.mails_of("other@franz.test", "INBOX").is_empty() }).await;
    let olga = servers.mails_of("other@franz.test", "INBOX");
    assert_eq!(olga.len(), 1, "only the person's mail is acknowledged: {olga:?}");
    assert_eq!(olga[0]["in_reply_to"], "<real-olga@franz.test>", "{olga:?}");
    assert_eq!(olga[0]["auto_submitted"], "auto-replied", "{olga:?}");
    assert!(olga[0]["subject"].as_str().unwrap().contains("[franz #"), "{olga:?}");
    assert!(olga[0]["text"].as_str().unwrap().starts_with("Got it, thanks."), "{olga:?}");
    let ann = servers.mails_of(CUSTOMER, "INBOX");
    assert_eq!(ann.len(), 3, "three acknowledgements in ten minutes, not four: {ann:?}");
    // franz's own address got none: its INBOX holds the seven mails franz took and Olga's, nothing else.
    assert_eq!(servers.mails().len(), 8, "{:?}", servers.mails());
    franz.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_bounces_is_recorded_on_its_ticket_as_not_delivered_and_opens_no_ticket() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    // A customer whose address the mail server takes but cannot deliver to: the bounce comes later, by mail.
    servers
        .send("nobody@franz.test", "From: nobody@franz.test\nSubject: Ghost\nMessage-ID: <ghost@franz.test>\n\nboo\n");
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    reply(&harness, &ticket, "Who are you?", "reply-ghost").await;
    let bounced =
        event_where(&harness, "the bounce recorded", |e| e["type"] == "delivery" && e["delivered"] == false).await;
    assert_eq!(bounced["ticket_id"], ticket.as_str(), "{bounced}");
    assert_eq!(bounced["via"], "email", "{bounced}");
    let detail = bounced["detail"].as_str().unwrap();
    assert!(detail.starts_with("bounced") && detail.contains("5.1.1"), "{detail}");
    let sent = event_where(&harness, "the reply taken by the server first", |e| {
        e["type"] == "delivery" && e["delivered"] == true
    })
    .await;
    assert_eq!(sent["of"], bounced["of"], "the bounce is about the reply: {sent} {bounced}");
    wait_until("the bounce marked read", || async { servers.all_seen(2) }).await;
    assert_eq!(harness.count(&harness.topics.intake).await, 1, "a bounce opens no ticket");
    franz.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// From a second attack on briefkasten, on the conversation by mail (replies and answers, #34). Each test says what
// the attack did and what went wrong ("found by an attack, failing first"), or that it found nothing.
// ---------------------------------------------------------------------------------------------------------------

/// Message-IDs as the big providers make them: Gmail's (`CA…@mail.gmail.com`, 60 to 70 characters) and Microsoft
/// 365 / Outlook.com's (around 80).
const GMAIL_ID: &str = "CAKx7uVi2xJvRC7E1u9Kp0LW9U8vK=Yk9Ug7hFvXyU3+0Dq8A0Q@mail.gmail.com";
const OUTLOOK_ID: &str = "DM6PR11MB4259B9E1A8F3C1C0E2A4C3E1C9A49F@DM6PR11MB4259.namprd11.prod.outlook.com";

/// Opens a ticket by a mail from customer@ (Message-ID `<opening_id>`), sends a desk reply to it, and waits for the
/// reply in the customer's INBOX: the ticket id and the reply as the customer's client lists it.
async fn opened_and_answered(servers: &MailServers, harness: &Harness, opening_id: &str) -> (String, Value) {
    servers.send(
        CUSTOMER,
        &format!("From: Ann Customer <customer@franz.test>\nSubject: Locked out\nMessage-ID: <{opening_id}>\n\nhelp\n"),
    );
    let created = event_where(harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    reply(harness, &ticket, "Try again now.", "reply-1").await;
    wait_until("the reply in the customer's INBOX", || async { !servers.mails_of(CUSTOMER, "INBOX").is_empty() }).await;
    (ticket, servers.mails_of(CUSTOMER, "INBOX").remove(0))
}

/// Found by an attack (#34, replies), failing first: a mail from Outlook.com or Microsoft 365, whose Message-ID is
/// about 80 characters (most of Gmail's are over 64 too), is read, published and marked as read, and akte refuses
/// its `create` ("a message id must have 1 to 64 characters"): the customer's mail opens no ticket at all, and
/// nothing but a `rejected` event says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_from_outlook_with_its_long_message_id_opens_a_ticket() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    servers.send(
        CUSTOMER,
        &format!("From: customer@franz.test\nSubject: Invoice wrong\nMessage-ID: <{OUTLOOK_ID}>\n\nplease check\n"),
    );
    let decided = event_where(&harness, "the ticket's create decided", |e| {
        e["type"] == "created" || (e["type"] == "rejected" && e["action"] == "create")
    })
    .await;
    assert_eq!(decided["type"], "created", "the mail opened no ticket: {decided}");
    franz.stop().await.unwrap();
}

/// Found by an attack (#34, replies), failing first: the customer answers a reply from Gmail, whose Message-ID is
/// 66 characters; the answer is found (In-Reply-To), published as their `write`, and akte refuses it for its
/// message id over 64: the answer is lost, the mail marked as read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_from_gmail_with_its_long_message_id_lands_on_the_ticket() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    let (ticket, mail) = opened_and_answered(&servers, &harness, "opening@franz.test").await;
    let subject = mail["subject"].as_str().unwrap();
    let reply_id = mail["message_id"].as_str().unwrap();
    servers.send(
        CUSTOMER,
        &format!(
            "From: Ann Customer <customer@franz.test>\nSubject: {subject}\nMessage-ID: <{GMAIL_ID}>\n\
            In-Reply-To: {reply_id}\nReferences: <opening@franz.test> {reply_id}\n\nStill locked.\n"
        ),
    );
    let decided = event_where(&harness, "the answer decided", |e| {
        e["type"] == "submitter_wrote" || (e["type"] == "rejected" && e["action"] == "write")
    })
    .await;
    assert_eq!(decided["type"], "submitter_wrote", "the answer is lost: {decided}");
    assert_eq!(decided["ticket_id"], ticket.as_str());
    franz.stop().await.unwrap();
}

/// Found by an attack (#34, replies), failing first: `mail.from` at a domain of more than 21 characters
/// (`support@customer-service.example.com`) makes a reply's Message-ID (`franz.<event id>@<domain>`) longer than
/// 64 characters. The reply reaches the customer, but akte refuses its `record_delivery`: the desk never shows it
/// delivered, and the `sent` table never learns its Message-ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_from_a_longer_sending_domain_is_recorded_as_delivered() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.replying(&harness, data.path());
    config.mail.from = Some("Support <support@customer-service.example.com>".into());
    let franz = Started::start(&config).await;
    let (_, mail) = opened_and_answered(&servers, &harness, "opening@franz.test").await;
    let decided = event_where(&harness, "the delivery decided", |e| {
        e["type"] == "delivery" || (e["type"] == "rejected" && e["action"] == "record_delivery")
    })
    .await;
    assert_eq!(decided["type"], "delivery", "the reply {} reached the customer, and: {decided}", mail["message_id"]);
    franz.stop().await.unwrap();
}

/// Found by an attack (#34, replies), failing first: a customer writes, then at once sends a second mail as an
/// answer to their first ("forgot to say…", In-Reply-To and References naming it). Both arrive before franz looks
/// (franz was stopped, or both came within a second): they are taken in one batch, the ticket store knows neither
/// yet, and the second opens a ticket of its own instead of being the customer's message on the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_second_mail_answering_their_first_is_a_message_on_the_same_ticket() {
    let Some(servers) = MailServers::start() else { return };
    servers.send(
        CUSTOMER,
        "From: Ann Customer <customer@franz.test>\nSubject: Locked out\nMessage-ID: <first@franz.test>\n\nhelp\n",
    );
    servers.send(
        CUSTOMER,
        "From: Ann Customer <customer@franz.test>\nSubject: Re: Locked out\nMessage-ID: <second@franz.test>\n\
        In-Reply-To: <first@franz.test>\nReferences: <first@franz.test>\n\nMy user name is ann.\n\n\
        On Mon, Ann Customer wrote:\n> help\n",
    );
    wait_until("two mails in support's INBOX", || async { servers.count_in("INBOX").0 == 2 }).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.replying(&harness, data.path())).await;
    let second = event_where(&harness, "the second mail on a ticket", |e| {
        (e["type"] == "created" && e["body"].as_str().unwrap().starts_with("Re: Locked out"))
            || (e["type"] == "submitter_wrote" && e["body"] == "My user name is ann.")
    })
    .await;
    assert_eq!(second["type"], "submitter_wrote", "the answer to the customer's own mail opened a ticket: {second}");
    franz.stop().await.unwrap();
}

/// Found by an attack (#34, replies; loops), failing first: a ticket whose contact is franz's own address (staff
/// forwarding a mail from the support address, a test mail, a customer address that forwards to support@). The
/// reply franz sends lands in franz's own mailbox, names the ticket (In-Reply-To), comes from the contact, and is
/// taken as the customer's answer: the ticket shows "submitter answered" with the team's own words and is open
/// again. (No endless loop, since franz mails only public replies written by people; with an acknowledgement mail
/// it would be one.) franz knows its own mails by their Message-ID (`franz.<event>@…`) and should drop them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franz_never_takes_its_own_reply_for_the_customers_answer() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    servers.send(SUPPORT, "From: support@franz.test\nSubject: Printer\nMessage-ID: <self@franz.test>\n\nbroken\n");
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    wait_until("the mail marked read", || async { servers.all_seen(1) }).await;
    reply(&harness, &ticket, "We sent a technician.", "reply-self").await;
    wait_until("franz's reply in its own INBOX, taken", || async { servers.all_seen(2) }).await;
    // A stranger's mail to the ticket, taken after the reply: its note is decided after whatever the reply became.
    let token = ticket.chars().filter(char::is_ascii_hexdigit).take(12).collect::<String>();
    servers.send(
        "other@franz.test",
        &format!("From: other@franz.test\nSubject: Re: Printer [franz #{token}]\nMessage-ID: <o@franz.test>\n\nx\n"),
    );
    event_where(&harness, "the stranger's note", |e| e["type"] == "commented" && e["internal"] == true).await;
    let count = harness.count(&harness.topics.events).await;
    let events = harness.read_json(&harness.topics.events, count).await;
    let own: Vec<&Value> = events.iter().filter(|e| e["type"] == "submitter_wrote").collect();
    assert!(own.is_empty(), "franz's own reply became the customer's message: {own:?}");
    franz.stop().await.unwrap();
}

/// Found by an attack (#34, replies), failing first: the SMTP server takes the connection and never answers (a
/// hung server, a firewall that drops). A reply is due; franz is asked to stop. The send is not raced against the
/// shutdown (the IMAP side's waits are), so the stop waits out lettre's 60 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smtp_server_that_never_answers_does_not_hold_up_a_stop() {
    let Some(servers) = MailServers::start() else { return };
    let silent = Relay::start(None).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.replying_to(silent.address.port(), &harness, data.path())).await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Hello\nMessage-ID: <h@franz.test>\n\nhi\n");
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    reply(&harness, created["ticket_id"].as_str().unwrap(), "Hello back", "reply-hung").await;
    wait_until("franz connected to the silent server", || async { silent.connections.load(Ordering::SeqCst) >= 1 })
        .await;
    stop_promptly(franz, "while a reply waited for a silent SMTP server").await;
}

/// Found by an attack (#34, replies), failing first: franz (or only its briefkasten) was down for more than an hour,
/// during which the desk (another franz, `--only akte,desk`) took a public reply to an email ticket; or the SMTP
/// server was down for over an hour, and franz restarted meanwhile. When briefkasten comes back, its group
/// `briefkasten-replies` has committed offsets (it is no new franz on an old history), yet the reply is over an
/// hour old and silently skipped: never sent, no delivery recorded, nothing on the desk, nothing in the troubles.
/// (The README: "A server that cannot take it now is tried again …, never skipped"; the hour is for "a new franz
/// on an old history".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_written_while_briefkasten_was_down_for_over_an_hour_is_not_lost_silently() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let config = servers.replying(&harness, data.path());
    let franz = Started::start(&config).await;
    let (ticket, _) = opened_and_answered(&servers, &harness, "opening@franz.test").await;
    event_where(&harness, "the first reply recorded", |e| e["type"] == "delivery").await;
    franz.stop().await.unwrap();

    // The desk's reply of 90 minutes ago, as akte wrote it then, while briefkasten was down.
    let count = harness.count(&harness.topics.events).await;
    let events = harness.read_json(&harness.topics.events, count).await;
    let version = events.iter().filter_map(|e| e["version"].as_u64()).max().unwrap();
    let at = (chrono::Utc::now() - chrono::Duration::minutes(90)).to_rfc3339();
    let event = serde_json::json!({
        "event_id": franz::schema::lifecycle::event_id_for(&ticket, "reply-late"),
        "ticket_id": ticket, "version": version + 1, "at": at,
        "actor": {"source": "web", "name": "ana"}, "caused_by": "reply-late",
        "type": "commented", "body": "Sorry for the wait: fixed.", "internal": false,
    });
    let partition = franz::kafka::tickets::ticket_partition(&ticket, harness.partitions);
    harness.produce(&harness.topics.events, &[(partition, serde_json::to_vec(&event).unwrap())]).await;

    let franz = Started::start(&config).await;
    // A later reply, sent at once: once it is delivered, the late one was seen before it.
    reply(&harness, &ticket, "Anything else?", "reply-after").await;
    wait_until("the later reply in the customer's INBOX", || async { servers.mails_of(CUSTOMER, "INBOX").len() >= 2 })
        .await;
    let mails = servers.mails_of(CUSTOMER, "INBOX");
    let late_sent = mails.iter().any(|m| m["text"].as_str().unwrap().starts_with("Sorry for the wait"));
    let count = harness.count(&harness.topics.events).await;
    let events = harness.read_json(&harness.topics.events, count).await;
    let late_event = franz::schema::lifecycle::event_id_for(&ticket, "reply-late");
    let recorded = events.iter().any(|e| e["type"] == "delivery" && e["of"] == late_event.as_str());
    assert!(
        late_sent || recorded,
        "the reply written while briefkasten was down was neither sent nor recorded as not sent; the customer got: \
        {:?}",
        mails.iter().map(|m| &m["text"]).collect::<Vec<_>>()
    );
    franz.stop().await.unwrap();
}

/// Reply bodies that SMTP and MIME make hard, and a subject in UTF-8; the customer's client must read each exactly
/// as written: a line of a single dot (SMTP's end of data) and one of two, a line of 2,000 characters (SMTP allows
/// 998 bytes), text in several scripts and an emoji, a NUL byte, a bare carriage return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_bodies_with_dot_lines_long_lines_utf8_nul_and_bare_cr_reach_the_customer_as_written() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    servers.send(
        CUSTOMER,
        "From: customer@franz.test\nSubject: =?UTF-8?B?w5xiZXJ3ZWlzdW5nIGbDpGxsaWcg8J+OiQ==?=\n\
        Message-ID: <utf8@franz.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nhi\n",
    );
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    let long = "x".repeat(2000);
    let bodies = [
        format!("first\n.\nafter the dot\n..\n{long}\nGrüße — 日本語 — עברית 🎉\nend"),
        "before\0after".to_owned(),
        "one\rtwo".to_owned(),
    ];
    for (index, body) in bodies.iter().enumerate() {
        reply(&harness, &ticket, body, &format!("reply-{index}")).await;
    }
    wait_until("three deliveries recorded", || async {
        let count = harness.count(&harness.topics.events).await;
        harness.read_json(&harness.topics.events, count).await.iter().filter(|e| e["type"] == "delivery").count() == 3
    })
    .await;
    let mails = servers.mails_of(CUSTOMER, "INBOX");
    let texts: Vec<String> = mails.iter().map(|m| m["text"].as_str().unwrap().replace("\r\n", "\n")).collect();
    assert!(
        mails.iter().all(|m| m["subject"].as_str().unwrap().starts_with("Re: Überweisung fällig 🎉 [franz #")),
        "{mails:?}"
    );
    assert!(texts.iter().any(|t| t.starts_with(bodies[0].as_str())), "the first reply as received: {texts:?}");
    eprintln!("received: {texts:?}");
    assert_eq!(mails.len(), 3, "{texts:?}");
    franz.stop().await.unwrap();
}

/// An attack that found nothing (#34, replies), kept as a test: a public reply on a ticket that came from Discord is
/// not mailed (no mail, no delivery by email); a stranger's mail carrying that ticket's token, or naming a Discord
/// message id in In-Reply-To, is at most a note, never the submitter's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_ticket_is_never_mailed_and_its_token_in_a_mail_makes_only_a_note() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    let record = serde_json::json!({
        "message": "Bot is down", "username": "pontatot", "user_id": "80351110224678912",
        "timestamp": "2026-02-24T08:32:23.255Z", "interaction_id": "1234567890123",
    });
    harness.produce(&harness.topics.intake, &[(0, serde_json::to_vec(&record).unwrap())]).await;
    let created = event_where(&harness, "the Discord ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    reply(&harness, &ticket, "Restarted it.", "reply-discord").await;
    let token = ticket.chars().filter(char::is_ascii_hexdigit).take(12).collect::<String>();
    servers.send(
        CUSTOMER,
        &format!(
            "From: customer@franz.test\nSubject: Re: Bot [franz #{token}]\nMessage-ID: <d@franz.test>\n\
            In-Reply-To: <80351110224678912>\n\nI am pontatot, trust me\n"
        ),
    );
    let note = event_where(&harness, "the mail on the Discord ticket", |e| {
        e["ticket_id"] == ticket.as_str() && (e["type"] == "submitter_wrote" || e["internal"] == true)
    })
    .await;
    assert_eq!(note["type"], "commented", "{note}");
    // The note is decided after the reply: had the reply been mailed, its delivery would be recorded by now, or soon.
    wait_until("the mail taken", || async { servers.all_seen(1) }).await;
    let count = harness.count(&harness.topics.events).await;
    let events = harness.read_json(&harness.topics.events, count).await;
    assert!(!events.iter().any(|e| e["type"] == "delivery" && e["via"] == "email"), "{events:?}");
    assert!(servers.mails_of(CUSTOMER, "INBOX").is_empty());
    franz.stop().await.unwrap();
}

/// An attack that found nothing (#34, replies), kept as a test: with a reopen window of 0, the ticket is closed and
/// the customer answers franz's reply: a new ticket that follows it. A stranger writes to it too (a note). Then
/// franz stops, every mail is unread again (as after a crash before the marks), and franz starts again: each mail
/// is still recorded once (one follower, one note), and nothing else is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_followers_and_notes_read_again_after_a_restart_are_recorded_once() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let mut config = servers.replying(&harness, data.path());
    config.reopen_within = Duration::ZERO;
    let franz = Started::start(&config).await;
    let (ticket, mail) = opened_and_answered(&servers, &harness, "opening@franz.test").await;
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    let close = Lifecycle {
        command_id: "close-1".into(),
        ticket_id: ticket.clone(),
        actor: Actor::staff(ActorSource::Web, "ana"),
        action: Action::Close { reason: "done".into() },
    };
    franz::kafka::tickets::send_command(&producer, &harness.topics.commands, harness.partitions, &close).await.unwrap();
    event_where(&harness, "the ticket closed", |e| e["type"] == "closed").await;
    let (subject, reply_id) = (mail["subject"].as_str().unwrap(), mail["message_id"].as_str().unwrap());
    servers.send(
        CUSTOMER,
        &format!(
            "From: customer@franz.test\nSubject: {subject}\nMessage-ID: <late@franz.test>\nIn-Reply-To: {reply_id}\n\
            \nIt broke again.\n"
        ),
    );
    let follower =
        event_where(&harness, "the follower", |e| e["type"] == "created" && e["follows"] == ticket.as_str()).await;
    servers.send(
        "other@franz.test",
        &format!("From: other@franz.test\nSubject: {subject}\nMessage-ID: <o1@franz.test>\n\nme too\n"),
    );
    let note = event_where(&harness, "the stranger's note", |e| e["internal"] == true).await;
    assert_eq!(note["ticket_id"], follower["ticket_id"], "the note goes to the newest follower: {note}");
    wait_until("three mails taken", || async { servers.all_seen(3) }).await;
    franz.stop().await.unwrap();

    client(&["unsee", servers.get("FRANZ_MAIL_IMAP"), SUPPORT, PASSWORD], b"");
    let franz = Started::start(&config).await;
    wait_until("the three mails taken again", || async { servers.all_seen(3) }).await;
    // Decided after whatever the mails read again became (one partition, commands in order).
    servers.send(
        "other@franz.test",
        &format!("From: other@franz.test\nSubject: {subject}\nMessage-ID: <o2@franz.test>\n\nsentinel\n"),
    );
    event_where(&harness, "the sentinel's note", |e| {
        e["internal"] == true && e["body"].as_str().unwrap().ends_with("sentinel")
    })
    .await;
    let count = harness.count(&harness.topics.events).await;
    let events = harness.read_json(&harness.topics.events, count).await;
    let of = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!((of("created"), of("submitter_wrote")), (2, 0), "{events:?}");
    assert_eq!(events.iter().filter(|e| e["internal"] == true).count(), 2, "{events:?}");
    franz.stop().await.unwrap();
}

/// An attack that found nothing (#34, replies), kept as a test: the SMTP server is down (its port refuses
/// connections) while a reply is due. franz says so in the troubles, tries again, stops promptly, and the reply
/// goes out once franz starts again with the server back: not lost, not recorded as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_due_while_the_smtp_server_is_down_is_sent_once_it_is_back() {
    let Some(servers) = MailServers::start() else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let harness = Harness::new(1).await;
    let data = scratch();
    let config = servers.replying(&harness, data.path());
    let franz = Started::start(&servers.replying_to(closed, &harness, data.path())).await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Hello\nMessage-ID: <h@franz.test>\n\nhi\n");
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    reply(&harness, created["ticket_id"].as_str().unwrap(), "Hello back", "reply-down").await;
    wait_until("the failure in the troubles", || async {
        franz.ops.metrics.troubles.all().get("briefkasten").is_some_and(|t| t.text.contains("could not be sent yet"))
    })
    .await;
    stop_promptly(franz, "while it retried a reply").await;
    let franz = Started::start(&config).await;
    let delivery = event_where(&harness, "the delivery recorded", |e| e["type"] == "delivery").await;
    assert_eq!(delivery["delivered"], true, "{delivery}");
    assert_eq!(servers.mails_of(CUSTOMER, "INBOX").len(), 1);
    franz.stop().await.unwrap();
}

/// Found by an attack (#34, replies), failing first: franz starts with a ticket store to build (a new data dir or
/// container, a store deleted as the README allows, the rebuild after an upgrade) while the customer's answer waits
/// in the mailbox. briefkasten reads the mailbox at once and asks the store, still rebuilding, which ticket the
/// answer names: none yet, so the answer opens a ticket of its own. (akte waits for the store to catch up;
/// briefkasten does not.) 50,000 other events make the rebuild take a few seconds, as a real history does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_waiting_while_the_store_rebuilds_lands_on_its_ticket() {
    let Some((servers, harness, _data, franz)) = replying_franz().await else { return };
    let (ticket, mail) = opened_and_answered(&servers, &harness, "opening@franz.test").await;
    event_where(&harness, "the reply recorded", |e| e["type"] == "delivery").await;
    franz.stop().await.unwrap();

    let fillers: Vec<(i32, Vec<u8>)> = (0..50_000)
        .map(|i| {
            let event = serde_json::json!({
                "event_id": format!("filler-event-{i}"), "ticket_id": format!("filler-{i}"), "version": 1,
                "at": "2026-01-01T00:00:00Z", "actor": {"source": "franz", "name": "franz"}, "caused_by": "c",
                "type": "created", "contact": "someone", "origin": "Discord", "body": "an older ticket",
                "submitted": "2026-01-01T00:00:00Z",
            });
            (0, serde_json::to_vec(&event).unwrap())
        })
        .collect();
    harness.produce(&harness.topics.events, &fillers).await;
    let (subject, reply_id) = (mail["subject"].as_str().unwrap(), mail["message_id"].as_str().unwrap());
    servers.send(
        CUSTOMER,
        &format!(
            "From: customer@franz.test\nSubject: {subject}\nMessage-ID: <answer@franz.test>\nIn-Reply-To: {reply_id}\n\
            References: <opening@franz.test> {reply_id}\n\nStill locked.\n"
        ),
    );
    wait_until("the answer in support's INBOX", || async { servers.count_in("INBOX").0 == 2 }).await;

    let fresh = scratch();
    let franz = Started::start(&servers.replying(&harness, fresh.path())).await;
    let answer = event_where(&harness, "the answer decided", |e| {
        (e["type"] == "created" && e["message_id"] == "answer@franz.test")
            || (e["type"] == "submitter_wrote" && e["body"] == "Still locked.")
    })
    .await;
    assert_eq!(answer["type"], "submitter_wrote", "the answer opened a ticket of its own: {answer}");
    assert_eq!(answer["ticket_id"], ticket.as_str());
    franz.stop().await.unwrap();
}

/// The limit on open tickets per sender (`open_tickets_max`): a new mail from a sender with that many open tickets
/// opens none; its text goes on their newest open ticket, and they get one automatic answer (threaded under their
/// mail, `Auto-Submitted`) that lists their open tickets. A mail a program sent past the limit is not answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_mail_past_the_limit_of_open_tickets_goes_on_the_newest_and_its_sender_is_answered() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let config = Config { open_tickets_max: 2, ..servers.replying(&harness, data.path()) };
    let franz = Started::start(&config).await;
    for (n, subject) in ["Printer on fire", "VPN drops"].into_iter().enumerate() {
        servers.send(
            CUSTOMER,
            &format!("From: Ann <customer@franz.test>\nSubject: {subject}\nMessage-ID: <t{n}@franz.test>\n\nHelp.\n"),
        );
        tickets(&harness, n as i64 + 1).await;
    }
    let created =
        event_where(&harness, "the second ticket", |e| e["type"] == "created" && e["message_id"] == "t1@franz.test")
            .await;
    let newest = created["ticket_id"].as_str().unwrap().to_owned();
    servers.send(
        CUSTOMER,
        "From: Ann <customer@franz.test>\nSubject: The fax\nMessage-ID: <fax@franz.test>\n\nThe fax too.\n",
    );
    let wrote = event_where(&harness, "the third mail on the newest ticket", |e| e["type"] == "submitter_wrote").await;
    assert_eq!((wrote["ticket_id"].as_str(), wrote["body"].as_str()), (Some(newest.as_str()), Some("The fax too.")));
    wait_until("the answer in the customer's INBOX", || async { !servers.mails_of(CUSTOMER, "INBOX").is_empty() })
        .await;
    let answer = servers.mails_of(CUSTOMER, "INBOX").remove(0);
    assert_eq!(
        (&answer["subject"], &answer["in_reply_to"]),
        (&Value::from("Re: The fax"), &Value::from("<fax@franz.test>"))
    );
    assert_eq!(answer["auto_submitted"], "auto-replied");
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("Printer on fire") && text.contains("VPN drops"), "{text}");

    // A program's mail past the limit goes on the ticket too, and is not answered.
    servers.send(
        CUSTOMER,
        "From: Ann <customer@franz.test>\nSubject: Out of office\nAuto-Submitted: auto-replied\n\
         Message-ID: <away@franz.test>\n\nI am away.\n",
    );
    event_where(&harness, "the automatic mail on the ticket", |e| {
        e["type"] == "submitter_wrote" && e["body"] == "I am away."
    })
    .await;
    let count = harness.count(&harness.topics.events).await;
    let created =
        harness.read_json(&harness.topics.events, count).await.into_iter().filter(|e| e["type"] == "created").count();
    assert_eq!(created, 2, "no ticket past the limit");
    // Mails are taken in order: once a later mail's answer is there, the program's would be too.
    servers.send(
        CUSTOMER,
        "From: Ann <customer@franz.test>\nSubject: The scanner\nMessage-ID: <scan@franz.test>\n\nAnd the scanner.\n",
    );
    wait_until("the second answer", || async { servers.mails_of(CUSTOMER, "INBOX").len() >= 2 }).await;
    let subjects: Vec<Value> = servers.mails_of(CUSTOMER, "INBOX").iter().map(|m| m["subject"].clone()).collect();
    assert_eq!(subjects, ["Re: The fax", "Re: The scanner"], "none to the program");
    franz.stop().await.unwrap();
}

/// Found by an attack (#28), failing first: the limit on open tickets was counted once per batch of mails, from the
/// ticket store as it was before the batch. A sender with no open ticket who sends five mails at once (or while
/// franz was down: they are all in one batch) got five tickets past a limit of two: none of the batch's new tickets
/// was counted for the mails after it. Now the mails past the limit wait for the tickets this batch opens, and then
/// go on the newest of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_new_mails_at_once_from_one_sender_open_no_more_tickets_than_the_limit() {
    let Some(servers) = MailServers::start() else { return };
    for n in 0..5 {
        servers.send(
            CUSTOMER,
            &format!("From: customer@franz.test\nSubject: Burst {n}\nMessage-ID: <burst-{n}@franz.test>\n\n{n}\n"),
        );
    }
    wait_until("the five mails in the INBOX", || async { servers.count_in("INBOX").0 >= 5 }).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let config = Config { open_tickets_max: 2, ..servers.replying(&harness, data.path()) };
    let franz = Started::start(&config).await;
    wait_until("the five mails taken", || async { servers.count_in("INBOX") == (5, 0) }).await;
    // Every mail is either a ticket or a message on one: five of them on the events topic.
    wait_until("five mails on tickets", || async {
        let count = harness.count(&harness.topics.events).await;
        let events = harness.read_json(&harness.topics.events, count).await;
        events.iter().filter(|e| e["type"] == "created" || e["type"] == "submitter_wrote").count() >= 5
    })
    .await;
    let count = harness.count(&harness.topics.events).await;
    let events = harness.read_json(&harness.topics.events, count).await;
    let created: Vec<&Value> = events.iter().filter(|e| e["type"] == "created").collect();
    assert_eq!(created.len(), 2, "tickets opened past a limit of 2: {created:#?}");
    let wrote: Vec<&Value> = events.iter().filter(|e| e["type"] == "submitter_wrote").collect();
    assert_eq!(wrote.len(), 3, "the other three mails on a ticket: {wrote:#?}");
    franz.stop().await.unwrap();
}

/// Found by an attack (#28), failing first: the automatic answer to a mail past the limit was sent while the mail
/// was taken, inside the batch, so an SMTP server that does not answer (lettre waits 60 s) held up every other
/// sender's mail: nobody's new ticket opened until the answer gave up. Now the answer goes out on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_smtp_server_does_not_hold_up_other_mail_behind_an_answer_past_the_limit() {
    let Some(servers) = MailServers::start() else { return };
    let silent = Relay::start(None).await;
    let harness = Harness::new(1).await;
    let data = scratch();
    let config = Config { open_tickets_max: 1, ..servers.replying_to(silent.address.port(), &harness, data.path()) };
    let franz = Started::start(&config).await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: First\nMessage-ID: <first@franz.test>\n\none\n");
    event_where(&harness, "the first ticket", |e| e["type"] == "created").await;
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Second\nMessage-ID: <second@franz.test>\n\ntwo\n");
    wait_until("franz connected to the silent server", || async { silent.connections.load(Ordering::SeqCst) >= 1 })
        .await;
    servers.send("other@franz.test", "From: other@franz.test\nSubject: Mine\nMessage-ID: <olga@franz.test>\n\nhi\n");
    let olga = tokio::time::timeout(
        Duration::from_secs(20),
        event_where(&harness, "Olga's ticket", |e| e["type"] == "created" && e["message_id"] == "olga@franz.test"),
    )
    .await;
    assert!(olga.is_ok(), "another sender's mail waited for the answer to the silent SMTP server");
    stop_promptly(franz, "while an answer past the limit waited for a silent SMTP server").await;
}

/// #28: a close is told to the customer by mail, with the reason and a feedback link whose token names the ticket;
/// the link's page rates it (tests/satisfaction.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_tickets_customer_gets_a_close_mail_with_the_reason_and_a_feedback_link_for_that_ticket() {
    let Some((servers, harness, data, franz)) = replying_franz().await else { return };
    servers.send(CUSTOMER, "From: customer@franz.test\nSubject: Invoice\nMessage-ID: <invoice@franz.test>\n\nwrong\n");
    let created = event_where(&harness, "the ticket created", |e| e["type"] == "created").await;
    let ticket = created["ticket_id"].as_str().unwrap().to_owned();
    let producer = franz::kafka::producer(&harness.bootstrap).unwrap();
    let close = Lifecycle {
        command_id: "close-1".into(),
        ticket_id: ticket.clone(),
        actor: Actor::staff(ActorSource::Web, "ana"),
        action: Action::Close { reason: "refunded in full".into() },
    };
    franz::kafka::tickets::send_command(&producer, &harness.topics.commands, harness.partitions, &close).await.unwrap();
    let close_mail = || {
        let closes = servers.mails_of(CUSTOMER, "INBOX").into_iter();
        closes
            .filter(|m| m["text"].as_str().unwrap_or_default().starts_with("Your ticket was closed"))
            .collect::<Vec<_>>()
    };
    wait_until("the close mail", || async { !close_mail().is_empty() }).await;
    let mail = close_mail().remove(0);
    let text = mail["text"].as_str().unwrap();
    assert!(text.starts_with("Your ticket was closed: refunded in full"), "{mail}");
    assert!(mail["subject"].as_str().unwrap().starts_with("Re: Invoice [franz #"), "{mail}");
    let link = text.lines().find(|line| line.contains("/feedback/")).unwrap_or_else(|| panic!("no link: {text}"));
    let token = link.rsplit('/').next().unwrap().trim();
    let key = franz::feedback::Key::in_dir(&data.path().join("desk")).unwrap();
    assert_eq!(key.ticket_of(token).as_deref(), Some(ticket.as_str()), "the link names the ticket: {link}");
    let delivered =
        event_where(&harness, "the close mail recorded", |e| e["type"] == "delivery" && e["of"] != created["event_id"])
            .await;
    assert_eq!(delivered["delivered"], Value::Bool(true), "{delivered}");
    franz.stop().await.unwrap();
}
