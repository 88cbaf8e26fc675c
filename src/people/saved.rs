//! Saved replies: texts the team writes once and sends often, by name, with placeholders filled for each ticket
//! (`{contact}`, `{ticket}`, `{agent}`).
//!
//! They live in the staff list (`staff.sqlite`, table `saved_replies`), not on the event log: they are settings the
//! team edits at run time, like its members and teams, and a reply sent from one is recorded on its ticket as the
//! text that went (a later edit of the saved reply rewrites no history). Kept beside the staff list, they move to
//! the cluster with it (#29). Names are unique without regard to case.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use super::Staff;

/// The most saved replies a team keeps.
pub const SAVED_MAX: usize = 500;

/// The table, created with the staff list's others.
pub(super) const TABLE: &str = "CREATE TABLE IF NOT EXISTS saved_replies (name TEXT PRIMARY KEY COLLATE NOCASE,
    body TEXT NOT NULL, updated TEXT NOT NULL, updated_by TEXT NOT NULL);";

/// A saved reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedReply {
    pub name: String,
    /// The text, placeholders unfilled.
    pub body: String,
    /// When and by whom it was last saved.
    pub updated: String,
    pub updated_by: String,
}

/// What a saved reply's placeholders stand for on one ticket.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    /// `{contact}`: the submitter's name.
    pub contact: &'a str,
    /// `{ticket}`: the ticket's id.
    pub ticket: &'a str,
    /// `{agent}`: the staff member who sends it.
    pub agent: &'a str,
}

/// `body` with its placeholders filled, in one pass: a filled value is never read for placeholders again, so a
/// contact named `{agent}` stays that text. An unknown `{word}` stays as written.
pub fn fill(body: &str, values: Placeholders<'_>) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let known = [("{contact}", values.contact), ("{ticket}", values.ticket), ("{agent}", values.agent)];
        match known.iter().find(|(name, _)| after.starts_with(name)) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len()..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A saved reply's name: a name as people have (1 to 64 characters, nothing invisible), trimmed.
pub fn check_name(name: &str) -> anyhow::Result<String> {
    crate::lifecycle::name("a saved reply's name", name).map_err(anyhow::Error::msg)
}

/// A saved reply's text: 1 to `COMMENT_MAX` characters once trimmed (what a reply may have), its line breaks as
/// typed: a browser sends a textarea's as CRLF, and its `maxlength` counts each as one character.
fn check_body(body: &str) -> anyhow::Result<String> {
    let body = body.replace("\r\n", "\n").replace('\r', "\n");
    let body = body.trim();
    let count = body.chars().count();
    if count == 0 || count > crate::lifecycle::COMMENT_MAX {
        anyhow::bail!(
            "a saved reply's text has 1 to {} characters (this one has {count})",
            crate::lifecycle::COMMENT_MAX
        );
    }
    Ok(body.to_owned())
}

impl Staff {
    /// The saved replies whose name or text contains `search` (all for an empty one), by name.
    pub fn saved_replies(&self, search: &str) -> anyhow::Result<Vec<SavedReply>> {
        replies_of(&self.lock(), search)
    }

    /// The saved reply `name` (whatever its case).
    pub fn saved_reply(&self, name: &str) -> anyhow::Result<Option<SavedReply>> {
        let conn = self.lock();
        let Some(name) = stored_name(&conn, name)? else { return Ok(None) };
        let found = conn
            .query_row(
                "SELECT name, body, updated, updated_by FROM saved_replies WHERE name = ?1",
                [name],
                reply_from_row,
            )
            .optional()?;
        Ok(found)
    }

    /// Saves `body` as the reply `name`, by `by`: a new one, or a new text for one of that name (its case kept
    /// from before). `true` when it is new.
    pub fn save_reply(&self, name: &str, body: &str, by: &str) -> anyhow::Result<bool> {
        let (name, body) = (check_name(name)?, check_body(body)?);
        let conn = self.lock();
        let now = crate::schema::now_rfc3339();
        if let Some(stored) = stored_name(&conn, &name)? {
            conn.execute(
                "UPDATE saved_replies SET body = ?2, updated = ?3, updated_by = ?4 WHERE name = ?1",
                params![stored, body, now, by],
            )?;
            return Ok(false);
        }
        let count: i64 = conn.query_row("SELECT count(*) FROM saved_replies", [], |row| row.get(0))?;
        if count as usize >= SAVED_MAX {
            anyhow::bail!("the team keeps at most {SAVED_MAX} saved replies; delete one first");
        }
        conn.execute(
            "INSERT INTO saved_replies (name, body, updated, updated_by) VALUES (?1, ?2, ?3, ?4)",
            params![name, body, now, by],
        )?;
        Ok(true)
    }

    /// Deletes the saved reply `name`; `false` when there was none.
    pub fn delete_reply(&self, name: &str) -> anyhow::Result<bool> {
        let conn = self.lock();
        let Some(name) = stored_name(&conn, name)? else { return Ok(false) };
        Ok(conn.execute("DELETE FROM saved_replies WHERE name = ?1", [name])? == 1)
    }
}

/// A name or text as compared whatever its case: SQLite's NOCASE folds only ASCII ("Ärger" and "ärger" are two
/// names to it), so the comparison is made here, over a list of at most [`SAVED_MAX`].
fn folded(text: &str) -> String {
    text.to_lowercase()
}

/// The name `name` is kept under, whatever its case.
fn stored_name(conn: &Connection, name: &str) -> anyhow::Result<Option<String>> {
    let wanted = folded(name.trim());
    let mut statement = conn.prepare("SELECT name FROM saved_replies")?;
    let names = statement.query_map([], |row| row.get::<_, String>(0))?;
    for stored in names {
        let stored = stored?;
        if folded(&stored) == wanted {
            return Ok(Some(stored));
        }
    }
    Ok(None)
}

/// The saved replies of the staff list in `desk_dir`, read without changing anything (the bot's Close form): none
/// without a staff list, or one from before saved replies.
pub fn saved_replies_in(desk_dir: &Path) -> anyhow::Result<Vec<SavedReply>> {
    let Some((conn, path)) = super::read_only(desk_dir)? else { return Ok(Vec::new()) };
    let exists: bool = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'saved_replies'", [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|count| count > 0)?;
    if !exists {
        return Ok(Vec::new());
    }
    replies_of(&conn, "").with_context(|| format!("cannot read the saved replies of {}", path.display()))
}

/// The saved replies whose name or text contains `search` whatever its case (all for an empty one), by name. The
/// search is made here, not with SQLite's LIKE: that folds only ASCII, and refuses a pattern over 50,000 bytes.
fn replies_of(conn: &Connection, search: &str) -> anyhow::Result<Vec<SavedReply>> {
    let search = folded(search.trim());
    let mut statement = conn.prepare("SELECT name, body, updated, updated_by FROM saved_replies")?;
    let rows = statement.query_map([], reply_from_row)?;
    let mut replies = Vec::new();
    for reply in rows {
        let reply = reply?;
        if search.is_empty() || folded(&reply.name).contains(&search) || folded(&reply.body).contains(&search) {
            replies.push(reply);
        }
    }
    replies.sort_by_cached_key(|reply| (folded(&reply.name), reply.name.clone()));
    Ok(replies)
}

fn reply_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SavedReply> {
    Ok(SavedReply { name: row.get(0)?, body: row.get(1)?, updated: row.get(2)?, updated_by: row.get(3)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Placeholders<'static> {
        Placeholders { contact: "Ana {agent}", ticket: "t-1", agent: "bo" }
    }

    #[test]
    fn placeholders_are_filled_once_and_unknown_ones_stay() {
        assert_eq!(
            fill("Hi {contact}, {agent} here about {ticket}. {unknown} {", values()),
            "Hi Ana {agent}, bo here about t-1. {unknown} {"
        );
        assert_eq!(fill("{{ticket}}", values()), "{t-1}");
        assert_eq!(fill("ü{contact}ü", values()), "üAna {agent}ü", "multi-byte text around a placeholder");
    }

    #[test]
    fn saved_replies_are_created_edited_searched_and_deleted_by_name_whatever_its_case() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        assert!(staff.save_reply(" Refund ", "Hi {contact}, refunded.", "ana").unwrap());
        assert!(staff.save_reply("Password", "Use the reset link, {contact}.", "ana").unwrap());
        assert!(!staff.save_reply("refund", "Hi {contact}, refunded in full.", "bo").unwrap(), "an edit");
        let refund = staff.saved_reply("REFUND").unwrap().unwrap();
        assert_eq!(
            (refund.name.as_str(), refund.body.as_str(), refund.updated_by.as_str()),
            ("Refund", "Hi {contact}, refunded in full.", "bo")
        );
        let names = |search: &str| staff.saved_replies(search).unwrap().into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(""), ["Password", "Refund"]);
        assert_eq!(names("reset"), ["Password"]);
        assert_eq!(names("100%"), Vec::<String>::new(), "% is a character, not a wildcard");
        assert!(staff.save_reply("", "text", "ana").is_err());
        assert!(staff.save_reply("x\u{200B}", "text", "ana").is_err());
        assert!(staff.save_reply("long", &"x".repeat(crate::lifecycle::COMMENT_MAX + 1), "ana").is_err());
        assert!(staff.save_reply("empty", "   ", "ana").is_err());
        assert_eq!(saved_replies_in(dir.path()).unwrap().len(), 2);
        assert!(staff.delete_reply("password").unwrap());
        assert!(!staff.delete_reply("password").unwrap());
        assert_eq!(names(""), ["Refund"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(saved_replies_in(empty.path()).unwrap().is_empty());
    }
}
