//! `franz tickets`: list, search, show and work tickets through the running desk's API, so the command line follows
//! the same rules and leaves the same audit trail as the web and Discord. With a staff token (`--token`,
//! `FRANZ_TOKEN`) it acts as that staff member; on the machine where franz runs it uses the desk's local credential
//! and acts as `--as NAME` (default: the login name). Ticket text is printed with its control characters made
//! visible, so a ticket cannot drive the terminal.

use std::io::Write;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use super::desk::{base_url, token_may_go_to};
use crate::cli::{TicketsAction, TicketsArgs};
use crate::config::Config;
use crate::desk::web::path_segment;
use crate::discord::clip;
use crate::lifecycle;
use crate::people as staff;
use crate::schema::lifecycle::{Actor, ActorSource, Person, Via};
use crate::terminal::{terminal_json, visible};

/// How the CLI reaches the desk and who it acts as.
struct Desk {
    http: reqwest::Client,
    url: String,
    token: String,
    acting_as: Option<String>,
}

impl Desk {
    fn connect(config: &Config, args: &TicketsArgs) -> anyhow::Result<Desk> {
        let dir = staff::dir(config);
        let local = staff::read_local(&dir)?;
        let (url, token, acting_as) = match (&args.token, local) {
            (Some(token), _) => {
                // A staff token reaches a desk elsewhere: its public (https) address first.
                let (url, from) = base_url(config, &dir)?;
                token_may_go_to(&url, &from, args.insecure)?;
                (url, token.clone(), None)
            }
            (None, Some(local)) => {
                let name = args.acting_as.clone().or_else(login_name).unwrap_or_else(|| "cli".into());
                let name = lifecycle::name("the name to act as (--as)", &name).map_err(anyhow::Error::msg)?;
                (local.url, local.token, Some(name))
            }
            (None, None) => bail!(
                "no franz desk has run with the data dir {} on this machine: start `franz up`, or pass --token (a \
                 staff token from `franz staff add NAME`) to reach a desk elsewhere",
                config.data_dir.display()
            ),
        };
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(Desk { http, url, token, acting_as })
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let mut request = request.bearer_auth(&self.token);
        if let Some(name) = &self.acting_as {
            request = request.header("x-franz-as", name);
        }
        let response = request.send().await.map_err(|error| {
            if error.is_connect() {
                anyhow!("no franz desk answers at {}; is `franz up` running?", self.url)
            } else {
                anyhow!("the desk at {} did not answer: {error}", self.url)
            }
        })?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("the desk at {} answered oddly", self.url))?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("{}", body["error"].as_str().unwrap_or("not signed in"));
        }
        Ok((status, body))
    }

    /// Streams the answer to `GET path?query` to `out` as it arrives (an export may take minutes: the wait for
    /// each piece is bounded, not the whole); returns how many lines it had.
    async fn download(&self, path: &str, query: &[(&str, String)], out: &mut impl Write) -> anyhow::Result<u64> {
        const PIECE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
        let mut request = self.http.get(format!("{}{path}", self.url)).query(query).bearer_auth(&self.token);
        if let Some(name) = &self.acting_as {
            request = request.header("x-franz-as", name);
        }
        // No total time limit for a download: [`PIECE_WITHIN`] bounds each wait instead.
        let request = request.timeout(std::time::Duration::from_secs(365 * 86_400));
        let mut response = request.send().await.map_err(|error| match error.is_connect() {
            true => anyhow!("no franz desk answers at {}; is `franz up` running?", self.url),
            false => anyhow!("the desk at {} did not answer: {error}", self.url),
        })?;
        if !response.status().is_success() {
            let body: Value = response.json().await.unwrap_or_default();
            bail!("{}", body["error"].as_str().unwrap_or("the desk refused"));
        }
        let mut lines = 0;
        loop {
            let piece = tokio::time::timeout(PIECE_WITHIN, response.chunk())
                .await
                .map_err(|_| {
                    anyhow!("the desk at {} sent nothing for {PIECE_WITHIN:?}; the download is cut", self.url)
                })?
                .map_err(|error| anyhow!("the download from {} broke off: {error}", self.url))?;
            let Some(piece) = piece else { return Ok(lines) };
            lines += piece.iter().filter(|byte| **byte == b'\n').count() as u64;
            out.write_all(&piece)?;
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let (status, body) = self.call(self.http.get(format!("{}{path}", self.url)).query(query)).await?;
        if !status.is_success() {
            bail!("{}", body["error"].as_str().unwrap_or("the desk refused"));
        }
        Ok(body)
    }
}

/// `answer` as one line of JSON with `--json`, else as `print` shows it.
fn print_or_json<W: Write>(
    answer: &Value,
    json: bool,
    print: impl FnOnce(&Value, &mut W) -> anyhow::Result<()>,
    out: &mut W,
) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", terminal_json(answer))?;
        Ok(())
    } else {
        print(answer, out)
    }
}

fn login_name() -> Option<String> {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).ok().filter(|n| !n.is_empty())
}

/// `franz tickets`: list, show, or act on a ticket.
pub async fn tickets(config: &Config, args: TicketsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let desk = Desk::connect(config, &args)?;
    let Some(action) = &args.action else {
        let mut query = vec![("limit", args.limit.to_string())];
        if let Some(status) = &args.status {
            query.push(("status", status.clone()));
        }
        if let Some(text) = &args.search {
            query.push(("q", text.clone()));
        }
        if args.answered {
            query.push(("answered", "true".to_owned()));
        }
        if let Some(team) = &args.team {
            query.push(("team", team.clone()));
        }
        if args.due {
            let within = chrono::Utc::now() + chrono::Duration::days(1);
            query.push(("due_before", crate::lifecycle::levels::stamp(within)));
        }
        let page = desk.get("/api/tickets", &query).await?;
        if args.json {
            writeln!(out, "{}", terminal_json(&page))?;
        } else {
            print_list(&page, out)?;
        }
        return Ok(());
    };
    let (id, body) = match action {
        TicketsAction::Show { id } => {
            let ticket = desk.get(&format!("/api/tickets/{}", path_segment(id)), &[]).await?;
            return print_or_json(&ticket, args.json, print_ticket, out);
        }
        TicketsAction::Similar { id } => {
            let answer = desk.get(&format!("/api/tickets/{}/similar", path_segment(id)), &[]).await?;
            return print_or_json(&answer, args.json, print_similar, out);
        }
        TicketsAction::Transcript { id, html, text: _ } => {
            let format = if *html { "html" } else { "text" };
            let path = format!("/api/tickets/{}/transcript", path_segment(id));
            desk.download(&path, &[("format", format.to_owned())], out).await?;
            return Ok(());
        }
        TicketsAction::Export { since, format } => {
            let query = [("since", since.clone()), ("format", format.clone())];
            let lines = desk.download("/api/export", &query, out).await?;
            out.flush()?;
            let tickets = if format == "csv" { lines.saturating_sub(1) } else { lines };
            eprintln!("exported {tickets} ticket(s) created since {since}");
            return Ok(());
        }
        TicketsAction::Claim { id } => (id, json!({"action": "claim"})),
        TicketsAction::Unclaim { id } => (id, json!({"action": "unclaim"})),
        TicketsAction::Assign { id, name } => (id, json!({"action": "assign", "to": name})),
        TicketsAction::Comment { id, text, internal, saved: Some(saved) } if text.is_none() => {
            (id, json!({"action": "comment", "saved": saved, "internal": internal}))
        }
        TicketsAction::Comment { id, text, internal, .. } => {
            (id, json!({"action": "comment", "body": text.clone().unwrap_or_default(), "internal": internal}))
        }
        TicketsAction::Priority { id, priority } => (id, json!({"action": "set_priority", "priority": priority})),
        TicketsAction::Label { id, label, remove } => {
            let action = if *remove { "remove_label" } else { "add_label" };
            (id, json!({"action": action, "label": label}))
        }
        TicketsAction::Close { id, reason } => (id, json!({"action": "close", "reason": reason})),
        TicketsAction::Reopen { id } => (id, json!({"action": "reopen"})),
        TicketsAction::Move { id, team, reason } => {
            let team = Some(team.trim()).filter(|team| *team != crate::lifecycle::routing::TRIAGE);
            (id, json!({"action": "move", "team": team, "reason": reason}))
        }
    };
    let url = format!("{}/api/tickets/{}/commands", desk.url, path_segment(id));
    let (status, answer) = desk.call(desk.http.post(url).json(&body)).await?;
    if args.json {
        writeln!(out, "{}", terminal_json(&answer))?;
    }
    match status.as_u16() {
        200 => {
            if !args.json {
                writeln!(out, "{}", describe(&answer["event"]))?;
            }
            Ok(())
        }
        _ => bail!("{}", visible(answer["error"].as_str().unwrap_or("the desk refused"))),
    }
}

fn print_list(page: &Value, out: &mut impl Write) -> anyhow::Result<()> {
    let tickets = page["tickets"].as_array().map(Vec::as_slice).unwrap_or_default();
    if tickets.is_empty() {
        writeln!(out, "no tickets")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<8}  {:<8}  {:<16}  {:<16}  first line",
        "id", "status", "priority", "assignee", "contact"
    )?;
    for t in tickets {
        let first_line = t["body"].as_str().unwrap_or_default().lines().next().unwrap_or_default();
        // A ticket whose submitter answered since the last public reply is marked with a star; one with a target
        // due soon or missed, with `!`.
        let clocks = t["clocks"].as_array().map(Vec::as_slice).unwrap_or_default();
        let late = clocks.iter().any(|c| c["target"] != "silence" && (c["warned"] == true || c["breached"] == true));
        let status = format!(
            "{}{}{}",
            text(&t["status"]),
            if t["answered"] == json!(true) { "*" } else { "" },
            if late { "!" } else { "" }
        );
        writeln!(
            out,
            "{:<36}  {:<8}  {:<8}  {:<16}  {:<16}  {}",
            text(&t["id"]),
            status,
            text(&t["priority"]),
            cell(&person(&t["assignee"]), 16),
            cell(&t["contact"], 16),
            visible(&clip(first_line, 60))
        )?;
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        writeln!(out, "(more: the API's cursor is {})", visible(cursor))?;
    }
    Ok(())
}

fn print_similar(answer: &Value, out: &mut impl Write) -> anyhow::Result<()> {
    let similar = answer["similar"].as_array().map(Vec::as_slice).unwrap_or_default();
    if similar.is_empty() {
        writeln!(out, "no closed ticket is like this one")?;
    }
    for t in similar {
        let first_line = t["body"].as_str().unwrap_or_default().lines().next().unwrap_or_default();
        writeln!(out, "{:<36}  {}", text(&t["id"]), visible(&clip(first_line, 60)))?;
        writeln!(
            out,
            "{:<36}  closed by {}: {}{}",
            "",
            text(&person(&t["closed_by"])),
            text(&t["close_reason"]),
            t["team"].as_str().map_or(String::new(), |team| format!(" (team {})", visible(team)))
        )?;
    }
    let labels: Vec<String> = answer["suggested"]["labels"].as_array().into_iter().flatten().map(text).collect();
    if !labels.is_empty() {
        writeln!(out, "suggested labels: {} (`franz tickets label ID LABEL` adds one)", labels.join(", "))?;
    }
    if let Some(team) = answer["suggested"]["team"].as_str() {
        writeln!(out, "suggested team: {} (`franz tickets move ID {} --reason ...`)", visible(team), visible(team))?;
    }
    Ok(())
}

fn print_ticket(answer: &Value, out: &mut impl Write) -> anyhow::Result<()> {
    let t = &answer["ticket"];
    writeln!(out, "ticket   {}", text(&t["id"]))?;
    writeln!(
        out,
        "status   {}{}",
        text(&t["status"]),
        person(&t["assignee"]).as_str().map_or(String::new(), |a| format!(" by {}", visible(a)))
    )?;
    if t["answered"] == json!(true) {
        writeln!(out, "         the submitter answered since the last public reply")?;
    }
    if let Some(old) = t["follows"].as_str() {
        writeln!(out, "follows  {}", visible(old))?;
    }
    writeln!(out, "priority {}", text(&t["priority"]))?;
    writeln!(out, "team     {}", t["team"].as_str().map_or("triage (none)".to_owned(), visible))?;
    let labels: Vec<String> = t["labels"].as_array().into_iter().flatten().map(text).collect();
    if !labels.is_empty() {
        writeln!(out, "labels   {}", labels.join(", "))?;
    }
    writeln!(out, "contact  {} ({})", text(&t["contact"]), text(&t["contact_id"]))?;
    writeln!(out, "origin   {}", text(&t["origin"]))?;
    writeln!(out, "created  {}", text(&t["created_at"]))?;
    if t["rating"].is_object() {
        let comment =
            t["rating"]["comment"].as_str().map_or(String::new(), |_| format!(": {}", text(&t["rating"]["comment"])));
        writeln!(out, "rating   {} of 5 ({}){comment}", text(&t["rating"]["rating"]), text(&t["rating"]["at"]))?;
    }
    writeln!(out)?;
    for line in t["body"].as_str().unwrap_or_default().lines() {
        writeln!(out, "  | {}", visible(line))?;
    }
    writeln!(out)?;
    writeln!(out, "conversation and history")?;
    for event in answer["events"].as_array().into_iter().flatten() {
        writeln!(out, "  {}  {}", text(&event["at"]), describe(event))?;
    }
    Ok(())
}

/// One line for an event: what happened, by whom.
fn describe(event: &Value) -> String {
    let who = match serde_json::from_value::<Actor>(event["actor"].clone()) {
        Ok(actor) if actor.source == ActorSource::Discord => visible(&actor.display()),
        Ok(actor) => format!("{} ({})", visible(&actor.display()), text(&event["actor"]["source"])),
        Err(_) => format!("{} ({})", text(&event["actor"]["name"]), text(&event["actor"]["source"])),
    };
    let what = match event["type"].as_str().unwrap_or_default() {
        "created" => format!("created from {}{}{}", text(&event["origin"]), files(event), routed(&event["routed"])),
        "claimed" => "claimed".to_owned(),
        "unclaimed" => format!("unclaimed from {}", text(&person(&event["from"]))),
        "assigned" => format!("assigned to {}", text(&person(&event["to"]))),
        "commented" if event["internal"] == json!(true) => format!("internal note: {}", text(&event["body"])),
        "commented" if event["via"].is_string() => {
            format!("replied (in {}): {}", via(&event["via"]), text(&event["body"]))
        }
        "commented" => format!("replied: {}", text(&event["body"])),
        "priority_set" => format!("priority set to {}", text(&event["priority"])),
        "label_added" => format!("labelled {}", text(&event["label"])),
        "label_removed" => format!("label {} removed", text(&event["label"])),
        "closed" => format!("closed: {}", text(&event["reason"])),
        "reopened" => "reopened".to_owned(),
        "rated" => match event["comment"].as_str() {
            Some(_) => format!("rated it {} of 5: {}", text(&event["rating"]), text(&event["comment"])),
            None => format!("rated it {} of 5", text(&event["rating"])),
        },
        "submitter_wrote" => {
            let mut line = format!("wrote (by {}): {}{}", via(&event["via"]), text(&event["body"]), files(event));
            if event["reopened"] == json!(true) {
                line.push_str(" (reopened the ticket)");
            }
            line
        }
        "delivery" if event["delivered"] == json!(true) && event["channel_id"].is_string() => {
            "opened the ticket's Discord thread".to_owned()
        }
        "delivery" if event["delivered"] == json!(true) => format!("delivered by {}", via(&event["via"])),
        "delivery" => format!("could not deliver by {}: {}", via(&event["via"]), text(&event["detail"])),
        "due_soon" => format!("the {} is due soon (due {})", target(&event["target"]), text(&event["due"])),
        "breached" => format!("the {} target was missed (due {})", target(&event["target"]), text(&event["due"])),
        "moved" => format!(
            "moved from {} to {}: {}",
            event["from"].as_str().map_or("triage".to_owned(), visible),
            event["to"].as_str().map_or("triage".to_owned(), visible),
            text(&event["reason"])
        ),
        "reminded" => format!("reminded the submitter (it closes {} without an answer)", text(&event["closes"])),
        "rejected" => format!("refused {}: {}", text(&event["action"]), text(&event["reason"])),
        other => visible(other),
    };
    let version = event["version"].as_u64().map_or("  ".to_owned(), |v| format!("v{v}"));
    format!("{version} {what} - {who}")
}

/// What a routing rule set on a new ticket, as the rest of its line.
fn routed(routed: &Value) -> String {
    let Some(rule) = routed["rule"].as_str() else { return String::new() };
    let mut set: Vec<String> = Vec::new();
    if let Some(team) = routed["team"].as_str() {
        set.push(format!("to {}", visible(team)));
    }
    if let Some(priority) = routed["priority"].as_str() {
        set.push(format!("priority {}", visible(priority)));
    }
    let labels: Vec<String> = routed["labels"].as_array().into_iter().flatten().map(text).collect();
    if !labels.is_empty() {
        set.push(format!("labelled {}", labels.join(", ")));
    }
    format!(", routed {} {}", set.join(", "), crate::lifecycle::routing::by(&visible(rule).to_string()))
}

/// The files an event carries: where each was sent, or, for one franz keeps, its download on the desk.
fn files(event: &Value) -> String {
    let mut line = String::new();
    for file in event["attachments"].as_array().into_iter().flatten() {
        let place = match file["sha256"].as_str() {
            Some(kept) => format!(
                "on the desk at /tickets/{}/files/{}",
                path_segment(event["ticket_id"].as_str().unwrap_or_default()),
                text(&Value::from(kept))
            ),
            None => text(&file["url"]),
        };
        line.push_str(&format!(" [attachment {} {place}]", text(&file["name"])));
    }
    line
}

/// A channel (`discord_dm`) as people read it.
fn via(value: &Value) -> String {
    serde_json::from_value::<Via>(value.clone()).map_or_else(|_| text(value), |via| via.describe().to_owned())
}

/// A service-level target as people read it ("first response").
fn target(value: &Value) -> String {
    serde_json::from_value::<crate::lifecycle::levels::Target>(value.clone())
        .map_or_else(|_| text(value), |target| target.describe().to_owned())
}

/// A table cell of at most `width` characters of the value, then made visible: clipped before it is escaped, so a
/// cut never halves an escape (`\u{9` and no more).
fn cell(value: &Value, width: usize) -> String {
    match value {
        Value::String(s) => visible(&clip(s, width)),
        other => clip(&text(other), width),
    }
}

/// A person (an identity object, or a bare name from an older desk) as people read it; `null` for none.
fn person(value: &Value) -> Value {
    serde_json::from_value::<Person>(value.clone()).map_or(Value::Null, |p| Value::String(p.display()))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => visible(s),
        Value::Null => "-".to_owned(),
        other => visible(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_cannot_forge_a_history_line_or_reorder_the_text() {
        let forged = "fine\n  2026-12-01T04:10:00.000Z  v3 closed: resolved - ana (api)";
        let line = describe(&json!({"type": "commented", "body": forged, "actor": {"name": "m", "source": "cli"}}));
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains("fine\\n  2026"), "{line}");
    }

    #[test]
    fn a_submitters_message_shows_its_channel_and_files_and_cannot_drive_the_terminal() {
        let event = json!({"type": "submitter_wrote", "body": "see\u{1b}[2J", "via": "discord_dm", "reopened": true,
            "attachments": [{"name": "\u{1b}]8;;evil\u{7}shot.png", "size": 1, "url": "https://cdn/x\u{9b}"}],
            "actor": {"name": "pontatot", "source": "discord", "id": "42"}});
        let line = describe(&event);
        assert!(line.contains("wrote (by Discord DM): see") && line.contains("(reopened the ticket)"), "{line}");
        assert!(line.contains("shot.png") && line.contains("https://cdn/x"), "{line}");
        assert!(!line.chars().any(|c| c.is_control()), "no control character reaches the terminal: {line:?}");
        let failed = json!({"type": "delivery", "via": "discord_dm", "delivered": false, "detail": "closed DMs",
            "actor": {"name": "kummerkasten", "source": "franz"}});
        assert!(describe(&failed).contains("could not deliver by Discord DM: closed DMs"));
    }

    #[test]
    fn a_reply_written_in_the_tickets_thread_and_the_threads_opening_say_so() {
        let reply = json!({"type": "commented", "body": "unplug it", "internal": false, "via": "discord_thread",
            "actor": {"name": "ana", "source": "discord", "id": "42"}});
        assert!(describe(&reply).contains("replied (in Discord thread): unplug it"), "{}", describe(&reply));
        let opened = json!({"type": "delivery", "via": "discord_thread", "delivered": true, "channel_id": "7",
            "actor": {"name": "kummerkasten", "source": "franz"}});
        assert!(describe(&opened).contains("opened the ticket's Discord thread"), "{}", describe(&opened));
    }

    /// Regression (#33 attack): a cell was escaped, then clipped, and the cut fell inside an escape.
    #[test]
    fn a_clipped_cell_never_halves_an_escape() {
        let page = serde_json::json!({"tickets": [{
            "id": "t-1", "status": "open", "priority": "normal", "assignee": "\u{9b}".repeat(20),
            "contact": "abcdefghijklmno\u{1b}", "body": format!("{}\u{202e}", "x".repeat(59)),
        }]});
        let mut out = Vec::new();
        super::print_list(&page, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        for (i, _) in out.match_indices("\\u{") {
            let rest = &out[i + 3..];
            let end = rest.find('}').unwrap_or_else(|| panic!("an escape is cut: {out}"));
            assert!(rest[..end].chars().all(|c| c.is_ascii_hexdigit()), "an escape is cut: {out}");
        }
        assert!(!out.chars().any(|c| c == '\u{9b}' || c == '\u{1b}' || c == '\u{202e}'), "{out}");
    }
}
