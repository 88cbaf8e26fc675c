//! Sending mail over SMTP (`lettre`): the only code here that speaks SMTP. `smtps://` is TLS from the first byte,
//! `smtp://` requires STARTTLS, except to a server on this machine, where it goes without TLS; both sign in with
//! the mailbox's user and password and trust the public roots and `mail.ca_file`.
//!
//! An answer is sorted into what it means for the mail: the server took it, refused it for good (a 5xx: a bad
//! address, a message it will not take), deferred it (a 4xx: a full mailbox, greylisting), or could not be reached
//! (a network failure, TLS, a timeout); the last two are worth another try.

use std::time::Duration;

use anyhow::Context as _;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::SmtpUrl;

/// How long one conversation with the server may take.
const PATIENCE: Duration = Duration::from_secs(60);

/// How a mail ended.
#[derive(Debug)]
pub enum Sent {
    /// The server took it: its answer.
    Accepted(String),
    /// The server refused it for good: its answer.
    Refused(String),
    /// The server cannot take it now: its answer.
    Deferred(String),
    /// The server could not be reached, or did not answer in time: why.
    Unreachable(String),
}

/// A way out for mail.
#[derive(Clone)]
pub struct Outbox {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Outbox {
    /// The outbox through `url`, signing in as `user`.
    pub fn new(
        url: &SmtpUrl,
        user: &str,
        password: &SecretString,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Outbox> {
        let tls = || -> anyhow::Result<TlsParameters> {
            let mut parameters = TlsParameters::builder(url.host.clone());
            if let Some(path) = ca_file {
                let pem =
                    std::fs::read(path).with_context(|| format!("cannot read mail.ca_file {}", path.display()))?;
                let certificate = Certificate::from_pem(&pem)
                    .with_context(|| format!("mail.ca_file {} is not a PEM certificate", path.display()))?;
                parameters = parameters.add_root_certificate(certificate);
            }
            parameters.build_rustls().context("TLS for the mail server")
        };
        let security = match (url.tls, url.local()) {
            (true, _) => Tls::Wrapper(tls()?),
            (false, false) => Tls::Required(tls()?),
            (false, true) => Tls::None,
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
            .port(url.port)
            .tls(security)
            .credentials(Credentials::new(user.to_owned(), password.expose_secret().to_owned()))
            .timeout(Some(PATIENCE))
            .build();
        Ok(Outbox { transport })
    }

    /// Sends `message`.
    pub async fn send(&self, message: Message) -> Sent {
        match tokio::time::timeout(PATIENCE, self.transport.send(message)).await {
            Err(_) => Sent::Unreachable(format!("the mail server did not answer within {PATIENCE:?}")),
            Ok(Ok(answer)) => Sent::Accepted(answer.message().collect::<Vec<_>>().join(" ")),
            Ok(Err(error)) if error.is_permanent() => Sent::Refused(error.to_string()),
            Ok(Err(error)) if error.is_transient() => Sent::Deferred(error.to_string()),
            Ok(Err(error)) => Sent::Unreachable(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by an attack (#34, replies): a server that cannot be reached must be told from one that defers one
    /// mail, so that the waiting replies ask it one at a time.
    #[tokio::test]
    async fn a_server_that_is_not_there_is_unreachable_not_a_refusal_or_a_deferral() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = SmtpUrl { tls: false, host: "127.0.0.1".into(), port };
        let outbox = Outbox::new(&url, "support@example.com", &SecretString::from("secret"), None).unwrap();
        let mail = Message::builder()
            .from("support@example.com".parse().unwrap())
            .to("ann@example.com".parse().unwrap())
            .subject("hi")
            .body(String::from("hello"))
            .unwrap();
        let sent = outbox.send(mail).await;
        assert!(matches!(sent, Sent::Unreachable(_)), "{sent:?}");
    }
}
