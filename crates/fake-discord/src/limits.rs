//! Discord's limits on a message body, checked as Discord checks them: a post or edit that breaks one is refused
//! whole with `400`, code `50035` ("Invalid Form Body"), and an `errors` object naming the offending fields.
//!
//! The numbers are Discord's documented ones (Channel resource: Create Message; Embed limits; Message Components):
//! `content` 2,000 characters; at most 10 embeds, each with a title of 256, a description of 4,096, 25 fields of
//! 256 (name) and 1,024 (value), a footer of 2,048 and an author name of 256, and all of those characters in all
//! embeds of the message together at most 6,000; at most 5 action rows of 5 buttons, a label of 80 and a
//! `custom_id` of 100; a nonce of 25. Only what a bot sends is checked; nothing here changes a message.

use serde_json::{Map, Value, json};

const CONTENT_MAX: usize = 2000;
const EMBEDS_MAX: usize = 10;
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELDS_MAX: usize = 25;
const FIELD_NAME_MAX: usize = 256;
const FIELD_VALUE_MAX: usize = 1024;
const FOOTER_MAX: usize = 2048;
const AUTHOR_MAX: usize = 256;
/// The sum of every embed's title, description, field names and values, footer text and author name.
const EMBEDS_TOTAL_MAX: usize = 6000;
const ROWS_MAX: usize = 5;
const ROW_COMPONENTS_MAX: usize = 5;
const LABEL_MAX: usize = 80;
const CUSTOM_ID_MAX: usize = 100;
const NONCE_MAX: usize = 25;

/// Why Discord would refuse `body` as a message: the `errors` object of its answer, keyed by the fields' paths
/// (`embeds.0.description`); `None` when the body is within every limit.
pub fn refusal(body: &Value) -> Option<Value> {
    let mut errors = Map::new();
    let mut too_long = Vec::new();
    let mut over = |path: String, max: usize| too_long.push((path, max));
    let chars = |value: &Value| value.as_str().map_or(0, |text| text.chars().count());
    if chars(&body["content"]) > CONTENT_MAX {
        over("content".into(), CONTENT_MAX);
    }
    let nonce = &body["nonce"];
    if nonce.is_string() && chars(nonce) > NONCE_MAX {
        over("nonce".into(), NONCE_MAX);
    }
    let embeds = body["embeds"].as_array().map_or(&[][..], Vec::as_slice);
    if embeds.len() > EMBEDS_MAX {
        over("embeds".into(), EMBEDS_MAX);
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let mut check = |path: &str, value: &Value, max: usize| {
            let n = chars(value);
            total += n;
            if n > max {
                over(format!("embeds.{i}.{path}"), max);
            }
        };
        check("title", &embed["title"], TITLE_MAX);
        check("description", &embed["description"], DESCRIPTION_MAX);
        check("footer.text", &embed["footer"]["text"], FOOTER_MAX);
        check("author.name", &embed["author"]["name"], AUTHOR_MAX);
        let fields = embed["fields"].as_array().map_or(&[][..], Vec::as_slice);
        for (j, field) in fields.iter().enumerate() {
            check(&format!("fields.{j}.name"), &field["name"], FIELD_NAME_MAX);
            check(&format!("fields.{j}.value"), &field["value"], FIELD_VALUE_MAX);
        }
        if fields.len() > FIELDS_MAX {
            over(format!("embeds.{i}.fields"), FIELDS_MAX);
        }
    }
    let rows = body["components"].as_array().map_or(&[][..], Vec::as_slice);
    if rows.len() > ROWS_MAX {
        over("components".into(), ROWS_MAX);
    }
    for (i, row) in rows.iter().enumerate() {
        let components = row["components"].as_array().map_or(&[][..], Vec::as_slice);
        if components.len() > ROW_COMPONENTS_MAX {
            over(format!("components.{i}.components"), ROW_COMPONENTS_MAX);
        }
        for (j, component) in components.iter().enumerate() {
            if chars(&component["label"]) > LABEL_MAX {
                over(format!("components.{i}.components.{j}.label"), LABEL_MAX);
            }
            if chars(&component["custom_id"]) > CUSTOM_ID_MAX {
                over(format!("components.{i}.components.{j}.custom_id"), CUSTOM_ID_MAX);
            }
        }
    }
    for (path, max) in too_long {
        let message = format!("Must be {max} or fewer in length.");
        errors.insert(path, json!({"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": message}]}));
    }
    if total > EMBEDS_TOTAL_MAX {
        // Discord names the whole list when only the sum is too long.
        errors.insert(
            "embeds".into(),
            json!({"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}]}),
        );
    }
    (!errors.is_empty()).then_some(Value::Object(errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_within_their_own_limits_are_refused_when_the_embeds_together_pass_6000() {
        let field = json!({"name": "n", "value": "v".repeat(1000)});
        let within = json!({"embeds": [{"description": "d".repeat(4000), "fields": [field.clone()]}]});
        assert_eq!(refusal(&within), None);
        let over =
            json!({"embeds": [{"description": "d".repeat(4000), "fields": [field.clone(), field.clone(), field]}]});
        let errors = refusal(&over).expect("7,003 characters are refused");
        assert!(errors.get("embeds").is_some(), "{errors}");
    }

    #[test]
    fn a_long_content_label_custom_id_or_nonce_is_refused_by_its_path() {
        let body = json!({
            "content": "c".repeat(2001),
            "nonce": "n".repeat(26),
            "components": [{"type": 1, "components": [{"type": 2, "label": "l".repeat(81), "custom_id": "i".repeat(101)}]}],
        });
        let errors = refusal(&body).unwrap();
        for path in ["content", "nonce", "components.0.components.0.label", "components.0.components.0.custom_id"] {
            assert!(errors.get(path).is_some(), "{path}: {errors}");
        }
    }
}
