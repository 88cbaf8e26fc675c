//! `franz tickets` and `franz staff`: the command line's side of the desk.
//!
//! `franz tickets` talks to the running desk's API, so the CLI follows the same rules and leaves the same audit
//! trail as the web and Discord: with a staff token (`--token`, `FRANZ_TOKEN`) it acts as that staff member; on
//! the machine where franz runs it uses the desk's local credential and acts as `--as NAME` (default: the login
//! name). `franz staff` edits the staff list directly; it needs no running franz. Ticket text is printed with its
//! control characters made visible, so a ticket cannot drive the terminal.

use std::io::Write;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use super::staff::{self, Staff};
use crate::cli::{StaffAction, TicketsAction, TicketsArgs};
use crate::config::Config;
use crate::discord::clip;
use crate::lifecycle;

/// The desk directory of a configuration: the staff list and the local credential.
pub fn desk_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("desk")
}

/// Where people open the desk: its public URL, else where it last ran, else where it is configured to listen.
fn base_url(config: &Config, desk_dir: &std::path::Path) -> anyhow::Result<String> {
    Ok(match &config.desk.public_url {
        Some(public) => public.clone(),
        None => staff::read_local(desk_dir)?.map_or_else(|| super::url_for(config.desk.listen), |l| l.url),
    })
}

/// `franz staff add|link|list|remove`.
pub fn staff_command(config: &Config, action: StaffAction, out: &mut impl Write) -> anyhow::Result<()> {
    let dir = desk_dir(config);
    let staff = Staff::open(&dir)?;
    match action {
        StaffAction::Add { name } => {
            let (token, existed) = staff.add(&name)?;
            let code = staff.link(&name)?;
            let base = base_url(config, &dir)?;
            let name = name.trim();
            if existed {
                writeln!(out, "{name} has a new sign-in link; the old one no longer works.")?;
            } else {
                writeln!(out, "{name} is now on the staff list.")?;
            }
            writeln!(out, "sign-in link: {}", super::sign_in_link(&base, &code))?;
            writeln!(out, "API token:    {token}")?;
            writeln!(
                out,
                "Send them to {name} privately; they are shown only now (franz keeps only hashes). The link signs in \
                 one browser, once, within 7 days; `franz staff link {name}` makes another."
            )?;
            writeln!(
                out,
                "Programs send it as `Authorization: Bearer <token>`; the CLI takes it as --token or FRANZ_TOKEN."
            )?;
        }
        StaffAction::List => {
            let members = staff.list()?;
            if members.is_empty() {
                writeln!(out, "nobody yet; add someone with `franz staff add NAME`")?;
            }
            for member in members {
                writeln!(out, "{:<24} added {}", visible(&member.name), member.added)?;
            }
        }
        StaffAction::Link { name } => {
            let code = staff.link(&name)?;
            writeln!(out, "sign-in link: {}", super::sign_in_link(&base_url(config, &dir)?, &code))?;
            writeln!(
                out,
                "It signs in one browser, once, within 7 days; {} stays signed in elsewhere, and their API token is \
                 unchanged.",
                name.trim()
            )?;
        }
        StaffAction::Remove { name } => {
            staff.remove(&name)?;
            writeln!(out, "{} is off the staff list; their links, token and browsers no longer work.", name.trim())?;
        }
    }
    Ok(())
}

/// How the CLI reaches the desk and who it acts as.
struct Desk {
    http: reqwest::Client,
    url: String,
    token: String,
    acting_as: Option<String>,
}

impl Desk {
    fn connect(config: &Config, args: &TicketsArgs) -> anyhow::Result<Desk> {
        let dir = desk_dir(config);
        let local = staff::read_local(&dir)?;
        let (url, token, acting_as) = match (&args.token, local) {
            (Some(token), local) => {
                (local.map_or_else(|| super::url_for(config.desk.listen), |l| l.url), token.clone(), None)
            }
            (None, Some(local)) => {
                let name = args.acting_as.clone().or_else(login_name).unwrap_or_else(|| "cli".into());
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

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let (status, body) = self.call(self.http.get(format!("{}{path}", self.url)).query(query)).await?;
        if !status.is_success() {
            bail!("{}", body["error"].as_str().unwrap_or("the desk refused"));
        }
        Ok(body)
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
        let page = desk.get("/api/tickets", &query).await?;
        if args.json {
            writeln!(out, "{page}")?;
        } else {
            print_list(&page, out)?;
        }
        return Ok(());
    };
    let (id, body) = match action {
        TicketsAction::Show { id } => {
            let ticket = desk.get(&format!("/api/tickets/{}", encode(id)), &[]).await?;
            if args.json {
                writeln!(out, "{ticket}")?;
            } else {
                print_ticket(&ticket, out)?;
            }
            return Ok(());
        }
        TicketsAction::Claim { id } => (id, json!({"action": "claim"})),
        TicketsAction::Unclaim { id } => (id, json!({"action": "unclaim"})),
        TicketsAction::Assign { id, name } => (id, json!({"action": "assign", "to": name})),
        TicketsAction::Comment { id, text, internal } => {
            (id, json!({"action": "comment", "body": text, "internal": internal}))
        }
        TicketsAction::Priority { id, priority } => (id, json!({"action": "set_priority", "priority": priority})),
        TicketsAction::Label { id, label, remove } => {
            let action = if *remove { "remove_label" } else { "add_label" };
            (id, json!({"action": action, "label": label}))
        }
        TicketsAction::Close { id, reason } => (id, json!({"action": "close", "reason": reason})),
        TicketsAction::Reopen { id } => (id, json!({"action": "reopen"})),
    };
    let url = format!("{}/api/tickets/{}/commands", desk.url, encode(id));
    let (status, answer) = desk.call(desk.http.post(url).json(&body)).await?;
    if args.json {
        writeln!(out, "{answer}")?;
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

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_list(page: &Value, out: &mut impl Write) -> anyhow::Result<()> {
    let tickets = page["tickets"].as_array().map(Vec::as_slice).unwrap_or_default();
    if tickets.is_empty() {
        writeln!(out, "no tickets")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<7}  {:<8}  {:<16}  {:<16}  first line",
        "id", "status", "priority", "assignee", "contact"
    )?;
    for t in tickets {
        let first_line = t["body"].as_str().unwrap_or_default().lines().next().unwrap_or_default();
        writeln!(
            out,
            "{:<36}  {:<7}  {:<8}  {:<16}  {:<16}  {}",
            text(&t["id"]),
            text(&t["status"]),
            text(&t["priority"]),
            clip(&text(&t["assignee"]), 16),
            clip(&text(&t["contact"]), 16),
            clip(&visible(first_line), 60)
        )?;
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        writeln!(out, "(more: the API's cursor is {cursor})")?;
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
        t["assignee"].as_str().map_or(String::new(), |a| format!(" by {}", visible(a)))
    )?;
    writeln!(out, "priority {}", text(&t["priority"]))?;
    let labels: Vec<String> = t["labels"].as_array().into_iter().flatten().map(text).collect();
    if !labels.is_empty() {
        writeln!(out, "labels   {}", labels.join(", "))?;
    }
    writeln!(out, "contact  {} ({})", text(&t["contact"]), text(&t["contact_id"]))?;
    writeln!(out, "origin   {}", text(&t["origin"]))?;
    writeln!(out, "created  {}", text(&t["created_at"]))?;
    writeln!(out)?;
    for line in t["body"].as_str().unwrap_or_default().lines() {
        writeln!(out, "  | {}", visible(line))?;
    }
    writeln!(out)?;
    writeln!(out, "history")?;
    for event in answer["events"].as_array().into_iter().flatten() {
        writeln!(out, "  {}  {}", text(&event["at"]), describe(event))?;
    }
    Ok(())
}

/// One line for an event: what happened, by whom.
fn describe(event: &Value) -> String {
    let who = format!("{} ({})", text(&event["actor"]["name"]), text(&event["actor"]["source"]));
    let what = match event["type"].as_str().unwrap_or_default() {
        "created" => format!("created from {}", text(&event["origin"])),
        "claimed" => "claimed".to_owned(),
        "unclaimed" => format!("unclaimed from {}", text(&event["from"])),
        "assigned" => format!("assigned to {}", text(&event["to"])),
        "commented" if event["internal"] == json!(true) => format!("internal note: {}", text(&event["body"])),
        "commented" => format!("replied: {}", text(&event["body"])),
        "priority_set" => format!("priority set to {}", text(&event["priority"])),
        "label_added" => format!("labelled {}", text(&event["label"])),
        "label_removed" => format!("label {} removed", text(&event["label"])),
        "closed" => format!("closed: {}", text(&event["reason"])),
        "reopened" => "reopened".to_owned(),
        "rejected" => format!("refused {}: {}", text(&event["action"]), text(&event["reason"])),
        other => visible(other),
    };
    let version = event["version"].as_u64().map_or("  ".to_owned(), |v| format!("v{v}"));
    format!("{version} {what} - {who}")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => visible(s),
        Value::Null => "-".to_owned(),
        other => visible(&other.to_string()),
    }
}

/// Text on one line, with control characters (terminal escapes and line breaks included) and the characters that
/// hide, break or reorder text ([`lifecycle::hidden`]) shown as escapes instead of acted on, so that ticket text can
/// neither drive the terminal nor pass for franz's own output.
pub fn visible(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() || lifecycle::hidden(c) { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_in_ticket_text_are_shown_not_run() {
        assert_eq!(visible("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    }

    #[test]
    fn a_comment_cannot_forge_a_history_line_or_reorder_the_text() {
        let forged = "fine\n  2026-12-01T04:10:00.000Z  v3 closed: resolved - ana (api)";
        let line = describe(&json!({"type": "commented", "body": forged, "actor": {"name": "m", "source": "cli"}}));
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains("fine\\n  2026"), "{line}");
        assert_eq!(visible("a\u{202e}b"), "a\\u{202e}b");
    }

    #[test]
    fn line_separators_and_zero_width_characters_are_shown_as_escapes() {
        for (hidden, shown) in [
            ("\u{2028}", "\\u{2028}"),
            ("\u{2029}", "\\u{2029}"),
            ("\u{200b}", "\\u{200b}"),
            ("\u{feff}", "\\u{feff}"),
            ("\u{61c}", "\\u{61c}"),
        ] {
            assert_eq!(visible(&format!("a{hidden}b")), format!("a{shown}b"));
        }
        assert_eq!(visible("Zoë 👩\u{200d}💻"), "Zoë 👩\u{200d}💻", "joiners stay: emoji need them");
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(encode("../x y"), "..%2Fx%20y");
    }
}
