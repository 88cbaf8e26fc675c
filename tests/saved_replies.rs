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
