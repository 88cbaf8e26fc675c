//! A ticket's transcript and the export of every ticket, end to end: from the API, the ticket page and the command
//! line; an internal note never in a transcript, hostile text inert in it, and an export of more tickets than one
//! page of the store checked against the API, ticket for ticket.

use serde_json::{Value, json};

use crate::web::{HOSTILE, Team};

/// Posts a command to ticket `id` with the team's API token and waits for akte's answer.
async fn command(team: &Team, id: &str, body: Value) {
    let response = team
        .http
        .post(format!("{}/api/tickets/{id}/commands", team.url))
        .bearer_auth(&team.api_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{body}");
}

/// Runs `franz tickets ARGS` with the team's local credential: standard output and standard error.
fn cli(team: &Team, args: &[&str]) -> (String, String) {
    let output = crate::util::franz(team.data.path(), Some(&team.harness))
        .env("FRANZ_DATA_DIR", team.data.path())
        .arg("tickets")
        .args(args)
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8(output.stdout).unwrap(), String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(output.status.success(), "franz tickets {args:?}: {err}");
    (out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcript_holds_the_conversation_without_internal_notes_from_the_api_the_page_and_the_cli() {
    let team = Team::start().await;
    let id = team.submit("ponta", &format!("The printer\u{1b}[31m is on fire {HOSTILE}")).await;
    command(&team, &id, json!({"action": "comment", "body": "Which floor? <img src=y onerror=alert(1)>"})).await;
    command(&team, &id, json!({"action": "comment", "body": "SECRET-NOTE-42", "internal": true})).await;
    command(&team, &id, json!({"action": "close", "reason": "fixed"})).await;

    // The API: text by default, HTML when asked, each as a download; another format is refused.
    let get = |path: String| {
        let team = &team;
        async move { team.http.get(format!("{}{path}", team.url)).bearer_auth(&team.api_token).send().await.unwrap() }
    };
    let html = get(format!("/api/tickets/{id}/transcript?format=html")).await;
    assert_eq!(html.status(), 200);
    assert!(html.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    let html = html.text().await.unwrap();
    assert!(html.contains("Which floor? &lt;img") && html.contains("fixed"), "{html}");
    assert!(!html.contains("<img") && !html.contains("<script>window"), "hostile text stays text");
    assert!(html.contains("default-src 'none'"), "the page carries its own policy");
    assert!(!html.contains("SECRET-NOTE-42"), "an internal note never leaves franz");
    assert_eq!(get(format!("/api/tickets/{id}/transcript?format=pdf")).await.status(), 400);
    assert_eq!(get("/api/tickets/no-such-ticket/transcript".into()).await.status(), 404);

    // The ticket page links both; they need a session.
    let session = team.sign_in("ana").await;
    let page = team.page(&format!("/tickets/{id}"), &session.cookie).await;
    assert!(page.contains(&format!("/tickets/{id}/transcript.html")), "{page}");
    let text = team.page(&format!("/tickets/{id}/transcript.txt"), &session.cookie).await;
    assert!(text.contains("ponta opened the ticket") && text.contains("replied:\n  Which floor?"), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains("SECRET-NOTE-42"), "{text:?}");
    let anonymous = team.http.get(format!("{}/tickets/{id}/transcript.txt", team.url)).send().await.unwrap();
    assert_ne!(anonymous.status(), 200, "no transcript without a session");

    // The command line prints the same.
    let (printed, _) = cli(&team, &["transcript", &id]);
    assert_eq!(printed, text);
    let (printed, _) = cli(&team, &["transcript", &id, "--html"]);
    assert_eq!(printed, html);
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_more_tickets_than_a_page_has_each_ticket_once_as_the_api_shows_it() {
    const TICKETS: usize = franz::desk::export::PAGE * 2 + 17;
    let team = Team::start().await;
    let tickets: Vec<franz::schema::Ticket> = (0..TICKETS)
        .map(|n| franz::schema::Ticket {
            id: format!("exp-{n:05}"),
            contact: if n == 7 { "=HYPERLINK(\"http://evil\")".into() } else { format!("user{n}") },
            origin: "Discord".into(),
            body: format!("ticket {n}, with a comma\nand a second line"),
            date: "2026-12-07T10:00:00Z".into(),
            ..franz::schema::Ticket::default()
        })
        .collect();
    let records: Vec<(i32, Vec<u8>)> = tickets.iter().map(|t| (0, serde_json::to_vec(t).unwrap())).collect();
    team.harness.produce(&team.harness.topics.tickets, &records).await;
    team.wait_for_ticket(&tickets[TICKETS - 1].id).await;

    let (csv, said) = cli(&team, &["export", "--since", "2026-01-01"]);
    assert!(said.contains(&format!("exported {TICKETS} ticket(s)")), "{said}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), TICKETS + 1, "a header and one line per ticket");
    assert!(lines[0].starts_with("id,created_at,submitted,status,priority,team,labels"), "{}", lines[0]);
    let mut ids: Vec<&str> = lines[1..].iter().map(|line| line.split(',').next().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), TICKETS, "each ticket once");
    assert!(csv.contains(",\"'=HYPERLINK(\"\"http://evil\"\")\","), "a formula is written as text: {}", lines[8]);

    let (jsonl, _) = cli(&team, &["export", "--since", "2026-01-01", "--format", "jsonl"]);
    let exported: Vec<Value> = jsonl.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(exported.len(), TICKETS);
    for row in exported.iter().step_by(97) {
        let shown = team.api(&format!("/api/tickets/{}", row["id"].as_str().unwrap())).await;
        for field in ["id", "created_at", "status", "priority", "contact", "origin"] {
            assert_eq!(row[field], shown["ticket"][field], "{field} of {}", row["id"]);
        }
        assert_eq!(row["subject"], shown["ticket"]["body"].as_str().unwrap().lines().next().unwrap());
    }
    let (none, said) = cli(&team, &["export", "--since", "2999-01-01", "--format", "jsonl"]);
    assert!(none.is_empty() && said.contains("exported 0"), "{said}");
    let refused = crate::util::franz(team.data.path(), Some(&team.harness))
        .env("FRANZ_DATA_DIR", team.data.path())
        .args(["tickets", "export", "--since", "last tuesday"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no date"));
    team.stop().await;
}

/// #28: with `discord.transcript_on_close`, the direct message that tells a submitter of the close carries the
/// ticket's transcript as an HTML file: the conversation, escaped, without the internal notes. Off, it carries none.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_tickets_submitter_gets_its_transcript_as_a_file_in_discord_when_asked_for() {
    use crate::kummerkasten_staff::{Team as Bot, direct_messages, from_the_desk, only_ticket, ponta, submit};
    use franz::schema::lifecycle::Action;
    let mut bot = Bot::start_with(1, |config| config.discord.transcript_on_close = true).await;
    let (harness, discord) = (&bot.harness, &bot.discord);
    submit(discord, "printer <script>alert(1)</script>").await;
    let ticket = only_ticket(harness).await;
    from_the_desk(harness, &ticket, 1, Action::Comment { body: "SECRET-NOTE-42".into(), internal: true, via: None })
        .await;
    from_the_desk(harness, &ticket, 2, Action::Close { reason: "toner replaced".into() }).await;
    direct_messages(discord, &ponta(), 1).await;
    let told = discord.direct_messages(&ponta()).remove(0);
    assert_eq!(told.files.len(), 1, "one file: {:?}", told.body);
    let file = &told.files[0];
    assert!(file.filename.ends_with(".html"), "{}", file.filename);
    let html = String::from_utf8(file.bytes.clone()).unwrap();
    assert!(
        html.contains("printer &lt;script&gt;alert(1)&lt;/script&gt;") && html.contains("toner replaced"),
        "{html}"
    );
    assert!(!html.contains("SECRET-NOTE-42") && !html.contains("<script>alert"), "{html}");
    assert_eq!(told.body["attachments"][0]["filename"], file.filename.as_str());
    bot.down().await;

    let mut quiet = Bot::start(1).await;
    submit(&quiet.discord, "another").await;
    let ticket = only_ticket(&quiet.harness).await;
    from_the_desk(&quiet.harness, &ticket, 1, Action::Close { reason: "done".into() }).await;
    direct_messages(&quiet.discord, &ponta(), 1).await;
    assert!(quiet.discord.direct_messages(&ponta())[0].files.is_empty(), "off by default");
    quiet.down().await;
}
