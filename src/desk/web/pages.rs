//! The desk's pages as maud templates: the board, a ticket, the team's numbers, the problems, and the sign-in
//! pages. maud escapes every value it renders, so ticket and user text always arrives as text. Parts that change
//! while a page is open carry `data-live` and an id (`desk.js` swaps them).

use maud::{DOCTYPE, Markup, html};

use super::{BoardQuery, charts, path_segment};
use crate::desk::numbers::Counts;
use crate::desk::numbers::Snapshot;
use crate::desk::problems::{Kind, Problem};
use crate::lifecycle::TicketState;
use crate::lifecycle::calendar::Calendar;
use crate::people::Session;
use crate::schema::lifecycle::{Change, Delivery, Event, Person, Priority, Status};
use crate::store::query::{Durations, Page};

fn layout(title: &str, session: Option<&Session>, open: Option<u64>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { @if let Some(open) = open { "(" (open) " open) " } (title) " · franz" }
                link rel="stylesheet" href="/assets/desk.css";
                link rel="icon" href="/favicon.svg" type="image/svg+xml";
                script src="/assets/desk.js" defer {}
            }
            body data-live[session.is_some()] {
                @if let Some(session) = session {
                    header.top {
                        nav aria-label="Pages" {
                            a href="/" { "Board" }
                            a href="/replies" { "Saved replies" }
                            a href="/stats" { "Numbers" }
                            a href="/problems" { "Problems" }
                        }
                        form.signout method="post" action="/signout" {
                            span { "Signed in as " strong { bdi { (session.name) } } }
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

/// A page that says what went wrong.
pub fn error(status: axum::http::StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        title,
        None,
        None,
        html! {
            h1 { (title) }
            p.problem role="alert" { (message) }
            p { a href="/" { "Back to the board" } }
        },
    )
}

/// How to get a sign-in link; `ended` when a session just ended.
pub fn signed_out(ended: bool) -> Markup {
    layout(
        "Sign in",
        None,
        None,
        html! {
            h1 { "Sign in to the franz desk" }
            @if ended {
                p role="status" { "You are signed out: you signed out, someone removed you from the staff list, or a new \
                    link was made for you." }
            }
            p { "Open your personal sign-in link. Whoever runs franz makes one with" }
            pre { code { "franz staff link YOUR-NAME" } }
            p { "A link signs in one browser, once, within 7 days. (" code { "franz staff add YOUR-NAME" } " puts you on the staff list.)" }
        },
    )
}

/// The answer to a sign-in link that does not (or no longer) work.
pub fn link_refused() -> Markup {
    layout(
        "Sign-in link not valid",
        None,
        None,
        html! {
            h1 { "This sign-in link does not work" }
            p.problem role="alert" { "A link works once, within 7 days: this one was used already, expired, was \
                replaced by a newer link, or its person is no longer on the staff list." }
            p { "Ask whoever runs franz for a new one:" }
            pre { code { "franz staff link YOUR-NAME" } }
        },
    )
}

/// The page a sign-in link opens: a button that posts the link's code. Opening the page changes nothing, so a
/// link preview that fetches it leaves the link to its person.
pub fn sign_in(token: &str) -> Markup {
    layout(
        "Sign in",
        None,
        None,
        html! {
            h1 { "Sign in to the franz desk" }
            form method="post" action="/signin" {
                input type="hidden" name="token" value=(token);
                button type="submit" { "Sign in" }
            }
            p { "The link works once: this browser stays signed in for 30 days." }
        },
    )
}

/// The team's saved replies (`/replies`): a search, a form for a new one, and each with its text to edit or delete.
pub fn saved_replies(
    session: &Session,
    replies: &[crate::people::saved::SavedReply],
    search: &str,
    counts: Counts,
) -> Markup {
    let (open, ..) = counts;
    let save = |name: Option<&str>, body: &str| {
        html! {
            form.saved method="post" action="/replies" {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="action" value="save";
                @match name {
                    Some(name) => { input type="hidden" name="name" value=(name); }
                    None => { label { "Name " input name="name" required maxlength="64" placeholder="refund done"; } }
                }
                label { "Text" textarea name="body" required maxlength="4000" rows="4" { (body) } }
                button type="submit" { @if name.is_some() { "Save" } @else { "Add" } }
            }
        }
    };
    layout(
        "Saved replies",
        Some(session),
        Some(open),
        html! {
            h1 { "Saved replies" }
            p.note { "Replies the team sends often. " code { "{contact}" } " becomes the submitter's name, " code { "{ticket}" }
                " the ticket's id and " code { "{agent}" } " the name of whoever sends it. A ticket's reply form offers \
                them; " code { "franz tickets comment ID --saved NAME" } " sends one from the command line." }
            form.search method="get" action="/replies" {
                label { "Search " input type="search" name="q" value=(search); }
                button type="submit" { "Search" }
            }
            section aria-label="New saved reply" { h2 { "New" } (save(None, "")) }
            section aria-label="Saved replies" {
                h2 { (replies.len()) " saved repl" @if replies.len() == 1 { "y" } @else { "ies" } @if !search.is_empty() { " with " q { (search) } } }
                @for reply in replies {
                    article.saved-reply {
                        h3 { bdi { (reply.name) } }
                        p.note { "Saved " (when(&reply.updated)) " by " bdi { (reply.updated_by) } }
                        (save(Some(&reply.name), &reply.body))
                        form method="post" action="/replies" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            input type="hidden" name="action" value="delete";
                            input type="hidden" name="name" value=(reply.name);
                            button type="submit" { "Delete" }
                        }
                    }
                }
            }
        },
    )
}

/// The public feedback page of a closed ticket (`/feedback/TOKEN`): the question, five choices and an optional
/// comment; nothing about the ticket. Its form posts back to the same address.
pub fn feedback(question: &str, token: &str) -> Markup {
    feedback_layout(html! {
        form.feedback method="post" action={ "/feedback/" (token) } {
            fieldset {
                legend { (question) }
                @for (rating, word) in [(1, "bad"), (2, "poor"), (3, "fair"), (4, "good"), (5, "great")] {
                    label { input type="radio" name="rating" value=(rating) required; " " (rating) " (" (word) ")" }
                }
            }
            label for="comment" { "Anything to add? (optional)" }
            textarea #comment name="comment" rows="4" maxlength=(crate::lifecycle::RATING_COMMENT_MAX) {}
            button type="submit" { "Send" }
        }
        p.note { "You can rate once from this page." }
    })
}

/// What the feedback page says instead of its form, or once it was sent: thanks, or why it takes no rating.
pub fn feedback_said(text: &str) -> Markup {
    feedback_layout(html! { p role="status" { (text) } })
}

/// The feedback page's frame: no session, so no navigation.
fn feedback_layout(content: Markup) -> Markup {
    layout("Your feedback", None, None, html! { h1 { "Your feedback" } (content) })
}

/// What time it is at the desk, and the team's working hours when it set service levels: what the board and a
/// ticket's page count the time left and spent in.
#[derive(Clone, Copy)]
pub struct Hours<'a> {
    pub now: chrono::DateTime<chrono::Utc>,
    pub calendar: Option<&'a Calendar>,
}

/// What a ticket's page shows beside the ticket: the teams it can move to, and the closed tickets most like it with
/// what they suggest (`None` when the search did not answer in its time).
pub struct Around<'a> {
    pub teams: &'a [String],
    /// The saved replies by name, each filled for this ticket and this person.
    pub saved: &'a [(String, String)],
    pub similar: Option<&'a (Vec<TicketState>, crate::lifecycle::routing::Suggested)>,
}

pub fn board(session: &Session, query: &BoardQuery, page: &Page, counts: Counts, hours: Hours<'_>) -> Markup {
    let (open, claimed, waiting, closed) = counts;
    let now = hours.now;
    layout(
        "Board",
        Some(session),
        Some(open),
        html! {
            h1 { "Tickets" }
            p #counts data-live { (open) " open · " (claimed) " claimed · " (waiting) " waiting · " (closed) " closed" }
            form.filters method="get" action="/" role="search" {
                label { "Search " input type="search" name="q" value=(query.q) placeholder="words in body, contact, comments"; }
                label { "Status "
                    select name="status" {
                        option value="" { "any" }
                        @for status in Status::ALL {
                            option value=(status.name()) selected[query.status == status.name()] { (status.name()) }
                        }
                    }
                }
                label { "Priority "
                    select name="priority" {
                        option value="" { "any" }
                        @for priority in Priority::ALL {
                            option value=(priority.name()) selected[query.priority == priority.name()] { (priority.name()) }
                        }
                    }
                }
                label { "Label " input name="label" value=(query.label) size="10"; }
                label { "Origin " input name="origin" value=(query.origin) size="10"; }
                label title="teams' names, comma-separated; triage for tickets of none; all for every ticket" { "Team " input name="team" value=(query.team) size="14"; }
                label.check { input type="checkbox" name="mine" value="1" checked[!query.mine.is_empty()]; " Mine" }
                label.check {
                    input type="checkbox" name="unassigned" value="1" checked[!query.unassigned.is_empty()]; " Unassigned"
                }
                label.check {
                    input type="checkbox" name="answered" value="1" checked[!query.answered.is_empty()]; " Submitter answered"
                }
                label.check title="a service-level target due within a day, or missed; the soonest due first" {
                    input type="checkbox" name="due" value="1" checked[!query.due.is_empty()]; " Due within a day"
                }
                button type="submit" { "Filter" }
                a href="/" { "Clear" }
            }
            @if !query.team.is_empty() && query.team != super::ALL_TEAMS {
                p.note #teams-shown { "Tickets of " (query.team.replace(',', ", ")) ". " a href="/?team=all" { "All teams" } }
            }
            section #tickets data-live aria-label="Tickets" {
                @if page.tickets.is_empty() {
                    p.empty { "No tickets match." }
                } @else {
                    table.tickets {
                        thead { tr {
                            th scope="col" { "Ticket" } th scope="col" { "Status" } th scope="col" { "Priority" }
                            th scope="col" { "Age" } th scope="col" { "Assignee" } th scope="col" { "Team" } th scope="col" { "Origin" }
                            th scope="col" { "Labels" }
                            @if hours.calendar.is_some() { th scope="col" title="working time left before its earliest target" { "Due" } }
                        } }
                        tbody {
                            @for ticket in &page.tickets {
                                tr {
                                    td.subject { a href={ "/tickets/" (path_segment(&ticket.id)) } { (first_line(&ticket.body, 100)) } }
                                    td {
                                        (status_badge(ticket.status)) @if ticket.answered { " " (answered_badge()) }
                                        (deadline_mark(&ticket.clocks))
                                    }
                                    td { span class={ "priority " (ticket.priority.name()) } { (ticket.priority.name()) } }
                                    td { time datetime=(ticket.created_at) title=(ticket.created_at) { (age(&ticket.created_at, now)) } }
                                    td { bdi { (ticket.assignee.as_ref().map_or("—".to_owned(), Person::display)) } }
                                    td { (ticket.team.as_deref().unwrap_or("—")) }
                                    td { (ticket.origin) }
                                    td { @for label in &ticket.labels { span.label { (label) } " " } }
                                    @if let Some(calendar) = hours.calendar { (time_left(&ticket.clocks, now, calendar)) }
                                }
                            }
                        }
                    }
                }
                nav.pages aria-label="Pages of tickets" {
                    @if !query.cursor.is_empty() { a href=(query.url(None)) { "← Newest" } }
                    @if let Some(next) = &page.next_cursor { a rel="next" href=(query.url(Some(next))) { "Older →" } }
                }
            }
        },
    )
}

pub fn ticket(
    session: &Session,
    ticket: &TicketState,
    (events, hidden): (&[Event], usize),
    answer: Option<&(String, Option<Event>)>,
    counts: Counts,
    hours: Hours<'_>,
    around: Around<'_>,
) -> Markup {
    let teams = around.teams;
    let target = format!("/tickets/{}", path_segment(&ticket.id));
    let form = |action: &str, fields: Markup, button: &str| {
        html! {
            form.action method="post" action=(target) data-action=(action) {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="command_id" value=(uuid::Uuid::new_v4().to_string());
                input type="hidden" name="action" value=(action);
                (fields)
                button type="submit" { (button) }
            }
        }
    };
    let mine = ticket.assignee.as_ref() == Some(&Person::staff(&session.name));
    // Deliveries show under the message they are about, when that message is on the page.
    let shown: std::collections::HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let mut deliveries_of: std::collections::HashMap<&str, Vec<&Event>> = std::collections::HashMap::new();
    let mut attached: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for event in events {
        if let Change::Delivery(Delivery { of, .. }) = &event.change
            && shown.contains(of.as_str())
        {
            deliveries_of.entry(of.as_str()).or_default().push(event);
            attached.insert(event.event_id.as_str());
        }
    }
    layout(
        &first_line(&ticket.body, 60),
        Some(session),
        Some(counts.0),
        html! {
            p { a href="/" { "← Board" } }
            @if let Some((_, decided)) = answer {
                @match decided {
                    None => div #answer.answer data-live role="status" {
                        "Sent. akte has not decided yet; this page updates when it does."
                    },
                    Some(Event { change: Change::Rejected { reason, .. }, .. }) => div #answer.answer.refused role="alert" {
                        "Refused: " (reason)
                    },
                    Some(event) => div #answer.answer.done role="status" { "Done: " bdi { (event.actor.display()) } " " (describe(&event.change)) "." },
                }
            }
            article #ticket data-live {
                h1 { (first_line(&ticket.body, 120)) }
                p.badges {
                    (status_badge(ticket.status)) " "
                    @if ticket.answered { (answered_badge()) " " }
                    span class={ "priority " (ticket.priority.name()) } { (ticket.priority.name()) } " "
                    @if let Some(assignee) = &ticket.assignee { span.assignee { "held by " bdi { (assignee.display()) } } " " }
                    @for label in &ticket.labels { span.label { (label) } " " }
                }
                div.body { (ticket.body) }
                dl.facts {
                    @if let Some(old) = &ticket.follows {
                        dt { "Follows" } dd { a href={ "/tickets/" (path_segment(old)) } { "ticket " (old) } " (closed)" }
                    }
                    dt { "Contact" } dd { bdi { (ticket.contact) } @if let Some(id) = &ticket.contact_id { " (Discord id " (id) ")" } }
                    dt { "Origin" } dd { (ticket.origin) (place(ticket)) }
                    dt { "Team" } dd { (ticket.team.as_deref().unwrap_or("triage (no team)")) }
                    dt { "Submitted" } dd { (when(&ticket.submitted)) }
                    dt { "Opened" } dd { (when(&ticket.created_at)) }
                    @if let Some(at) = &ticket.first_claimed_at { dt { "First claimed" } dd { (when(at)) } }
                    @if let Some(at) = &ticket.closed_at {
                        dt { "Closed" }
                        dd { (when(at)) @if let Some(by) = &ticket.closed_by { " by " bdi { (by.display()) } }
                            @if let Some(reason) = &ticket.close_reason { ": " (reason) } }
                    }
                    @if let Some(rated) = &ticket.rating {
                        dt { "Rating" }
                        dd #rating { strong { (rated.rating) " of 5" } " " (when(&rated.at))
                            @if let Some(comment) = &rated.comment { ": " q { bdi { (comment) } } } }
                    }
                    @for clock in ticket.clocks.iter().filter(|clock| clock.target_secs > 0) {
                        dt { "Target: " (clock.target.describe()) }
                        dd class=(clock_class(clock)) { (clock_text(clock)) (clock_spent(clock, hours)) }
                    }
                    dt { "Last change" } dd { (when(&ticket.updated_at)) }
                    dt { "Id" } dd { code { (ticket.id) } }
                }
            }
            section #actions data-live aria-label="Actions" {
                div.row {
                    @if ticket.status != Status::Closed {
                        @if !mine { (form("claim", html! {}, if ticket.assignee.is_some() { "Claim (taken)" } else { "Claim" })) }
                        @if ticket.assignee.is_some() { (form("unclaim", html! {}, "Unclaim")) }
                    }
                    @if ticket.status == Status::Closed { (form("reopen", html! {}, "Reopen")) }
                }
                @if ticket.status != Status::Closed {
                    (form("close", html! {
                        label { "Reason " input name="reason" required maxlength="500" placeholder="why it is done"; }
                    }, "Close"))
                    (form("assign", html! {
                        label { "Assign to " input name="to" required maxlength="64"; }
                    }, "Assign"))
                }
                (form("set_priority", html! {
                    label { "Priority "
                        select name="priority" {
                            @for priority in Priority::ALL {
                                option value=(priority.name()) selected[priority == ticket.priority] { (priority.name()) }
                            }
                        }
                    }
                }, "Set"))
                (form("add_label", html! { label { "Label " input name="label" required maxlength="32"; } }, "Add"))
                (form("move", html! {
                    label { "Team "
                        select name="team" {
                            option value=(crate::lifecycle::routing::TRIAGE) selected[ticket.team.is_none()] { "triage (no team)" }
                            @for team in teams {
                                option value=(team) selected[ticket.team.as_ref() == Some(team)] { (team) }
                            }
                        }
                    }
                    label { "Why " input name="reason" required maxlength="500" placeholder="why it moves"; }
                }, "Move"))
                @for label in &ticket.labels {
                    (form("remove_label", html! { input type="hidden" name="label" value=(label); }, &format!("Remove label {label}")))
                }
            }
            section.reply aria-label="Reply" {
                p.note #reply-goes { (reply_goes(ticket, events)) }
                (form("comment", html! {
                    label { "Reply or note" textarea name="body" required[around.saved.is_empty()] maxlength="4000" rows="4" {} }
                    @if !around.saved.is_empty() {
                        label { "or send a saved reply "
                            select name="saved" {
                                option value="" { "(none: the text above)" }
                                @for (name, text) in around.saved { option value=(name) data-text=(text) { (name) } }
                            }
                        }
                    }
                    label.check { input type="checkbox" name="internal" value="1"; " Internal note (staff only)" }
                }, "Send"))
                @if !around.saved.is_empty() {
                    details.saved {
                        summary { "Saved replies, as this ticket would get them (" a href="/replies" { "edit" } ")" }
                        dl { @for (name, text) in around.saved { dt { bdi { (name) } } dd { (text) } } }
                    }
                }
            }
            (similar_section(&form, around.similar))
            section #timeline data-live aria-label="Conversation and history" {
                h2 { "Conversation and history" }
                p.note.transcript {
                    "Transcript of the conversation (no internal notes): "
                    a href={ (target) "/transcript.html" } download { "HTML" } " · "
                    a href={ (target) "/transcript.txt" } download { "text" }
                }
                @if hidden > 0 {
                    p.note { "The " (hidden) " oldest events after the first are not shown; the API has them all ("
                        code { "GET /api/tickets/ID" } ")." }
                }
                ol.timeline {
                    @for event in events {
                        @if !attached.contains(event.event_id.as_str()) {
                            (timeline_entry(event, deliveries_of.get(event.event_id.as_str()).map_or(&[][..], Vec::as_slice)))
                        }
                    }
                }
            }
        },
    )
}

pub fn stats(
    session: &Session,
    counts: Counts,
    snapshot: &Snapshot,
    dead_letters: &[Problem],
    rules: &[String],
) -> Markup {
    let stats = &snapshot.stats;
    let (open, claimed, waiting, closed) = counts;
    let hours: Vec<(String, u64)> =
        stats.created_per_hour.iter().map(|b| (format!("{}:00", b.hour.replace('T', " ")), b.created)).collect();
    let days: Vec<(String, u64)> = stats.created_per_day.iter().map(|d| (d.day.clone(), d.created)).collect();
    let counts = |items: &[crate::store::query::Count]| -> Vec<(String, u64)> {
        items.iter().map(|c| (c.name.clone(), c.tickets)).collect()
    };
    layout(
        "Numbers",
        Some(session),
        Some(open),
        html! {
            h1 { "The team's numbers" }
            section #now data-live aria-label="Tickets now" {
                dl.big {
                    div { dt { "Open" } dd #count-open { (open) } }
                    div { dt { "Claimed" } dd #count-claimed { (claimed) } }
                    div { dt { "Waiting" } dd #count-waiting { (waiting) } }
                    div { dt { "Closed" } dd #count-closed { (closed) } }
                }
                p.note { "The rest as of " (when(&snapshot.as_of.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
                    " (counted in the background; this page updates by itself)." }
            }
            section #times data-live {
                h2 { "Time to first claim and to close" }
                p.note { "Over the tickets opened in the last 30 days." }
                table.numbers {
                    thead { tr { th scope="col" { "" } th scope="col" { "Median" } th scope="col" { "90th percentile" } th scope="col" { "Tickets" } } }
                    tbody {
                        (duration_row("First claim", &stats.time_to_claim))
                        (duration_row("Close", &stats.time_to_close))
                    }
                }
            }
            section #per-hour data-live {
                h2 { "Tickets opened per hour, last 48 hours (UTC)" }
                (charts::columns("Tickets opened per hour", &hours))
            }
            section #per-day data-live {
                h2 { "Tickets opened per day, last 30 days (UTC)" }
                (charts::columns("Tickets opened per day", &days))
            }
            div.split {
                section #by-origin data-live { h2 { "By origin" } (charts::bars("Origin", &counts(&stats.by_origin))) }
                section #by-priority data-live { h2 { "By priority" } (charts::bars("Priority", &counts(&stats.by_priority))) }
                section #by-label data-live { h2 { "By label" } (charts::bars("Label", &counts(&stats.by_label))) }
                section #by-team data-live {
                    h2 { "Open by team" }
                    p.note { "Tickets not closed, by team; triage: of none." }
                    (charts::bars("Team", &counts(&stats.open_by_team)))
                }
                section #closers data-live {
                    h2 { "Who closed how many" }
                    p.note { "Of the tickets opened in the last 30 days and closed now." }
                    (charts::bars("Closed by", &counts(&stats.closed_by)))
                }
            }
            @if stats.within_target_by_week.iter().any(|week| week.decided() > 0) {
                section #within-target data-live {
                    h2 { "Within target" }
                    p.note { "The service-level targets met in time, of those decided (answered, closed or missed) in \
                        the last 8 weeks. By person: who met a target, or whose ticket it was when it was missed." }
                    (within_table("Week", &stats.within_target_by_week))
                    (within_table("Priority", &stats.within_target_by_priority))
                    (within_table("Person", &stats.within_target_by_person))
                    (within_table("Team", &stats.within_target_by_team))
                }
            }
            section #satisfaction data-live {
                h2 { "Satisfaction" }
                @if stats.satisfaction_by_week.iter().all(|week| week.ratings() == 0) {
                    p.note { "No ratings in the last 8 weeks. A closed ticket's submitter is asked once how it went \
                        (satisfaction.ask)." }
                } @else {
                    p.note { "The submitters' ratings (1 bad to 5 great) of the last 8 weeks. By person: who held the \
                        ticket when it was rated, or who closed it." }
                    (satisfaction_table("Week", &stats.satisfaction_by_week))
                    (satisfaction_table("Team", &stats.satisfaction_by_team))
                    (satisfaction_table("Person", &stats.satisfaction_by_person))
                    @if !stats.rating_comments.is_empty() {
                        h3 { "Comments, newest first" }
                        ul.comments {
                            @for said in &stats.rating_comments {
                                li {
                                    strong { (said.rating) " of 5" } " on "
                                    a href={ "/tickets/" (path_segment(&said.ticket_id)) } { bdi { (said.ticket_id) } }
                                    " " (when(&said.at)) ": "
                                    q { bdi { (said.comment) } }
                                }
                            }
                        }
                    }
                }
            }
            @if !rules.is_empty() {
                section #rules data-live {
                    h2 { "Routing rules, last 7 days" }
                    (rules_table(rules, stats, snapshot.as_of))
                }
            }
            section #dead-letters data-live {
                h2 { "Dead letters in the last 24 hours: " span #dead-letter-count { (dead_letters.len()) } }
                (problem_table(dead_letters))
            }
        },
    )
}

/// How many new tickets each routing rule matched in the last 7 days; after a week of tickets, a rule that matched
/// none is said to.
fn rules_table(rules: &[String], stats: &crate::store::query::Stats, now: chrono::DateTime<chrono::Utc>) -> Markup {
    let week_of_tickets = stats
        .first_ticket_at
        .as_deref()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .is_some_and(|first| now - first.to_utc() >= chrono::Duration::days(7));
    let matched = |rule: &str| stats.routed_last_week.iter().find(|count| count.name == rule).map_or(0, |c| c.tickets);
    html! {
        table.numbers {
            thead { tr { th scope="col" { "Rule" } th scope="col" { "Tickets it routed" } } }
            tbody {
                @for rule in rules {
                    tr {
                        th scope="row" { bdi { (rule) } }
                        @match (matched(rule), week_of_tickets) {
                            (0, true) => td.unused { "none: this rule matched nothing in a week of tickets" },
                            (count, _) => td { (count) },
                        }
                    }
                }
            }
        }
        @if !week_of_tickets { p.note { "franz has had tickets for less than a week: no rule is called unused yet." } }
    }
}

/// One breakdown of the ratings: a row per week, team or person, with how many, the mean and each count.
fn satisfaction_table(by: &str, rows: &[crate::store::query::Satisfaction]) -> Markup {
    html! {
        table.numbers {
            thead { tr {
                th scope="col" { (by) } th scope="col" { "Ratings" } th scope="col" { "Mean" }
                @for rating in 1..=5 { th scope="col" { (rating) } }
            } }
            tbody {
                @for row in rows {
                    tr {
                        th scope="row" { bdi { (row.name) } }
                        td { (row.ratings()) }
                        td { (row.average().map_or("—".to_owned(), |mean| format!("{mean:.1}"))) }
                        @for count in row.counts { td { (count) } }
                    }
                }
            }
        }
    }
}

/// One breakdown of the targets met: a row per week, priority or person, a column per target.
fn within_table(by: &str, rows: &[crate::store::query::Within]) -> Markup {
    let share = |tally: crate::store::query::MetMissed| match tally.met + tally.missed {
        0 => "—".to_owned(),
        all => format!("{}% ({} of {all})", tally.met * 100 / all, tally.met),
    };
    html! {
        table.numbers {
            thead { tr {
                th scope="col" { (by) } th scope="col" { "First response" } th scope="col" { "Next response" }
                th scope="col" { "Resolution" }
            } }
            tbody {
                @for row in rows {
                    tr {
                        th scope="row" { bdi { (row.name) } }
                        td { (share(row.first_response)) } td { (share(row.next_response)) } td { (share(row.resolution)) }
                    }
                }
            }
        }
    }
}

pub fn problems(session: &Session, problems: &[Problem], counts: Counts) -> Markup {
    layout(
        "Problems",
        Some(session),
        Some(counts.0),
        html! {
            h1 { "Problems" }
            p.note { "The newest " (crate::desk::problems::KEPT) " dead letters and error reports (what absturz posts to \
                the webhook), newest first, from the last 7 days." }
            section #problems data-live { (problem_table(problems)) }
        },
    )
}

fn problem_table(problems: &[Problem]) -> Markup {
    html! {
        @if problems.is_empty() {
            p.empty { "Nothing went wrong." }
        } @else {
            table.problems {
                thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Says" } th scope="col" { "Record" } } }
                tbody {
                    @for problem in problems {
                        tr {
                            td { (when(&problem.time)) }
                            td { (kind_name(problem)) }
                            td { (first_line(problem.summary(), 200)) }
                            td { a href=(problem_url(problem)) { (problem.topic) "/" (problem.partition) "@" (problem.offset) } }
                        }
                    }
                }
            }
        }
    }
}

pub fn problem(session: &Session, problem: &Problem) -> Markup {
    layout(
        "Problem",
        Some(session),
        None,
        html! {
            p { a href="/problems" { "← Problems" } }
            h1 { (kind_name(problem)) }
            dl.facts {
                dt { "When" } dd { (when(&problem.time)) }
                dt { "Record" } dd { code { (problem.topic) "/" (problem.partition) " at offset " (problem.offset) } }
                @match &problem.kind {
                    Kind::DeadLetter { error_type, error } => { dt { "Error" } dd { (error_type) ": " (error) } },
                    Kind::Error { service, level, message } => { dt { "Service" } dd { (service) " (" (level) ")" } dt { "Message" } dd { (message) } },
                    Kind::Unreadable => {},
                }
            }
            h2 { "The record" }
            pre.record { (problem.text) }
        },
    )
}

fn problem_url(problem: &Problem) -> String {
    format!("/problems/{}/{}/{}", path_segment(&problem.topic), problem.partition, problem.offset)
}

fn kind_name(problem: &Problem) -> String {
    match &problem.kind {
        Kind::DeadLetter { error_type, .. } => format!("dead letter ({error_type})"),
        Kind::Error { service, level, .. } => format!("{level} from {service}"),
        Kind::Unreadable => "unreadable record".to_owned(),
    }
}

fn duration_row(name: &str, durations: &Durations) -> Markup {
    html! {
        tr {
            th scope="row" { (name) }
            td { (durations.median_secs.map_or("—".to_owned(), span)) }
            td { (durations.p90_secs.map_or("—".to_owned(), span)) }
            td { (durations.tickets) }
        }
    }
}

fn status_badge(status: Status) -> Markup {
    html! { span class={ "status " (status.name()) } { (status.name()) } }
}

/// The mark of a ticket whose submitter wrote since the team's last public reply.
fn answered_badge() -> Markup {
    html! { span.answered title="The submitter wrote since the last public reply" { "submitter answered" } }
}

fn timeline_class(change: &Change) -> &'static str {
    match change {
        Change::Rejected { .. } => "refused",
        Change::Commented { internal: true, .. } => "note",
        Change::Commented { internal: false, .. } => "reply",
        Change::Created { .. } | Change::SubmitterWrote { .. } => "submitter",
        _ => "",
    }
}

/// Where a public reply will go, as the reply box says it: the ticket's Discord thread once the bot opened one
/// (its delivery is among the `events`), else a direct message to a submitter from Discord, or a mail to one who
/// wrote by mail.
fn reply_goes(ticket: &TicketState, events: &[Event]) -> String {
    let thread = events
        .iter()
        .any(|event| matches!(&event.change, Change::Delivery(Delivery { channel_id: Some(_), delivered: true, .. })));
    match crate::discord::submitter(ticket) {
        Some(_) if thread => format!("A reply goes to {} in the ticket's Discord thread.", ticket.contact),
        Some(_) => format!("A reply goes to {} by Discord direct message.", ticket.contact),
        None if ticket.origin == crate::schema::ORIGIN_EMAIL => format!(
            "A reply goes to {} by email where franz sends mail (FRANZ_MAIL_SMTP_URL); where it went shows under it.",
            ticket.contact
        ),
        None => "A reply is recorded on the ticket; franz has no way back to this submitter.".to_owned(),
    }
}

/// One event of the conversation and history: who, when, what, and for a message its text, attachments (as links,
/// never shown inline) and, for a public reply, where it went (`deliveries`, the delivery events about it).
fn timeline_entry(event: &Event, deliveries: &[&Event]) -> Markup {
    html! {
        li class=(timeline_class(&event.change)) {
            (when(&event.at)) " · " strong { bdi { (event.actor.display()) } } " " (source(event)) " "
            (describe(&event.change))
            @match &event.change {
                Change::Commented { body, internal, .. } => {
                    div.comment { (body) }
                    @if *internal { p.note { "Internal note: the submitter never sees it." } }
                }
                Change::SubmitterWrote { body, attachments, .. } => {
                    @if !body.is_empty() { div.comment { (body) } }
                    (files(&event.ticket_id, attachments))
                }
                Change::Created { attachments, .. } => (files(&event.ticket_id, attachments)),
                _ => {}
            }
            @for delivery in deliveries {
                @if let Change::Delivery(Delivery { via, delivered, detail, .. }) = &delivery.change {
                    p class={ "delivery " @if *delivered { "delivered" } @else { "failed" } } {
                        @if *delivered { "✓ delivered by " (via.describe()) } @else { "✗ could not deliver by " (via.describe()) }
                        @if let Some(detail) = detail { ": " (detail) }
                        " · " (when(&delivery.at))
                    }
                }
            }
        }
    }
}

/// A message's files: one franz keeps as a download from the desk, one that stays where it was sent as a link to
/// it (opened elsewhere, never followed by the desk).
fn files(ticket: &str, attachments: &[crate::schema::lifecycle::Attachment]) -> Markup {
    html! {
        @if !attachments.is_empty() {
            ul.attachments {
                @for file in attachments {
                    li {
                        @if let Some(kept) = &file.sha256 {
                            a href={ "/tickets/" (path_segment(ticket)) "/files/" (kept) } download { (file.name) }
                        } @else {
                            a href=(file.url) rel="noopener noreferrer nofollow" target="_blank" { (file.name) }
                        }
                        " (" (size(file.size)) @if let Some(kind) = &file.content_type { ", " (kind) } ")"
                    }
                }
            }
        }
    }
}

/// A size in bytes as people read it.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.0} KB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// Which door a change came through, in brackets; nothing for Discord, which the actor's name says already.
fn source(event: &Event) -> &'static str {
    match event.actor.source {
        crate::schema::lifecycle::ActorSource::Web => "(web)",
        crate::schema::lifecycle::ActorSource::Cli => "(CLI)",
        crate::schema::lifecycle::ActorSource::Discord => "",
        crate::schema::lifecycle::ActorSource::Api => "(API)",
        crate::schema::lifecycle::ActorSource::Franz => "(franz)",
        crate::schema::lifecycle::ActorSource::Email => "(email)",
    }
}

/// The most events a ticket's page shows: the first and the newest (the store reads only these).
pub const TIMELINE_MAX: usize = 500;

/// What a change did, as the rest of a sentence that starts with who did it.
pub fn describe(change: &Change) -> String {
    match change {
        Change::Created { origin, routed: None, .. } => format!("opened the ticket (from {origin})"),
        Change::Created { origin, routed: Some(routed), .. } => {
            let mut set = Vec::new();
            set.extend(routed.team.as_ref().map(|team| format!("to {team}")));
            set.extend(routed.priority.map(|priority| format!("priority {}", priority.name())));
            if !routed.labels.is_empty() {
                set.push(format!("labelled {}", routed.labels.join(", ")));
            }
            format!(
                "opened the ticket (from {origin}), routed {} {}",
                set.join(", "),
                crate::lifecycle::routing::by(&routed.rule)
            )
        }
        Change::Moved { from, to, reason } => format!(
            "moved it from {} to {}: {reason}",
            from.as_deref().unwrap_or(crate::lifecycle::routing::TRIAGE),
            to.as_deref().unwrap_or(crate::lifecycle::routing::TRIAGE)
        ),
        Change::Claimed { .. } => "claimed it".to_owned(),
        Change::Unclaimed { from } => format!("gave it back (it was {}'s)", from.display()),
        Change::Assigned { to, .. } => format!("assigned it to {}", to.display()),
        Change::Commented { internal: false, via: None, .. } => "replied".to_owned(),
        Change::Commented { internal: false, via: Some(via), .. } => format!("replied (in {})", via.describe()),
        Change::Commented { internal: true, .. } => "added an internal note".to_owned(),
        Change::PrioritySet { priority } => format!("set the priority to {}", priority.name()),
        Change::LabelAdded { label } => format!("added the label {label}"),
        Change::LabelRemoved { label } => format!("removed the label {label}"),
        Change::Closed { reason } => format!("closed it: {reason}"),
        Change::Reopened => "reopened it".to_owned(),
        Change::Rated { rating, comment: None } => format!("rated it {rating} of 5"),
        Change::Rated { rating, comment: Some(comment) } => format!("rated it {rating} of 5: {comment}"),
        Change::SubmitterWrote { via, reopened: false, .. } => format!("wrote (by {})", via.describe()),
        Change::SubmitterWrote { via, reopened: true, .. } => {
            format!("wrote (by {}), which reopened the closed ticket", via.describe())
        }
        Change::Delivery(Delivery { channel_id: Some(_), delivered: true, .. }) => {
            "opened the ticket's Discord thread, with the submitter in it".to_owned()
        }
        Change::Delivery(Delivery { via, delivered: true, .. }) => format!("delivered a message by {}", via.describe()),
        Change::Delivery(Delivery { via, delivered: false, detail, .. }) => format!(
            "could not deliver a message by {}{}",
            via.describe(),
            detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
        ),
        Change::DueSoon { target, due } => {
            format!("noted the {} is due soon (at {})", target.describe(), when_text(due))
        }
        Change::Breached { target, due } => {
            format!("noted the {} target was missed (due {})", target.describe(), when_text(due))
        }
        Change::Reminded { closes } => {
            format!("reminded the submitter that the ticket waits for their answer (it closes {})", when_text(closes))
        }
        Change::Rejected { action, reason } => format!("was refused ({action}): {reason}"),
    }
}

/// The board's mark of a ticket's service levels: red once a target was missed, amber once one is due soon.
fn deadline_mark(clocks: &[crate::lifecycle::levels::Clock]) -> Markup {
    // The silence is the submitter's, not the team's lateness: no mark.
    let clocks: Vec<_> =
        clocks.iter().filter(|clock| clock.target != crate::lifecycle::levels::Target::Silence).collect();
    html! {
        @if let Some(clock) = clocks.iter().find(|clock| clock.breached) {
            " " span class="clock breached" title={ "the " (clock.target.describe()) " target was missed" } { "missed" }
        } @else if let Some(clock) = clocks.iter().find(|clock| clock.warned) {
            " " span class="clock due-soon" title={ "the " (clock.target.describe()) " is due soon" } { "due soon" }
        }
    }
}

/// A service-level clock as the ticket page shows it: when it is due, or that it stands still.
fn clock_text(clock: &crate::lifecycle::levels::Clock) -> String {
    if let (crate::lifecycle::levels::Target::Silence, Some(due)) = (clock.target, &clock.due) {
        return format!("closes {} unless the submitter answers", when_text(due));
    }
    if let (Some(met), Some(due)) = (&clock.stopped, &clock.due) {
        return format!("met late: due {}, met {}", when_text(due), when_text(met));
    }
    match (&clock.due, &clock.paused_since) {
        (_, Some(since)) => {
            format!("stands still while the ticket waits on its submitter (since {})", when_text(since))
        }
        (Some(due), None) if clock.breached => format!("missed: it was due {}", when_text(due)),
        (Some(due), None) => format!("due {}", when_text(due)),
        (None, None) => "no working time left in the calendar before it".to_owned(),
    }
}

/// How much of a team's running target is spent and how much working time is left, for the ticket's page.
fn clock_spent(clock: &crate::lifecycle::levels::Clock, hours: Hours<'_>) -> String {
    let Some(calendar) = hours.calendar else { return String::new() };
    if clock.target == crate::lifecycle::levels::Target::Silence || clock.stopped.is_some() || clock.breached {
        return String::new();
    }
    let spent = clock.spent(hours.now, calendar).as_secs();
    let share = spent.saturating_mul(100) / clock.target_secs.max(1);
    let target = working_time(std::time::Duration::from_secs(clock.target_secs));
    match clock.left(hours.now, calendar) {
        Some(left) if !left.is_zero() => format!(" · {share}% of its {target} spent, {} left", working_time(left)),
        Some(_) => format!(" · {share}% of its {target} spent"),
        None => format!(" · {share}% of its {target} spent before it stood still"),
    }
}

/// The closed tickets most like this one, how each was closed, and what they suggest, each with its one press.
fn similar_section(
    form: &dyn Fn(&str, Markup, &str) -> Markup,
    similar: Option<&(Vec<TicketState>, crate::lifecycle::routing::Suggested)>,
) -> Markup {
    use crate::lifecycle::routing::{SIMILAR_AGREE, SIMILAR_SHOWN};
    let agree = format!("{SIMILAR_AGREE} or more of the {SIMILAR_SHOWN} most similar closed tickets");
    html! {
        section #similar aria-label="Similar closed tickets" {
            h2 { "Similar closed tickets" }
            @match similar {
                None => p.note { "The search for similar tickets did not answer (the store is busy, or it took too long); reload to try again." },
                Some((tickets, _)) if tickets.is_empty() => p.empty { "No closed ticket is like this one." },
                Some((tickets, suggested)) => {
                    ul.similar {
                        @for other in tickets {
                            li {
                                a href={ "/tickets/" (path_segment(&other.id)) } { (first_line(&other.body, 80)) }
                                " — closed"
                                @if let Some(by) = &other.closed_by { " by " bdi { (by.display()) } }
                                @if let Some(reason) = &other.close_reason { ": " (reason) }
                                @if let Some(team) = &other.team { " (" (team) ")" }
                            }
                        }
                    }
                    @if !suggested.labels.is_empty() || suggested.team.is_some() {
                        p.note { "Suggested by " (agree) "; nothing is applied until you press:" }
                        div.row {
                            @for label in &suggested.labels {
                                (form("add_label", html! { input type="hidden" name="label" value=(label); }, &format!("Add label {label}")))
                            }
                            @if let Some(team) = &suggested.team {
                                (form("move", html! {
                                    input type="hidden" name="team" value=(team);
                                    input type="hidden" name="reason" value={ "suggested: " (agree) " were " (team) "'s" };
                                }, &format!("Move to {team}")))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The board's "Due" cell: the working time left before the ticket's earliest running target, or how late it is,
/// or that its targets stand still while it waits on the submitter.
fn time_left(
    clocks: &[crate::lifecycle::levels::Clock],
    now: chrono::DateTime<chrono::Utc>,
    calendar: &Calendar,
) -> Markup {
    use crate::lifecycle::levels::Target;
    let team: Vec<_> = clocks.iter().filter(|clock| clock.target != Target::Silence && clock.target_secs > 0).collect();
    let soonest = team
        .iter()
        .filter(|clock| clock.stopped.is_none())
        .filter_map(|clock| Some((clock.due.as_deref()?, *clock)))
        .min_by(|a, b| a.0.cmp(b.0));
    html! {
        @match soonest {
            Some((_, clock)) if clock.breached || clock.left(now, calendar).is_some_and(|left| left.is_zero()) => {
                td.due { span class="clock breached" { "late" } }
            }
            Some((due, clock)) => {
                td.due { time datetime=(due) title={ "the " (clock.target.describe()) " is due " (when_text(due)) } class=(clock_class(clock)) {
                    (working_time(clock.left(now, calendar).unwrap_or_default())) " left"
                } }
            }
            None if team.iter().any(|clock| clock.paused_since.is_some()) => {
                td.due { span.clock title="its targets stand still while it waits on its submitter" { "waiting" } }
            }
            None => td.due { "—" },
        }
    }
}

/// Working time as people read it, to the nearest minute: `3h 5m`, `45m`, `under a minute`.
fn working_time(time: std::time::Duration) -> String {
    let minutes = (time.as_secs() + 30) / 60;
    match (minutes / 60, minutes % 60) {
        (0, 0) => "under a minute".to_owned(),
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// Its look: amber once due soon was said, red once missed.
fn clock_class(clock: &crate::lifecycle::levels::Clock) -> &'static str {
    if clock.target == crate::lifecycle::levels::Target::Silence {
        return "clock";
    }
    match (clock.breached, clock.warned) {
        (true, _) => "clock breached",
        (false, true) => "clock due-soon",
        _ => "clock",
    }
}

/// Where in Discord a ticket was submitted (", from Discord server 123, channel 456"), when it is known. Escaped by
/// maud like every other text: the ids come from the intake record and are not trusted to be numbers.
fn place(ticket: &TicketState) -> String {
    match (&ticket.guild_id, &ticket.channel_id) {
        (Some(guild), Some(channel)) => format!(", from Discord server {guild}, channel {channel}"),
        (Some(guild), None) => format!(", from Discord server {guild}"),
        (None, Some(channel)) => format!(", from Discord channel {channel}"),
        (None, None) => String::new(),
    }
}

/// The first line of `text`, at most `max` characters (an ellipsis marks a cut).
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(empty)");
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// A time as people read it, with the exact value for machines.
fn when(rfc3339: &str) -> Markup {
    html! { time datetime=(rfc3339) { (when_text(rfc3339)) } }
}

/// An instant as people read it, in UTC (the text itself when it is none).
fn when_text(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// How long ago `rfc3339` was, in the largest unit that fits.
fn age(rfc3339: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(then) => span(((now - then.with_timezone(&chrono::Utc)).num_seconds().max(0)) as f64),
        Err(_) => "?".to_owned(),
    }
}

/// A duration in seconds, as "45 s", "12 min", "3.5 h" or "2.1 d".
fn span(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.0} s"),
        s if s < 3_600.0 => format!("{:.0} min", s / 60.0),
        s if s < 86_400.0 => format!("{:.1} h", s / 3_600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_unit_that_fits() {
        assert_eq!(span(45.0), "45 s");
        assert_eq!(span(720.0), "12 min");
        assert_eq!(span(12_600.0), "3.5 h");
        assert_eq!(span(181_440.0), "2.1 d");
    }

    #[test]
    fn a_first_line_skips_blank_lines_and_is_cut_with_an_ellipsis() {
        assert_eq!(first_line("\n  \nhello\nworld", 10), "hello");
        assert_eq!(first_line("abcdef", 3), "abc…");
        assert_eq!(first_line("", 10), "(empty)");
    }

    #[test]
    fn a_ticket_from_discord_says_from_which_server_and_channel() {
        let from = |guild: Option<&str>, channel: Option<&str>| {
            place(&TicketState {
                guild_id: guild.map(str::to_owned),
                channel_id: channel.map(str::to_owned),
                ..TicketState::default()
            })
        };
        assert_eq!(from(Some("123"), Some("456")), ", from Discord server 123, channel 456");
        assert_eq!(from(Some("123"), None), ", from Discord server 123");
        assert_eq!(from(None, None), "", "a ticket from elsewhere, or from before franz kept the place");
    }

    #[test]
    fn the_reply_box_of_a_ticket_by_mail_says_the_reply_goes_by_email() {
        let ticket =
            TicketState { contact: "ann@example.com".into(), origin: "Email".into(), ..TicketState::default() };
        let said = reply_goes(&ticket, &[]);
        assert!(said.contains("by email") && said.contains("ann@example.com"), "{said}");
        let elsewhere = TicketState { origin: "Discord".into(), ..TicketState::default() };
        assert!(reply_goes(&elsewhere, &[]).contains("no way back"));
    }

    #[test]
    fn hostile_text_is_rendered_as_text() {
        let session = Session { id: "s".into(), name: "<b>ana</b>".into(), csrf: "c".into() };
        let page = problem(
            &session,
            &Problem {
                topic: "dlq".into(),
                partition: 0,
                offset: 1,
                time: "2026-12-01T00:00:00.000Z".into(),
                kind: Kind::Unreadable,
                text: "<script>alert(1)</script><img src=x onerror=alert(2)>".into(),
            },
        )
        .into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;ana&lt;/b&gt;"));
    }
}
