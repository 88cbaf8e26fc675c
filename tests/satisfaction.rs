//! Satisfaction ratings end to end: in Discord (the close message's five buttons, the comment form, a second press,
//! someone else's press, a press after the window, with a clock the test moves), and on the desk's public feedback
//! page a close mail links to (works once, needs no session, refuses other origins and forged links).

use fake_discord::{Endpoint, Origin, User};
use franz::clock::Clock;
use serde_json::json;

use crate::kummerkasten_staff::{Team, ana, answer, button, events_of, only_ticket, ponta, submit, told};
use crate::util::wait_until;

/// The custom id of button `label` in the first row of `message`'s components.
fn rating_button(message: &fake_discord::ChannelMessage, label: &str) -> String {
    button(message, label)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitter_rates_a_closed_ticket_in_discord_with_a_comment_and_may_change_it_within_the_window_only() {
    let clock = Clock::manual(chrono::Utc::now());
    let mut team = Team::start_with(1, |config| {
        config.clock = clock.clone();
        // The desk too, whose numbers and /metrics show the ratings (the "done when").
        config.services.push(franz::config::Service::Desk);
        config.desk = franz::config::Desk { listen: "127.0.0.1:0".parse().unwrap(), public_url: None };
    })
    .await;
    let (harness, discord) = (&team.harness, &team.discord);
    let posted = submit(discord, "printer on fire").await;
    let ticket = only_ticket(harness).await;
    let close = discord.press(&ana(discord), &posted, &button(&posted, "Close"));
    let form = answer(discord, &close, Endpoint::Callback).await;
    let form_id = form.body["data"]["custom_id"].as_str().unwrap().to_owned();
    told(discord, &discord.modal_submit(&ana(discord), &form_id, &[("reason", "toner replaced")])).await;

    wait_until("the close message", || async { !discord.direct_messages(&ponta()).is_empty() }).await;
    let asked = discord.direct_messages(&ponta()).remove(0);
    let content = asked.body["content"].as_str().unwrap();
    assert!(
        content.contains("Reason: toner replaced") && content.contains("\n\nHow did we do? Rate your ticket from 1"),
        "{content}"
    );

    // A press rates at once and opens the comment form; its submit adds the comment (hostile text stays text).
    let press = discord.press(&ponta(), &asked, &rating_button(&asked, "4"));
    let opened = answer(discord, &press, Endpoint::Callback).await;
    assert_eq!(opened.body["type"], json!(9), "the comment form: {:?}", opened.body);
    let rated = events_of(harness, "rated", 1).await;
    assert_eq!((&rated[0]["rating"], rated[0].get("comment")), (&json!(4), None));
    let comment_form = opened.body["data"]["custom_id"].as_str().unwrap().to_owned();
    let hostile = "<script>alert(1)</script> @everyone";
    let submitted = discord.modal_submit_from(Origin::Dm, &ponta(), &comment_form, &[("comment", hostile)]);
    let said = told(discord, &submitted).await;
    assert_eq!(said, "Thank you: your rating (4 of 5) and your comment were recorded.");
    let rated = events_of(harness, "rated", 2).await;
    assert_eq!((&rated[1]["rating"], &rated[1]["comment"]), (&json!(4), &json!(hostile)));
    assert_eq!(rated[1]["ticket_id"], json!(ticket));

    // Someone else's press is refused privately and rates nothing.
    let mallory = discord.press(&User::new(7, "mallory"), &asked, &rating_button(&asked, "1"));
    let refusal = answer(discord, &mallory, Endpoint::Callback).await;
    assert_eq!(refusal.body["data"]["content"], json!("Only the person who submitted the ticket can rate it."));
    assert_eq!(refusal.body["data"]["flags"], json!(64));

    // A second press within the window replaces the rating.
    let again = discord.press(&ponta(), &asked, &rating_button(&asked, "2"));
    answer(discord, &again, Endpoint::Callback).await;
    let rated = events_of(harness, "rated", 3).await;
    assert_eq!(rated[2]["rating"], json!(2));

    // The numbers show the rating and its comment; /metrics counts every rating akte recorded.
    let desk = format!("http://{}", team.running.as_ref().unwrap().desk.expect("the desk runs"));
    let token = franz::people::Staff::open(&franz::people::dir(&team.config)).unwrap().add("reader").unwrap().0;
    let http = reqwest::Client::new();
    let stats = || async {
        let answer = http.get(format!("{desk}/api/stats")).bearer_auth(&token).send().await.unwrap();
        answer.json::<serde_json::Value>().await.unwrap()
    };
    wait_until("the numbers show the rating", || async {
        stats().await["satisfaction_by_week"].as_array().unwrap().iter().any(|week| week["counts"][1] == 1)
    })
    .await;
    let numbers = stats().await;
    assert_eq!(
        numbers["rating_comments"].as_array().map(Vec::len),
        Some(0),
        "the last rating has no comment: {numbers}"
    );
    let metrics = http.get(format!("{desk}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("franz_ratings_total{rating=\"4\"} 2")
            && metrics.contains("franz_ratings_total{rating=\"2\"} 1"),
        "{metrics}"
    );

    // After the window: refused with why, and nothing is sent to akte.
    clock.advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let late = discord.press(&ponta(), &asked, &rating_button(&asked, "5"));
    let refusal = answer(discord, &late, Endpoint::Callback).await;
    assert_eq!(
        refusal.body["data"]["content"],
        json!("That ticket was closed more than 7 days ago, so its rating can no longer be given or changed.")
    );
    assert_eq!(events_of(harness, "rated", 3).await.len(), 3, "the late press sent nothing");
    assert!(events_of(harness, "rejected", 0).await.is_empty(), "nothing refused by akte either");
    team.down().await;
}

/// A ticket by mail from `address`.
fn mail_ticket(id: &str, address: &str) -> franz::schema::Ticket {
    franz::schema::Ticket {
        contact: address.into(),
        contact_id: Some(address.into()),
        origin: franz::schema::ORIGIN_EMAIL.into(),
        guild_id: None,
        channel_id: None,
        ..crate::web::discord_ticket(id, "my invoice is wrong")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feedback_page_rates_once_without_a_session_from_its_own_origin_only_and_the_numbers_show_it() {
    use crate::web::Team;
    let team = Team::start().await;
    team.publish(&[mail_ticket("by-mail", "kim@example.com")]).await;
    let ana = team.sign_in("ana").await;
    let key = franz::feedback::Key::in_dir(&team.data.path().join("desk")).unwrap();
    let token = key.token("by-mail");
    let page = format!("{}/feedback/{token}", team.url);
    let post = |fields: Vec<(&'static str, String)>, origin: Option<String>| {
        let mut request = team.http.post(&page).form(&fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let rating = |rating: &str, comment: &str| vec![("rating", rating.to_owned()), ("comment", comment.to_owned())];
    let said = |html: String| {
        html.split("role=\"status\">").nth(1).and_then(|rest| rest.split('<').next()).unwrap_or_default().to_owned()
    };

    // Open: no rating yet, and the page says so without a form.
    let open = team.http.get(&page).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(said(open.text().await.unwrap()).contains("open again"));

    let close = team
        .act(
            "by-mail",
            &ana.cookie,
            &[("action", "close"), ("reason", "refunded"), ("csrf", &ana.csrf)],
            &[("origin", &team.url)],
        )
        .await;
    assert_eq!(close.status(), 303);
    wait_until("the close", || async { team.api("/api/tickets/by-mail").await["ticket"]["status"] == "closed" }).await;

    // The form, without a session; the page names nothing of the ticket.
    let form = team.http.get(&page).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert_eq!(form.headers()["referrer-policy"], "strict-origin");
    assert!(form.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let html = form.text().await.unwrap();
    assert!(html.contains("How did we do?") && html.contains("name=\"rating\""), "{html}");
    for secret in ["invoice", "kim@example.com", "refunded", "by-mail\""] {
        assert!(!html.contains(secret), "the page shows {secret:?}: {html}");
    }

    // Another origin, or no page at all (a mail scanner), rates nothing; nor does a forged or cut link.
    assert_eq!(post(rating("1", ""), Some("https://evil.example".into())).await.unwrap().status(), 403);
    assert_eq!(post(rating("1", ""), None).await.unwrap().status(), 403);
    let forged = key.token("other").replace("other", "by-mail");
    let forged = team.http.get(format!("{}/feedback/{forged}", team.url)).send().await.unwrap();
    assert_eq!(forged.status(), 404);
    let cut = team.http.get(format!("{}/feedback/{}", team.url, &token[..token.len() - 3])).send().await.unwrap();
    assert_eq!(cut.status(), 404);
    assert_eq!(post(rating("9", ""), Some(team.url.clone())).await.unwrap().status(), 400);

    // The page's own form rates; hostile text stays text.
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let rated = post(rating("5", hostile), Some(team.url.clone())).await.unwrap();
    assert_eq!(rated.status(), 200);
    assert_eq!(said(rated.text().await.unwrap()), "Thank you: your rating was recorded.");
    let events = team.api("/api/tickets/by-mail").await;
    let ratings: Vec<&serde_json::Value> =
        events["events"].as_array().unwrap().iter().filter(|e| e["type"] == "rated").collect();
    assert_eq!(ratings.len(), 1);
    assert_eq!(
        (&ratings[0]["rating"], &ratings[0]["comment"], &ratings[0]["actor"]["source"]),
        (&json!(5), &json!(hostile), &json!("email"))
    );

    // Once: the page thanks and takes no second rating.
    let again = team.http.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(!again.contains("name=\"rating\""), "{again}");
    assert_eq!(said(again), "Thank you: your rating was recorded.");
    assert_eq!(post(rating("1", "changed my mind"), Some(team.url.clone())).await.unwrap().status(), 409);

    // The ticket page and the numbers show it, escaped; the API's stats count it.
    let ticket_page = team.page("/tickets/by-mail", &ana.cookie).await;
    assert!(
        ticket_page.contains("5 of 5") && ticket_page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{ticket_page}"
    );
    assert!(!ticket_page.contains(hostile));
    wait_until("the numbers count the rating", || async {
        team.api("/api/stats").await["satisfaction_by_week"].as_array().unwrap().iter().any(|w| w["counts"][4] == 1)
    })
    .await;
    let numbers = team.page("/stats", &ana.cookie).await;
    assert!(
        numbers.contains("id=\"satisfaction\"") && numbers.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{numbers}"
    );
    assert!(!numbers.contains("<img src=x"), "{numbers}");
    let events_after = team.api("/api/tickets/by-mail").await["events"].as_array().unwrap().len();
    assert_eq!(events_after, events["events"].as_array().unwrap().len(), "the refused second rating changed nothing");
    team.stop().await;
}

/// Closes ticket `id` through the API (as a staff member) and waits until the store has the close.
async fn close_by_api(team: &crate::web::Team, id: &str) {
    let closed = team
        .http
        .post(format!("{}/api/tickets/{id}/commands", team.url))
        .bearer_auth(&team.api_token)
        .json(&json!({"action": "close", "reason": "refunded"}))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200, "{}", closed.text().await.unwrap());
    wait_until("the close", || async { team.api(&format!("/api/tickets/{id}")).await["ticket"]["status"] == "closed" })
        .await;
}

/// What the feedback page says (its `role="status"` paragraph).
fn feedback_said(html: &str) -> String {
    html.split("role=\"status\">").nth(1).and_then(|rest| rest.split('<').next()).unwrap_or_default().to_owned()
}

/// #28, attack: a send the page cannot take (a comment over the limit) must not use up the page's one rating: the
/// command id `feedback:{closed_at}` is answered for good, so once akte refused it, every later send (a shorter
/// comment, no comment) got the same refusal and the submitter could never rate from the link.
#[tokio::test(flavor = "multi_thread")]
async fn a_feedback_send_refused_for_its_comment_does_not_use_up_the_link() {
    use crate::web::Team;
    let team = Team::start().await;
    team.publish(&[mail_ticket("too-long", "kim@example.com")]).await;
    close_by_api(&team, "too-long").await;
    let key = franz::feedback::Key::in_dir(&team.data.path().join("desk")).unwrap();
    let page = format!("{}/feedback/{}", team.url, key.token("too-long"));
    let send = |rating: &str, comment: String| {
        team.http
            .post(&page)
            .header("origin", team.url.clone())
            .form(&[("rating", rating.to_owned()), ("comment", comment)])
            .send()
    };

    let long = "x".repeat(franz::lifecycle::RATING_COMMENT_MAX + 1);
    let refused = send("2", long).await.unwrap();
    let (refused_status, refused_text) = (refused.status(), refused.text().await.unwrap());
    // The page still offers its form: nothing was recorded.
    let again = team.http.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("name=\"rating\""), "{again}");

    let shorter = send("2", "slow, but fixed".to_owned()).await.unwrap();
    let status = shorter.status();
    let text = shorter.text().await.unwrap();
    assert_eq!(
        (status, feedback_said(&text).as_str()),
        (reqwest::StatusCode::OK, "Thank you: your rating was recorded."),
        "the second send, after a first refused as {refused_status}: {}",
        feedback_said(&refused_text)
    );
    assert_eq!(refused_status, 400, "a comment over the limit is the sender's to shorten");
    assert!(feedback_said(&refused_text).contains("1000"), "{refused_text}");
    let ticket = team.api("/api/tickets/too-long").await;
    assert_eq!(
        (&ticket["ticket"]["rating"]["rating"], &ticket["ticket"]["rating"]["comment"]),
        (&json!(2), &json!("slow, but fixed"))
    );
    team.stop().await;
}

/// #28, attack: a browser sends a textarea's line breaks as CRLF, while its `maxlength` counts each as one
/// character: a comment the page's own form lets through (1,000 characters with line breaks) was refused by akte as
/// longer than 1,000, and (see above) the link was then used up.
#[tokio::test(flavor = "multi_thread")]
async fn a_comment_the_pages_form_allows_is_recorded_with_its_line_breaks() {
    use crate::web::Team;
    let team = Team::start().await;
    team.publish(&[mail_ticket("lines", "kim@example.com")]).await;
    close_by_api(&team, "lines").await;
    let key = franz::feedback::Key::in_dir(&team.data.path().join("desk")).unwrap();
    let page = format!("{}/feedback/{}", team.url, key.token("lines"));
    // Ten lines of 99: 999 characters as the textarea counts them (under its maxlength of 1,000), 1,008 as sent.
    let typed = vec!["y".repeat(99); 10].join("\n");
    assert!(typed.chars().count() <= franz::lifecycle::RATING_COMMENT_MAX);
    let sent = typed.replace('\n', "\r\n");
    let rated = team
        .http
        .post(&page)
        .header("origin", team.url.clone())
        .form(&[("rating", "4".to_owned()), ("comment", sent)])
        .send()
        .await
        .unwrap();
    let status = rated.status();
    let text = rated.text().await.unwrap();
    assert_eq!(
        (status, feedback_said(&text).as_str()),
        (reqwest::StatusCode::OK, "Thank you: your rating was recorded.")
    );
    let ticket = team.api("/api/tickets/lines").await;
    assert_eq!(ticket["ticket"]["rating"]["comment"], json!(typed), "stored with the line breaks the submitter typed");
    team.stop().await;
}

/// #28, attack: `franz tickets show` printed a rating as a bare "rated": a staff member reading a ticket in the
/// terminal saw neither the rating nor its comment (the desk's pages show both). They are shown now, and the
/// comment, the submitter's text, cannot drive the terminal.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_shows_a_rating_and_its_comment_which_cannot_drive_the_terminal() {
    use crate::web::Team;
    let team = Team::start().await;
    team.publish(&[mail_ticket("in-cli", "kim@example.com")]).await;
    close_by_api(&team, "in-cli").await;
    let key = franz::feedback::Key::in_dir(&team.data.path().join("desk")).unwrap();
    let page = format!("{}/feedback/{}", team.url, key.token("in-cli"));
    let comment = "too slow\u{1b}[2J\u{9b}31m \u{202e}evil";
    let rated = team
        .http
        .post(&page)
        .header("origin", team.url.clone())
        .form(&[("rating", "2"), ("comment", comment)])
        .send()
        .await
        .unwrap();
    assert_eq!(rated.status(), 200);
    let output = crate::util::franz(team.data.path(), Some(&team.harness))
        .env("FRANZ_DATA_DIR", team.data.path())
        .args(["tickets", "show", "in-cli"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let out = String::from_utf8(output.stdout).unwrap();
    let raw: Vec<char> =
        out.chars().filter(|&c| (c.is_control() && c != '\n') || franz::lifecycle::hidden(c)).collect();
    assert!(raw.is_empty(), "printed {raw:?} raw:\n{out}");
    let line = out.lines().find(|line| line.contains("rated")).unwrap_or_else(|| panic!("no rating: {out}"));
    assert!(line.contains("2 of 5") && line.contains("too slow"), "the rating and its comment: {line}");
    team.stop().await;
}
