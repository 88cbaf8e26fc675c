//! Tickets by email against real mail servers: Postfix and Dovecot, started on loopback for each test by
//! `scripts/mail-servers.sh`, with mail sent and mailboxes read by another client (`scripts/mail-client.py`, Python's
//! smtplib and imaplib), never by franz's own code. Without root the servers cannot be had: the tests then say
//! "not run", and under CI (`CI=true`) they fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use franz::config::{Config, ImapUrl, Mail, Service, SmtpUrl};
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command as Lifecycle};
use serde_json::Value;

use crate::util::{Harness, PATIENCE, Started, scratch, wait_until};

/// The mailbox franz reads, and its password (the script's test users all have it).
const SUPPORT: &str = "support@franz.test";
const CUSTOMER: &str = "customer@franz.test";
const PASSWORD: &str = "secret";

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
    assert!(body("Invoice").ends_with("- invoice.pdf (application/pdf, 9 bytes)"));
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
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.replying(&harness, data.path())).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_the_mail_server_refuses_for_good_is_recorded_as_not_delivered_with_its_reason() {
    let Some(servers) = MailServers::start() else { return };
    let harness = Harness::new(1).await;
    let data = scratch();
    let franz = Started::start(&servers.replying(&harness, data.path())).await;
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
