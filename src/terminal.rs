//! Text for a terminal: what franz prints of ticket text, error messages and records, made so that it can neither
//! drive the terminal (escape sequences) nor pass for franz's own output (line breaks, hidden or reordering
//! characters). The CLI, `franz tail`, `franz status`, the problem reports and `main`'s error lines use it.

use serde_json::Value;

use crate::lifecycle;

/// `value` as one line of JSON that a terminal shows and does not act on. serde_json escapes only the C0 controls;
/// DEL, the C1 controls (U+009B and U+009D start terminal escapes as ESC [ and ESC ] do) and the characters that
/// hide or reorder text ([`lifecycle::hidden`]) become `\u` escapes too, so the line still parses to the same
/// value. They can stand only inside JSON strings (everything else in JSON is ASCII), where an escape is valid.
pub fn terminal_json(value: &Value) -> String {
    let json = value.to_string();
    let mut line = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || lifecycle::hidden(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                line.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            line.push(c);
        }
    }
    line
}

/// Text on one line, with control characters (terminal escapes and line breaks included) and the characters that
/// hide, break or reorder text ([`lifecycle::hidden`]) shown as escapes instead of acted on, so that ticket text can
/// neither drive the terminal nor pass for franz's own output.
pub fn visible(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() || lifecycle::hidden(c) { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn terminal_escapes_in_ticket_text_are_shown_not_run() {
        assert_eq!(visible("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    }

    #[test]
    fn characters_that_hide_or_reorder_text_are_shown_as_escapes() {
        assert_eq!(visible("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(terminal_json(&serde_json::json!("a\u{9b}2J")), "\"a\\u009b2J\"");
    }

    #[test]
    fn line_separators_and_zero_width_characters_are_shown_as_escapes() {
        for (hidden, shown) in [
            ("\u{2028}", "\\u{2028}"),
            ("\u{2029}", "\\u{2029}"),
            ("\u{200b}", "\\u{200b}"),
            ("\u{feff}", "\\u{feff}"),
            ("\u{61c}", "\\u{61c}"),
        ] {
            assert_eq!(visible(&format!("a{hidden}b")), format!("a{shown}b"));
        }
        assert_eq!(visible("Zoë 👩\u{200d}💻"), "Zoë 👩\u{200d}💻", "joiners stay: emoji need them");
    }

    /// #33: `--json` printed C1 controls, DEL and bidi overrides raw, so a ticket could drive the terminal.
    #[test]
    fn json_output_escapes_c1_controls_del_and_direction_overrides_and_parses_back_to_the_same_value() {
        let hostile = "a\u{9b}2J\u{9d}0;title\u{7}\u{7f}\u{85}\u{202e}\u{2066}\u{2069}\u{200e}\u{200f}\u{61c}\u{1b}[1mz 👩\u{200d}💻";
        let value = json!({"tickets": [{"body": hostile, "labels": ["\u{202d}x"]}], "\u{9b}key": null});
        let line = terminal_json(&value);
        let raw: Vec<char> = line.chars().filter(|&c| c.is_control() || lifecycle::hidden(c)).collect();
        assert!(raw.is_empty(), "raw {raw:?} in {line}");
        for escape in
            ["\\u009b", "\\u009d", "\\u007f", "\\u0085", "\\u202e", "\\u2066", "\\u200e", "\\u061c", "\\u001b"]
        {
            assert!(line.contains(escape), "{escape} in {line}");
        }
        assert!(line.contains("👩\u{200d}💻"), "joiners stay: {line}");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), value, "the same JSON to a program");
    }

    #[test]
    fn c1_controls_and_del_are_shown_as_escapes_in_text_output() {
        assert_eq!(visible("a\u{9b}2Jb\u{9d}0;x\u{7f}"), "a\\u{9b}2Jb\\u{9d}0;x\\u{7f}");
    }
}
