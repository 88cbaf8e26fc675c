//! How franz writes text that Discord shows: markdown and mentions defused, code blocks that always close, cuts
//! that are visible; and the nonces that make a post sent twice one message.
//!
//! The bot's replies and absturz's embeds both show user text, so both go through these functions. They are pure;
//! sending is `webhook`'s (a webhook within Discord's rate limits, and the HTTP client both services use).

pub mod webhook;

/// The Discord user who submitted `ticket`, when there is one: the one person a reply can reach in Discord. A
/// ticket from elsewhere (`franz ticket`, a record without a user id) has nobody to send it to.
pub fn submitter(ticket: &crate::lifecycle::TicketState) -> Option<u64> {
    ticket.contact_id.as_deref()?.parse().ok().filter(|id| *id > 0)
}

/// A message nonce (at most 25 characters) derived from `seed`: the same post always carries the same one, and
/// Discord (with `enforce_nonce`) answers a second post of it with the first message.
pub fn nonce(seed: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).simple().to_string();
    id[..25].to_owned()
}

/// What marks a cut.
const CUT: &str = "…";

/// Text made safe to show outside a code block: no markdown, no mentions, no line breaks.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '(' | ')' | '<' | ':' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("\u{200b}@\u{200b}"),
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// `text` in a fenced code block of at most `max` characters in all. The fence can never be closed early by the
/// text, and a cut is marked inside the block, so the block always closes.
pub fn code_block(language: &str, text: &str, max: usize) -> String {
    // A zero-width space between backticks keeps user text from closing the fence; `@` gets one too, so nothing
    // that looks like a mention survives even where Discord would render it.
    let safe = text.replace('`', "`\u{200b}").replace('@', "\u{200b}@\u{200b}");
    let frame = chars(language) + 8; // "```lang\n" + "\n```"
    let room = max.saturating_sub(frame);
    format!("```{language}\n{}\n```", clip(&safe, room))
}

/// At most `max` characters, the last one a visible cut marker when anything was cut.
pub fn clip(text: &str, max: usize) -> String {
    if chars(text) <= max {
        return text.to_owned();
    }
    let keep: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{keep}{CUT}")
}

pub fn chars(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_post_has_a_stable_nonce_within_discords_25_characters() {
        assert_eq!(super::nonce("t-1"), super::nonce("t-1"));
        assert_ne!(super::nonce("t-1"), super::nonce("t-2"));
        assert_eq!(super::nonce("t-1").len(), 25);
    }
}
