//! Who may work tickets: the staff list, their sign-in tokens and linked Discord accounts, and the machine-local
//! credential of the CLI. The desk and the Discord bot both ask it who someone is.
//!
//! A staff member's token is shown once, in the sign-in link `franz staff add` prints; only its SHA-256 is stored
//! (the token is 256 random bits, so a fast hash is enough). The list lives in `staff.sqlite` in the desk
//! directory, apart from the ticket store, which may be deleted at any time. The local credential lets the
//! `franz tickets` CLI on the same machine act without a staff link: the running desk writes it, readable by the
//! owner only, next to its address.
//!
//! A sign-in link is not the token: it carries a code of its own that works once, within [`LINK_LIFETIME`] (a
//! browser keeps the links it opened in its history). It opens a browser session: a random id in an HttpOnly
//! cookie, stored (as a hash) beside the staff list with the token its member held, so removing someone or giving
//! them a new token ends their sessions too.
//!
//! A Discord account linked to a staff member (`franz staff link-discord`) acts as that member when it presses a
//! staff card's button, so one person is one identity whatever door they use. From the first link on, the staff
//! list *requires* a linked account for those presses (the Discord role alone no longer does), and that stays so:
//! otherwise removing the last linked member would open the buttons to the whole role again.

pub mod saved;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::files::{private_dir, private_file};

/// A staff member as `franz staff list` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    pub added: String,
    /// Their linked Discord user ids.
    pub discord: Vec<u64>,
}

/// A team and who is in it, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Team {
    pub name: String,
    pub members: Vec<String>,
    /// Its own staff channel and role in Discord, where its tickets' cards go (`franz team add --discord-channel`).
    #[serde(skip)]
    pub discord: Option<StaffChannel>,
    /// What `/ticket` offers it as, when it takes tickets from Discord (`franz team add --category`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// A staff channel in Discord and the role whose members work the cards in it: franz's own
/// (`DISCORD_STAFF_CHANNEL_ID`, `DISCORD_STAFF_ROLE_ID`), or a team's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaffChannel {
    /// Where the cards go.
    pub channel_id: u64,
    /// Who may press their buttons.
    pub role_id: u64,
}

/// The longest category text: Discord's limit on a select menu option's label.
pub const CATEGORY_MAX: usize = 100;

/// Who a Discord account is, for the staff cards' buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscordAccount {
    /// Linked to this staff member: it acts as them.
    Linked(String),
    /// Linked to nobody, while accounts are required: it may not act.
    Unlinked,
    /// No account was ever linked: the Discord role alone decides, and the account acts as itself.
    RoleDecides,
}

/// The staff list, shared by the desk's request handlers.
pub struct Staff {
    conn: Mutex<Connection>,
}

/// What the desk writes for the CLI on this machine: where it listens and a token only this machine's user reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Local {
    pub url: String,
    pub token: String,
}

impl Staff {
    /// Opens (or creates) the staff list in `desk_dir`.
    pub fn open(desk_dir: &Path) -> anyhow::Result<Staff> {
        private_dir(desk_dir)?;
        let path = desk_dir.join("staff.sqlite");
        let conn = Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        private_file(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: a reader holding the list open cannot keep `franz staff remove` from ending a token.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS staff (name TEXT PRIMARY KEY, token_hash BLOB NOT NULL UNIQUE, added TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS sessions (id_hash BLOB PRIMARY KEY, name TEXT NOT NULL,
                 token_hash BLOB NOT NULL, csrf TEXT NOT NULL, expires TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS links (name TEXT PRIMARY KEY, code_hash BLOB NOT NULL UNIQUE, expires TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS discord (user_id TEXT PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS teams (name TEXT PRIMARY KEY, added TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS members (team TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (team, name));",
        )
        .and_then(|()| conn.execute_batch(saved::TABLE))
        .with_context(|| format!("cannot prepare {}", path.display()))?;
        // A team's place in Discord came later: a list of before gains its columns (snowflakes as text).
        for column in TEAM_COLUMNS {
            if !has_column(&conn, "teams", column)? {
                conn.execute(&format!("ALTER TABLE teams ADD COLUMN {column} TEXT"), [])
                    .with_context(|| format!("cannot prepare {}", path.display()))?;
            }
        }
        Ok(Staff { conn: Mutex::new(conn) })
    }

    /// Adds `name` (or gives them a new token, which ends the old one) and returns the token.
    pub fn add(&self, name: &str) -> anyhow::Result<(String, bool)> {
        self.add_with_discord(name, None)
    }

    /// Adds `name` as [`Staff::add`] does and, in the same transaction, links Discord account `discord` to them
    /// ([`Staff::link_discord`]): when the link is refused, nobody is added.
    pub fn add_with_discord(&self, name: &str, discord: Option<u64>) -> anyhow::Result<(String, bool)> {
        let name = crate::lifecycle::staff_name("a staff name", name).map_err(anyhow::Error::msg)?;
        let token = new_token()?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existed = tx.query_row("SELECT 1 FROM staff WHERE name = ?1", [&name], |_| Ok(())).optional()?.is_some();
        tx.execute(
            "INSERT INTO staff (name, token_hash, added) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, added = excluded.added",
            params![name, hash(&token).to_vec(), crate::schema::now_rfc3339()],
        )?;
        if let Some(user_id) = discord {
            link_in(&tx, &name, user_id)?;
        }
        tx.commit()?;
        Ok((token, existed))
    }

    /// Removes `name`; their token, sign-in link, sessions and linked Discord accounts stop working at once. All or
    /// nothing: a remove that fails half way must not leave a link that a later member of the same name inherits.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        let name = name.trim();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if tx.execute("DELETE FROM staff WHERE name = ?1", [name])? == 0 {
            bail!("{name} is not on the staff list (see `franz staff list`)");
        }
        for table in ["links", "sessions", "discord", "members"] {
            tx.execute(&format!("DELETE FROM {table} WHERE name = ?1"), [name])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds team `name`; `false` when it existed already.
    pub fn add_team(&self, name: &str) -> anyhow::Result<bool> {
        let name = name.trim();
        crate::lifecycle::routing::team_name(name).map_err(anyhow::Error::msg)?;
        let added = self.lock().execute(
            "INSERT OR IGNORE INTO teams (name, added) VALUES (?1, ?2)",
            params![name, crate::schema::now_rfc3339()],
        )?;
        Ok(added == 1)
    }

    /// Removes team `name` and who was in it. Its tickets keep its name (their history says where they were) until
    /// they are moved.
    pub fn remove_team(&self, name: &str) -> anyhow::Result<()> {
        let name = name.trim();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if tx.execute("DELETE FROM teams WHERE name = ?1", [name])? == 0 {
            bail!("there is no team {name} (see `franz team list`)");
        }
        tx.execute("DELETE FROM members WHERE team = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    /// Puts staff member `name` in team `team`; both must exist.
    pub fn join_team(&self, name: &str, team: &str) -> anyhow::Result<()> {
        let (name, team) = (name.trim(), team.trim());
        let conn = self.lock();
        if conn.query_row("SELECT 1 FROM teams WHERE name = ?1", [team], |_| Ok(())).optional()?.is_none() {
            bail!("there is no team {team}; add it first with `franz team add {team}`");
        }
        if conn.query_row("SELECT 1 FROM staff WHERE name = ?1", [name], |_| Ok(())).optional()?.is_none() {
            bail!("{name} is not on the staff list (see `franz staff list`)");
        }
        conn.execute("INSERT OR IGNORE INTO members (team, name) VALUES (?1, ?2)", [team, name])?;
        Ok(())
    }

    /// Gives team `name` its own staff channel and role in Discord (or none: its cards go to franz's staff
    /// channel again). The ids are Discord's (snowflakes), never 0.
    pub fn set_team_discord(&self, name: &str, place: Option<StaffChannel>) -> anyhow::Result<()> {
        if let Some(place) = place {
            check_team_discord(place)?;
        }
        let (channel, role) = (place.map(|p| p.channel_id.to_string()), place.map(|p| p.role_id.to_string()));
        self.update_team(name, "discord_channel = ?2, discord_role = ?3", params![name.trim(), channel, role])
    }

    /// Offers team `name` in `/ticket`'s category menu as `category` (or takes it out of the menu).
    pub fn set_team_category(&self, name: &str, category: Option<&str>) -> anyhow::Result<()> {
        let category = category.map(check_category).transpose()?;
        self.update_team(name, "category = ?2", params![name.trim(), category])
    }

    fn update_team(&self, name: &str, set: &str, params: impl rusqlite::Params) -> anyhow::Result<()> {
        if self.lock().execute(&format!("UPDATE teams SET {set} WHERE name = ?1"), params)? == 0 {
            bail!("there is no team {}; add it first with `franz team add {}`", name.trim(), name.trim());
        }
        Ok(())
    }

    /// Every team with its members, by name.
    pub fn teams(&self) -> anyhow::Result<Vec<Team>> {
        teams_of(&self.lock())
    }

    pub fn list(&self) -> anyhow::Result<Vec<Member>> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT staff.name, staff.added, group_concat(discord.user_id) FROM staff
             LEFT JOIN discord ON discord.name = staff.name GROUP BY staff.name ORDER BY staff.name",
        )?;
        let rows = statement.query_map([], |row| {
            let ids: Option<String> = row.get(2)?;
            let mut discord: Vec<u64> = ids.unwrap_or_default().split(',').filter_map(|id| id.parse().ok()).collect();
            discord.sort_unstable();
            Ok(Member { name: row.get(0)?, added: row.get(1)?, discord })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ties Discord account `user_id` to `name`, and from now on requires a linked account for the staff cards'
    /// buttons. An account is one person's: linked to someone else, it is refused.
    pub fn link_discord(&self, name: &str, user_id: u64) -> anyhow::Result<()> {
        let name = name.trim();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if tx.query_row("SELECT 1 FROM staff WHERE name = ?1", [name], |_| Ok(())).optional()?.is_none() {
            bail!("{name} is not on the staff list (see `franz staff list`)");
        }
        link_in(&tx, name, user_id)?;
        tx.commit()?;
        Ok(())
    }

    /// Unties Discord account `user_id` from `name`.
    pub fn unlink_discord(&self, name: &str, user_id: u64) -> anyhow::Result<()> {
        let name = name.trim();
        let gone = self
            .lock()
            .execute("DELETE FROM discord WHERE user_id = ?1 AND name = ?2", params![user_id.to_string(), name])?;
        if gone == 0 {
            bail!("Discord account {user_id} is not linked to {name} (see `franz staff list`)");
        }
        Ok(())
    }

    /// Who Discord account `user_id` is, for the staff cards' buttons.
    pub fn discord_account(&self, user_id: u64) -> anyhow::Result<DiscordAccount> {
        Ok(account_of(&self.lock(), user_id)?)
    }

    /// The staff member a token belongs to.
    pub fn verify(&self, token: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .lock()
            .query_row("SELECT name FROM staff WHERE token_hash = ?1", [hash(token).to_vec()], |row| row.get(0))
            .optional()?)
    }

    /// A new sign-in link code for `name`, which works once within [`LINK_LIFETIME`]; it replaces an unused one.
    pub fn link(&self, name: &str) -> anyhow::Result<String> {
        let name = name.trim();
        let code = new_token()?;
        let expires = (chrono::Utc::now() + LINK_LIFETIME).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let conn = self.lock();
        if conn.query_row("SELECT 1 FROM staff WHERE name = ?1", [name], |_| Ok(())).optional()?.is_none() {
            bail!("{name} is not on the staff list (see `franz staff list`)");
        }
        conn.execute(
            "INSERT INTO links (name, code_hash, expires) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET code_hash = excluded.code_hash, expires = excluded.expires",
            params![name, hash(&code).to_vec(), expires],
        )?;
        Ok(code)
    }

    /// Opens a browser session with a sign-in link's `code`, and uses the code up: `None` when it is unknown, used
    /// or expired, or its member is no longer on the staff list.
    pub fn start_session(&self, code: &str) -> anyhow::Result<Option<Session>> {
        let now = crate::schema::now_rfc3339();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let Some(name) = tx
            .query_row(
                "DELETE FROM links WHERE code_hash = ?1 AND expires > ?2 RETURNING name",
                params![hash(code).to_vec(), now],
                |row| row.get::<_, String>(0),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let Some(token_hash) = tx
            .query_row("SELECT token_hash FROM staff WHERE name = ?1", [&name], |row| row.get::<_, Vec<u8>>(0))
            .optional()?
        else {
            return Ok(None);
        };
        let session = Session { id: new_token()?, name, csrf: new_token()? };
        let expires = (chrono::Utc::now() + SESSION_LIFETIME).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        tx.execute("DELETE FROM sessions WHERE expires < ?1", [&now])?;
        tx.execute(
            "INSERT INTO sessions (id_hash, name, token_hash, csrf, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash(&session.id).to_vec(), session.name, token_hash, session.csrf, expires],
        )?;
        tx.commit()?;
        Ok(Some(session))
    }

    /// The session with id `id`, while it has not expired and its member still holds the token it began with.
    pub fn session(&self, id: &str) -> anyhow::Result<Option<Session>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT s.name, s.csrf FROM sessions s JOIN staff ON staff.name = s.name AND staff.token_hash = s.token_hash
                 WHERE s.id_hash = ?1 AND s.expires > ?2",
                params![hash(id).to_vec(), crate::schema::now_rfc3339()],
                |row| Ok(Session { id: id.to_owned(), name: row.get(0)?, csrf: row.get(1)? }),
            )
            .optional()?)
    }

    /// Ends a session (signing out).
    pub fn end_session(&self, id: &str) -> anyhow::Result<()> {
        self.lock().execute("DELETE FROM sessions WHERE id_hash = ?1", [hash(id).to_vec()])?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A team's place in Discord as [`Staff::set_team_discord`] takes it, or why not.
pub fn check_team_discord(place: StaffChannel) -> anyhow::Result<()> {
    if place.channel_id == 0 || place.role_id == 0 {
        bail!("a Discord channel or role id is never 0 (copy it with Developer Mode: right-click, Copy ID)");
    }
    Ok(())
}

/// A category text as [`Staff::set_team_category`] keeps it (trimmed), or why not.
pub fn check_category(text: &str) -> anyhow::Result<&str> {
    let text = text.trim();
    if text.is_empty() {
        bail!("a category needs some text: it is what a submitter picks in /ticket");
    }
    if text.chars().count() > CATEGORY_MAX {
        bail!("a category is at most {CATEGORY_MAX} characters (Discord's limit for a menu option)");
    }
    if text.chars().any(char::is_control) {
        bail!("a category is one line of text");
    }
    Ok(text)
}

/// The columns of `teams` added after it was first made.
const TEAM_COLUMNS: [&str; 3] = ["discord_channel", "discord_role", "category"];

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut statement = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = statement.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(names.iter().any(|name| name == column))
}

fn teams_of(conn: &Connection) -> anyhow::Result<Vec<Team>> {
    let mut statement = conn.prepare(
        "SELECT teams.name, group_concat(members.name, char(10)), teams.discord_channel, teams.discord_role,
                teams.category
         FROM teams LEFT JOIN members ON members.team = teams.name GROUP BY teams.name ORDER BY teams.name",
    )?;
    let rows = statement.query_map([], |row| {
        let members: Option<String> = row.get(1)?;
        let mut members: Vec<String> = members.unwrap_or_default().lines().map(str::to_owned).collect();
        members.sort();
        let id = |column: usize| -> rusqlite::Result<Option<u64>> {
            Ok(row.get::<_, Option<String>>(column)?.and_then(|id| id.parse().ok()).filter(|id| *id != 0))
        };
        let discord = match (id(2)?, id(3)?) {
            (Some(channel_id), Some(role_id)) => Some(StaffChannel { channel_id, role_id }),
            _ => None,
        };
        Ok(Team { name: row.get(0)?, members, discord, category: row.get(4)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The staff list in `desk_dir` opened for reading only, and where it is: the bot reads it, and must neither create
/// one nor hold one open; `None` when there is none.
fn read_only(desk_dir: &Path) -> anyhow::Result<Option<(Connection, PathBuf)>> {
    let path = desk_dir.join("staff.sqlite");
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot read the staff list {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(Some((conn, path)))
}

/// The teams of the staff list in `desk_dir`, read without changing anything, for the bot: where each team's cards
/// go and what `/ticket` offers. No staff list there (or one from before teams had a place in Discord, until the
/// desk opens it) means no team has one.
pub fn teams_in(desk_dir: &Path) -> anyhow::Result<Vec<Team>> {
    let Some((conn, path)) = read_only(desk_dir)? else { return Ok(Vec::new()) };
    let read = || -> anyhow::Result<Vec<Team>> {
        for column in TEAM_COLUMNS {
            if !has_column(&conn, "teams", column)? {
                return Ok(Vec::new());
            }
        }
        teams_of(&conn)
    };
    read().with_context(|| format!("cannot read the teams of {}", path.display()))
}

/// Who Discord account `user_id` is, by the staff list in `desk_dir`, read without changing anything: the bot asks
/// this for every press, and must neither create a staff list nor hold one open. No staff list there means nothing
/// was ever linked (with the desk in another data dir, links made there do not reach this bot: see README).
pub fn discord_account_in(desk_dir: &Path, user_id: u64) -> anyhow::Result<DiscordAccount> {
    let Some((conn, path)) = read_only(desk_dir)? else { return Ok(DiscordAccount::RoleDecides) };
    account_of(&conn, user_id).with_context(|| format!("cannot read the staff list {}", path.display()))
}

/// How many Discord accounts the staff list in `desk_dir` links, and whether links are required: `None` when there
/// is no staff list there. For the bot's line in the ready table.
pub fn discord_links_in(desk_dir: &Path) -> anyhow::Result<Option<(u64, bool)>> {
    let Some((conn, _)) = read_only(desk_dir)? else { return Ok(None) };
    let linked: i64 =
        conn.query_row("SELECT count(*) FROM discord JOIN staff ON staff.name = discord.name", [], |row| row.get(0))?;
    Ok(Some((linked as u64, links_required(&conn)?)))
}

fn account_of(conn: &Connection, user_id: u64) -> rusqlite::Result<DiscordAccount> {
    let linked: Option<String> = conn
        .query_row(
            "SELECT discord.name FROM discord JOIN staff ON staff.name = discord.name WHERE discord.user_id = ?1",
            [user_id.to_string()],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(name) = linked {
        return Ok(DiscordAccount::Linked(name));
    }
    Ok(if links_required(conn)? { DiscordAccount::Unlinked } else { DiscordAccount::RoleDecides })
}

fn links_required(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM settings WHERE key = 'discord_links_required'", [], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Links `user_id` to `name` (who is on the list) within `tx`, and requires links from now on.
fn link_in(tx: &rusqlite::Transaction<'_>, name: &str, user_id: u64) -> anyhow::Result<()> {
    let holder: Option<String> = tx
        .query_row("SELECT name FROM discord WHERE user_id = ?1", [user_id.to_string()], |row| row.get(0))
        .optional()?;
    match holder {
        Some(holder) if holder == name => {}
        Some(holder) => bail!(
            "Discord account {user_id} is linked to {holder} already; `franz staff unlink-discord {holder} {user_id}` \
             first"
        ),
        None => {
            tx.execute("INSERT INTO discord (user_id, name) VALUES (?1, ?2)", params![user_id.to_string(), name])?;
        }
    }
    tx.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('discord_links_required', '1')", [])?;
    Ok(())
}

/// A signed-in browser: the cookie's id, who it is, and the token its forms must carry (against cross-site
/// requests).
#[derive(Clone)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("name", &self.name).finish_non_exhaustive()
    }
}

/// How long a browser stays signed in.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::days(30);
/// How long a sign-in link works (once).
pub const LINK_LIFETIME: chrono::Duration = chrono::Duration::days(7);

/// A new random token: 32 bytes from the operating system, base64url.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness from the operating system: {error}"))?;
    Ok(format!("franz_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether two token hashes are equal, in time that does not depend on where they differ.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]).into()
}

/// The desk directory of a configuration: the staff list and the local credential.
pub fn dir(config: &crate::config::Config) -> PathBuf {
    config.data_dir.join("desk")
}

/// Where the desk writes its local credential.
pub fn local_path(desk_dir: &Path) -> PathBuf {
    desk_dir.join("local.json")
}

/// Writes the local credential, readable by the owner only.
pub fn write_local(desk_dir: &Path, local: &Local) -> anyhow::Result<()> {
    let path = local_path(desk_dir);
    let staged = desk_dir.join(format!(".local-{}.json", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&staged).with_context(|| format!("cannot write {}", staged.display()))?;
    std::io::Write::write_all(&mut file, &serde_json::to_vec(local)?)?;
    drop(file);
    std::fs::rename(&staged, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads the local credential, if a desk ever ran with this data dir.
pub fn read_local(desk_dir: &Path) -> anyhow::Result<Option<Local>> {
    let path = local_path(desk_dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))?))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_teams_discord_channel_and_category_are_kept_checked_and_read_by_the_bot_without_a_migration() {
        let dir = tempfile::tempdir().unwrap();
        // A staff list from before teams had a place in Discord: the bot reads it as teams without one.
        let old = Connection::open(dir.path().join("staff.sqlite")).unwrap();
        old.execute_batch("CREATE TABLE teams (name TEXT PRIMARY KEY, added TEXT NOT NULL); INSERT INTO teams VALUES ('billing', 'then');")
            .unwrap();
        drop(old);
        assert!(teams_in(dir.path()).unwrap().is_empty());
        assert!(teams_in(&dir.path().join("nowhere")).unwrap().is_empty(), "no staff list: no teams");
        let staff = Staff::open(dir.path()).unwrap();
        let place = StaffChannel { channel_id: 11, role_id: 12 };
        staff.set_team_discord("billing", Some(place)).unwrap();
        staff.set_team_category("billing", Some("  Invoices  ")).unwrap();
        let read = teams_in(dir.path()).unwrap();
        assert_eq!((read[0].discord, read[0].category.as_deref()), (Some(place), Some("Invoices")));
        assert!(staff.set_team_discord("support", Some(place)).unwrap_err().to_string().contains("franz team add"));
        assert!(staff.set_team_discord("billing", Some(StaffChannel { channel_id: 0, role_id: 1 })).is_err());
        for bad in ["", "a\nb", &"x".repeat(CATEGORY_MAX + 1)] {
            assert!(staff.set_team_category("billing", Some(bad)).is_err(), "{bad:?}");
        }
        staff.set_team_discord("billing", None).unwrap();
        staff.set_team_category("billing", None).unwrap();
        assert_eq!((staff.teams().unwrap()[0].discord, staff.teams().unwrap()[0].category.clone()), (None, None));
    }

    #[test]
    fn teams_are_added_joined_listed_and_removed_and_a_team_or_member_that_is_not_there_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        assert!(staff.add_team("billing").unwrap());
        assert!(!staff.add_team("billing").unwrap(), "once");
        assert!(staff.add_team("triage").unwrap_err().to_string().contains("no team name"));
        assert!(staff.add_team("Billing Team").is_err());
        staff.add("ana").unwrap();
        staff.join_team("ana", "billing").unwrap();
        staff.join_team("ana", "billing").unwrap();
        assert!(staff.join_team("ana", "support").unwrap_err().to_string().contains("franz team add support"));
        assert!(staff.join_team("bo", "billing").unwrap_err().to_string().contains("not on the staff list"));
        assert_eq!(
            staff.teams().unwrap(),
            [Team { name: "billing".into(), members: vec!["ana".into()], discord: None, category: None }]
        );
        staff.remove("ana").unwrap();
        assert_eq!(staff.teams().unwrap()[0].members, Vec::<String>::new(), "a removed member leaves their teams");
        staff.remove_team("billing").unwrap();
        assert!(staff.teams().unwrap().is_empty());
        assert!(staff.remove_team("billing").is_err());
    }

    #[test]
    fn a_token_signs_in_its_member_until_they_are_removed_or_get_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        let (first, existed) = staff.add("ana").unwrap();
        assert!(!existed);
        assert_eq!(staff.verify(&first).unwrap().as_deref(), Some("ana"));
        assert_eq!(staff.verify("franz_wrong").unwrap(), None);
        let (second, existed) = staff.add(" ana ").unwrap();
        assert!(existed);
        assert_eq!(staff.verify(&first).unwrap(), None, "the old link stops working");
        assert_eq!(staff.verify(&second).unwrap().as_deref(), Some("ana"));
        staff.remove("ana").unwrap();
        assert_eq!(staff.verify(&second).unwrap(), None);
        assert!(staff.remove("ana").unwrap_err().to_string().contains("not on the staff list"));
    }

    #[test]
    fn only_the_hash_of_a_token_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (token, _) = Staff::open(dir.path()).unwrap().add("ana").unwrap();
        let bytes = std::fs::read(dir.path().join("staff.sqlite")).unwrap();
        let needle = token.as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }

    #[cfg(unix)]
    #[test]
    fn the_staff_list_and_its_directory_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let desk = dir.path().join("desk");
        Staff::open(&desk).unwrap().add("ana").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&desk), 0o700);
        assert_eq!(mode(&desk.join("staff.sqlite")), 0o600);
    }

    #[test]
    fn removing_staff_works_while_a_reader_holds_the_list_open() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        let (token, _) = staff.add("ana").unwrap();
        let reader = Connection::open(dir.path().join("staff.sqlite")).unwrap();
        reader.execute_batch("BEGIN; SELECT * FROM staff;").unwrap();
        let started = std::time::Instant::now();
        staff.remove("ana").unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(staff.verify(&token).unwrap(), None);
    }

    /// `name` added, and a session opened with a fresh link.
    fn signed_in(staff: &Staff, name: &str) -> Session {
        staff.add(name).unwrap();
        let code = staff.link(name).unwrap();
        staff.start_session(&code).unwrap().unwrap()
    }

    #[test]
    fn a_link_signs_in_once_and_is_not_the_api_token() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        assert!(staff.link("nobody").unwrap_err().to_string().contains("not on the staff list"));
        let (token, _) = staff.add("ana").unwrap();
        assert!(staff.start_session(&token).unwrap().is_none(), "the API token is no sign-in link");
        let code = staff.link("ana").unwrap();
        assert_eq!(staff.start_session(&code).unwrap().unwrap().name, "ana");
        assert!(staff.start_session(&code).unwrap().is_none(), "a link works once");
        let unused = staff.link("ana").unwrap();
        let newer = staff.link("ana").unwrap();
        assert!(staff.start_session(&unused).unwrap().is_none(), "a newer link replaces an unused one");
        let conn = Connection::open(dir.path().join("staff.sqlite")).unwrap();
        conn.execute("UPDATE links SET expires = '2000-01-01T00:00:00.000Z'", []).unwrap();
        assert!(staff.start_session(&newer).unwrap().is_none(), "an expired link does not work");
        let removed = staff.link("ana").unwrap();
        staff.remove("ana").unwrap();
        assert!(staff.start_session(&removed).unwrap().is_none(), "a removed member's link does not work");
    }

    #[test]
    fn a_session_lasts_until_sign_out_removal_or_a_new_token() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        assert!(staff.start_session("franz_wrong").unwrap().is_none());
        let first = signed_in(&staff, "ana");
        assert_eq!(staff.session(&first.id).unwrap().unwrap().name, "ana");
        assert!(staff.session("franz_other").unwrap().is_none());
        let second = staff.start_session(&staff.link("ana").unwrap()).unwrap().unwrap();
        staff.end_session(&first.id).unwrap();
        assert!(staff.session(&first.id).unwrap().is_none(), "signed out");
        assert!(staff.session(&second.id).unwrap().is_some(), "another browser stays signed in");
        staff.add("ana").unwrap();
        assert!(staff.session(&second.id).unwrap().is_none(), "a new token ends the old one's sessions");
        let third = signed_in(&staff, "bo");
        staff.remove("bo").unwrap();
        assert!(staff.session(&third.id).unwrap().is_none(), "a removed member is signed out");
        staff.add("bo").unwrap();
        assert!(staff.session(&third.id).unwrap().is_none(), "and stays out when added again");
    }

    #[test]
    fn a_session_id_is_stored_only_as_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        let session = signed_in(&staff, "ana");
        drop(staff);
        let bytes = std::fs::read(dir.path().join("staff.sqlite")).unwrap();
        let wal = std::fs::read(dir.path().join("staff.sqlite-wal")).unwrap_or_default();
        let needle = session.id.as_bytes();
        assert!(!bytes.windows(needle.len()).chain(wal.windows(needle.len())).any(|w| w == needle));
        assert!(!format!("{session:?}").contains(&session.id));
    }

    /// Regression (#33): the staff role alone authorized Discord presses, so removing someone from the staff list
    /// left their buttons working, and a Discord username was taken for a staff name.
    #[test]
    fn a_linked_discord_account_is_its_member_and_once_any_is_linked_the_role_alone_is_not_enough() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        staff.add("ana").unwrap();
        staff.add("bo").unwrap();
        assert_eq!(staff.discord_account(42).unwrap(), DiscordAccount::RoleDecides, "nothing linked yet");
        assert!(staff.link_discord("nobody", 42).unwrap_err().to_string().contains("not on the staff list"));
        staff.link_discord("ana", 42).unwrap();
        staff.link_discord(" ana ", 42).unwrap();
        staff.link_discord("ana", 43).unwrap();
        assert!(staff.link_discord("bo", 42).unwrap_err().to_string().contains("linked to ana already"));
        assert_eq!(staff.discord_account(42).unwrap(), DiscordAccount::Linked("ana".into()));
        assert_eq!(staff.discord_account(7).unwrap(), DiscordAccount::Unlinked, "links are required now");
        let listed = staff.list().unwrap();
        assert_eq!((listed[0].name.as_str(), listed[0].discord.as_slice()), ("ana", &[42, 43][..]));
        assert!(listed[1].discord.is_empty());

        staff.unlink_discord("ana", 43).unwrap();
        assert_eq!(staff.discord_account(43).unwrap(), DiscordAccount::Unlinked);
        assert!(staff.unlink_discord("bo", 42).unwrap_err().to_string().contains("not linked to bo"));
        staff.remove("ana").unwrap();
        assert_eq!(staff.discord_account(42).unwrap(), DiscordAccount::Unlinked, "removed: her account is out too");
        staff.add("ana").unwrap();
        assert_eq!(staff.discord_account(42).unwrap(), DiscordAccount::Unlinked, "and stays out when added again");
    }

    /// Found by an attack (#33): `remove` ran four separate statements, not one transaction. When it fails after the
    /// first (here a failing delete of the Discord links, standing in for a busy database after the 5 s timeout, a
    /// crash or a full disk), the member is gone but their Discord link and unused sign-in link stay behind, and a
    /// later `franz staff add` of the same name brings them back: the removed person's Discord account presses as
    /// the new member, and the old sign-in link opens the new member's session.
    #[test]
    fn a_remove_that_fails_half_way_leaves_nothing_of_the_member_behind() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        staff.add("ana").unwrap();
        staff.link_discord("ana", 42).unwrap();
        let old_link = staff.link("ana").unwrap();
        let other = Connection::open(dir.path().join("staff.sqlite")).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER fail BEFORE DELETE ON discord BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
            )
            .unwrap();
        let removed = staff.remove("ana");
        other.execute_batch("DROP TRIGGER fail;").unwrap();
        if removed.is_err() {
            let still_listed = staff.list().unwrap().iter().any(|m| m.name == "ana");
            assert!(still_listed, "a failed remove must change nothing, but ana is off the list with her links kept");
            staff.remove("ana").unwrap(); // the admin tries again
        }
        staff.add("ana").unwrap(); // a new colleague called ana
        assert_eq!(staff.discord_account(42).unwrap(), DiscordAccount::Unlinked, "the old ana's account");
        assert!(staff.start_session(&old_link).unwrap().is_none(), "the old ana's sign-in link");
    }

    #[test]
    fn staff_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let staff = Staff::open(dir.path()).unwrap();
        assert!(staff.add("").is_err());
        assert!(staff.add(&"x".repeat(65)).is_err());
    }
}
