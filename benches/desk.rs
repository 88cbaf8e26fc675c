//! `cargo xtask bench desk`: the ticket store and the desk with a million tickets.
//!
//! A `franz broker` process holds `ticket-events` with 1,000,000 tickets of three events each (created, claimed,
//! then closed or commented), written straight to the topic with bodies drawn from a 2,000-word vocabulary and
//! creation times spread over 30 days. Then `franz up --only akte,desk` starts on an empty data dir and the bench
//! reports: the store's rebuild rate (from franz's own "caught up" log line, and the wall time from spawn), list
//! and search latency through the API (p50/p99 over sequential requests with random filters, cursors and words),
//! the command round trip through the API (publish, akte decides, the store applies, the answer), franz's peak RSS
//! and the store's size on disk; the export of every ticket as CSV (`GET /api/export`, streamed: tickets per
//! second, each once, and franz's peak RSS during it). Then the web desk with the same million: the board and a ticket's page (p50/p99 of
//! sequential requests over loopback, with a signed-in session), the numbers page (the first request, then p50 and
//! the slowest of more), and 200 open boards (200 live streams, each fetching the board on a change, as `desk.js`
//! does) receiving a new ticket: the time from the ticket's publication until every board shows it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use franz::lifecycle::{self, TicketState};
use franz::schema::Ticket;
use franz::schema::lifecycle::{Action, Actor, ActorSource, Command as TicketCommand};
use rdkafka::producer::FutureRecord;

/// A debug build of a bench is its smoke run (`cargo test --benches`, which CI runs): the same phases on small
/// sizes, to prove the bench still runs to its end. Its figures mean nothing; `cargo xtask bench` builds for release.
const SMOKE: bool = cfg!(debug_assertions);
/// At least 20,000 events even in the smoke run: franz logs "caught up" for a backlog that large, and the bench
/// waits for that line.
const TICKETS: usize = if SMOKE { 10_000 } else { 1_000_000 };
const PARTITIONS: i32 = 3;
const VOCABULARY: usize = 2_000;
const LIST_REQUESTS: usize = if SMOKE { 20 } else { 2_000 };
const SEARCH_REQUESTS: usize = if SMOKE { 20 } else { 1_000 };
const COMMANDS: usize = if SMOKE { 10 } else { 1_000 };
const PAGE_REQUESTS: usize = if SMOKE { 20 } else { 1_000 };
const STATS_REQUESTS: usize = if SMOKE { 2 } else { 20 };
const BOARDS: usize = 200;
/// The desk's live streams per person (`desk::web::live`): the boards are opened by this many people each.
const BOARDS_PER_PERSON: usize = 16;
/// How long the boards may take to open, and then to show the new ticket.
const BOARDS_PATIENCE: Duration = Duration::from_secs(60);

/// Stops process `pid` (SIGTERM) when dropped: a phase that fails ends the bench with `?` and must not leave franz
/// running (seen: two failed runs left their broker and `franz up` behind).
struct Stop(u32);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.to_string()]).status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn franz(args: &[&str], data: &Path, stderr: Stdio) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_franz"))
        .args(args)
        .env("FRANZ_DATA_DIR", data)
        .env("FRANZ_CONFIG", data.join("franz.toml"))
        .env("FRANZ_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?)
}

fn word(n: usize) -> String {
    format!("w{:04}x", n % VOCABULARY)
}

/// The three events of ticket `n`, as akte would decide them.
fn history(n: usize, rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    let day = 86_400_000i64;
    let created = chrono::Utc::now().timestamp_millis() - rng.i64(0..30 * day);
    let at = |offset_ms: i64| {
        chrono::DateTime::from_timestamp_millis(created + offset_ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let body: Vec<String> = (0..10).map(|_| word(rng.usize(0..VOCABULARY))).collect();
    let ticket = Ticket {
        id: format!("bench-{n:07}"),
        contact: format!("user{}", rng.usize(0..50_000)),
        origin: if rng.bool() { "Discord".into() } else { "cli".into() },
        body: body.join(" "),
        date: at(0),
        contact_id: None,
        guild_id: None,
        channel_id: None,
        follows: None,
        category: None,
        message_id: None,
        automatic: None,
        attachments: Vec::new(),
    };
    let actor = Actor::staff(ActorSource::Web, &format!("staff{}", rng.usize(0..20)));
    let commands = [
        TicketCommand::create(ticket.clone()),
        TicketCommand {
            command_id: format!("{n}-claim"),
            ticket_id: ticket.id.clone(),
            actor: actor.clone(),
            action: Action::Claim,
        },
        TicketCommand {
            command_id: format!("{n}-third"),
            ticket_id: ticket.id.clone(),
            actor,
            action: if rng.bool() {
                Action::Close { reason: "fixed".into() }
            } else {
                Action::Comment {
                    body: format!("looked at {}", word(rng.usize(0..VOCABULARY))),
                    internal: false,
                    via: None,
                }
            },
        },
    ];
    let mut state: Option<TicketState> = None;
    commands
        .iter()
        .enumerate()
        .map(|(i, command)| {
            let event = lifecycle::decide(
                state.as_ref(),
                command,
                &at(60_000 * (i as i64 + 1) * rng.i64(1..120)),
                &Default::default(),
            );
            state = lifecycle::apply(state.take(), &event);
            serde_json::to_vec(&event).unwrap()
        })
        .collect()
}

async fn fill(bootstrap: &str, topic: &str) -> anyhow::Result<Duration> {
    let mut writer = common::Writer::new(bootstrap)?;
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..TICKETS {
        let key = format!("bench-{n:07}");
        let partition = franz::kafka::tickets::ticket_partition(&key, PARTITIONS);
        for payload in history(n, &mut rng) {
            writer.send(topic, &key, &payload, partition).await;
        }
        if n % 100_000 == 99_999 {
            eprintln!("  written {} tickets", n + 1);
        }
    }
    writer.finish().await?;
    Ok(started.elapsed())
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((q * samples.len() as f64) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99))
}

/// What the web desk measured.
struct Web {
    board: Vec<Duration>,
    ticket: Vec<Duration>,
    stats_first: Duration,
    stats: Vec<Duration>,
    /// For each open board, from the new ticket's publication until the board showed it.
    boards: Vec<Duration>,
}

impl Web {
    fn print(self) {
        let (board_p50, board_p99) = percentiles(self.board);
        let (ticket_p50, ticket_p99) = percentiles(self.ticket);
        let stats_max = self.stats.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0;
        let (stats_p50, _) = percentiles(self.stats);
        let boards = self.boards.len();
        let boards_max = self.boards.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0;
        let (boards_p50, _) = percentiles(self.boards);
        println!(
            "  web board page      p50 {board_p50:.2} ms   p99 {board_p99:.2} ms   ({PAGE_REQUESTS} requests: filters, search, cursors)"
        );
        println!(
            "  web ticket page     p50 {ticket_p50:.2} ms   p99 {ticket_p99:.2} ms   ({PAGE_REQUESTS} random tickets)"
        );
        println!(
            "  web numbers page    first {:.1} ms   p50 {stats_p50:.1} ms   slowest {stats_max:.1} ms   ({STATS_REQUESTS} more)",
            self.stats_first.as_secs_f64() * 1000.0
        );
        println!(
            "  {boards} open boards     a new ticket shown on all within {boards_max:.0} ms (p50 {boards_p50:.0} ms)"
        );
    }
}

/// A session cookie for the sign-in link `code`, as a browser gets one: the link's page, then its button (a POST
/// from the desk's own origin).
async fn sign_in(http: &reqwest::Client, base: &str, code: &str) -> anyhow::Result<String> {
    let page = http.get(format!("{base}/signin?token={code}")).send().await?;
    anyhow::ensure!(page.status().is_success(), "the sign-in page: {}", page.status());
    let signin = http
        .post(format!("{base}/signin"))
        .header("origin", base)
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", code)])
        .send()
        .await?;
    Ok(signin
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("the sign-in set no cookie ({})", signin.status()))?
        .to_owned())
}

/// The web desk's pages, signed in with the link `codes[0]`; the open boards are those of everyone in `codes`,
/// [`BOARDS_PER_PERSON`] each, as many as the desk allows a person.
async fn web(base: &str, codes: &[String], bootstrap: &str, topics: &franz::config::Topics) -> anyhow::Result<Web> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = sign_in(&http, base, &codes[0]).await?;
    let mut board_cookies = vec![cookie.clone()];
    for code in &codes[1..] {
        board_cookies.push(sign_in(&http, base, code).await?);
    }
    let page = |path: String| {
        let request = http.get(format!("{base}{path}")).header("cookie", &cookie);
        async move {
            let began = Instant::now();
            let response = request.send().await?;
            anyhow::ensure!(response.status().is_success(), "{path}: {}", response.status());
            let body = response.text().await?;
            Ok::<_, anyhow::Error>((began.elapsed(), body))
        }
    };
    let mut rng = fastrand::Rng::with_seed(13);
    let mut board = Vec::new();
    for i in 0..PAGE_REQUESTS {
        let filter = match i % 5 {
            0 => String::new(),
            1 => "status=open".to_owned(),
            2 => "status=closed&origin=cli".to_owned(),
            3 => format!("q={}", word(rng.usize(0..VOCABULARY))),
            _ => "priority=normal&status=claimed".to_owned(),
        };
        let cursor = if rng.bool() { format!("&cursor={}", rng.usize(1..TICKETS)) } else { String::new() };
        board.push(page(format!("/?{filter}{cursor}")).await?.0);
    }
    let mut ticket = Vec::new();
    for _ in 0..PAGE_REQUESTS {
        ticket.push(page(format!("/tickets/bench-{:07}", rng.usize(0..TICKETS))).await?.0);
    }
    let stats_first = page("/stats".to_owned()).await?.0;
    let mut stats = Vec::new();
    for _ in 0..STATS_REQUESTS {
        stats.push(page("/stats".to_owned()).await?.0);
    }

    // 200 open boards: each listens on /live and, on a change, fetches the board until the new ticket is on it.
    let id = "bench-live-ticket";
    let (opened, mut open) = tokio::sync::mpsc::channel::<()>(BOARDS);
    let published = std::sync::Arc::new(tokio::sync::OnceCell::<Instant>::new());
    let mut boards = tokio::task::JoinSet::new();
    for board in 0..BOARDS {
        let cookie = board_cookies[board / BOARDS_PER_PERSON].clone();
        let (http, base, opened, published) =
            (reqwest::Client::new(), base.to_owned(), opened.clone(), published.clone());
        boards.spawn(async move {
            let mut live = http.get(format!("{base}/live")).header("cookie", &cookie).send().await?;
            anyhow::ensure!(live.status().is_success(), "/live: {}", live.status());
            opened.send(()).await?;
            while let Some(chunk) = live.chunk().await? {
                if !String::from_utf8_lossy(&chunk).contains("event: change") {
                    continue;
                }
                // As desk.js does: a desk busy for this person (their 16 boards fetch at once) is asked again after
                // a random pause.
                let mut pause = Duration::from_millis(500);
                let board = loop {
                    let response = http.get(format!("{base}/")).header("cookie", &cookie).send().await?;
                    if matches!(response.status().as_u16(), 429 | 503) {
                        tokio::time::sleep(pause / 2 + pause.mul_f64(fastrand::f64())).await;
                        pause = (pause * 2).min(Duration::from_secs(8));
                        continue;
                    }
                    break response.text().await?;
                };
                if board.contains(id) {
                    let since =
                        published.get().copied().ok_or_else(|| anyhow::anyhow!("a change before the ticket"))?;
                    return Ok(since.elapsed());
                }
            }
            anyhow::bail!("the live stream ended")
        });
    }
    // A board that cannot open ends its task with the reason; every wait here has a deadline.
    let opening = async {
        for _ in 0..BOARDS {
            open.recv().await.ok_or_else(|| anyhow::anyhow!("a board did not open"))?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        opened = tokio::time::timeout(BOARDS_PATIENCE, opening) => {
            opened.map_err(|_| anyhow::anyhow!("the {BOARDS} boards did not open within {BOARDS_PATIENCE:?}"))??;
        }
        Some(ended) = boards.join_next() => {
            anyhow::bail!("a board ended before the ticket was published: {:?}", ended?.err());
        }
    }
    let producer = franz::kafka::producer(bootstrap)?;
    let ticket_json = serde_json::to_vec(&Ticket {
        id: id.to_owned(),
        contact: "live".into(),
        origin: "Discord".into(),
        body: "a ticket 200 boards wait for".into(),
        date: franz::schema::now_rfc3339(),
        contact_id: None,
        guild_id: None,
        channel_id: None,
        follows: None,
        category: None,
        message_id: None,
        automatic: None,
        attachments: Vec::new(),
    })?;
    let began = Instant::now();
    let _ = published.set(began);
    producer
        .send(FutureRecord::to(&topics.tickets).key("live").payload(&ticket_json), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)?;
    let mut shown = Vec::new();
    while let Some(result) = tokio::time::timeout(BOARDS_PATIENCE, boards.join_next())
        .await
        .map_err(|_| anyhow::anyhow!("a board did not show the ticket within {BOARDS_PATIENCE:?}"))?
    {
        shown.push(result??);
    }
    Ok(Web { board, ticket, stats_first, stats, boards: shown })
}

/// Adds `name` to the staff list of `data` and returns the code of their sign-in link.
/// What the export of every ticket measured.
struct Export {
    tickets: u64,
    took: Duration,
    bytes: u64,
    /// franz's peak RSS during the export alone, when the kernel lets it be measured apart; else its peak so far.
    rss: f64,
    /// franz's RSS when the export began.
    before: f64,
    apart: bool,
}

impl Export {
    fn print(&self) {
        println!(
            "  export (csv)        {} tickets in {:.1} s ({:.0} tickets/s, {:.0} MiB), franz RSS {:.0} MiB before, peak \
             {:.0} MiB{}",
            self.tickets,
            self.took.as_secs_f64(),
            self.tickets as f64 / self.took.as_secs_f64(),
            self.bytes as f64 / (1 << 20) as f64,
            self.before,
            self.rss,
            if self.apart { " during it" } else { " (since start: the kernel refused a reset)" }
        );
    }
}

/// `GET /api/export` of every ticket as CSV, read as it streams: each ticket once (ids checked against the API for
/// a sample), and franz's peak RSS while it ran.
async fn export(http: &reqwest::Client, base: &str, token: &str, franz: u32) -> anyhow::Result<Export> {
    let before = common::rss_mib(franz);
    let apart = common::reset_peak_rss(franz);
    let began = Instant::now();
    let mut response =
        http.get(format!("{base}/api/export?since=2000-01-01&format=csv")).bearer_auth(token).send().await?;
    anyhow::ensure!(response.status().is_success(), "export: {}", response.status());
    let (mut bytes, mut lines, mut partial) = (0u64, 0u64, Vec::new());
    let mut ids = std::collections::HashSet::new();
    while let Some(piece) = response.chunk().await? {
        bytes += piece.len() as u64;
        partial.extend_from_slice(&piece);
        let end = partial.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
        for line in partial[..end].split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
            lines += 1;
            if lines > 1 {
                let id = line.split(|b| *b == b',').next().unwrap_or_default();
                anyhow::ensure!(ids.insert(id.to_vec()), "ticket {} exported twice", String::from_utf8_lossy(id));
            }
        }
        partial.drain(..end);
    }
    let took = began.elapsed();
    let rss = common::peak_rss_mib(franz);
    let tickets = lines.saturating_sub(1);
    anyhow::ensure!(tickets == TICKETS as u64, "exported {tickets} tickets of {TICKETS}");
    for id in ids.iter().take(20) {
        let id = String::from_utf8_lossy(id);
        let shown = http.get(format!("{base}/api/tickets/{id}")).bearer_auth(token).send().await?;
        anyhow::ensure!(shown.status().is_success(), "exported ticket {id} is unknown to the API");
    }
    Ok(Export { tickets, took, bytes, rss, before, apart })
}

fn staff_link(data: &Path, name: &str) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_franz"))
        .args(["staff", "add", name])
        .env("FRANZ_DATA_DIR", data)
        .env("FRANZ_CONFIG", data.join("franz.toml"))
        .output()?;
    String::from_utf8(out.stdout)?
        .lines()
        .find_map(|l| l.split_once("?token=").map(|(_, code)| code.trim().to_owned()))
        .ok_or_else(|| anyhow::anyhow!("no sign-in link for {name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if SMOKE {
        eprintln!("smoke run (a debug build): every phase on small sizes; its figures mean nothing");
    }
    let scratch = tempfile::tempdir()?;
    let (broker_dir, desk_dir) = (scratch.path().join("broker"), scratch.path().join("desk"));
    for dir in [&broker_dir, &desk_dir] {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("franz.toml"), "")?;
    }
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let mut broker = franz(
        &["broker", "--listen", &bootstrap, "--data-dir", &broker_dir.display().to_string()],
        &broker_dir,
        Stdio::null(),
    )?;
    let _stop_broker = Stop(broker.id());
    common::broker_ready(&mut broker)?;
    let topics = franz::config::Topics::default();
    franz::kafka::admin::ensure_topics_keeping(&bootstrap, &topics.all(), PARTITIONS, 1, &topics.kept_forever())
        .await?;
    eprintln!("writing {TICKETS} tickets x 3 events to {}", topics.events);
    let filled = fill(&bootstrap, &topics.events).await?;
    eprintln!("  written in {:.1} s", filled.as_secs_f64());

    let token_out = Command::new(env!("CARGO_BIN_EXE_franz"))
        .args(["staff", "add", "bench"])
        .env("FRANZ_DATA_DIR", &desk_dir)
        .env("FRANZ_CONFIG", desk_dir.join("franz.toml"))
        .output()?;
    let printed = String::from_utf8(token_out.stdout)?;
    let token = printed
        .lines()
        .find_map(|l| l.strip_prefix("API token:").map(|t| t.trim().to_owned()))
        .ok_or_else(|| anyhow::anyhow!("no token"))?;
    let link_code = printed
        .lines()
        .find_map(|l| l.split_once("?token=").map(|(_, code)| code.trim().to_owned()))
        .ok_or_else(|| anyhow::anyhow!("no sign-in link"))?;
    let desk_port = free_port();
    let log_path = scratch.path().join("up.log");
    let started = Instant::now();
    let mut up = franz(
        &["up", "--bootstrap", &bootstrap, "--only", "akte,desk", "--desk-listen", &format!("127.0.0.1:{desk_port}")],
        &desk_dir,
        Stdio::from(std::fs::File::create(&log_path)?),
    )?;
    let _stop_up = Stop(up.id());
    // franz logs "caught up" for a backlog of 20,000 events or more, which the bench's always is.
    let caught_up = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("ticket store: caught up")) {
            break line.to_owned();
        }
        if let Some(status) = up.try_wait()? {
            anyhow::bail!("franz up ended ({status}) before the store caught up:\n{log}");
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "the store did not catch up:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rebuild_wall = started.elapsed();
    let rebuild_rss = common::peak_rss_mib(up.id());

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{desk_port}");
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(&token);
        async move {
            let began = Instant::now();
            let response = request.send().await?;
            anyhow::ensure!(response.status().is_success(), "{path}: {}", response.status());
            let body: serde_json::Value = response.json().await?;
            Ok::<_, anyhow::Error>((began.elapsed(), body))
        }
    };
    let mut rng = fastrand::Rng::with_seed(11);
    let mut list = Vec::new();
    for i in 0..LIST_REQUESTS {
        let filter = match i % 4 {
            0 => String::new(),
            1 => "&status=closed".to_owned(),
            2 => format!("&assignee=staff{}", rng.usize(0..20)),
            _ => "&origin=Discord&status=claimed".to_owned(),
        };
        let cursor = if rng.bool() { format!("&cursor={}", rng.usize(1..TICKETS)) } else { String::new() };
        list.push(get(format!("/api/tickets?limit=50{filter}{cursor}")).await?.0);
    }
    let mut search = Vec::new();
    let mut found = 0usize;
    for _ in 0..SEARCH_REQUESTS {
        let (took, body) = get(format!("/api/tickets?limit=50&q={}", word(rng.usize(0..VOCABULARY)))).await?;
        found += body["tickets"].as_array().map_or(0, Vec::len);
        search.push(took);
    }
    let mut commands = Vec::new();
    for i in 0..COMMANDS {
        let id = format!("bench-{:07}", rng.usize(0..TICKETS));
        let began = Instant::now();
        let response = http
            .post(format!("{base}/api/tickets/{id}/commands"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"action": "comment", "body": format!("bench comment {i}"), "internal": true}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "command: {}", response.status());
        commands.push(began.elapsed());
    }
    let export = export(&http, &base, &token, up.id()).await?;
    export.print(); // now, too: a later phase that fails must not take this figure with it
    let mut codes = vec![link_code];
    for person in 1..BOARDS.div_ceil(BOARDS_PER_PERSON) {
        codes.push(staff_link(&desk_dir, &format!("board{person}"))?);
    }
    let web = web(&base, &codes, &bootstrap, &topics).await?;
    let rss = common::peak_rss_mib(up.id());
    let store: u64 =
        std::fs::read_dir(desk_dir.join("store"))?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();

    let (list_p50, list_p99) = percentiles(list);
    let (search_p50, search_p99) = percentiles(search);
    let (command_p50, command_p99) = percentiles(commands);
    println!("desk bench: {TICKETS} tickets, {} events in {}", TICKETS * 3, topics.events);
    println!("  store rebuild       {caught_up}");
    println!(
        "                      {:.1} s from spawn to caught up (peak RSS {rebuild_rss:.0} MiB)",
        rebuild_wall.as_secs_f64()
    );
    println!(
        "  list page (50)      p50 {list_p50:.2} ms   p99 {list_p99:.2} ms   ({LIST_REQUESTS} requests: filters, cursors)"
    );
    println!(
        "  search (50)         p50 {search_p50:.2} ms   p99 {search_p99:.2} ms   ({SEARCH_REQUESTS} one-word queries, {found} hits)"
    );
    println!(
        "  command round trip  p50 {command_p50:.2} ms   p99 {command_p99:.2} ms   ({COMMANDS} comments through the API)"
    );
    web.print();
    println!("  franz peak RSS      {rss:.0} MiB");
    println!("  store on disk       {:.0} MiB", store as f64 / (1 << 20) as f64);
    for mut child in [up, broker] {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    Ok(())
}
