//! Saved replies: kept on the desk (its page and the API), searched, filled for a ticket ({contact}, {ticket},
//! {agent}) in the reply form, the API, the CLI and a Discord card's Close, with hostile text kept as text.

use fake_discord::Endpoint;
use serde_json::{Value, json};

use crate::util::wait_until;
use crate::web::{Team, discord_ticket};

const HOSTILE: &str = "<script>alert(1)</script>";

/// The events of `ticket` of type `kind`, as the API shows them.
async fn events_of(team: &Team, ticket: &str, kind: &str) -> Vec<Value> {
    let shown = team.api(&format!("/api/tickets/{ticket}")).await;
    shown["events"].as_array().unwrap().iter().filter(|e| e["type"] == kind).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_replies_are_kept_on_the_desk_and_sent_filled_from_the_reply_form_the_api_and_the_cli() {
    let team = Team::start().await;
    team.publish(&[discord_ticket("t-saved", "refund please")]).await;
    let ana = team.sign_in("ana").await;
    let own = [("origin", team.url.as_str()), ("sec-fetch-site", "same-origin")];
    let post =
        |fields: Vec<(&'static str, String)>, headers: &'static [(&'static str, &'static str)], cookie: String| {
            let mut request = team.http.post(format!("{}/replies", team.url)).header("cookie", cookie).form(&fields);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request
        };
    let body = format!("Hi {{contact}}, {{agent}} here: ticket {{ticket}} is refunded. {HOSTILE} {{unknown}}");
    let save = vec![
        ("csrf", ana.csrf.clone()),
        ("action", "save".into()),
        ("name", "Refund done".into()),
        ("body", body.clone()),
    ];
    // From another site, or without the form token: nothing saved.
    let forged =
        post(save.clone(), &[("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")], ana.cookie.clone());
    assert_eq!(forged.send().await.unwrap().status(), 403);
    let mut no_token = save.clone();
    no_token[0].1 = "wrong".into();
    let mut request = post(no_token, &[], ana.cookie.clone());
    for (name, value) in own {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 403);
    assert!(team.api("/api/replies").await["replies"].as_array().unwrap().is_empty());

    let mut request = post(save, &[], ana.cookie.clone());
    for (name, value) in own {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 303);
    let page = team.page("/replies?q=refunded", &ana.cookie).await;
    assert!(page.contains("Refund done") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(!page.contains(HOSTILE), "{page}");
    assert!(team.page("/replies?q=nothing-like-it", &ana.cookie).await.contains("0 saved replies"));

    // The reply form offers it filled for this ticket and this person; sending the pick sends the filled text.
    let ticket_page = team.page("/tickets/t-saved", &ana.cookie).await;
    assert!(ticket_page.contains("Hi pontatot, ana here: ticket t-saved is refunded. &lt;script&gt;"), "{ticket_page}");
    let (team_ref, ana_ref) = (&team, &ana);
    let act = |fields: Vec<(&'static str, String)>| async move {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        team_ref.act("t-saved", &ana_ref.cookie, &fields, &own).await.status()
    };
    let reply = |saved: &str, text: &str| {
        vec![("csrf", ana.csrf.clone()), ("action", "comment".into()), ("saved", saved.into()), ("body", text.into())]
    };
    assert_eq!(act(reply("Refund done", "my own words too")).await, 400, "one text or the other");
    assert_eq!(act(reply("No such reply", "")).await, 404);
    assert_eq!(act(reply("refund DONE", "")).await, 303, "a name whatever its case");
    let sent = format!("Hi pontatot, ana here: ticket t-saved is refunded. {HOSTILE} {{unknown}}");
    wait_until("the saved reply on the ticket", || async {
        !events_of(&team, "t-saved", "commented").await.is_empty()
    })
    .await;
    assert_eq!(events_of(&team, "t-saved", "commented").await[0]["body"], json!(sent));

    // The API keeps them too, and a command names one; the CLI sends one with --saved.
    let api = |method: reqwest::Method, path: &str| {
        team.http.request(method, format!("{}{path}", team.url)).bearer_auth(&team.api_token)
    };
    let put = api(reqwest::Method::PUT, "/api/replies/Thanks")
        .json(&json!({"body": "Thanks, {contact}!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let edit = api(reqwest::Method::PUT, "/api/replies/thanks")
        .json(&json!({"body": "Thank you, {contact}!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200);
    let empty = api(reqwest::Method::PUT, "/api/replies/x").json(&json!({"body": "  "})).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    let listed = team.api("/api/replies?q=thank").await;
    assert_eq!(listed["replies"].as_array().unwrap().len(), 1, "{listed}");
    let command = api(reqwest::Method::POST, "/api/tickets/t-saved/commands")
        .json(&json!({"action": "comment", "saved": "Thanks", "internal": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(command.status(), 200);
    let output = crate::util::franz(team.data.path(), Some(&team.harness))
        .env("FRANZ_DATA_DIR", team.data.path())
        .args(["tickets", "comment", "t-saved", "--saved", "thanks"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let comments = events_of(&team, "t-saved", "commented").await;
    assert_eq!(comments.len(), 3, "{comments:?}");
    assert_eq!((&comments[1]["body"], &comments[1]["internal"]), (&json!("Thank you, pontatot!"), &json!(true)));
    assert_eq!((&comments[2]["body"], &comments[2]["internal"]), (&json!("Thank you, pontatot!"), &json!(false)));
    let deleted = api(reqwest::Method::DELETE, "/api/replies/THANKS").send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(api(reqwest::Method::DELETE, "/api/replies/THANKS").send().await.unwrap().status(), 404);
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cards_close_offers_the_saved_replies_that_fit_as_its_reason() {
    use crate::kummerkasten_staff::{Team, ana, answer, button, events_of, submit, told};
    let team = Team::start(1).await;
    let (harness, discord) = (&team.harness, &team.discord);
    let staff = franz::people::Staff::open(&franz::people::dir(&team.config)).unwrap();
    staff.save_reply("Fixed", "Fixed for you, {contact}. ({agent}) <@1>", "bo").unwrap();
    staff.save_reply("Too long for a reason", &"x".repeat(600), "bo").unwrap();
    let posted = submit(discord, "printer on fire").await;

    let close = discord.press(&ana(discord), &posted, &button(&posted, "Close"));
    let offer = answer(discord, &close, Endpoint::Callback).await;
    assert_eq!((&offer.body["type"], &offer.body["data"]["flags"]), (&json!(4), &json!(64)), "{:?}", offer.body);
    let menu = &offer.body["data"]["components"][0]["components"][0];
    let options: Vec<&str> = menu["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert_eq!(options, ["Fixed"], "only what fits a reason: {menu}");
    let own = offer.body["data"]["components"][1]["components"][0]["custom_id"].as_str().unwrap().to_owned();
    let message = discord.response_message(&close).expect("the offer is a message");

    // "Write a reason" opens the form as before.
    let write = discord.press(&ana(discord), &message, &own);
    assert_eq!(answer(discord, &write, Endpoint::Callback).await.body["type"], json!(9));

    let pick = discord.select(&ana(discord), &message, menu["custom_id"].as_str().unwrap(), &["Fixed"]);
    let said = told(discord, &pick).await;
    assert!(said.starts_with("Closed, with the reason: Fixed for you, pontatot"), "{said}");
    let closed = events_of(harness, "closed", 1).await.remove(0);
    assert_eq!(closed["reason"], json!("Fixed for you, pontatot. (ana) <@1>"), "filled for the ticket and the presser");
    drop(team);
}

// Attacks on saved replies: each test below failed before its fix.

/// The browser's headers of a form posted from the desk's own page.
fn own_page(team: &Team) -> [(&'static str, String); 2] {
    [("origin", team.url.clone()), ("sec-fetch-site", "same-origin".to_owned())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_longer_than_any_saved_reply_is_an_empty_answer_not_a_server_error() {
    let team = Team::start().await;
    team.staff().save_reply("Refund", "Refunded, {contact}.", "bo").unwrap();
    let ana = team.sign_in("ana").await;
    // Longer than SQLite's LIKE takes (50,000 bytes): no saved reply can contain it.
    let long = "a".repeat(50_001);
    let api =
        team.http.get(format!("{}/api/replies?q={long}", team.url)).bearer_auth(&team.api_token).send().await.unwrap();
    assert_eq!(api.status(), 200, "{}", api.text().await.unwrap());
    assert_eq!(api.json::<Value>().await.unwrap()["replies"], json!([]));
    let page = team.get(&format!("/replies?q={long}"), &ana.cookie).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("0 saved replies"));
    assert_eq!(team.api("/api/replies?q=refund").await["replies"].as_array().unwrap().len(), 1);
    team.stop().await;
}

#[test]
fn saved_reply_names_are_one_whatever_their_case_beyond_ascii() {
    let dir = tempfile::tempdir().unwrap();
    let staff = franz::people::Staff::open(dir.path()).unwrap();
    assert!(staff.save_reply("Ärger", "Sorry for the trouble.", "ana").unwrap());
    // README: "names are unique whatever their case": this is an edit of Ärger, not a second reply.
    assert!(!staff.save_reply("ärger", "Sorry for the trouble, {contact}.", "bo").unwrap(), "an edit");
    let names = |search: &str| staff.saved_replies(search).unwrap().into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(names(""), ["Ärger"]);
    let found = staff.saved_reply("ÄRGER").unwrap().expect("found whatever its case");
    assert_eq!((found.name.as_str(), found.body.as_str()), ("Ärger", "Sorry for the trouble, {contact}."));
    assert_eq!(names("ärg"), ["Ärger"], "a search whatever its case");
    assert_eq!(names("TROUBLE"), ["Ärger"]);
    assert!(staff.delete_reply("äRGER").unwrap());
    assert!(names("").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_reply_the_pages_form_allows_is_saved_its_line_breaks_counted_as_typed() {
    let team = Team::start().await;
    let ana = team.sign_in("ana").await;
    // 4,000 characters as typed (the textarea's maxlength), 50 of them line breaks, which a browser sends as CRLF.
    let typed = vec!["x".repeat(79); 50].join("\n") + "x";
    assert_eq!(typed.chars().count(), 4000);
    let sent = typed.replace('\n', "\r\n");
    let fields = [("csrf", ana.csrf.as_str()), ("action", "save"), ("name", "Steps"), ("body", sent.as_str())];
    let mut request = team.http.post(format!("{}/replies", team.url)).header("cookie", &ana.cookie).form(&fields);
    for (name, value) in own_page(&team) {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let saved = team.staff().saved_reply("Steps").unwrap().expect("saved");
    assert_eq!(saved.body, typed, "kept with the line breaks as typed");
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_reply_with_line_breaks_picked_in_the_reply_form_is_sent() {
    let team = Team::start().await;
    team.publish(&[discord_ticket("t-steps", "how do I")]).await;
    let ana = team.sign_in("ana").await;
    // 3,990 characters with 20 line breaks: it fits a comment, and the API sends it as it is.
    let steps = vec!["y".repeat(189); 20].join("\n") + &"y".repeat(3990 - 189 * 20 - 19);
    assert_eq!(steps.chars().count(), 3990);
    team.staff().save_reply("Steps", &steps, "bo").unwrap();
    let page = team.page("/tickets/t-steps", &ana.cookie).await;
    assert!(page.contains(&format!("data-text=\"{steps}\"")), "the pick fills the box with it");
    // The script puts it in the text box; the browser sends the box's line breaks as CRLF.
    let body = steps.replace('\n', "\r\n");
    let fields = [("csrf", ana.csrf.as_str()), ("action", "comment"), ("saved", ""), ("body", body.as_str())];
    let own = own_page(&team);
    let own: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = team.act("t-steps", &ana.cookie, &fields, &own).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    wait_until("the reply on the ticket", || async { !events_of(&team, "t-steps", "commented").await.is_empty() })
        .await;
    assert_eq!(events_of(&team, "t-steps", "commented").await[0]["body"], json!(steps));
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_reply_over_the_bound_once_filled_is_refused_before_it_is_sent() {
    let team = Team::start().await;
    let id = "t-a-ticket-with-a-rather-long-id";
    team.publish(&[discord_ticket(id, "where is my order")]).await;
    let ana = team.sign_in("ana").await;
    // 3,600 characters saved; 32 × 450 = 14,400 once {ticket} is filled for this ticket.
    team.staff().save_reply("Ids", &"{ticket}".repeat(450), "bo").unwrap();
    let own = own_page(&team);
    let own: Vec<(&str, &str)> = own.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Without script, the pick itself is sent from the form (its command id the page's).
    let pick = [("csrf", ana.csrf.as_str()), ("action", "comment"), ("command_id", "form-1"), ("saved", "Ids")];
    let refused = team.act(id, &ana.cookie, &pick, &own).await;
    assert_eq!(refused.status(), 400, "refused by the desk, with why");
    assert!(refused.text().await.unwrap().contains("4000"));
    // The same form, sent again with the person's own words (browser back, pick undone): the reply goes.
    let own_words =
        [("csrf", ana.csrf.as_str()), ("action", "comment"), ("command_id", "form-1"), ("body", "In my own words")];
    let sent = team.act(id, &ana.cookie, &own_words, &own).await;
    assert_eq!(sent.status(), 303, "{}", sent.text().await.unwrap());
    wait_until("the reply on the ticket", || async { !events_of(&team, id, "commented").await.is_empty() }).await;
    assert_eq!(events_of(&team, id, "commented").await[0]["body"], json!("In my own words"));
    // The API: a 400 that says why, nothing on the ticket's history.
    let command = team
        .http
        .post(format!("{}/api/tickets/{id}/commands", team.url))
        .bearer_auth(&team.api_token)
        .json(&json!({"action": "close", "saved": "Ids"}))
        .send()
        .await
        .unwrap();
    assert_eq!(command.status(), 400);
    assert!(events_of(&team, id, "rejected").await.is_empty(), "nothing refused on the history");
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_saved_in_a_command_is_no_saved_reply_as_in_the_reply_form() {
    let team = Team::start().await;
    team.publish(&[discord_ticket("t-blank", "hello")]).await;
    // A client that always sends the key, empty when its person typed their own words.
    let command = team
        .http
        .post(format!("{}/api/tickets/t-blank/commands", team.url))
        .bearer_auth(&team.api_token)
        .json(&json!({"action": "comment", "saved": " ", "body": "My own words"}))
        .send()
        .await
        .unwrap();
    assert_eq!(command.status(), 200, "{}", command.text().await.unwrap());
    wait_until("the reply on the ticket", || async { !events_of(&team, "t-blank", "commented").await.is_empty() })
        .await;
    assert_eq!(events_of(&team, "t-blank", "commented").await[0]["body"], json!("My own words"));
    team.stop().await;
}
