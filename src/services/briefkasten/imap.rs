//! The mailbox over IMAP (`async-imap`): connect (TLS by rustls, with the public roots and an optional private
//! authority), sign in, select the mailbox, find the mails not yet taken, fetch them, mark them, and wait for new
//! ones with IDLE where the server offers it, else by polling.
//!
//! "Not yet taken" is "not `\Seen`": a mail is marked (flagged `\Seen`, or moved to a folder) only after its
//! ticket is published, so a mail is never lost between the two, and one read twice is the same ticket (see
//! `mail::interaction_id`). Every command has a deadline: a server that stops answering is a failed connection,
//! which the service makes again, never a hang.

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_imap::extensions::idle::IdleResponse;
use async_imap::types::UnsolicitedResponse;
use futures::TryStreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use crate::config::ImapUrl;

/// How long connecting, signing in and any one command may take; a fetch may take longer by its size.
const COMMAND_PATIENCE: Duration = Duration::from_secs(60);
/// The slowest link a fetch allows for: a fetch of N bytes may take [`COMMAND_PATIENCE`] and N / this many seconds.
const SLOWEST_BYTES_PER_SEC: usize = 16 * 1024;
/// How many mails one look at sizes asks for.
pub const FETCH_BATCH: usize = 100;
/// The most bytes of mail one fetch asks for: a larger mail is fetched alone.
pub const FETCH_BYTES: usize = 4 << 20;

/// A connection's bytes, with or without TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + Debug> Io for T {}

type Session = async_imap::Session<Box<dyn Io>>;

/// Where and as whom to sign in.
#[derive(Clone)]
pub struct Account {
    pub url: ImapUrl,
    pub user: String,
    pub password: SecretString,
    /// Trusted besides the public roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("url", &self.url.to_string()).field("user", &self.user).finish_non_exhaustive()
    }
}

/// The server refused to move mail to the folder (it does not exist, or may not be written): a setting to fix,
/// not a failure to try again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MoveRefused(pub String);

/// The server refused the sign-in (wrong user or password, or an account that may not use IMAP).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// One mail as fetched: its UID, its size, and its bytes (all of them, or only its header when it is too large).
#[derive(Debug)]
pub struct Fetched {
    pub uid: u32,
    pub size: usize,
    pub bytes: Vec<u8>,
    /// Only the header was fetched: the mail is larger than the limit.
    pub header_only: bool,
}

/// A signed-in session with the mailbox selected.
pub struct Mailbox {
    session: Session,
    pub uid_validity: u32,
    idle: bool,
    moves: bool,
}

impl Mailbox {
    /// Connects, signs in and selects the mailbox.
    pub async fn open(account: &Account) -> anyhow::Result<Mailbox> {
        let url = &account.url;
        let tcp = within(TcpStream::connect((url.host.as_str(), url.port)))
            .await
            .with_context(|| format!("cannot connect to {}:{}", url.host, url.port))?;
        let stream: Box<dyn Io> = if url.tls {
            let connector = TlsConnector::from(Arc::new(tls_config(account.ca_file.as_deref())?));
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .with_context(|| format!("{:?} is not a host name TLS can check", url.host))?;
            Box::new(within(connector.connect(name, tcp)).await.with_context(|| format!("TLS with {}", url.host))?)
        } else {
            Box::new(tcp)
        };
        let mut client = async_imap::Client::new(stream);
        match within(client.read_response()).await {
            Ok(Some(_greeting)) => {}
            Ok(None) => bail!("{} closed the connection before greeting", url.host),
            Err(error) => return Err(error).context("no greeting from the server"),
        }
        let signing_in = client.login(&account.user, account.password.expose_secret());
        // The error is the server's answer (or an I/O failure), which never repeats the password.
        let mut session: Session = match tokio::time::timeout(COMMAND_PATIENCE, signing_in).await {
            Ok(Ok(session)) => session,
            Ok(Err((error @ (async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_)), _))) => {
                return Err(Refused(format!("the server refused the sign-in of {:?}: {error}", account.user)).into());
            }
            Ok(Err((error, _))) => return Err(anyhow!("signing in: {error}")),
            Err(_) => bail!("the server did not answer the sign-in within {COMMAND_PATIENCE:?}"),
        };
        let capabilities = within(session.capabilities()).await.context("CAPABILITY")?;
        let idle = capabilities.has_str("IDLE");
        let moves = capabilities.has_str("MOVE");
        let selected = within(session.select(&url.mailbox)).await.with_context(|| format!("SELECT {}", url.mailbox))?;
        let uid_validity = selected.uid_validity.unwrap_or(0);
        Ok(Mailbox { session, uid_validity, idle, moves })
    }

    /// Whether the server announces new mail (IDLE) rather than being asked.
    pub fn idles(&self) -> bool {
        self.idle
    }

    /// The UIDs of the mails not yet taken, oldest first.
    pub async fn untaken(&mut self) -> anyhow::Result<Vec<u32>> {
        let mut uids: Vec<u32> =
            within(self.session.uid_search("UNSEEN")).await.context("UID SEARCH UNSEEN")?.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The sizes of `uids` (at most [`FETCH_BATCH`]), in bytes, oldest first; a mail gone meanwhile is left out.
    pub async fn sizes(&mut self, uids: &[u32]) -> anyhow::Result<Vec<(u32, usize)>> {
        let mut sizes: Vec<(u32, usize)> = self
            .fetch_raw(uids, "(UID RFC822.SIZE)", COMMAND_PATIENCE)
            .await?
            .into_iter()
            .filter_map(|fetch| Some((fetch.uid?, fetch.size? as usize)))
            .collect();
        sizes.sort_unstable();
        Ok(sizes)
    }

    /// Fetches the mails of `sizes` (from [`Mailbox::sizes`], together at most [`FETCH_BYTES`] or one mail): the
    /// whole of each mail up to `max_bytes`, only the header of a larger one. Nothing is marked as read by fetching
    /// (`BODY.PEEK`); a mail another client deleted meanwhile is left out.
    pub async fn fetch(&mut self, sizes: &[(u32, usize)], max_bytes: usize) -> anyhow::Result<Vec<Fetched>> {
        let (small, large): (Vec<_>, Vec<_>) = sizes.iter().partition(|(_, size)| *size <= max_bytes);
        let mut fetched = Vec::with_capacity(sizes.len());
        for (part, query, header_only) in
            [(&small, "(UID BODY.PEEK[])", false), (&large, "(UID BODY.PEEK[HEADER])", true)]
        {
            let wanted: Vec<u32> = part.iter().map(|(uid, _)| *uid).collect();
            let bytes: usize = if header_only { 0 } else { part.iter().map(|(_, size)| size).sum() };
            let patience = COMMAND_PATIENCE + Duration::from_secs((bytes / SLOWEST_BYTES_PER_SEC) as u64);
            for fetch in self.fetch_raw(&wanted, query, patience).await? {
                let Some(uid) = fetch.uid else { continue };
                let Some(bytes) = (if header_only { fetch.header() } else { fetch.body() }) else { continue };
                let size = part.iter().find(|(u, _)| *u == uid).map_or(0, |(_, size)| *size);
                fetched.push(Fetched { uid, size, bytes: bytes.to_vec(), header_only });
            }
        }
        fetched.sort_by_key(|mail| mail.uid);
        Ok(fetched)
    }

    async fn fetch_raw(
        &mut self,
        uids: &[u32],
        query: &str,
        patience: Duration,
    ) -> anyhow::Result<Vec<async_imap::types::Fetch>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(uids);
        let fetching = async {
            let stream = self.session.uid_fetch(&set, query).await?;
            stream.try_collect::<Vec<_>>().await
        };
        match tokio::time::timeout(patience, fetching).await {
            Ok(fetched) => fetched.with_context(|| format!("UID FETCH {query}")),
            Err(_) => bail!("UID FETCH {query}: the server sent it not within {patience:?}"),
        }
    }

    /// Marks `uids` as taken: moved to `folder`, or flagged `\Seen` without one.
    pub async fn mark(&mut self, uids: &[u32], folder: Option<&str>) -> anyhow::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let refused = |verb: &str, error: anyhow::Error| -> anyhow::Error {
            match error.downcast_ref::<async_imap::error::Error>() {
                Some(async_imap::error::Error::No(answer) | async_imap::error::Error::Bad(answer)) => {
                    MoveRefused(format!("the server refused to {verb} mail to {folder:?}: {answer}")).into()
                }
                _ => error.context(format!("UID {verb} to {folder:?}")),
            }
        };
        match folder {
            Some(folder) if self.moves => {
                within(self.session.uid_mv(&set, folder)).await.map_err(|error| refused("move", error))?
            }
            Some(folder) => {
                // Without MOVE: copy, then flag the original deleted and expunge it; a copy left by a failure
                // between the two is a duplicate in the folder, never a lost mail.
                within(self.session.uid_copy(&set, folder)).await.map_err(|error| refused("copy", error))?;
                self.store(&set, "+FLAGS.SILENT (\\Seen \\Deleted)").await?;
                within(async { self.session.uid_expunge(&set).await?.try_collect::<Vec<_>>().await })
                    .await
                    .context("UID EXPUNGE")?;
            }
            None => self.store(&set, "+FLAGS.SILENT (\\Seen)").await?,
        }
        Ok(())
    }

    async fn store(&mut self, set: &str, flags: &str) -> anyhow::Result<()> {
        within(async { self.session.uid_store(set, flags).await?.try_collect::<Vec<_>>().await })
            .await
            .with_context(|| format!("UID STORE {flags}"))?;
        Ok(())
    }

    /// Waits until the mailbox may have new mail: announced by IDLE (for at most `longest`, after which IDLE is
    /// renewed), or `longest` passed on a server without it. Gives the session back; `None` once `shutdown` came,
    /// without a word more to the server (which may not be answering).
    pub async fn wait(self, longest: Duration, shutdown: &CancellationToken) -> anyhow::Result<Option<Mailbox>> {
        // What the server said between commands (a mail that arrived since the search) is news already.
        let mut news = false;
        while let Ok(response) = self.session.unsolicited_responses.try_recv() {
            news |= matches!(response, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
        }
        if news {
            return Ok(Some(self));
        }
        if !self.idle {
            tokio::select! {
                () = tokio::time::sleep(longest) => return Ok(Some(self)),
                () = shutdown.cancelled() => return Ok(None),
            }
        }
        let Mailbox { session, uid_validity, idle, moves } = self;
        let unsolicited = session.unsolicited_responses.clone();
        let mut handle = session.idle();
        tokio::select! {
            started = within(handle.init()) => started.context("IDLE")?,
            () = shutdown.cancelled() => return Ok(None),
        }
        // A mail that arrived while IDLE started was reported while it started, not while it waits.
        let mut news = false;
        while let Ok(response) = unsolicited.try_recv() {
            news |= matches!(response, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
        }
        if !news {
            let (answer, _stop) = handle.wait_with_timeout(longest);
            tokio::select! {
                answer = answer => match answer.context("IDLE")? {
                    IdleResponse::NewData(_) | IdleResponse::Timeout | IdleResponse::ManualInterrupt => {}
                },
                () = shutdown.cancelled() => return Ok(None),
            }
        }
        let session = tokio::select! {
            done = within(handle.done()) => done.context("DONE (ending IDLE)")?,
            () = shutdown.cancelled() => return Ok(None),
        };
        Ok(Some(Mailbox { session, uid_validity, idle, moves }))
    }

    /// Signs out, briefly; a server that does not answer is left.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.session.logout()).await;
    }
}

/// A UID set as IMAP writes it: `1,2,5`.
fn uid_set(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// `work`, or a failure once it takes longer than [`COMMAND_PATIENCE`].
async fn within<T, E>(work: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(COMMAND_PATIENCE, work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => bail!("the server did not answer within {COMMAND_PATIENCE:?}"),
    }
}

/// TLS trusting the public roots, and the authorities in `ca_file` too.
fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("cannot read mail.ca_file {}", path.display()))?;
        let mut added = 0;
        for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
            let certificate =
                certificate.with_context(|| format!("mail.ca_file {} is not PEM certificates", path.display()))?;
            roots.add(certificate).with_context(|| format!("a certificate in {} is not usable", path.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!("mail.ca_file {} holds no PEM certificate", path.display());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_set_lists_the_uids() {
        assert_eq!(uid_set(&[3, 5, 9]), "3,5,9");
    }

    #[test]
    fn an_account_shows_no_password() {
        let account = Account {
            url: ImapUrl { tls: true, host: "imap.example.com".into(), port: 993, mailbox: "INBOX".into() },
            user: "support@example.com".into(),
            password: SecretString::from("hunter2-very-secret"),
            ca_file: None,
        };
        let shown = format!("{account:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("imaps://imap.example.com:993/INBOX"), "{shown}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let error = tls_config(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate") && error.contains("ca.pem"), "{error}");
    }
}
