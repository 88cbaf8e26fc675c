//! The web desk in a real browser: Debian's Chromium, driven over WebDriver by chromedriver (both installed by
//! `scripts/install-chromium.sh`). A team signs in with printed links (opening one shows a button; pressing it signs
//! in), sees a ticket submitted with `franz ticket`
//! arrive without a reload, works it from arrival to close while a second browser sees each change live (a
//! submitter's answer too), filters,
//! reads the numbers, signs out, and is refused once removed. Hostile ticket text is checked where it matters: no
//! script of it runs in the browser. Screenshots of the board, a ticket and the numbers go to
//! `target/desk-screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::util::PATIENCE;
use crate::web::{HOSTILE, Team};

/// A chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: run scripts/install-chromium.sh (Debian's chromium and chromium-driver)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }

    /// A new headless browser with an empty profile.
    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                // No sandbox as root; no calls to Google's services, which this network refuses.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--window-size=1280,900"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector).capabilities(capabilities).connect(&self.url).await.expect("chromium starts")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `script` (a function body returning a boolean) holds in `browser`.
async fn eventually(browser: &Client, what: &str, script: &str) {
    let started = Instant::now();
    loop {
        if browser.execute(script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        if started.elapsed() > PATIENCE {
            let url = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let page = browser.execute("return document.body.innerText;", vec![]).await.unwrap_or_default();
            panic!("timed out after {PATIENCE:?} waiting for {what}; the browser is at {url} and shows:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the element at `css` contains `text`.
async fn shows(browser: &Client, css: &str, text: &str) {
    let script = format!(
        "const e = document.querySelector({}); return !!e && e.textContent.includes({});",
        json!(css),
        json!(text)
    );
    eventually(browser, &format!("{css} to show {text:?}"), &script).await;
}

/// The text of the element `css` now, read in one step in the page: a live update may replace the element at any
/// moment, and a found element that was replaced before its text is read is stale.
async fn text(browser: &Client, css: &str) -> String {
    let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
    let value = browser.execute(script, vec![json!(css)]).await.unwrap();
    value.as_str().unwrap_or_else(|| panic!("no element {css} on the page")).to_owned()
}

/// Marks the page, to prove later that it was not reloaded.
async fn mark(browser: &Client) {
    browser.execute("window.franzMark = 'still here'; return true;", vec![]).await.unwrap();
}

async fn not_reloaded(browser: &Client) -> bool {
    browser.execute("return window.franzMark === 'still here';", vec![]).await.unwrap() == Value::Bool(true)
}

/// Fills the fields of the ticket page's form for `action` and sends it; waits for the answer.
async fn act(browser: &Client, action: &str, fields: &[(&str, &str)]) {
    let form = browser.find(Locator::Css(&format!("form[data-action={action}]"))).await.unwrap();
    for (name, value) in fields {
        form.find(Locator::Css(&format!("[name={name}]"))).await.unwrap().send_keys(value).await.unwrap();
    }
    form.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
    eventually(browser, "the answer to the form", "return !!document.getElementById('answer');").await;
}

/// Opens a sign-in link and presses its button, as a person does; the link alone does not sign in (a chat app's
/// preview opens it too).
async fn sign_in(browser: &Client, link: &str) {
    browser.goto(link).await.unwrap();
    let button = browser.find(Locator::Css("form[action='/signin'] button")).await.unwrap();
    let signed_in = browser.execute("return !!document.querySelector('header.top');", vec![]).await.unwrap();
    assert_eq!(signed_in, Value::Bool(false), "opening the link alone does not sign in");
    button.click().await.unwrap();
    eventually(browser, "the board after signing in", "return !!document.querySelector('form.signout');").await;
}

async fn screenshot(browser: &Client, name: &str) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("desk-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_team_works_a_ticket_from_arrival_to_close_in_the_browser_and_a_second_browser_sees_each_change_live() {
    let team = Team::start().await;
    let driver = Driver::start().await;
    let ana = driver.browser().await;
    let bo = driver.browser().await;

    // Sign in with the printed links and their buttons; the address bar no longer holds the token.
    sign_in(&ana, &team.link("ana")).await;
    shows(&ana, "header", "Signed in as ana").await;
    assert_eq!(ana.current_url().await.unwrap().as_str(), format!("{}/", team.url));
    sign_in(&bo, &team.link("bo")).await;
    shows(&bo, "header", "Signed in as bo").await;
    eventually(&ana, "the live stream", "return document.body.dataset.connected === 'true';").await;
    eventually(&bo, "the live stream", "return document.body.dataset.connected === 'true';").await;
    mark(&ana).await;

    // A ticket submitted at a terminal appears on the open board, and the tab title counts it.
    let id = team.submit("pontatot", "The printer on floor 3 is on fire\nIt smells of toner.").await;
    shows(&ana, "#tickets", "The printer on floor 3 is on fire").await;
    assert!(not_reloaded(&ana).await, "the board updated without a reload");
    eventually(&ana, "the open count in the title", "return document.title.startsWith('(1 open)');").await;

    // ana works the ticket; bo, on the same ticket's page, sees every step.
    ana.find(Locator::LinkText("The printer on floor 3 is on fire")).await.unwrap().click().await.unwrap();
    shows(&ana, "#ticket", "It smells of toner.").await;
    shows(&ana, "#ticket", "pontatot").await;
    bo.goto(&format!("{}/tickets/{id}", team.url)).await.unwrap();
    act(&ana, "claim", &[]).await;
    shows(&ana, "#answer", "Done: ana claimed it.").await;
    shows(&bo, "#timeline", "claimed it").await;
    shows(&bo, "#ticket", "held by ana").await;

    // bo's claim is refused with the reason, and nothing changes.
    act(&bo, "claim", &[]).await;
    shows(&bo, "#answer", "Refused: already claimed by ana").await;
    eventually(&bo, "the live stream", "return document.body.dataset.connected === 'true';").await;
    mark(&bo).await;

    act(&ana, "comment", &[("body", "We sent a technician.")]).await;
    shows(&bo, "#timeline", "We sent a technician.").await;
    act(&ana, "set_priority", &[("priority", "urgent")]).await;
    shows(&bo, "#ticket", "urgent").await;
    act(&ana, "close", &[("reason", "fire is out")]).await;
    shows(&ana, "#answer", "Done: ana closed it: fire is out.").await;
    shows(&bo, "#ticket", "closed").await;
    shows(&bo, "#timeline", "closed it: fire is out").await;
    assert!(not_reloaded(&bo).await, "bo's page updated without a reload");

    // A conversation: the submitter's answer (in a Discord DM) appears live on the page bo has open.
    let discord_ticket = crate::web::discord_ticket("from-discord", "The scanner jams");
    team.publish(std::slice::from_ref(&discord_ticket)).await;
    bo.goto(&format!("{}/tickets/{}", team.url, discord_ticket.id)).await.unwrap();
    shows(&bo, "#reply-goes", "A reply goes to pontatot by Discord direct message.").await;
    eventually(&bo, "the live stream", "return document.body.dataset.connected === 'true';").await;
    mark(&bo).await;
    let submitter = crate::web::pontatot();
    let wrote = franz::schema::lifecycle::Action::Write {
        body: "It jams on page 2 only".into(),
        attachments: Vec::new(),
        via: franz::schema::lifecycle::Via::DiscordDm,
        message_id: None,
    };
    crate::web::command_as(&team, &discord_ticket.id, 1, submitter, wrote).await;
    shows(&bo, "#timeline", "It jams on page 2 only").await;
    shows(&bo, "#ticket", "submitter answered").await;
    assert!(not_reloaded(&bo).await, "the conversation updated without a reload");

    let timeline = text(&ana, "#timeline").await;
    for step in
        ["opened the ticket", "claimed it", "was refused (claim)", "replied", "set the priority to urgent", "closed it"]
    {
        assert!(timeline.contains(step), "{step} in {timeline}");
    }
    ana.goto(&format!("{}/tickets/{id}", team.url)).await.unwrap();
    screenshot(&ana, "ticket").await;

    // Filters and search, kept in the URL.
    team.submit("quinn", "Mail does not arrive").await;
    team.submit("rike", "Can I get access to the shared drive?").await;
    ana.goto(&format!("{}/", team.url)).await.unwrap();
    shows(&ana, "#tickets", "shared drive").await;
    screenshot(&ana, "board").await;
    ana.goto(&format!("{}/?status=closed", team.url)).await.unwrap();
    shows(&ana, "#tickets", "printer on floor 3").await;
    assert!(!text(&ana, "#tickets").await.contains("Mail does not arrive"));
    let search = ana.find(Locator::Css("input[name=q]")).await.unwrap();
    search.send_keys("mail").await.unwrap();
    ana.find(Locator::Css("select[name=status] option[value='']")).await.unwrap().click().await.unwrap();
    ana.find(Locator::Css("form.filters button")).await.unwrap().click().await.unwrap();
    shows(&ana, "#tickets", "Mail does not arrive").await;
    assert!(!text(&ana, "#tickets").await.contains("printer"));
    assert!(ana.current_url().await.unwrap().as_str().contains("q=mail"));

    // The numbers page shows what the API reports (its charts are counted in the background, and the open page
    // updates by itself once they are).
    ana.goto(&format!("{}/stats", team.url)).await.unwrap();
    let per_day = "return [...document.querySelectorAll('#per-day table td')].reduce((s, td) => s + Number(td.textContent), 0) === 4;";
    eventually(&ana, "the four tickets in the per-day chart", per_day).await;
    let stats = team.api("/api/stats").await;
    for status in ["open", "claimed", "waiting", "closed"] {
        assert_eq!(text(&ana, &format!("#count-{status}")).await, stats[status].to_string(), "{status}");
    }
    let api_per_day: u64 =
        stats["created_per_day"].as_array().unwrap().iter().map(|d| d["created"].as_u64().unwrap()).sum();
    assert_eq!(api_per_day, 4);
    shows(&ana, "#closers", "ana").await;
    screenshot(&ana, "stats").await;

    // Signing out ends ana's session; a removed bo is refused at once.
    ana.find(Locator::Css("form.signout button")).await.unwrap().click().await.unwrap();
    shows(&ana, "main", "You are signed out").await;
    ana.goto(&format!("{}/", team.url)).await.unwrap();
    shows(&ana, "main", "Open your personal sign-in link").await;
    team.staff().remove("bo").unwrap();
    bo.goto(&format!("{}/", team.url)).await.unwrap();
    shows(&bo, "main", "You are signed out").await;

    ana.close().await.unwrap();
    bo.close().await.unwrap();
    team.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_ticket_text_runs_no_script_in_the_browser() {
    let team = Team::start().await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let id = team.submit("<img src=x onerror=\"window.pwned='user'\">", HOSTILE).await;
    sign_in(&browser, &team.link("ana")).await;
    shows(&browser, "#tickets", "<script>window.pwned='script'</script>").await;
    browser.goto(&format!("{}/tickets/{id}", team.url)).await.unwrap();
    shows(&browser, "#ticket .body", "<img src=x onerror=").await;
    act(&browser, "comment", &[("body", "<img src=y onerror=\"window.pwned='comment'\">")]).await;
    shows(&browser, "#timeline", "<img src=y onerror=").await;
    // Give any injected image time to fail and run its handler, had it been an element.
    eventually(&browser, "the page to finish loading", "return document.readyState === 'complete';").await;
    let pwned =
        browser.execute("return window.pwned === undefined ? null : String(window.pwned);", vec![]).await.unwrap();
    assert_eq!(pwned, Value::Null, "no script from the ticket ran");
    let injected = browser
        .execute(
            "return document.querySelectorAll('.body *, .comment *, #ticket img, #timeline img, script:not([src])').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "the text made no elements");
    let links: Vec<Value> = browser
        .execute("return [...document.querySelectorAll('a')].map(a => a.getAttribute('href'));", vec![])
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert!(links.iter().all(|href| !href.as_str().unwrap_or("").starts_with("javascript")), "{links:?}");
    browser.close().await.unwrap();
    team.stop().await;
}

/// A transcript is a page of its own, kept or sent on and opened from a disk: Chromium runs none of the hostile
/// text in it and loads nothing at all (its policy lets in only its own stylesheet, which it applies).
#[tokio::test(flavor = "multi_thread")]
async fn a_transcript_opened_from_a_disk_runs_no_script_and_loads_nothing() {
    let team = Team::start().await;
    let id = team.submit("<img src=x onerror=\"window.pwned='user'\">", HOSTILE).await;
    let response = team
        .http
        .get(format!("{}/api/tickets/{id}/transcript?format=html", team.url))
        .bearer_auth(&team.api_token)
        .send()
        .await
        .unwrap();
    let page = response.text().await.unwrap();
    let file = team.data.path().join("transcript.html");
    std::fs::write(&file, &page).unwrap();

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("file://{}", file.display())).await.unwrap();
    eventually(&browser, "the transcript to load", "return document.readyState === 'complete';").await;
    shows(&browser, "article .text", "<script>window.pwned='script'</script>").await;
    let pwned =
        browser.execute("return window.pwned === undefined ? null : String(window.pwned);", vec![]).await.unwrap();
    assert_eq!(pwned, Value::Null, "no script from the ticket ran");
    let injected = browser.execute("return document.querySelectorAll('main img, main script, main a').length;", vec![]);
    assert_eq!(injected.await.unwrap(), json!(0), "the text made no elements");
    let loaded = browser.execute("return performance.getEntriesByType('resource').length;", vec![]).await.unwrap();
    assert_eq!(loaded, json!(0), "nothing was fetched");
    let styled = browser
        .execute("return getComputedStyle(document.querySelector('article')).borderLeftStyle;", vec![])
        .await
        .unwrap();
    assert_eq!(styled, json!("solid"), "its own stylesheet applies under its policy");
    browser.close().await.unwrap();
    team.stop().await;
}

/// #28: a closed ticket's submitter rates it on the feedback page in a browser without signing in; the page takes
/// one rating, and the hostile comment runs no script, neither there nor on the team's numbers page.
#[tokio::test(flavor = "multi_thread")]
async fn the_feedback_page_rates_once_without_signing_in_and_a_hostile_comment_runs_no_script() {
    let team = Team::start().await;
    let ticket = franz::schema::Ticket {
        contact: "kim@example.com".into(),
        contact_id: Some("kim@example.com".into()),
        origin: franz::schema::ORIGIN_EMAIL.into(),
        guild_id: None,
        channel_id: None,
        ..crate::web::discord_ticket("rated-in-browser", "my invoice")
    };
    team.publish(&[ticket]).await;
    let bo = team.sign_in("bo").await;
    let fields = [("action", "close"), ("reason", "refunded"), ("csrf", bo.csrf.as_str())];
    assert_eq!(team.act("rated-in-browser", &bo.cookie, &fields, &[("origin", &team.url)]).await.status(), 303);
    let token = franz::feedback::Key::in_dir(&team.data.path().join("desk")).unwrap().token("rated-in-browser");
    let link = format!("{}/feedback/{token}", team.url);
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&link).await.unwrap();
    eventually(&browser, "the feedback form", "return !!document.querySelector('form.feedback');").await;
    browser.find(Locator::Css("input[name=rating][value='4']")).await.unwrap().click().await.unwrap();
    let hostile = "<img src=x onerror=\"window.pwned='feedback'\"><script>window.pwned='script'</script>";
    browser.find(Locator::Css("textarea[name=comment]")).await.unwrap().send_keys(hostile).await.unwrap();
    browser.find(Locator::Css("form.feedback button")).await.unwrap().click().await.unwrap();
    shows(&browser, "main", "Thank you: your rating was recorded.").await;
    browser.goto(&link).await.unwrap();
    shows(&browser, "main", "Thank you: your rating was recorded.").await;
    let form = browser.execute("return !!document.querySelector('form.feedback');", vec![]).await.unwrap();
    assert_eq!(form, Value::Bool(false), "once rated, the page offers no second rating");

    sign_in(&browser, &team.link("ana")).await;
    browser.goto(&format!("{}/stats", team.url)).await.unwrap();
    shows(&browser, "#satisfaction", "<img src=x onerror=").await;
    eventually(&browser, "the page to finish loading", "return document.readyState === 'complete';").await;
    let pwned =
        browser.execute("return window.pwned === undefined ? null : String(window.pwned);", vec![]).await.unwrap();
    assert_eq!(pwned, Value::Null, "no script from the comment ran");
    let injected = browser
        .execute("return document.querySelectorAll('#satisfaction img, #satisfaction script').length;", vec![])
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "the comment made no elements");
    browser.close().await.unwrap();
    team.stop().await;
}
