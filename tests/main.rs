//! Integration tests: the services against an in-process broker, each test on fresh topics.

mod util;

/// absturz: alerts to a fake Discord webhook, rate limits, failures, nothing lost.
mod absturz;
/// akte, the ticket store and the desk's API: lifecycle, conflicts, crashes, rebuilds.
mod akte;
/// aufbereitung end to end: tickets, dead letters, offsets, scale-out.
mod aufbereitung;
/// The embedded broker itself: restarts, groups, idempotence, bad input.
mod broker;
/// The web desk in Chromium over WebDriver: a ticket worked from arrival to close, live in a second browser.
mod browser;
/// Conversations in Discord direct messages: answers land on their tickets, the bot asks or offers, limits hold.
mod conversation;
/// The broker killed with SIGKILL while producing: no acknowledged record lost.
mod crash;
/// The intake path shared by `franz ticket` and the Discord bot.
mod intake;
/// The Discord bot's publishing path and replies.
mod kummerkasten;
/// The Discord bot end to end through the fake Discord: gateway, interactions, faults, shutdown.
mod kummerkasten_discord;
/// The staff side in Discord through the fake: one card per ticket, Claim and Close, who may press them.
mod kummerkasten_staff;
/// Tickets by email against real Postfix and Dovecot: every kind of mail, exactly once, limits, reconnects, bounces.
mod mail;
/// /metrics (promtool, names, counters, lag), /healthz and /readyz of a running franz.
mod ops;
/// The binary as separate processes: scale-out and start-up errors.
mod processes;
/// Satisfaction ratings: Discord's buttons and comment form, the public feedback page, the window.
mod satisfaction;
/// Saved replies: kept on the desk, filled for a ticket in the reply form, the API, the CLI and a card's Close.
mod saved_replies;
/// Service levels with a clock the test moves: due soon, missed, alerts, metrics, nothing said twice.
mod service_levels;
/// Teams and routing: rules route each new ticket with its reason in the history; moves; lists by team.
mod teams;
/// A private Discord thread per ticket: opened with the submitter, mirrored both ways, notes never there.
mod threads;
/// Transcripts of a ticket's conversation and the export of every ticket: API, pages and command line.
mod transcripts;
/// The web desk over HTTP: sign-in, sessions, cross-site forms refused, hostile text escaped, live updates.
mod web;
