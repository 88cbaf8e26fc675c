//! The web desk over plain HTTP, as a browser's requests and an attacker's: sign-in and its cookie, sessions that
//! end, forms refused from another site or without the session's token, hostile ticket text escaped on every
//! page, the security headers, and the live stream. The browser itself is in `browser.rs`.

use std::time::Duration;

use franz::config::{BrokerKind, Config, Service};
use franz::desk::staff::Staff;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::util::{Harness, Started, wait_until};

/// A running franz (aufbereitung, akte and the desk) for a team, with its staff list.
pub struct Team {
    // Dropped first: franz stops while its broker still runs.
    running: Started,
    pub harness: Harness,
    pub data: tempfile::TempDir,
    pub url: String,
    /// A client that shows redirects instead of following them.
    pub http: reqwest::Client,
    api_token: String,
}

/// A browser's session as plain requests: its cookie and its form token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl Team {
    pub async fn start() -> Team {
        let harness = Harness::new(1).await;
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("franz.toml"), "").unwrap();
        let config = Config {
            broker: BrokerKind::External,
            bootstrap: harness.bootstrap.clone(),
            data_dir: data.path().to_path_buf(),
            partitions: harness.partitions,
            services: vec![Service::Aufbereitung, Service::Akte, Service::Desk],
            topics: harness.topics.clone(),
            desk: franz::config::Desk { listen: "127.0.0.1:0".parse().unwrap(), public_url: None },
            ..Config::default()
        };
        let running = Started::start(&config).await;
        let url = format!("http://{}", running.desk.expect("the desk runs"));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let api_token = Staff::open(&data.path().join("desk")).unwrap().add("api-reader").unwrap().0;
        Team { running, harness, data, url, http, api_token }
    }

    pub fn staff(&self) -> Staff {
        Staff::open(&self.data.path().join("desk")).unwrap()
    }

    /// Adds `name` to the staff and returns their sign-in link.
    pub fn link(&self, name: &str) -> String {
        let staff = self.staff();
        staff.add(name).unwrap();
        franz::desk::sign_in_link(&self.url, &staff.link(name).unwrap())
    }

    /// Signs `name` in with plain requests.
    pub async fn sign_in(&self, name: &str) -> Session {
        let response = self.http.get(self.link(name)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let cookie = session_cookie(response.headers()).expect("the sign-in sets the session cookie");
        let board = self.page("/", &cookie).await;
        let csrf = board.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
        Session { cookie, csrf: csrf.to_owned() }
    }

    /// A page's HTML for a signed-in browser.
    pub async fn page(&self, path: &str, cookie: &str) -> String {
        let response = self.get(path, cookie).await;
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }

    pub async fn get(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.url)).header("cookie", cookie).send().await.unwrap()
    }

    /// Submits a ticket with `franz ticket`, as a person at a terminal would, and returns its id once the desk
    /// shows it.
    pub async fn submit(&self, user: &str, text: &str) -> String {
        let output = crate::util::franz(self.data.path(), Some(&self.harness))
            .args(["ticket", "--bootstrap", &self.harness.bootstrap, "--user", user, text])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        self.wait_for_ticket(&id).await;
        id
    }

    /// Publishes normalized tickets straight to the tickets topic (as aufbereitung would) and waits for them.
    pub async fn publish(&self, tickets: &[franz::schema::Ticket]) {
        let records: Vec<(i32, Vec<u8>)> = tickets.iter().map(|t| (0, serde_json::to_vec(t).unwrap())).collect();
        self.harness.produce(&self.harness.topics.tickets, &records).await;
        for ticket in tickets {
            self.wait_for_ticket(&ticket.id).await;
        }
    }

    pub async fn wait_for_ticket(&self, id: &str) {
        wait_until(&format!("ticket {id} in the desk"), || async {
            self.http
                .get(format!("{}/api/tickets/{id}", self.url))
                .bearer_auth(&self.api_token)
                .send()
                .await
                .unwrap()
                .status()
                == 200
        })
        .await;
    }

    /// A JSON API answer, read with a staff token.
    pub async fn api(&self, path: &str) -> Value {
        let response = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.api_token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// Posts a ticket page's form.
    pub async fn act(
        &self,
        id: &str,
        cookie: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.http.post(format!("{}/tickets/{id}", self.url)).header("cookie", cookie).form(fields);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    pub async fn stop(self) {
        self.running.stop().await.expect("franz stops cleanly");
    }
}

/// The `name=value` of the session cookie a response sets.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("franz_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

fn set_cookie(headers: &HeaderMap) -> String {
    headers.get(SET_COOKIE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_link_sets_a_strict_http_only_cookie_and_leaves_the_token_behind() {
    let team = Team::start().await;
    let link = team.link("ana");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let response = team.http.get(&link).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(response.headers());
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http on loopback: {cookie}");
    assert!(!cookie.contains(&token), "the cookie is a session id, not the token");
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"http-equiv="refresh" content="0; url=/""#), "{page}");
    assert!(!page.contains(&token), "the page does not repeat the token");
    let again = team.http.get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "a link works once (a browser's history keeps it)");

    let session = team.sign_in("bo").await;
    let board = team.page("/", &session.cookie).await;
    assert!(board.contains("Signed in as <strong><bdi>bo</bdi></strong>"), "{board}");
    for path in ["/", "/stats", "/problems"] {
        let page = team.page(path, &session.cookie).await;
        assert!(!page.contains(&token), "no token on {path}");
    }

    // Behind a TLS proxy the cookie is Secure.
    let proxied = team.http.get(team.link("cy")).header("x-forwarded-proto", "https").send().await.unwrap();
    let secure = set_cookie(proxied.headers());
    assert!(secure.starts_with("__Host-franz_session=") && secure.contains("; Secure"), "{secure}");
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_has_a_strict_content_security_policy_and_no_inline_script() {
    let team = Team::start().await;
    let session = team.sign_in("ana").await;
    let id = team.submit("pontatot", "the printer is on fire").await;
    for path in ["/", &format!("/tickets/{id}"), "/stats", "/problems", "/signin"] {
        let response = team.get(path, &session.cookie).await;
        let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let page = response.text().await.unwrap();
        // Script only from the desk's file: no inline <script> body, no inline handlers, no inline style.
        assert_eq!(
            page.matches("<script").count(),
            page.matches(r#"<script src="/assets/desk.js" defer></script>"#).count(),
            "{path}"
        );
        assert!(!page.contains(" onclick=") && !page.contains(" style="), "{path}");
    }
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_without_a_live_session_lead_to_a_page_that_says_how_to_get_a_new_link() {
    let team = Team::start().await;
    let none = team.http.get(format!("{}/", team.url)).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::SEE_OTHER);
    assert_eq!(none.headers()[LOCATION], "/signin");
    let refused = team.http.get(format!("{}/signin?token=franz_guess", team.url)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.text().await.unwrap().contains("franz staff link YOUR-NAME"));

    let ana = team.sign_in("ana").await;
    let bo = team.sign_in("bo").await;
    // A second session cookie, as a page on another port of this host could plant one: neither is trusted.
    let planted = team.get("/", &format!("{}; {}", bo.cookie, ana.cookie)).await;
    assert_eq!(planted.status(), StatusCode::BAD_REQUEST);
    assert!(planted.text().await.unwrap().contains("more than one franz session"));
    team.staff().remove("bo").unwrap();
    let removed = team.get("/", &bo.cookie).await;
    assert_eq!(
        (removed.status(), &removed.headers()[LOCATION]),
        (StatusCode::SEE_OTHER, &"/signin?ended=1".parse().unwrap())
    );
    assert!(set_cookie(removed.headers()).contains("Max-Age=0"), "the dead cookie is cleared");
    let explained = team.http.get(format!("{}/signin?ended=1", team.url)).send().await.unwrap().text().await.unwrap();
    assert!(explained.contains("You are signed out") && explained.contains("franz staff add"), "{explained}");

    // Signing out ends the session on the server, not only in the browser.
    let out = team
        .http
        .post(format!("{}/signout", team.url))
        .header("cookie", &ana.cookie)
        .form(&[("csrf", ana.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(team.get("/", &ana.cookie).await.status(), StatusCode::SEE_OTHER);
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_from_another_site_or_without_the_session_token_changes_nothing() {
    let team = Team::start().await;
    let id = team.submit("pontatot", "please reset my password").await;
    let ana = team.sign_in("ana").await;
    let commands = team.harness.count(&team.harness.topics.commands).await;
    let claim = [("csrf", ana.csrf.as_str()), ("action", "claim")];

    let unsigned = team.http.post(format!("{}/tickets/{id}", team.url)).form(&claim).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::SEE_OTHER, "no session: to the sign-in page");
    let elsewhere = team.act(&id, &ana.cookie, &claim, &[("origin", "https://evil.example")]).await;
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    let null_origin = team.act(&id, &ana.cookie, &claim, &[("origin", "null")]).await;
    assert_eq!(null_origin.status(), StatusCode::FORBIDDEN);
    let cross_site = team.act(&id, &ana.cookie, &claim, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let same_site = team.act(&id, &ana.cookie, &claim, &[("sec-fetch-site", "same-site")]).await;
    assert_eq!(same_site.status(), StatusCode::FORBIDDEN, "a sibling subdomain is another site to the desk");
    let no_token = team.act(&id, &ana.cookie, &[("action", "claim")], &[]).await;
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let wrong_token = team.act(&id, &ana.cookie, &[("csrf", "franz_guess"), ("action", "claim")], &[]).await;
    assert_eq!(wrong_token.status(), StatusCode::FORBIDDEN);
    let bo = team.sign_in("bo").await;
    let borrowed = team.act(&id, &ana.cookie, &[("csrf", bo.csrf.as_str()), ("action", "claim")], &[]).await;
    assert_eq!(borrowed.status(), StatusCode::FORBIDDEN, "another session's token does not fit");
    let out = team.http.post(format!("{}/signout", team.url)).header("cookie", &ana.cookie).form(&[("csrf", "x")]);
    assert_eq!(out.send().await.unwrap().status(), StatusCode::FORBIDDEN, "not even signing out");
    assert_eq!(team.harness.count(&team.harness.topics.commands).await, commands, "no command was sent");
    assert_eq!(team.api(&format!("/api/tickets/{id}")).await["ticket"]["status"], "open");

    let own = team.url.clone();
    let done = team.act(&id, &ana.cookie, &claim, &[("origin", own.as_str()), ("sec-fetch-site", "same-origin")]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let answer = done.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(answer.starts_with(&format!("/tickets/{id}?answer=")), "{answer}");
    let page = team.page(&answer, &ana.cookie).await;
    assert!(page.contains("Done: <bdi>ana</bdi> claimed it."), "{page}");
    assert_eq!(team.api(&format!("/api/tickets/{id}")).await["ticket"]["assignee"], "ana");

    let second = team.act(&id, &bo.cookie, &[("csrf", bo.csrf.as_str()), ("action", "claim")], &[]).await;
    let refused = team.page(second.headers()[LOCATION].to_str().unwrap(), &bo.cookie).await;
    assert!(refused.contains("Refused: already claimed by ana"), "{refused}");
    team.stop().await;
}

/// Text that would run script, load an image, link to script, or ping everyone, if a page trusted it.
pub const HOSTILE: &str = "<script>window.pwned='script'</script> <img src=x onerror=\"window.pwned='img'\"> \
    <a href=\"javascript:window.pwned='link'\">click</a> [md](javascript:alert(1)) **bold** @everyone <@123>";

#[tokio::test(flavor = "multi_thread")]
async fn hostile_ticket_and_user_text_is_escaped_on_every_page() {
    let team = Team::start().await;
    let id = team.submit("<b onmouseover=alert(1)>mallory</b>", HOSTILE).await;
    let ana = team.sign_in("ana").await;
    let fields =
        [("csrf", ana.csrf.as_str()), ("action", "comment"), ("body", "<script>window.pwned='comment'</script>")];
    assert_eq!(team.act(&id, &ana.cookie, &fields, &[]).await.status(), StatusCode::SEE_OTHER);
    let label = [("csrf", ana.csrf.as_str()), ("action", "add_label"), ("label", "<i>x</i>")];
    assert_eq!(team.act(&id, &ana.cookie, &label, &[]).await.status(), StatusCode::SEE_OTHER);
    // A record no one can parse becomes a dead letter, and the problems page shows it.
    team.harness.produce(&team.harness.topics.intake, &[(0, b"<script>window.pwned='dlq'</script>".to_vec())]).await;
    wait_until("the dead letter on the problems page", || async {
        team.page("/problems", &ana.cookie).await.contains("dead letter")
    })
    .await;
    let problems = team.page("/problems", &ana.cookie).await;
    let detail = problems.split("href=\"/problems/").nth(1).unwrap().split('"').next().unwrap();

    for path in [
        "/".to_owned(),
        format!("/tickets/{id}"),
        "/?q=script".to_owned(),
        "/stats".to_owned(),
        "/problems".to_owned(),
        format!("/problems/{detail}"),
    ] {
        let page = team.page(&path, &ana.cookie).await;
        for raw in ["<script>window", "<img src=x", "<a href=\"javascript", "<b onmouseover", "<i>x</i>"] {
            assert!(!page.contains(raw), "{path} carries {raw} unescaped:\n{page}");
        }
    }
    let ticket = team.page(&format!("/tickets/{id}"), &ana.cookie).await;
    assert!(ticket.contains("&lt;script&gt;window.pwned='script'&lt;/script&gt;"), "shown as text: {ticket}");
    assert!(ticket.contains("&lt;b onmouseover=alert(1)&gt;mallory&lt;/b&gt;"));
    assert!(ticket.contains("@everyone"), "mentions are plain text on the desk");
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_page_hears_of_a_new_ticket_on_the_live_stream() {
    let team = Team::start().await;
    let ana = team.sign_in("ana").await;
    let unsigned = team.http.get(format!("{}/live", team.url)).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::SEE_OTHER, "the stream needs a session");
    let mut live = team.get("/live", &ana.cookie).await;
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    team.submit("pontatot", "a new ticket").await;
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = String::new();
        while let Some(chunk) = live.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: change") {
                return seen;
            }
        }
        seen
    })
    .await
    .expect("a change event within 10 s");
    assert!(heard.contains("event: change"), "{heard}");
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_board_filters_searches_and_pages_and_refuses_unknown_filters_clearly() {
    let team = Team::start().await;
    let ana = team.sign_in("ana").await;
    let tickets: Vec<franz::schema::Ticket> = (0..55)
        .map(|n| franz::schema::Ticket {
            id: format!("ticket-{n:02}"),
            contact: "pontatot".into(),
            origin: "Discord".into(),
            body: format!("ticket {n} about {}", if n % 2 == 0 { "printers" } else { "mail" }),
            date: "2026-12-01T08:00:00.000Z".into(),
            contact_id: None,
        })
        .collect();
    team.publish(&tickets).await;
    let ids: Vec<String> = tickets.iter().map(|t| t.id.clone()).collect();
    let first = team.page("/", &ana.cookie).await;
    assert!(first.contains("(55 open) Board"), "the title counts the open tickets");
    assert_eq!(first.matches("<tr><td class=\"subject\">").count(), 50);
    let older = first.split("rel=\"next\" href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    let second = team.page(&older, &ana.cookie).await;
    assert_eq!(second.matches("<tr><td class=\"subject\">").count(), 5);
    assert!(second.contains("ticket 0 about printers"));
    let printers = team.page("/?q=printers", &ana.cookie).await;
    assert_eq!(printers.matches("<tr><td class=\"subject\">").count(), 28);
    assert!(!printers.contains("about mail"));

    let claim = [("csrf", ana.csrf.as_str()), ("action", "claim")];
    team.act(&ids[3], &ana.cookie, &claim, &[]).await;
    let mine = team.page("/?mine=1", &ana.cookie).await;
    assert_eq!(mine.matches("<tr><td class=\"subject\">").count(), 1);
    assert!(mine.contains("ticket 3 about mail"));
    let claimed = team.page("/?status=claimed&q=mail", &ana.cookie).await;
    assert_eq!(claimed.matches("<tr><td class=\"subject\">").count(), 1);
    assert!(team.page("/?unassigned=1&status=claimed", &ana.cookie).await.contains("No tickets match."));

    let bad = team.get("/?status=sleeping", &ana.cookie).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("status is open, claimed or closed"));
    let forged = team.get("/?cursor=nonsense", &ana.cookie).await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert_eq!(team.get("/tickets/no-such-ticket", &ana.cookie).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(team.get("/nowhere", &ana.cookie).await.status(), StatusCode::NOT_FOUND);
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_the_answers_is_dropped_and_others_are_still_served() {
    use tokio::io::AsyncWriteExt as _;
    let team = Team::start().await;
    let address = team.url.trim_start_matches("http://").to_owned();
    // Pipelined requests whose answers are never read: once the socket buffers are full, the desk's writes stall,
    // it stops reading, and this client's writes block, until the desk drops the connection.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let requests = format!("GET /assets/desk.css HTTP/1.1\r\nHost: {address}\r\n\r\n").repeat(1_000);
    let limit = franz::desk::WRITE_STALL + Duration::from_secs(30);
    let outcome = tokio::time::timeout(limit, async {
        loop {
            if let Err(error) = stream.write_all(requests.as_bytes()).await {
                return error;
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the desk still holds a connection whose client has not read for {limit:?}");
    let served = team.http.get(format!("{}/signin", team.url)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_stream_ends_when_its_person_is_removed_and_one_person_cannot_open_endless_streams() {
    let team = Team::start().await;
    let bo = team.sign_in("bo").await;
    let mut live = team.get("/live", &bo.cookie).await;
    assert_eq!(live.status(), StatusCode::OK);
    let mut others = Vec::new();
    for _ in 1..franz::desk::web::LIVE_PER_SESSION {
        others.push(team.get("/live", &bo.cookie).await);
    }
    let refused = team.get("/live", &bo.cookie).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().await.unwrap().contains("close some tabs"));
    drop(others);

    team.staff().remove("bo").unwrap();
    let ended =
        tokio::time::timeout(Duration::from_secs(60), async { while let Ok(Some(_)) = live.chunk().await {} }).await;
    assert!(ended.is_ok(), "the stream of a removed person ends");
    team.stop().await;
}
