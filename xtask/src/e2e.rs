//! `cargo xtask e2e`: the real `franz` binary, run as a user would, checked against `fixtures/e2e`.
//!
//! It builds franz, starts `franz up --ephemeral` on a free port in a scratch directory with a clean environment
//! (so a developer's `.env` or franz.toml cannot change the outcome), feeds `fixtures/e2e/intake.jsonl` in with
//! `franz produce`, submits one ticket with `franz ticket`, reads the outputs with `franz tail`, and compares
//! them with the expected files. absturz posts to the fake Discord's webhook, and the bot runs against the fake
//! Discord (`DISCORD_TOKEN`, `DISCORD_API_PROXY`): tickets are submitted through its gateway, with text and with
//! the form, and must come out of aufbereitung with the ids the bot's replies name. Then it stops franz with
//! SIGTERM and requires a clean exit.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use fake_discord::{Background, Endpoint, FakeDiscord, Interaction, User};

use crate::sh;

const FIXTURES: &str = "fixtures/e2e";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What `cargo xtask e2e` was asked to do.
#[derive(Debug, Default)]
pub struct Options {
    /// Rewrite the expected files from this run.
    pub bless: bool,
    /// Run against this container broker instead of the embedded one.
    pub broker: Option<String>,
}

impl Options {
    pub fn parse(flags: &[&str]) -> anyhow::Result<Options> {
        let mut options = Options::default();
        let mut flags = flags.iter();
        while let Some(flag) = flags.next() {
            match *flag {
                "--bless" => options.bless = true,
                "--broker" => match flags.next().copied() {
                    Some(kind @ ("redpanda" | "kafka")) => options.broker = Some(kind.to_owned()),
                    other => bail!("--broker takes redpanda or kafka, got {other:?}"),
                },
                other => bail!("unknown e2e flag {other:?}"),
            }
        }
        Ok(options)
    }
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let bless = options.bless;
    let franz = Franz::new("e2e")?;
    let discord =
        FakeDiscord::start_in_background(fake_discord::Options::default()).context("cannot start the fake Discord")?;
    let args = match options.broker.as_deref() {
        Some(kind) => vec!["up", "--broker", kind, "--listen", "127.0.0.1:0"],
        None => vec!["up", "--ephemeral", "--listen", "127.0.0.1:0"],
    };
    let mut up = franz.start_up(&args, &discord_env(&discord)).map_err(|error| franz.with_log(error))?;
    let outcome = check(&franz, &up.bootstrap, bless)
        .and_then(|letters| check_alerts(&franz, &up.bootstrap, &discord, letters))
        .and_then(|()| check_bot(&franz, &up.bootstrap, &discord, if bless { None } else { Some(tickets_expected()?) }))
        .and_then(|()| check_desk(&franz, &up.bootstrap));
    let stopped = up.stop();
    if outcome.is_err() || stopped.is_err() {
        eprintln!("--- franz up stderr ---\n{}", franz.log());
    }
    outcome?;
    stopped?;
    fs::remove_dir_all(&franz.scratch).ok();
    eprintln!("e2e: passed");
    Ok(())
}

/// What `franz up` needs to run the bot and absturz against the fake Discord.
fn discord_env(discord: &FakeDiscord) -> Vec<(&'static str, String)> {
    vec![
        ("DISCORD_WEBHOOK_URL", discord.webhook_url()),
        ("DISCORD_TOKEN", discord.token().to_owned()),
        ("DISCORD_API_PROXY", discord.api_base()),
        ("DISCORD_GUILD_ID", discord.options().guild_id.to_string()),
    ]
}

/// Checks the pipeline's outputs; returns how many dead letters it made.
fn check(franz: &Franz, bootstrap: &str, bless: bool) -> anyhow::Result<u64> {
    let intake = fs::read_to_string(Path::new(FIXTURES).join("intake.jsonl"))?;
    let inputs = intake.lines().count();
    let expected_tickets = read_jsonl(&Path::new(FIXTURES).join("expected-tickets.jsonl")).unwrap_or_default();
    let expected_letters = read_jsonl(&Path::new(FIXTURES).join("expected-dlq.jsonl")).unwrap_or_default();

    let stdin = fs::File::open(Path::new(FIXTURES).join("intake.jsonl"))?;
    franz.output(&["produce", "discordMSG", "--key", "fixture", "--bootstrap", bootstrap], Some(stdin))?;
    let id = franz
        .output(&["ticket", "--user", "e2e-user", "--bootstrap", bootstrap, "submitted from the command line"], None)?;
    let id = id.trim().to_owned();

    let tickets_wanted = if bless { inputs } else { expected_tickets.len() + 1 };
    let letters_wanted = if bless { inputs } else { expected_letters.len() };
    let (mut tickets, letters) = if bless {
        // Outputs of a bless run are counted by what arrives; each topic is read until it is quiet.
        (franz.tail(bootstrap, "tickets-formatted", None)?, franz.tail(bootstrap, "tickets-formatted-dlq", None)?)
    } else {
        (
            franz.tail(bootstrap, "tickets-formatted", Some(tickets_wanted))?,
            franz.tail(bootstrap, "tickets-formatted-dlq", Some(letters_wanted))?,
        )
    };

    let cli_ticket =
        tickets.iter().position(|t| t["id"] == id.as_str()).context("the ticket from `franz ticket` is missing")?;
    let cli_ticket = tickets.remove(cli_ticket);
    ensure!(
        cli_ticket["body"] == "submitted from the command line" && cli_ticket["contact"] == "e2e-user",
        "{cli_ticket}"
    );
    tickets.sort_by_key(|t| t["id"].as_str().unwrap_or_default().to_owned());
    let mut letters: Vec<Value> = letters
        .into_iter()
        .map(|mut letter| {
            // The time a dead letter was written is the only field that differs between runs.
            letter.as_object_mut().map(|o| o.remove("time"));
            letter
        })
        .collect();
    letters.sort_by_key(|l| l["source"]["offset"].as_i64());
    ensure!(
        tickets.len() + letters.len() == inputs,
        "{} inputs gave {} tickets and {} dead letters",
        inputs,
        tickets.len(),
        letters.len()
    );

    if bless {
        write_jsonl(&Path::new(FIXTURES).join("expected-tickets.jsonl"), &tickets)?;
        write_jsonl(&Path::new(FIXTURES).join("expected-dlq.jsonl"), &letters)?;
        eprintln!("e2e: wrote the expected files; review them with `git diff {FIXTURES}`");
    } else {
        compare("tickets-formatted", &expected_tickets, &tickets)?;
        compare("tickets-formatted-dlq", &expected_letters, &letters)?;
    }

    let topics = franz.output(&["topics", "--bootstrap", bootstrap], None)?;
    for topic in ["discordMSG", "tickets-formatted", "tickets-formatted-dlq", "errors"] {
        ensure!(topics.contains(topic), "`franz topics` does not list {topic}:\n{topics}");
    }
    Ok(letters.len() as u64)
}

/// How many tickets `check` leaves on `tickets-formatted`: the fixture's and the one from `franz ticket`.
fn tickets_expected() -> anyhow::Result<usize> {
    Ok(read_jsonl(&Path::new(FIXTURES).join("expected-tickets.jsonl"))?.len() + 1)
}

/// absturz: every dead letter, and an event published to `errors`, arrive at the fake Discord webhook once.
fn check_alerts(franz: &Franz, bootstrap: &str, webhook: &Background, letters: u64) -> anyhow::Result<()> {
    let event = r#"{"service":"e2e","level":"error","message":"published by cargo xtask e2e","time":"2026-02-24T08:32:23Z","context":{}}"#;
    let input = franz.scratch.join("event.jsonl");
    fs::write(&input, format!("{event}\n"))?;
    franz.output(&["produce", "errors", "--bootstrap", bootstrap], Some(fs::File::open(&input)?))?;
    let timeout = Duration::from_secs(30);
    wait_for(&format!("{letters} dead-letter alerts and the error event"), timeout, || {
        webhook.alerts_titled("Dead letter") >= letters && webhook.alerts_titled("e2e · error") >= 1
    })?;
    let (got_letters, got_events) = (webhook.alerts_titled("Dead letter"), webhook.alerts_titled("e2e · error"));
    ensure!(
        got_letters == letters && got_events == 1,
        "{got_letters} dead-letter alerts for {letters}, {got_events} error alerts for 1"
    );
    Ok(())
}

/// akte and the desk through the CLI, as a new user works a ticket: `franz ticket`, then `franz tickets show` shows
/// it open; claim, comment, close with a reason; the history shows every step, and a staff token works too.
fn check_desk(franz: &Franz, bootstrap: &str) -> anyhow::Result<()> {
    let id =
        franz.output(&["ticket", "--user", "desk-user", "--bootstrap", bootstrap, "the printer is on fire"], None)?;
    let id = id.trim();
    let deadline = Instant::now() + READY_TIMEOUT;
    let shown = loop {
        match franz.output(&["tickets", "show", id], None) {
            Ok(shown) => break shown,
            Err(error) if Instant::now() > deadline => return Err(error.context("the ticket never reached the desk")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    ensure!(shown.contains("status   open") && shown.contains("the printer is on fire"), "{shown}");
    franz.output(&["tickets", "claim", id, "--as", "ana"], None)?;
    let refused = franz.failure(&["tickets", "claim", id, "--as", "bo"])?;
    ensure!(refused.contains("already claimed by ana"), "a second claim is refused: {refused}");
    franz.output(&["tickets", "comment", id, "toner replaced", "--as", "ana"], None)?;
    franz.output(&["tickets", "close", id, "fixed", "--as", "ana"], None)?;
    let history = franz.output(&["tickets", "show", id], None)?;
    let steps = [
        "v1 created from",
        "v2 claimed - ana (cli)",
        "refused claim: already claimed by ana - bo (cli)",
        "v3 replied: toner replaced - ana (cli)",
        "v4 closed: fixed - ana (cli)",
    ];
    let mut rest = history.as_str();
    for step in steps {
        let at = rest.find(step).with_context(|| format!("the history lacks {step:?} (in order):\n{history}"))?;
        rest = &rest[at + step.len()..];
    }
    let added = franz.output(&["staff", "add", "e2e"], None)?;
    let token = added.lines().find_map(|l| l.strip_prefix("API token:")).context("staff add prints a token")?.trim();
    let listed = franz.output(&["tickets", "--status", "closed", "--json", "--token", token], None)?;
    ensure!(listed.contains(id), "the staff token lists the closed ticket: {listed}");
    let wrong = franz.failure(&["tickets", "--token", "franz_not-a-token"])?;
    ensure!(wrong.contains("not (or no longer) valid"), "{wrong}");
    eprintln!("e2e: a ticket worked through the desk: created, claimed, refused, commented, closed");
    Ok(())
}

/// kummerkasten: `/ticket` with text and with the form, through the fake Discord's gateway; each reply names the
/// id that aufbereitung gives the ticket. With `earlier` (how many tickets are on the topic already), the tickets
/// are read by count; in a bless run, until the topic is quiet.
fn check_bot(franz: &Franz, bootstrap: &str, discord: &Background, earlier: Option<usize>) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(30);
    wait_for("the bot's gateway session", timeout, || discord.gateway().live)?;
    let user = User { id: 80351110224678912, username: "e2e-discord".into(), global_name: Some("E2E".into()) };
    let with_text = discord.command(&user, "ticket", &[("message", "submitted through Discord")]);
    let with_text_id = reply_id(discord, &with_text, timeout)?;
    // The cooldown is per user; the form comes from someone else.
    let other = User::new(80351110224678913, "e2e-form");
    let form = discord.command(&other, "ticket", &[]);
    wait_for("the form to open", timeout, || answered(discord, &form, Endpoint::Callback))?;
    discord.modal_submit(&other, &form.id.to_string(), &[("message", "submitted\nthrough the form")]);
    let form_id = reply_id(discord, &form, timeout)?;

    let tickets = franz.tail(bootstrap, "tickets-formatted", earlier.map(|n| n + 2))?;
    for (id, body, contact) in [
        (&with_text_id, "submitted through Discord", "e2e-discord"),
        (&form_id, "submitted\nthrough the form", "e2e-form"),
    ] {
        let ticket = tickets.iter().find(|t| t["id"] == id.as_str());
        let ticket = ticket.with_context(|| format!("no ticket with the id {id} the bot replied with"))?;
        ensure!(ticket["body"] == body && ticket["contact"] == contact && ticket["origin"] == "Discord", "{ticket}");
    }
    Ok(())
}

/// Whether the bot's answer of this kind to `interaction` was accepted.
fn answered(discord: &FakeDiscord, interaction: &Interaction, endpoint: Endpoint) -> bool {
    discord.answers_to(interaction).iter().any(|r| r.endpoint == endpoint && r.status < 300)
}

/// Waits for the bot's follow-up to `interaction` and returns the ticket id it names.
fn reply_id(discord: &FakeDiscord, interaction: &Interaction, timeout: Duration) -> anyhow::Result<String> {
    wait_for(&format!("the reply to interaction {}", interaction.id), timeout, || {
        answered(discord, interaction, Endpoint::FollowUp)
    })?;
    let answers = discord.answers_to(interaction);
    let reply = answers.iter().rev().find(|r| r.endpoint == Endpoint::FollowUp && r.status < 300);
    let content = reply.and_then(|r| r.body["content"].as_str()).unwrap_or_default();
    let id = content.split('`').nth(1).filter(|_| content.starts_with("Ticket received"));
    Ok(id.with_context(|| format!("the reply names no ticket id: {content:?}"))?.to_owned())
}

/// Polls `condition` until it holds, or fails after `timeout` saying what it waited for.
fn wait_for(what: &str, timeout: Duration, condition: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            bail!("the fake Discord did not see {what} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn compare(topic: &str, expected: &[Value], got: &[Value]) -> anyhow::Result<()> {
    if expected == got {
        return Ok(());
    }
    let show = |values: &[Value]| values.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    bail!("{topic} differs from the fixture\n--- expected\n{}\n--- got\n{}", show(expected), show(got))
}

/// The franz binary with a clean environment, run in a scratch directory of its own.
pub struct Franz {
    binary: PathBuf,
    pub scratch: PathBuf,
    config: PathBuf,
}

impl Franz {
    /// Builds franz and makes a scratch directory named after `task` with an empty franz.toml.
    pub fn new(task: &str) -> anyhow::Result<Franz> {
        let binary = crate::franz_binary()?;
        let scratch = std::env::temp_dir().join(format!("franz-{task}-{}", std::process::id()));
        fs::create_dir_all(&scratch)?;
        let config = scratch.join("franz.toml");
        fs::write(&config, "")?;
        Ok(Franz { binary, scratch, config })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.current_dir(&self.scratch).arg("--config").arg(&self.config).args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("FRANZ_") || name.starts_with("DISCORD_") || name == "KAFKA_BROKER" {
                command.env_remove(name);
            }
        }
        // Everything franz keeps (the desk's staff list and local credential too) stays in the scratch directory,
        // and the desk takes a free port, so that runs side by side do not collide.
        command.env("FRANZ_DATA_DIR", self.scratch.join("data"));
        command.env("FRANZ_DESK_LISTEN", "127.0.0.1:0");
        command
    }

    /// The franz binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// What the last `franz up` started by [`Franz::start_up`] or [`Franz::spawn_up`] printed on standard error.
    pub fn log(&self) -> String {
        fs::read_to_string(self.scratch.join("up.log")).unwrap_or_default()
    }

    /// `error` followed by that log.
    pub fn with_log(&self, error: anyhow::Error) -> anyhow::Error {
        anyhow::anyhow!("{error:#}\n--- franz up stderr ---\n{}", self.log())
    }

    /// Runs a short-lived subcommand and returns its standard output.
    pub fn output(&self, args: &[&str], stdin: Option<fs::File>) -> anyhow::Result<String> {
        let mut command = self.command(args);
        command.stdin(stdin.map_or_else(Stdio::null, Stdio::from));
        let output = command.output().with_context(|| format!("cannot run franz {}", args.join(" ")))?;
        if !output.status.success() {
            bail!("franz {} failed ({}):\n{}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// `franz tail TOPIC --from-beginning`, for `limit` records or until quiet, as parsed values.
    fn tail(&self, bootstrap: &str, topic: &str, limit: Option<usize>) -> anyhow::Result<Vec<Value>> {
        let limit = limit.map(|n| n.to_string());
        let mut args = vec!["tail", topic, "--from-beginning", "--bootstrap", bootstrap];
        match &limit {
            Some(n) => args.extend(["--limit", n, "--timeout", "30"]),
            None => args.extend(["--timeout", "5"]),
        }
        let lines = self.output(&args, None)?;
        lines
            .lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line)?;
                Ok(record["value"].clone())
            })
            .collect()
    }

    /// Runs a subcommand that must fail and returns what it printed on standard error.
    pub fn failure(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.command(args).stdin(Stdio::null()).output()?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        ensure!(!output.status.success(), "franz {} succeeded; it should have failed:\n{stderr}", args.join(" "));
        Ok(stderr)
    }

    /// Starts `franz ARGS` (`up …`) with `env` set, standard error going to [`Franz::log`] and standard output
    /// piped.
    pub fn spawn_up(&self, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Child> {
        let log = fs::File::create(self.scratch.join("up.log"))?;
        let mut command = self.command(args);
        command.envs(env.iter().map(|(name, value)| (name, value)));
        command.stdout(Stdio::piped()).stderr(log).spawn().context("cannot start franz up")
    }

    /// Starts `franz ARGS` (`up …`) with `env` set and waits for its `ready` line.
    pub fn start_up(&self, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Up> {
        let mut child = self.spawn_up(args, env)?;
        let stdout = child.stdout.take().context("franz up has no stdout")?;
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut up = Up { child, bootstrap: String::new() };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match ready.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = up.child.wait()?;
                    bail!("franz up exited ({status}) before it was ready");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("franz up did not print `ready` within {READY_TIMEOUT:?}")
                }
            };
            eprintln!("franz up: {line}");
            if let Some(rest) = line.strip_prefix("ready ") {
                let address = rest.split_whitespace().find_map(|field| field.strip_prefix("bootstrap="));
                up.bootstrap = address.context("the ready line has no bootstrap=")?.to_owned();
                return Ok(up);
            }
        }
    }
}

/// A running `franz up`; killed if the check fails before it is stopped.
pub struct Up {
    pub child: Child,
    pub bootstrap: String,
}

impl Up {
    /// SIGTERM, then require exit code 0 within the shutdown timeout.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let status = signal_and_wait(&mut self.child, "TERM")?;
        ensure!(status.success(), "franz up exited with {status} after SIGTERM");
        Ok(())
    }
}

/// Sends `signal` (TERM, INT, KILL) to `child` and waits up to 20 s for it to exit; kills it if it does not.
pub fn signal_and_wait(child: &mut Child, signal: &str) -> anyhow::Result<std::process::ExitStatus> {
    sh(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            bail!("franz did not exit within 20 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
        }
    }
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(serde_json::from_str(l)?)).collect()
}

fn write_jsonl(path: &Path, values: &[Value]) -> anyhow::Result<()> {
    let text: String = values.iter().map(|v| format!("{v}\n")).collect();
    Ok(fs::write(path, text)?)
}
