//! Tests of the configuration: precedence, provenance, rejections that name the setting and never a secret, and
//! that `.env.example` and the README's table list exactly the settings of the struct.

use super::*;
use std::collections::BTreeSet;

fn layers(env: &[(&str, &str)], dotenv: &[(&str, &str)], file: &str) -> Layers {
    Layers {
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        dotenv: dotenv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        file: file.parse().unwrap(),
        files_read: vec![],
    }
}

#[test]
fn defaults_run_the_embedded_broker_on_loopback() {
    let config = resolve(&Flags::default(), &layers(&[], &[], "")).unwrap();
    assert_eq!(config.broker, BrokerKind::Embedded);
    assert_eq!(config.bootstrap, "127.0.0.1:9092");
    assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
    assert_eq!(config.partitions, 3);
    assert_eq!(config.topics, Topics::default());
    assert_eq!(config.services, Service::ALL.to_vec());
    assert_eq!(config.embedded.durability, Durability::Fsync);
    assert_eq!(config.embedded.retention_bytes, Some(1 << 30));
    assert_eq!(config.embedded.retention_age, Some(std::time::Duration::from_secs(7 * 24 * 3600)));
}

#[test]
fn retention_limits_of_zero_turn_them_off() {
    let env = [("FRANZ_RETENTION_HOURS", "0"), ("FRANZ_RETENTION_MB", "0"), ("FRANZ_DURABILITY", "os")];
    let config = resolve(&Flags::default(), &layers(&env, &[], "")).unwrap();
    assert_eq!((config.embedded.retention_age, config.embedded.retention_bytes), (None, None));
    assert_eq!(config.embedded.durability, Durability::Os);
}

#[test]
fn flags_beat_environment_beats_dotenv_beats_file() {
    let file = "partitions = 4\n[topics]\nintake = \"from-file\"\nerrors = \"errs-file\"\ntickets = \"t-file\"";
    let all = layers(
        &[("FRANZ_PARTITIONS", "6"), ("FRANZ_TOPIC_INTAKE", "from-env")],
        &[("FRANZ_PARTITIONS", "5"), ("FRANZ_TOPIC_INTAKE", "from-dotenv"), ("FRANZ_TOPIC_ERRORS", "errs-dotenv")],
        file,
    );
    let flags = Flags { partitions: Some("7".into()), ..Flags::default() };
    let config = resolve(&flags, &all).unwrap();
    assert_eq!(config.partitions, 7);
    assert_eq!(config.topics.intake, "from-env");
    assert_eq!(config.topics.errors, "errs-dotenv");
    assert_eq!(config.topics.tickets, "t-file");
    assert_eq!(config.topics.dead_letters, "tickets-formatted-dlq");
    assert_eq!(resolve(&Flags::default(), &all).unwrap().partitions, 6);
}

#[test]
fn historical_kafka_broker_variable_selects_an_external_cluster() {
    let config = resolve(&Flags::default(), &layers(&[], &[("KAFKA_BROKER", "kafka:29092")], "")).unwrap();
    assert_eq!(config.broker, BrokerKind::External);
    assert_eq!(config.bootstrap, "kafka:29092");
}

#[test]
fn invalid_values_name_the_setting_its_source_and_the_accepted_form() {
    let cases = [
        (
            Flags { partitions: Some("0".into()), ..Flags::default() },
            layers(&[], &[], ""),
            "`partitions` (from --partitions): \"0\" is not an integer from 1 to 1000",
        ),
        (Flags::default(), layers(&[("FRANZ_BROKER", "docker")], &[], ""), "`broker` (from environment FRANZ_BROKER)"),
        (
            Flags::default(),
            layers(&[], &[("KAFKA_BROKER", "nohost")], ""),
            "`bootstrap` (from .env KAFKA_BROKER): \"nohost\" is not HOST:PORT",
        ),
        (Flags::default(), layers(&[], &[], "listen = \"everywhere\""), "`listen` (from franz.toml)"),
        (
            Flags { only: vec!["absturz".into(), "bot".into()], ..Flags::default() },
            layers(&[], &[], ""),
            "\"bot\" is not a service",
        ),
        (Flags::default(), layers(&[("FRANZ_TOPIC_ERRORS", "bad topic")], &[], ""), "not a Kafka topic name"),
        (Flags::default(), layers(&[("FRANZ_TOPIC_ERRORS", "discordMSG")], &[], ""), "topic names must differ"),
        (Flags::default(), layers(&[("FRANZ_DURABILITY", "always")], &[], ""), "\"always\" is not fsync or os"),
        (Flags::default(), layers(&[], &[], "[embedded]\nsegment_mb = 0"), "`embedded.segment_mb` (from franz.toml)"),
    ];
    for (flags, layers, expected) in cases {
        let error = resolve(&flags, &layers).unwrap_err().to_string();
        assert!(error.contains(expected), "{error:?} should contain {expected:?}");
    }
}

#[test]
fn secrets_are_redacted_in_render_and_debug() {
    let config = resolve(
        &Flags::default(),
        &layers(
            &[("DISCORD_WEBHOOK_URL", "https://discord.com/api/webhooks/1/sekrit-token")],
            &[("DISCORD_TOKEN", "bot-sekrit")],
            "",
        ),
    )
    .unwrap();
    let shown = format!("{}\n{config:?}", config.render());
    assert!(!shown.contains("sekrit"), "{shown}");
    assert!(shown.contains("discord.webhook_url") && shown.contains("[redacted"));
    assert_eq!(expose(config.discord.webhook_url.as_ref().unwrap()), "https://discord.com/api/webhooks/1/sekrit-token");
}

#[test]
fn malformed_files_are_reported_without_echoing_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "DISCORD_TOKEN='sekrit-token\n").unwrap();
    let toml = dir.path().join("franz.toml");
    std::fs::write(&toml, "[discord]\ntoken = sekrit-token\n").unwrap();
    let dotenv_error = format!("{:#}", Layers::load(dir.path(), None).unwrap_err());
    std::fs::remove_file(dir.path().join(".env")).unwrap();
    let toml_error = format!("{:#}", Layers::load(dir.path(), Some(&toml)).unwrap_err());
    for error in [&dotenv_error, &toml_error] {
        assert!(!error.contains("sekrit"), "{error}");
    }
    assert!(dotenv_error.contains(".env is malformed"), "{dotenv_error}");
    assert!(toml_error.contains("is not valid TOML at line 2"), "{toml_error}");
    let layers = Layers { dotenv: [("DISCORD_TOKEN".to_owned(), "sekrit".to_owned())].into(), ..Layers::default() };
    assert!(!format!("{layers:?}").contains("sekrit"));
}

#[test]
fn unknown_keys_in_the_file_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("franz.toml");
    std::fs::write(&path, "partitons = 3\n").unwrap();
    let error = Layers::load(dir.path(), Some(&path)).unwrap_err().to_string();
    assert!(error.contains("unknown setting `partitons`"), "{error}");
}

#[test]
fn dotenv_in_the_working_directory_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "FRANZ_TOPIC_INTAKE=from-dotenv-file\n").unwrap();
    let missing = dir.path().join("none.toml");
    std::fs::write(&missing, "").unwrap();
    let layers = Layers::load(dir.path(), Some(&missing)).unwrap();
    assert_eq!(layers.dotenv.get("FRANZ_TOPIC_INTAKE").map(String::as_str), Some("from-dotenv-file"));
    assert_eq!(layers.files_read.len(), 2);
}

#[test]
fn a_plain_typed_field_reads_its_text_without_a_parser_of_its_own() {
    // A setting added later as a plain `u16` or `u64` field must work from the environment and from flags.
    #[derive(Debug, Deserialize)]
    struct Probe {
        partitions: u16,
        discord: ProbeDiscord,
    }
    #[derive(Debug, Deserialize)]
    struct ProbeDiscord {
        guild_id: u64,
    }
    let flags = Flags { partitions: Some("7".into()), ..Flags::default() };
    let figment = sources::layered(&flags, &layers(&[("DISCORD_GUILD_ID", "42")], &[], "")).unwrap();
    let probe: Probe = extract(&figment).unwrap();
    assert_eq!((probe.partitions, probe.discord.guild_id), (7, 42));

    let figment = sources::layered(&Flags::default(), &layers(&[("FRANZ_PARTITIONS", "many")], &[], "")).unwrap();
    let error = extract::<Probe>(&figment).unwrap_err().to_string();
    assert!(error.contains("`partitions` (from environment FRANZ_PARTITIONS)") && error.contains("u16"), "{error}");
}

/// Variables franz reads that are not fields of `Config`: the log filter, read in `main.rs`.
const NOT_SETTINGS: [&str; 1] = ["FRANZ_LOG"];

/// The words in backquotes in `text`.
fn quoted(text: &str) -> BTreeSet<String> {
    text.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn assert_same(what: &str, expected: &BTreeSet<String>, found: &BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(found).collect();
    let stale: Vec<_> = found.difference(expected).collect();
    assert!(missing.is_empty() && stale.is_empty(), "{what}: missing {missing:?}, stale {stale:?}");
}

#[test]
fn env_example_and_readme_table_list_every_setting_and_nothing_else() {
    let keys: BTreeSet<String> = keys().into_iter().collect();
    let vars: BTreeSet<String> = keys.iter().flat_map(|key| env_names(key)).collect();

    // Every `NAME=` line of .env.example, commented out or not.
    let example: BTreeSet<String> = include_str!("../../.env.example")
        .lines()
        .filter_map(|line| line.trim_start_matches('#').split_once('='))
        .map(|(name, _)| name.trim().to_owned())
        .filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    let documented: BTreeSet<String> = vars.iter().cloned().chain(NOT_SETTINGS.map(String::from)).collect();
    assert_same(".env.example", &documented, &example);

    // The rows of the README's configuration table: keys in the first column, variables in the second.
    let table = include_str!("../../README.md")
        .split_once("| franz.toml key | environment | default |")
        .expect("the README has the configuration table")
        .1;
    let rows: Vec<Vec<&str>> =
        table.lines().skip(2).take_while(|line| line.starts_with('|')).map(|row| row.split('|').collect()).collect();
    assert!(rows.iter().all(|cells| cells.len() == 5), "every row has three cells");
    let readme_keys = rows.iter().flat_map(|cells| quoted(cells[1])).collect();
    let readme_vars = rows.iter().flat_map(|cells| quoted(cells[2])).collect();
    assert_same("README table, franz.toml keys", &keys, &readme_keys);
    assert_same("README table, environment variables", &vars, &readme_vars);
}

#[test]
fn broker_limits_and_the_advertised_address_are_read_and_checked() {
    let env = [("FRANZ_MAX_CONNECTIONS", "64"), ("FRANZ_ADVERTISE", "broker.internal:9093")];
    let file = "[embedded]\nmax_partitions = 500\nmax_request_mb = 8";
    let config = resolve(&Flags::default(), &layers(&env, &[], file)).unwrap();
    assert_eq!(config.embedded.max_connections, 64);
    assert_eq!(config.embedded.max_partitions, 500);
    assert_eq!(config.embedded.max_request_mb, 8);
    assert_eq!(config.advertise.as_deref(), Some("broker.internal:9093"));
    let flags = Flags { advertise: Some("0.0.0.0:9092".into()), ..Flags::default() };
    let error = resolve(&flags, &layers(&[], &[], "")).unwrap_err().to_string();
    assert!(error.contains("advertise") && error.contains("--advertise") && error.contains("connect to"), "{error}");
    let error = resolve(&Flags::default(), &layers(&[("FRANZ_MAX_CONNECTIONS", "0")], &[], "")).unwrap_err();
    let error = error.to_string();
    assert!(error.contains("embedded.max_connections") && error.contains("FRANZ_MAX_CONNECTIONS"), "{error}");
    assert!(error.contains("from 1 to"), "{error}");
}

#[test]
fn the_desk_public_url_is_an_http_origin_and_never_echoed() {
    let public = |value: &str| resolve(&Flags::default(), &layers(&[("FRANZ_DESK_PUBLIC_URL", value)], &[], ""));
    assert_eq!(
        public("https://desk.example.com/").unwrap().desk.public_url.as_deref(),
        Some("https://desk.example.com")
    );
    assert_eq!(public("http://10.0.0.5:8080").unwrap().desk.public_url.as_deref(), Some("http://10.0.0.5:8080"));
    assert_eq!(resolve(&Flags::default(), &layers(&[], &[], "")).unwrap().desk.public_url, None);
    for junk in [
        "desk.example.com",
        "ftp://desk.example.com",
        "https://user:sekrit@desk.example.com",
        "https://desk.example.com/desk",
        "https://desk.example.com/?sekrit=1",
    ] {
        let error = format!("{:#}", public(junk).unwrap_err());
        assert!(error.contains("desk.public_url") && error.contains("FRANZ_DESK_PUBLIC_URL"), "{error}");
        assert!(error.contains("with no path") && !error.contains("sekrit"), "{junk}: {error}");
    }
}

#[test]
fn the_discord_api_proxy_is_an_http_url_without_credentials_and_never_echoed() {
    let proxy = |value: &str| resolve(&Flags::default(), &layers(&[("DISCORD_API_PROXY", value)], &[], ""));
    let config = proxy("http://127.0.0.1:3000/").unwrap();
    assert_eq!(config.discord.api_proxy.as_deref(), Some("http://127.0.0.1:3000"));
    assert_eq!(
        proxy("https://proxy.internal/discord").unwrap().discord.api_proxy.as_deref(),
        Some("https://proxy.internal/discord")
    );
    assert_eq!(resolve(&Flags::default(), &layers(&[], &[], "")).unwrap().discord.api_proxy, None);
    for (junk, says) in [
        ("not a url", "http:// or https:// URL"),
        ("ftp://proxy.internal", "http:// or https:// URL"),
        ("http://user:sekrit@proxy.internal:3000", "credentials"),
        ("http://proxy.internal:3000/?key=sekrit", "query or fragment"),
    ] {
        let error = format!("{:#}", proxy(junk).unwrap_err());
        assert!(error.contains("discord.api_proxy") && error.contains("DISCORD_API_PROXY"), "{error}");
        assert!(error.contains(says) && !error.contains("sekrit"), "{junk}: {error}");
    }
}

#[test]
fn the_staff_channel_and_role_are_numeric_discord_ids_and_unset_by_default() {
    let env = [("DISCORD_STAFF_CHANNEL_ID", " 1177000000000000077 "), ("DISCORD_STAFF_ROLE_ID", "1177000000000000088")];
    let config = resolve(&Flags::default(), &layers(&env, &[], "")).unwrap();
    assert_eq!(
        (config.discord.staff_channel_id, config.discord.staff_role_id),
        (Some(1177000000000000077), Some(1177000000000000088))
    );
    let unset = resolve(&Flags::default(), &layers(&[], &[], "")).unwrap();
    assert_eq!((unset.discord.staff_channel_id, unset.discord.staff_role_id), (None, None));
    for junk in ["#support", "0", "-5"] {
        let error = resolve(&Flags::default(), &layers(&[("DISCORD_STAFF_ROLE_ID", junk)], &[], "")).unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("discord.staff_role_id") && error.contains("Copy ID"), "{junk}: {error}");
    }
}

/// Found by a review (#33): `DISCORD_GUILD_ID=0` was taken, and serenity's `GuildId::new(0)` panics at start.
#[test]
fn a_guild_id_is_a_positive_snowflake() {
    let config = resolve(&Flags::default(), &layers(&[("DISCORD_GUILD_ID", "1177000000000000001")], &[], "")).unwrap();
    assert_eq!(config.discord.guild_id, Some(1177000000000000001));
    for junk in ["0", "-1", "my server"] {
        let error = resolve(&Flags::default(), &layers(&[("DISCORD_GUILD_ID", junk)], &[], "")).unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("discord.guild_id") && error.contains("Copy Server ID"), "{junk}: {error}");
    }
}

#[test]
fn submitters_are_told_by_direct_message_unless_the_switch_is_off() {
    assert!(resolve(&Flags::default(), &layers(&[], &[], "")).unwrap().discord.notify_submitter);
    for off in ["false", " OFF ", "0", "no"] {
        let config = resolve(&Flags::default(), &layers(&[("DISCORD_NOTIFY_SUBMITTER", off)], &[], "")).unwrap();
        assert!(!config.discord.notify_submitter, "{off:?}");
    }
    let file = resolve(&Flags::default(), &layers(&[], &[], "[discord]\nnotify_submitter = false")).unwrap();
    assert!(!file.discord.notify_submitter, "a TOML boolean works too");
    let error = resolve(&Flags::default(), &layers(&[("DISCORD_NOTIFY_SUBMITTER", "maybe")], &[], "")).unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains("discord.notify_submitter") && error.contains("true or false"), "{error}");
}

#[test]
fn the_ticket_threads_channel_is_a_numeric_discord_id_and_unset_by_default() {
    let config = resolve(&Flags::default(), &layers(&[("DISCORD_TICKET_THREADS", "1177000000000000099")], &[], ""));
    assert_eq!(config.unwrap().discord.ticket_threads, Some(1177000000000000099));
    assert_eq!(resolve(&Flags::default(), &layers(&[], &[], "")).unwrap().discord.ticket_threads, None);
    let error = resolve(&Flags::default(), &layers(&[("DISCORD_TICKET_THREADS", "#tickets")], &[], "")).unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains("discord.ticket_threads") && error.contains("Copy ID"), "{error}");
}

#[test]
fn the_mailbox_url_is_imaps_anywhere_or_imap_to_this_machine_and_never_carries_credentials() {
    let url = |value: &str| {
        resolve(&Flags::default(), &layers(&[("FRANZ_MAIL_IMAP_URL", value)], &[], ""))
            .map(|config| config.mail.imap_url.unwrap())
            .map_err(|error| format!("{error:#}"))
    };
    let tls = url("imaps://imap.example.com/Support%20Mail").unwrap();
    assert_eq!(
        (tls.tls, tls.host.as_str(), tls.port, tls.mailbox.as_str()),
        (true, "imap.example.com", 993, "Support Mail")
    );
    assert_eq!(tls.to_string(), "imaps://imap.example.com:993/Support%20Mail");
    let local = url("imap://127.0.0.1:1143").unwrap();
    assert_eq!((local.tls, local.port, local.mailbox.as_str()), (false, 1143, "INBOX"));
    let clear = url("imap://imap.example.com/INBOX").unwrap_err();
    assert!(clear.contains("mail.imap_url") && clear.contains("unencrypted"), "{clear}");
    let credentials = url("imaps://support:hunter2@imap.example.com/INBOX").unwrap_err();
    assert!(credentials.contains("FRANZ_MAIL_PASSWORD") && !credentials.contains("hunter2"), "{credentials}");
    assert!(url("https://imap.example.com").unwrap_err().contains("imaps://"));
    assert!(url("imaps://imap.example.com/a%22b").unwrap_err().contains("quotes"));
    let defaults = resolve(&Flags::default(), &layers(&[], &[], "")).unwrap().mail;
    assert_eq!((defaults.imap_url, defaults.poll_secs, defaults.max_mb), (None, 60, 10));
}

#[test]
fn the_mail_password_is_never_shown() {
    let config = resolve(&Flags::default(), &layers(&[("FRANZ_MAIL_PASSWORD", "hunter2-mail")], &[], "")).unwrap();
    let shown = serde_json::to_string(&config).unwrap() + &format!("{config:?}");
    assert!(!shown.contains("hunter2-mail"), "{shown}");
}

/// Found by an attack (#34), failing first: an IPv6 address or an international host name in `mail.imap_url`. imap and imaps are not "special"
/// schemes to the URL parser, so its host is opaque: an IPv6 address loses its brackets in what franz shows (the
/// service table, the log, a dead letter's `source.mailbox`, the place a mail without a Message-ID is known by),
/// and a host name like bücher.de stays percent-encoded (`b%C3%BCcher.de`), which no resolver finds.
#[test]
fn an_ipv6_or_international_mailbox_host_is_shown_as_a_url_and_connected_to_by_its_name() {
    let url = |value: &str| {
        resolve(&Flags::default(), &layers(&[("FRANZ_MAIL_IMAP_URL", value)], &[], ""))
            .map(|config| config.mail.imap_url.unwrap())
            .map_err(|error| format!("{error:#}"))
    };
    let v6 = url("imap://[::1]:1143/INBOX").unwrap();
    assert_eq!(v6.host, "::1");
    assert_eq!(v6.to_string(), "imap://[::1]:1143/INBOX");
    let international = url("imaps://bücher.de/INBOX").unwrap();
    assert_eq!(international.host, "xn--bcher-kva.de");
}

/// Found by an attack (#26, silent tickets), failing first: the README says `close_when_silent_days = 0` turns the
/// close of silent tickets off. Set alone (the reminder left at its default of 2 days), franz refuses to start:
/// "remind_before_close_days (2) must be less than close_when_silent_days (0)". A reminder of a close that never
/// comes is no contradiction; the documented off switch must work by itself.
#[test]
fn close_when_silent_days_zero_alone_turns_the_close_off_and_franz_starts() {
    let file = "[service_levels]\nclose_when_silent_days = 0";
    let config = resolve(&Flags::default(), &layers(&[], &[], file)).map_err(|error| format!("{error:#}"));
    assert!(config.is_ok(), "the documented off switch is refused: {}", config.unwrap_err());
    let env = [("FRANZ_SERVICE_LEVELS_CLOSE_WHEN_SILENT_DAYS", "0")];
    let config = resolve(&Flags::default(), &layers(&env, &[], "")).map_err(|error| format!("{error:#}"));
    assert!(config.is_ok(), "the documented off switch is refused: {}", config.unwrap_err());
    assert!(config.unwrap().service_levels.levels().is_none(), "no target and no silence: no service levels");
}

/// The test (#27): a rule file with a bad regular expression is refused at start with its line and why;
/// good rules are compiled in order.
#[test]
fn a_routing_rule_that_cannot_work_stops_franz_with_its_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("franz.toml");
    let text = "[[routing]]\nname = \"invoices\"\nwords = [\"invoice\"]\nteam = \"billing\"\n\n\
                [[routing]]\nname = \"broken\"\npattern = \"(unclosed\"\nteam = \"support\"\n";
    std::fs::write(&path, text).unwrap();
    let layers = |text: &str| Layers { files_read: vec![path.clone()], ..layers(&[], &[], text) };
    let error = resolve(&Flags::default(), &layers(text)).map(|_| ()).unwrap_err();
    let error = format!("{error:#}");
    assert!(error.contains("routing rule 2 \"broken\""), "{error}");
    assert!(error.contains(&format!("{} line 6", path.display())), "its line: {error}");
    assert!(error.contains("no regular expression"), "why: {error}");
    let good = "[[routing]]\nname = \"invoices\"\nwords = [\"invoice\"]\nteam = \"billing\"\n\n\
                [[routing]]\nname = \"mail\"\norigin = \"Email\"\npriority = \"high\"\n";
    let config = resolve(&Flags::default(), &layers(good)).unwrap();
    let names: Vec<&str> = config.rules.iter().map(|rule| rule.name.as_str()).collect();
    assert_eq!(names, ["invoices", "mail"]);
    assert!(config.render().contains("invoices"), "franz config shows the rules");
    let twice = format!("{good}\n[[routing]]\nname = \"mail\"\nteam = \"x\"\n");
    let error = format!("{:#}", resolve(&Flags::default(), &layers(&twice)).map(|_| ()).unwrap_err());
    assert!(error.contains("name \"mail\" of an earlier rule"), "{error}");
}

/// Found by an attack (#27), failing first: `[[routing]]` in franz.toml, as the README writes it, stops franz at
/// once with "unknown setting `routing`": the known keys are read off the defaults, where the empty rule list is
/// skipped. (The tests build the layers by hand and never read a file.)
#[test]
fn routing_rules_written_in_franz_toml_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("franz.toml");
    std::fs::write(&path, "[[routing]]\nname = \"invoices\"\nwords = [\"invoice\"]\nteam = \"billing\"\n").unwrap();
    let layers = Layers::load(dir.path(), Some(&path));
    let layers = match layers {
        Ok(layers) => layers,
        Err(error) => panic!("franz.toml with a routing rule is refused: {:.120}", format!("{error:#}")),
    };
    let config = resolve(&Flags::default(), &layers).unwrap();
    assert_eq!(config.rules.iter().map(|rule| rule.name.as_str()).collect::<Vec<_>>(), ["invoices"]);
}

/// Found by an attack (#27), failing first: the line a broken rule is reported at is found by counting lines that
/// are exactly `[[routing]]`; a header with a comment (`[[routing]]  # billing`) or spaces (`[[ routing ]]`),
/// both valid TOML, is not counted, so the error names another rule's line.
#[test]
fn a_broken_rule_is_reported_at_its_own_line_whatever_its_header_looks_like() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("franz.toml");
    let text = "[[ routing ]]  # billing first\nname = \"invoices\"\nwords = [\"invoice\"]\nteam = \"billing\"\n\n\
                [[routing]]\nname = \"broken\"\npattern = \"(unclosed\"\nteam = \"support\"\n\n\
                [[routing]]\nname = \"mail\"\norigin = \"Email\"\nteam = \"support\"\n";
    std::fs::write(&path, text).unwrap();
    let layers = Layers { files_read: vec![path.clone()], ..layers(&[], &[], text) };
    let error = format!("{:#}", resolve(&Flags::default(), &layers).map(|_| ()).unwrap_err());
    assert!(error.contains("routing rule 2 \"broken\""), "{error}");
    assert!(error.contains(&format!("{} line 6", path.display())), "rule 2's header is on line 6: {error}");
}

/// Found by an attack (#27), failing first: `words = []` ("any of these" over none) is read as no words condition
/// at all, so the rule matches every ticket and sends them all to its team. It should be refused (or match none).
#[test]
fn a_rule_with_an_empty_words_list_is_no_catch_all() {
    let text = "[[routing]]\nname = \"invoices\"\nwords = []\nteam = \"billing\"\n";
    match resolve(&Flags::default(), &layers(&[], &[], text)) {
        Err(_) => {}
        Ok(config) => {
            let ticket = crate::schema::Ticket {
                origin: "Discord".into(),
                body: "my printer is on fire".into(),
                ..Default::default()
            };
            let routed = crate::lifecycle::routing::route(&config.rules, &ticket);
            assert_eq!(routed, None, "`words = []` took a ticket without any of its (no) words");
        }
    }
}

/// Per-team service levels are read from `[service_levels.teams.NAME]` in franz.toml; a team name no team may have
/// is refused.
#[test]
fn a_teams_own_service_levels_are_read_and_a_bad_team_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("franz.toml");
    let text = "[service_levels]\nfirst_response = \"normal 1h\"\n\n[service_levels.teams.billing]\nfirst_response = \"normal 15m\"\n";
    std::fs::write(&path, text).unwrap();
    let config = crate::config::resolve(&Flags::default(), &Layers::load(dir.path(), Some(&path)).unwrap()).unwrap();
    let levels = config.service_levels.levels().unwrap();
    let rendered = config.render();
    assert!(rendered.contains("normal 15m  ("), "franz config shows a team's targets: {rendered}");
    assert!(!rendered.contains("FRANZ_SERVICE_LEVELS_TEAMS"), "no variable names them: {rendered}");
    let billing = &levels.teams["billing"];
    assert_eq!(billing.names, [crate::lifecycle::levels::Target::FirstResponse]);
    assert_eq!(billing.targets.values().next(), Some(&Duration::from_secs(900)));
    std::fs::write(&path, "[service_levels.teams.Billing]\nfirst_response = \"normal 15m\"\n").unwrap();
    let error = crate::config::resolve(&Flags::default(), &Layers::load(dir.path(), Some(&path)).unwrap())
        .map(|_| ())
        .unwrap_err();
    assert!(format!("{error:#}").contains("no team name"), "{error:#}");
    std::fs::write(&path, "[service_levels.teams.billing]\nfirst_respons = \"normal 15m\"\n").unwrap();
    let error = crate::config::resolve(&Flags::default(), &Layers::load(dir.path(), Some(&path)).unwrap())
        .map(|_| ())
        .unwrap_err();
    assert!(format!("{error:#}").contains("first_respons"), "an unknown field is named: {error:#}");
}
