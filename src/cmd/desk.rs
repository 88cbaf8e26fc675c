//! How the command line finds the desk: its address (the public URL, else where it last ran, else where it is
//! configured to listen) and where that address came from, in words, because a `.env` in the working directory can
//! set it without the user noticing; and whether a staff token may be sent there.

use anyhow::{Context as _, bail};

use crate::config::Config;
use crate::people as staff;

/// Where people open the desk: its public URL, else where it last ran, else where it is configured to listen; and
/// where that address came from, in words (a `.env` can set it without the user noticing).
pub(super) fn base_url(config: &Config, desk_dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    if let Some(public) = &config.desk.public_url {
        return Ok((public.clone(), format!("desk.public_url, from {}", source_of(config, "desk.public_url"))));
    }
    Ok(match staff::read_local(desk_dir)? {
        Some(local) => (local.url, format!("where the desk last ran, from {}", staff::local_path(desk_dir).display())),
        None => (
            crate::desk::url_for(config.desk.listen),
            format!("desk.listen, from {}", source_of(config, "desk.listen")),
        ),
    })
}

/// Where the setting `key` came from (`.env FRANZ_DESK_PUBLIC_URL`, a flag, franz.toml, `default`).
fn source_of(config: &Config, key: &str) -> String {
    config.report.iter().find(|s| s.key == key).map_or_else(|| "default".to_owned(), |s| s.source.clone())
}

/// Refuses to send a staff token to `url` over plain http to another host: anyone on the way could read it and act
/// as its owner. `from` says where the address came from, so a `.env` that points elsewhere shows itself.
pub(super) fn token_may_go_to(url: &str, from: &str, insecure: bool) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("the desk address {url} ({from}) is no URL"))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) || insecure {
        return Ok(());
    }
    bail!(
        "refusing to send your staff token to {url} ({from}): over plain http anyone on the network can read it. \
         Reach the desk over https (set desk.public_url, FRANZ_DESK_PUBLIC_URL, to its https:// address) or on \
         this machine; if that address is not yours, fix or remove the setting; pass --insecure only on a network \
         you trust"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staff_token_goes_only_over_https_or_to_this_machine_unless_insecure() {
        for url in ["https://desk.example.com", "http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080"] {
            assert!(token_may_go_to(url, "test", false).is_ok(), "{url}");
        }
        let refused = token_may_go_to("http://203.0.113.5:8080", ".env FRANZ_DESK_LISTEN", false).unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("203.0.113.5") && message.contains(".env FRANZ_DESK_LISTEN"), "{message}");
        assert!(message.contains("--insecure") && message.contains("https"), "{message}");
        assert!(token_may_go_to("http://desk.lan:8080", "test", false).is_err());
        assert!(token_may_go_to("http://desk.lan:8080", "test", true).is_ok(), "--insecure lets it through");
    }
}
