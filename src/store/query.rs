//! Reading the ticket store: the list with its filters and cursor, one ticket with its history, search, and the
//! team's numbers. Every query is bounded (a page has at most [`PAGE_MAX`] tickets) and uses an index, so a read
//! stays fast with a million tickets.

use rusqlite::{Connection, OptionalExtension as _, ToSql};
use serde::{Deserialize, Serialize};

use super::{TICKET_COLUMNS, ticket_from_row};
use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Attachment, Change, Event, Person, Priority, Status};

/// The most tickets one page holds.
pub const PAGE_MAX: usize = 200;
/// The most teams one list names.
pub const TEAMS_MAX: usize = 50;

/// A page's size when the caller does not say.
pub const PAGE_DEFAULT: usize = 50;

/// Which tickets to list. Every field narrows the list; none lists everything, newest first.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    pub status: Option<Status>,
    /// Whose tickets: a staff name, or an identity key (`staff:ana`, `discord:42`).
    pub assignee: Option<String>,
    /// Only tickets nobody holds.
    pub unassigned: bool,
    /// Only tickets whose submitter wrote since the team's last public reply.
    pub answered: bool,
    pub label: Option<String>,
    pub priority: Option<Priority>,
    pub origin: Option<String>,
    /// Only tickets of these teams, comma-separated; `triage` for those of none.
    pub team: Option<String>,
    /// Words to find in the body, the contact or the comments (each word a prefix).
    pub q: Option<String>,
    /// Only tickets with a target of the team due before this instant (RFC 3339), missed ones included, the
    /// soonest due first.
    pub due_before: Option<String>,
    /// From `next_cursor` of the previous page.
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// One page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub tickets: Vec<TicketState>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A filter the store cannot run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("the ticket store failed: {0}")]
    Store(#[from] rusqlite::Error),
}

/// A page of tickets, newest first.
pub fn list(conn: &Connection, filter: &Filter) -> Result<Page, QueryError> {
    let limit = filter.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(QueryError::Invalid(format!("limit must be 1 to {PAGE_MAX}")));
    }
    let cursor = match &filter.cursor {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| QueryError::Invalid("cursor is not one we gave".into()))?),
    };
    let search = filter.q.as_deref().map(fts_query).filter(|q| !q.is_empty());
    let mut clause = Where::default();
    let from = if let Some(search) = search {
        clause.bind("search MATCH ?", search);
        "search JOIN tickets t ON t.seq = search.rowid"
    } else {
        "tickets t"
    };
    if let Some(status) = filter.status {
        clause.bind("t.status = ?", status.name());
    }
    if let Some(assignee) = &filter.assignee {
        clause.bind("t.assignee = ?", Person::key_of(assignee.trim()));
    }
    if filter.unassigned {
        clause.conditions.push("t.assignee IS NULL".into());
    }
    if filter.answered {
        clause.conditions.push("t.answered = 1".into());
    }
    if let Some(priority) = filter.priority {
        clause.bind("t.priority = ?", priority.name());
    }
    if let Some(origin) = &filter.origin {
        clause.bind("t.origin = ?", origin.clone());
    }
    if let Some(teams) = &filter.team {
        let teams: Vec<&str> = teams.split(',').map(str::trim).filter(|team| !team.is_empty()).collect();
        if teams.len() > TEAMS_MAX {
            return Err(QueryError::Invalid(format!("team names at most {TEAMS_MAX} teams")));
        }
        let named: Vec<&str> =
            teams.iter().copied().filter(|team| *team != crate::lifecycle::routing::TRIAGE).collect();
        let mut any = Vec::new();
        if named.len() < teams.len() {
            any.push("t.team IS NULL".to_owned());
        }
        if !named.is_empty() {
            let mut places = Vec::new();
            for team in named {
                clause.values.push(Box::new(team.to_owned()));
                places.push(format!("?{}", clause.values.len()));
            }
            any.push(format!("t.team IN ({})", places.join(", ")));
        }
        if !any.is_empty() {
            clause.conditions.push(format!("({})", any.join(" OR ")));
        }
    }
    if let Some(label) = &filter.label {
        clause.bind("t.seq IN (SELECT seq FROM labels WHERE label = ?)", label.trim().to_lowercase());
    }
    let due = match &filter.due_before {
        None => None,
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                // Compared as text: a time past the year 9999 in UTC (`+10000-…`) would sort before every stamp.
                .map(|at| crate::lifecycle::levels::stamp(at.with_timezone(&chrono::Utc)))
                .map(|at| if at.starts_with('+') { "9999-12-31T23:59:59.999Z".to_owned() } else { at })
                .map_err(|_| QueryError::Invalid(format!("due_before {text:?} is not an RFC 3339 time")))?,
        ),
    };
    if let Some(due) = &due {
        clause.bind("t.due_at IS NOT NULL AND t.due_at <= ?", due.clone());
        if cursor.is_some() {
            return Err(QueryError::Invalid("a list by due time is one page: leave out cursor".into()));
        }
    }
    if let Some(cursor) = cursor {
        clause.bind("t.seq < ?", cursor);
    }
    let Where { conditions, values } = clause;
    let columns = TICKET_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
    let condition = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let order = if due.is_some() { "t.due_at ASC, t.seq DESC" } else { "t.seq DESC" };
    let sql = format!("SELECT {columns} FROM {from} {condition} ORDER BY {order} LIMIT {}", limit + 1);
    let mut statement = conn.prepare_cached(&sql)?;
    let params: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
    let mut rows: Vec<(i64, TicketState)> =
        statement.query_map(params.as_slice(), ticket_from_row)?.collect::<Result<_, _>>()?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        // A list by due time has no next page: its limit says how many of the soonest due to show.
        rows.last().filter(|_| due.is_none()).map(|(seq, _)| seq.to_string())
    } else {
        None
    };
    Ok(Page { tickets: rows.into_iter().map(|(_, t)| t).collect(), next_cursor })
}

/// The conditions of a query and the values they bind, numbered in order.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    values: Vec<Box<dyn ToSql>>,
}

impl Where {
    fn bind(&mut self, condition: &str, value: impl ToSql + 'static) {
        self.values.push(Box::new(value));
        self.conditions.push(condition.replace('?', &format!("?{}", self.values.len())));
    }
}

/// The most words of a search that are looked for; the rest are ignored.
pub const SEARCH_WORDS_MAX: usize = 8;
/// The shortest word that is matched as a prefix: a prefix of one or two letters matches most of a large store,
/// and costs as much to sort, so shorter words are matched whole.
pub const PREFIX_MIN: usize = 3;

/// The FTS5 query for what a person typed: each word quoted (so no operator syntax leaks through), matched as a
/// prefix from [`PREFIX_MIN`] characters on and whole below, at most [`SEARCH_WORDS_MAX`] words; all must match.
fn fts_query(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(SEARCH_WORDS_MAX)
        .map(|word| match word.chars().count() >= PREFIX_MIN {
            true => format!("\"{word}\"*"),
            false => format!("\"{word}\""),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The most words of a ticket looked up for a search for similar ones, and the most of them (the rarest) searched.
const SIMILAR_WORDS_MAX: usize = 64;
const SIMILAR_TERMS: usize = 12;
/// The most index entries the searched words may have together (the rarest word is searched whatever its count):
/// every ticket holding one is scored, so this bounds the search's time on a large store, where words are in many
/// tickets, and leaves a small one's searches as they are.
const SIMILAR_POSTINGS_MAX: i64 = 20_000;

/// The closed tickets most like `ticket`, best first, at most `limit`: BM25 over their text (the store's full-text
/// index, body column) for any of the ticket's rarest words of three letters or more. The words in most tickets
/// add little to a score and much to the time (every ticket holding one is scored), so only the
/// [`SIMILAR_TERMS`] in the fewest tickets are searched (`search_terms`: the index's own counts), and of those only
/// as many as [`SIMILAR_POSTINGS_MAX`] index entries allow.
pub fn similar(conn: &Connection, ticket: &TicketState, limit: usize) -> rusqlite::Result<Vec<TicketState>> {
    // Each word as written (the index's tokenizer reads it in the query as it read the ticket) and as the index
    // counts it: lower case, accents folded (`Überweisung` is counted as `uberweisung`).
    let mut words: Vec<(String, String)> = Vec::new();
    for word in ticket.body.split(|c: char| !c.is_alphanumeric()).filter(|word| word.chars().count() >= PREFIX_MIN) {
        let word = word.to_lowercase();
        let folded: String = unicode_normalization::UnicodeNormalization::nfd(word.as_str())
            .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
            .collect();
        if !words.iter().any(|(known, _)| *known == word) {
            words.push((word, folded));
        }
        if words.len() == SIMILAR_WORDS_MAX {
            break;
        }
    }
    let mut counted: Vec<(i64, String)> = Vec::new();
    let mut count = conn.prepare_cached("SELECT doc FROM search_terms WHERE term = ?1")?;
    for (word, folded) in words {
        // A word the index does not hold (no other ticket has it, or it folds differently) comes after those it does.
        let tickets: Option<i64> = count.query_row([&folded], |row| row.get(0)).optional()?;
        counted.push((tickets.unwrap_or(i64::MAX), word));
    }
    counted.sort();
    let mut postings = 0i64;
    let words: Vec<String> = counted
        .into_iter()
        .take(SIMILAR_TERMS)
        .enumerate()
        .take_while(|(n, (tickets, _))| {
            postings = postings.saturating_add(*tickets);
            *n == 0 || postings <= SIMILAR_POSTINGS_MAX
        })
        .map(|(_, (_, word))| word)
        .collect();
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let matching =
        format!("body : ({})", words.iter().map(|word| format!("\"{word}\"")).collect::<Vec<_>>().join(" OR "));
    let columns = TICKET_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {columns} FROM search JOIN tickets t ON t.seq = search.rowid
         WHERE search MATCH ?1 AND t.status = 'closed' AND t.id != ?2 ORDER BY bm25(search) LIMIT ?3"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let limit = i64::try_from(limit.min(PAGE_MAX)).unwrap_or(0);
    let rows = statement.query_map(rusqlite::params![matching, ticket.id, limit], ticket_from_row)?;
    rows.map(|row| row.map(|(_, ticket)| ticket)).collect()
}

/// The newest `limit` tickets of one submitter, by their id at the source (a Discord user id), newest first.
pub fn by_contact(conn: &Connection, contact_id: &str, limit: usize) -> rusqlite::Result<Vec<TicketState>> {
    let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE contact_id = ?1 ORDER BY seq DESC LIMIT ?2");
    let mut statement = conn.prepare_cached(&sql)?;
    let limit = i64::try_from(limit.min(PAGE_MAX)).unwrap_or(0);
    let rows = statement.query_map(rusqlite::params![contact_id, limit], ticket_from_row)?;
    rows.map(|row| row.map(|(_, ticket)| ticket)).collect()
}

/// The most open tickets [`open_of_contact`] reads: the highest limit on open tickets per submitter.
pub const OPEN_OF_CONTACT_MAX: usize = 1_000;

/// The open (not closed) tickets of contact `contact_id`, newest first, at most `limit` (up to
/// [`OPEN_OF_CONTACT_MAX`], not a page: a limit above a page must be reachable): what a limit on open tickets per
/// submitter counts.
pub fn open_of_contact(conn: &Connection, contact_id: &str, limit: usize) -> rusqlite::Result<Vec<TicketState>> {
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM tickets INDEXED BY tickets_by_contact_id
         WHERE contact_id = ?1 AND status != 'closed' ORDER BY seq DESC LIMIT ?2"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let limit = i64::try_from(limit.min(OPEN_OF_CONTACT_MAX)).unwrap_or(0);
    let rows = statement.query_map(rusqlite::params![contact_id, limit], ticket_from_row)?;
    rows.map(|row| row.map(|(_, ticket)| ticket)).collect()
}

/// The ticket a message franz sent is about (a Discord message id of a direct message to a submitter), if franz
/// recorded sending it.
pub fn sent_about(conn: &Connection, message_id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT ticket_id FROM sent WHERE message_id = ?1")?
        .query_row([message_id], |row| row.get(0))
        .optional()
}

/// The ticket's own Discord thread (its channel id), once the bot opened one and recorded it.
pub fn thread_of(conn: &Connection, ticket_id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT channel_id FROM threads WHERE ticket_id = ?1")?
        .query_row([ticket_id], |row| row.get(0))
        .optional()
}

/// The ticket whose own Discord thread is `channel_id`, if it is one.
pub fn thread_ticket(conn: &Connection, channel_id: &str) -> rusqlite::Result<Option<TicketState>> {
    let sql = format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = (SELECT ticket_id FROM threads WHERE channel_id = ?1)"
    );
    let found = conn.prepare_cached(&sql)?.query_row([channel_id], ticket_from_row).optional()?;
    Ok(found.map(|(_, ticket)| ticket))
}

/// The threads of the tickets changed since `since` (RFC 3339), newest change first, at most `limit`.
pub fn recent_threads(conn: &Connection, since: &str, limit: usize) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached(
        "SELECT threads.channel_id FROM threads JOIN tickets ON tickets.id = threads.ticket_id
         WHERE tickets.updated_at >= ?1 ORDER BY tickets.updated_at DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(rusqlite::params![since, limit], |row| row.get(0))?;
    rows.collect()
}

/// The one ticket whose id starts with the twelve hex digits of `token` (as a mail's subject carries it); none if
/// no ticket or several do.
pub fn ticket_by_token(conn: &Connection, token: &str) -> rusqlite::Result<Option<TicketState>> {
    if token.len() != 12 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    // A range of the id's index (ids are lower case; `~` sorts after every hex digit and `-`).
    let low = format!("{}-{}", &token[..8], &token[8..]).to_ascii_lowercase();
    let high = format!("{low}~");
    let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id >= ?1 AND id < ?2 LIMIT 2");
    let found: Vec<TicketState> = conn
        .prepare_cached(&sql)?
        .query_map([low, high], ticket_from_row)?
        .map(|row| row.map(|(_, t)| t))
        .collect::<Result<_, _>>()?;
    Ok(if found.len() == 1 { found.into_iter().next() } else { None })
}

/// The newest of the tickets that follow `ticket` (each opened by an answer to the one before after it was closed
/// for longer than the reopen window), if any.
pub fn newest_follower(conn: &Connection, ticket: &str) -> rusqlite::Result<Option<TicketState>> {
    let mut newest = None;
    let mut current = ticket.to_owned();
    // A chain, not a loop: each follower is newer than the one it follows; bounded all the same.
    for _ in 0..100 {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE follows = ?1 ORDER BY seq DESC LIMIT 1");
        let Some((_, next)) = conn.prepare_cached(&sql)?.query_row([&current], ticket_from_row).optional()? else {
            break;
        };
        current = next.id.clone();
        newest = Some(next);
    }
    Ok(newest)
}

/// The ticket a submitter's message (a Discord message id) was recorded on, if it was.
pub fn written(conn: &Connection, message_id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT ticket_id FROM written WHERE message_id = ?1")?
        .query_row([message_id], |row| row.get(0))
        .optional()
}

/// One ticket.
pub fn ticket(conn: &Connection, id: &str) -> rusqlite::Result<Option<TicketState>> {
    conn.prepare_cached(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"))?
        .query_row([id], ticket_from_row)
        .optional()
        .map(|row| row.map(|(_, t)| t))
}

/// Where an export stopped: the last ticket's `created_at` and `seq`, after which the next page starts.
pub type ExportMark = (String, i64);

/// Up to `limit` tickets created at or after `since` (RFC 3339, or a prefix of one such as a date), oldest first,
/// after `after` (the mark of the previous page): pages of an export, each a short read of its own, so a million
/// tickets are read in constant memory and no read holds the store for long. Returns the mark of the last one.
pub fn export_page(
    conn: &Connection,
    since: &str,
    after: Option<&ExportMark>,
    limit: usize,
) -> rusqlite::Result<(Vec<TicketState>, Option<ExportMark>)> {
    let (after_at, after_seq) = after.cloned().unwrap_or_else(|| (String::new(), 0));
    // The index is read from the mark on, not from `since` again (page k would scan k pages' worth of entries).
    let floor = if after_at.as_str() > since { after_at.as_str() } else { since };
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {TICKET_COLUMNS} FROM tickets INDEXED BY tickets_by_created
         WHERE created_at >= ?1 AND (created_at, seq) > (?2, ?3) ORDER BY created_at, seq LIMIT ?4"
    ))?;
    let rows = statement.query_map(rusqlite::params![floor, after_at, after_seq, limit as i64], ticket_from_row)?;
    let mut tickets = Vec::new();
    let mut mark = None;
    for row in rows {
        let (seq, ticket) = row?;
        mark = Some((ticket.created_at.clone(), seq));
        tickets.push(ticket);
    }
    Ok((tickets, mark))
}

/// A ticket's history, oldest first, refused attempts included.
pub fn history(conn: &Connection, id: &str) -> rusqlite::Result<Vec<Event>> {
    let mut statement = conn.prepare_cached("SELECT json FROM events WHERE ticket_id = ?1 ORDER BY seq")?;
    let rows = statement.query_map([id], |row| row.get::<_, String>(0))?;
    let mut events = Vec::new();
    for json in rows {
        if let Ok(event) = serde_json::from_str(&json?) {
            events.push(event);
        }
    }
    Ok(events)
}

/// The file named `sha256` that an event of ticket `id` carries, as the event describes it.
pub fn file(conn: &Connection, id: &str, sha256: &str) -> rusqlite::Result<Option<Attachment>> {
    if !crate::attachments::is_name(sha256) {
        return Ok(None);
    }
    // A name is hex digits only, so it is no LIKE pattern; the events found are then read for the name itself.
    let mut statement = conn
        .prepare_cached("SELECT json FROM events WHERE ticket_id = ?1 AND json LIKE '%' || ?2 || '%' ORDER BY seq")?;
    let rows = statement.query_map([id, sha256], |row| row.get::<_, String>(0))?;
    for json in rows {
        let Ok(event) = serde_json::from_str::<Event>(&json?) else { continue };
        if let Some(file) = event.change.attachments().iter().find(|file| file.sha256.as_deref() == Some(sha256)) {
            return Ok(Some(file.clone()));
        }
    }
    Ok(None)
}

/// The tickets whose next service-level point (`tickets.next_check`) is at or before `now` (as
/// `lifecycle::levels::stamp` writes instants), the earliest first, at most `limit`: each id and version.
pub fn due(conn: &Connection, now: &str, limit: usize) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, version FROM tickets WHERE next_check IS NOT NULL AND next_check <= ?1 ORDER BY next_check LIMIT ?2",
    )?;
    let rows = statement.query_map(rusqlite::params![now, limit as i64], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
    })?;
    rows.collect()
}

/// What a ticket's page shows of its history: the first event and the newest, `max` in all, oldest first, and how
/// many events between them are left out. Only the shown events are read and parsed: a ticket with a long history
/// costs a page view no more than one with `max` events (the rowids come from the ticket's index alone).
pub fn timeline(conn: &Connection, id: &str, max: usize) -> rusqlite::Result<(Vec<Event>, usize)> {
    let total: i64 =
        conn.prepare_cached("SELECT COUNT(*) FROM events WHERE ticket_id = ?1")?.query_row([id], |row| row.get(0))?;
    let newest = max.saturating_sub(1) as i64;
    let mut statement = conn.prepare_cached(
        "SELECT json FROM events WHERE ticket_id = ?1 AND (
             seq = (SELECT MIN(seq) FROM events WHERE ticket_id = ?1)
             OR seq IN (SELECT seq FROM events WHERE ticket_id = ?1 ORDER BY seq DESC LIMIT ?2))
         ORDER BY seq",
    )?;
    let rows = statement.query_map(rusqlite::params![id, newest], |row| row.get::<_, String>(0))?;
    let (mut events, mut read) = (Vec::new(), 0i64);
    for json in rows {
        read += 1;
        if let Ok(event) = serde_json::from_str(&json?) {
            events.push(event);
        }
    }
    Ok((events, (total - read).max(0) as usize))
}

/// The event that answered command `command_id` of ticket `ticket_id`, once the store has it.
pub fn answer(conn: &Connection, ticket_id: &str, command_id: &str) -> rusqlite::Result<Option<Event>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT json FROM events WHERE ticket_id = ?1 AND caused_by = ?2")?
        .query_row([ticket_id, command_id], |row| row.get(0))
        .optional()?;
    Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
}

/// The submitters (their ids at the source) of the tickets changed since `since` (RFC 3339), the one whose ticket
/// changed last first, each once, at most `limit`.
pub fn recent_contacts(conn: &Connection, since: &str, limit: usize) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached(
        "SELECT contact_id FROM tickets WHERE contact_id IS NOT NULL AND updated_at >= ?1
         GROUP BY contact_id ORDER BY MAX(updated_at) DESC LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(rusqlite::params![since, limit], |row| row.get(0))?;
    rows.collect()
}

/// The newest message of a ticket's conversation: the submitter's, or a public reply (never an internal note).
pub fn last_message(conn: &Connection, ticket_id: &str) -> rusqlite::Result<Option<Event>> {
    // The newest few messages of either kind; notes among them are passed over.
    let mut statement = conn.prepare_cached(
        "SELECT json FROM events WHERE ticket_id = ?1 AND type IN ('submitter_wrote', 'commented')
         ORDER BY seq DESC LIMIT 50",
    )?;
    let mut rows = statement.query([ticket_id])?;
    while let Some(row) = rows.next()? {
        let Ok(event) = serde_json::from_str::<Event>(&row.get::<_, String>(0)?) else { continue };
        if !matches!(event.change, Change::Commented { internal: true, .. }) {
            return Ok(Some(event));
        }
    }
    Ok(None)
}

/// The team's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub open: u64,
    pub claimed: u64,
    /// Waiting on the submitter.
    pub waiting: u64,
    pub closed: u64,
    /// Tickets created in each of the last 48 hours, oldest first (`hour` is `YYYY-MM-DDTHH`).
    pub created_per_hour: Vec<Bucket>,
    /// Tickets created on each of the last 30 days (UTC), oldest first.
    pub created_per_day: Vec<Day>,
    /// Over tickets created in the last 30 days.
    pub time_to_claim: Durations,
    pub time_to_close: Durations,
    pub by_priority: Vec<Count>,
    pub by_origin: Vec<Count>,
    /// The 20 most used labels.
    pub by_label: Vec<Count>,
    /// Who closed how many of the tickets created in the last 30 days (closed now), most first; two people of one
    /// name are counted apart.
    pub closed_by: Vec<Count>,
    /// The service-level targets decided in each of the last 8 weeks (ISO weeks, `2026-W49`), oldest first.
    pub within_target_by_week: Vec<Within>,
    /// Over the same 8 weeks, by the ticket's priority when decided (highest first) and by person (most first):
    /// who met a target (answered, closed), or whose ticket it was when it was missed (`unassigned`: nobody's).
    pub within_target_by_priority: Vec<Within>,
    pub within_target_by_person: Vec<Within>,
    /// Over the same 8 weeks, by the ticket's team when decided (`triage`: none), most first.
    pub within_target_by_team: Vec<Within>,
    /// Tickets not closed, by team (`triage`: none), most first.
    pub open_by_team: Vec<Count>,
    /// Tickets created in the last 7 days by the routing rule that matched them, and when the oldest ticket was
    /// created (a rule can be called unused only after a week of tickets).
    pub routed_last_week: Vec<Count>,
    pub first_ticket_at: Option<String>,
    /// The submitters' ratings given in each of the last 8 weeks (ISO weeks), oldest first.
    pub satisfaction_by_week: Vec<Satisfaction>,
    /// Over the same 8 weeks, by the ticket's team (`triage`: none) and by the person who held it when rated (else
    /// who closed it; `unassigned`: nobody), most ratings first.
    pub satisfaction_by_team: Vec<Satisfaction>,
    pub satisfaction_by_person: Vec<Satisfaction>,
    /// The newest ratings with a comment over the same 8 weeks, newest first (at most [`RATING_COMMENTS_MAX`]).
    pub rating_comments: Vec<RatingComment>,
}

/// The most rating comments the numbers show.
pub const RATING_COMMENTS_MAX: usize = 20;

/// The ratings of one week, team or person: how many of each, 1 to 5.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Satisfaction {
    pub name: String,
    /// `counts[0]` ratings of 1, up to `counts[4]` of 5.
    pub counts: [u64; 5],
}

impl Satisfaction {
    fn named(name: String) -> Satisfaction {
        Satisfaction { name, counts: [0; 5] }
    }

    fn count(&mut self, rating: u8) {
        if let Some(count) = self.counts.get_mut(usize::from(rating).wrapping_sub(1)) {
            *count += 1;
        }
    }

    /// How many ratings.
    pub fn ratings(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The mean rating, 1 to 5 (none without ratings).
    pub fn average(&self) -> Option<f64> {
        let sum: u64 = self.counts.iter().zip(1..).map(|(count, rating)| count * rating).sum();
        (self.ratings() > 0).then(|| sum as f64 / self.ratings() as f64)
    }
}

/// A rating with its comment, for the numbers page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatingComment {
    pub ticket_id: String,
    pub rating: u8,
    pub comment: String,
    pub at: String,
    pub team: Option<String>,
}

/// How many promises of each target were met in time and how many missed, for one week, priority or person.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Within {
    pub name: String,
    pub first_response: MetMissed,
    pub next_response: MetMissed,
    pub resolution: MetMissed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MetMissed {
    pub met: u64,
    pub missed: u64,
}

impl Within {
    fn named(name: String) -> Within {
        Within { name, ..Within::default() }
    }

    fn count(&mut self, target: &str, met: bool) {
        let tally = match target {
            "first_response" => &mut self.first_response,
            "next_response" => &mut self.next_response,
            "resolution" => &mut self.resolution,
            _ => return,
        };
        if met { tally.met += 1 } else { tally.missed += 1 }
    }

    /// Every target's promises decided.
    pub fn decided(&self) -> u64 {
        [self.first_response, self.next_response, self.resolution].iter().map(|t| t.met + t.missed).sum()
    }
}

/// The ISO week of `at`, as `2026-W49`.
fn iso_week(at: chrono::DateTime<chrono::Utc>) -> String {
    let week = chrono::Datelike::iso_week(&at);
    format!("{}-W{:02}", week.year(), week.week())
}

/// The targets decided in the 8 weeks up to `now` (this week and the 7 before it), by week, priority and person.
fn within_target(conn: &Connection, now: chrono::DateTime<chrono::Utc>) -> rusqlite::Result<[Vec<Within>; 4]> {
    use chrono::Datelike as _;
    let monday = now.date_naive() - chrono::Duration::days(i64::from(now.weekday().num_days_from_monday()));
    let first = monday - chrono::Duration::weeks(7);
    let weeks: Vec<String> =
        (0..8).map(|w| iso_week((first + chrono::Duration::weeks(w)).and_time(Default::default()).and_utc())).collect();
    let mut by_week: Vec<Within> = weeks.iter().cloned().map(Within::named).collect();
    let mut by_priority: Vec<Within> = Priority::ALL.iter().rev().map(|p| Within::named(p.name().to_owned())).collect();
    let mut by_person: std::collections::HashMap<String, Within> = std::collections::HashMap::new();
    let mut by_team: std::collections::HashMap<String, Within> = std::collections::HashMap::new();
    let mut decided = conn.prepare_cached(
        "SELECT at, target, priority, person, person_name, met, team FROM outcomes WHERE at >= ?1 ORDER BY at",
    )?;
    let mut rows = decided.query([first.format("%Y-%m-%d").to_string()])?;
    while let Some(row) = rows.next()? {
        let Some(at) = parse_time(&row.get::<_, String>(0)?) else { continue };
        let (target, priority, met): (String, String, bool) = (row.get(1)?, row.get(2)?, row.get(5)?);
        if let Some(week) = weeks.iter().position(|week| *week == iso_week(at)) {
            by_week[week].count(&target, met);
        }
        if let Some(row) = by_priority.iter_mut().find(|row| row.name == priority) {
            row.count(&target, met);
        }
        let (key, name): (Option<String>, Option<String>) = (row.get(3)?, row.get(4)?);
        let name = match &key {
            Some(key) => Person::from_key(key, name.as_deref().unwrap_or(key)).display(),
            None => "unassigned".to_owned(),
        };
        by_person.entry(key.unwrap_or_default()).or_insert_with(|| Within::named(name)).count(&target, met);
        let team = row.get::<_, Option<String>>(6)?.unwrap_or_else(|| crate::lifecycle::routing::TRIAGE.to_owned());
        by_team.entry(team.clone()).or_insert_with(|| Within::named(team)).count(&target, met);
    }
    by_priority.retain(|row| row.decided() > 0);
    let most_first = |rows: std::collections::HashMap<String, Within>| {
        let mut rows: Vec<Within> = rows.into_values().collect();
        rows.sort_by(|a, b| b.decided().cmp(&a.decided()).then_with(|| a.name.cmp(&b.name)));
        rows
    };
    Ok([by_week, by_priority, most_first(by_person), most_first(by_team)])
}

/// The ratings of 8 weeks, broken down (see [`Stats`]).
struct Ratings {
    by_week: Vec<Satisfaction>,
    by_team: Vec<Satisfaction>,
    by_person: Vec<Satisfaction>,
    comments: Vec<RatingComment>,
}

/// The ratings given in the 8 weeks up to `now` (this week and the 7 before it), by week, team and person, and the
/// newest comments.
fn satisfaction(conn: &Connection, now: chrono::DateTime<chrono::Utc>) -> rusqlite::Result<Ratings> {
    use chrono::Datelike as _;
    let monday = now.date_naive() - chrono::Duration::days(i64::from(now.weekday().num_days_from_monday()));
    let first = monday - chrono::Duration::weeks(7);
    let weeks: Vec<String> =
        (0..8).map(|w| iso_week((first + chrono::Duration::weeks(w)).and_time(Default::default()).and_utc())).collect();
    let mut by_week: Vec<Satisfaction> = weeks.iter().cloned().map(Satisfaction::named).collect();
    let mut by_team: std::collections::HashMap<String, Satisfaction> = std::collections::HashMap::new();
    let mut by_person: std::collections::HashMap<String, Satisfaction> = std::collections::HashMap::new();
    let mut comments = Vec::new();
    let mut rated = conn.prepare_cached(
        "SELECT id, rating, rating_comment, rated_at, team, coalesce(assignee, closed_by),
                CASE WHEN assignee IS NOT NULL THEN assignee_name ELSE closed_by_name END
         FROM tickets WHERE rated_at >= ?1 ORDER BY rated_at DESC",
    )?;
    let mut rows = rated.query([first.format("%Y-%m-%d").to_string()])?;
    while let Some(row) = rows.next()? {
        let (id, rating, comment, at): (String, u8, Option<String>, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let Some(when) = parse_time(&at) else { continue };
        if let Some(week) = weeks.iter().position(|week| *week == iso_week(when)) {
            by_week[week].count(rating);
        }
        let team: Option<String> = row.get(4)?;
        let name = team.clone().unwrap_or_else(|| crate::lifecycle::routing::TRIAGE.to_owned());
        by_team.entry(name.clone()).or_insert_with(|| Satisfaction::named(name)).count(rating);
        let (key, name): (Option<String>, Option<String>) = (row.get(5)?, row.get(6)?);
        let name = match &key {
            Some(key) => Person::from_key(key, name.as_deref().unwrap_or(key)).display(),
            None => "unassigned".to_owned(),
        };
        by_person.entry(key.unwrap_or_default()).or_insert_with(|| Satisfaction::named(name)).count(rating);
        if let Some(comment) = comment.filter(|_| comments.len() < RATING_COMMENTS_MAX) {
            comments.push(RatingComment { ticket_id: id, rating, comment, at, team });
        }
    }
    let most_first = |rows: std::collections::HashMap<String, Satisfaction>| {
        let mut rows: Vec<Satisfaction> = rows.into_values().collect();
        rows.sort_by(|a, b| b.ratings().cmp(&a.ratings()).then_with(|| a.name.cmp(&b.name)));
        rows
    };
    Ok(Ratings { by_week, by_team: most_first(by_team), by_person: most_first(by_person), comments })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bucket {
    pub hour: String,
    pub created: u64,
}

/// Tickets created on one day, `YYYY-MM-DD`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Day {
    pub day: String,
    pub created: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub tickets: u64,
}

/// Median and 90th percentile in seconds, over `tickets` tickets (none: both absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durations {
    pub tickets: u64,
    pub median_secs: Option<f64>,
    pub p90_secs: Option<f64>,
}

/// The numbers as of `now`.
pub fn stats(conn: &Connection, now: chrono::DateTime<chrono::Utc>) -> rusqlite::Result<Stats> {
    let mut stats = Stats::default();
    (stats.open, stats.claimed, stats.waiting, stats.closed) = status_counts(conn)?;
    let hour_format = "%Y-%m-%dT%H";
    let first_hour = now - chrono::Duration::hours(47);
    let since = first_hour.format(hour_format).to_string();
    let mut per_hour = std::collections::BTreeMap::new();
    let mut created = conn.prepare_cached(
        "SELECT substr(created_at, 1, 13) AS hour, COUNT(*) FROM tickets WHERE created_at >= ?1 GROUP BY hour",
    )?;
    for row in created.query_map([&since], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))? {
        let (hour, count) = row?;
        per_hour.insert(hour, count);
    }
    stats.created_per_hour = (0..48)
        .map(|h| {
            let hour = (first_hour + chrono::Duration::hours(h)).format(hour_format).to_string();
            Bucket { created: per_hour.get(&hour).copied().unwrap_or(0), hour }
        })
        .collect();
    let month = Month::scan(conn, now)?;
    stats.created_per_day = (0..30)
        .map(|d| {
            let day = (now - chrono::Duration::days(29 - d)).format("%Y-%m-%d").to_string();
            Day { created: month.per_day.get(&day).copied().unwrap_or(0), day }
        })
        .collect();
    let mut closed_by: Vec<Count> =
        month.closers.into_values().map(|(person, tickets)| Count { name: person.display(), tickets }).collect();
    closed_by.sort_by(|a, b| b.tickets.cmp(&a.tickets).then_with(|| a.name.cmp(&b.name)));
    stats.closed_by = closed_by;
    (stats.time_to_claim, stats.time_to_close) = (durations(month.to_claim), durations(month.to_close));
    [
        stats.within_target_by_week,
        stats.within_target_by_priority,
        stats.within_target_by_person,
        stats.within_target_by_team,
    ] = within_target(conn, now)?;
    let week_ago = crate::lifecycle::levels::stamp(now - chrono::Duration::days(7));
    let mut routed = conn.prepare_cached(
        "SELECT rule, COUNT(*) FROM tickets WHERE created_at >= ?1 AND rule IS NOT NULL GROUP BY rule ORDER BY 2 DESC, 1",
    )?;
    stats.routed_last_week = routed
        .query_map([&week_ago], |row| Ok(Count { name: row.get(0)?, tickets: row.get::<_, i64>(1)? as u64 }))?
        .collect::<Result<_, _>>()?;
    let ratings = satisfaction(conn, now)?;
    (stats.satisfaction_by_week, stats.satisfaction_by_team, stats.satisfaction_by_person, stats.rating_comments) =
        (ratings.by_week, ratings.by_team, ratings.by_person, ratings.comments);
    stats.first_ticket_at = conn.query_row("SELECT min(created_at) FROM tickets", [], |row| row.get(0))?;
    stats.open_by_team = counts(
        conn,
        "SELECT coalesce(team, 'triage'), COUNT(*) FROM tickets WHERE status != 'closed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 50",
    )?;
    stats.by_label = counts(conn, "SELECT label, COUNT(*) FROM labels GROUP BY label ORDER BY 2 DESC, 1 LIMIT 20")?;
    stats.by_priority = counts(conn, "SELECT priority, COUNT(*) FROM tickets GROUP BY priority ORDER BY 2 DESC")?;
    stats.by_origin = counts(conn, "SELECT origin, COUNT(*) FROM tickets GROUP BY origin ORDER BY 2 DESC LIMIT 20")?;
    Ok(stats)
}

/// Tickets open, claimed, waiting on their submitter and closed now.
pub fn status_counts(conn: &Connection) -> rusqlite::Result<(u64, u64, u64, u64)> {
    let (mut open, mut claimed, mut waiting, mut closed) = (0, 0, 0, 0);
    let mut by_status = conn.prepare_cached("SELECT status, COUNT(*) FROM tickets GROUP BY status")?;
    for row in by_status.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64)))? {
        let (status, count) = row?;
        match Status::parse(&status) {
            Some(Status::Open) => open = count,
            Some(Status::Claimed) => claimed = count,
            Some(Status::Waiting) => waiting = count,
            Some(Status::Closed) => closed = count,
            None => {}
        }
    }
    Ok((open, claimed, waiting, closed))
}

/// Time to first claim and time to close, over the tickets created in the 30 days before `now`.
pub fn times_to_claim_and_close(
    conn: &Connection,
    now: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<(Durations, Durations)> {
    let month = Month::scan(conn, now)?;
    Ok((durations(month.to_claim), durations(month.to_close)))
}

/// What one pass over the tickets created in the last 30 days tells.
#[derive(Default)]
struct Month {
    per_day: std::collections::HashMap<String, u64>,
    to_claim: Vec<f64>,
    to_close: Vec<f64>,
    /// By identity key: the person and their count.
    closers: std::collections::HashMap<String, (Person, u64)>,
}

impl Month {
    fn scan(conn: &Connection, now: chrono::DateTime<chrono::Utc>) -> rusqlite::Result<Month> {
        // From the start of the first of the 30 days shown per day.
        let since = (now - chrono::Duration::days(29)).format("%Y-%m-%d").to_string();
        let mut times = conn.prepare_cached(
            "SELECT created_at, first_claimed_at, closed_at, closed_by, closed_by_name FROM tickets
             WHERE created_at >= ?1",
        )?;
        let mut month = Month::default();
        let mut rows = times.query([&since])?;
        while let Some(row) = rows.next()? {
            let created: String = row.get(0)?;
            *month.per_day.entry(created.get(..10).unwrap_or_default().to_owned()).or_default() += 1;
            let Some(created) = parse_time(&created) else { continue };
            let since_created = |later: Option<String>| {
                later.as_deref().and_then(parse_time).map(|t| (t - created).num_milliseconds() as f64 / 1000.0)
            };
            month.to_claim.extend(since_created(row.get(1)?));
            month.to_close.extend(since_created(row.get(2)?));
            if let Some(key) = row.get::<_, Option<String>>(3)? {
                let name = row.get::<_, Option<String>>(4)?.unwrap_or_else(|| key.clone());
                month.closers.entry(key.clone()).or_insert_with(|| (Person::from_key(&key, &name), 0)).1 += 1;
            }
        }
        Ok(month)
    }
}

fn counts(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<Count>> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map([], |row| Ok(Count { name: row.get(0)?, tickets: row.get::<_, i64>(1)? as u64 }))?;
    rows.collect()
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// Median and p90 (nearest rank) of `values`.
fn durations(mut values: Vec<f64>) -> Durations {
    values.sort_by(f64::total_cmp);
    let rank = |q: f64| values.get(((q * values.len() as f64).ceil() as usize).saturating_sub(1)).copied();
    Durations { tickets: values.len() as u64, median_secs: rank(0.5), p90_secs: rank(0.9) }
}
