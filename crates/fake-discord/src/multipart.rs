//! Requests with files, as Discord takes them (its "Uploading Files" reference): `multipart/form-data` whose
//! `payload_json` part is the JSON body and whose `files[n]` parts are the files, each with its `filename`. The fake
//! keeps the files with the message (`ChannelMessage::files`) and answers with their `attachments`, as Discord does.

use serde_json::{Value, json};

/// Discord's limit on a request's files for a bot in a server without boosts: 10 MiB.
pub const FILES_MAX: usize = 10 << 20;

/// A file of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// The JSON body and the files of a `multipart/form-data` request with `content_type`; `None` when it is no such
/// request, or cannot be read as one.
pub fn parse(content_type: &str, body: &[u8]) -> Option<(Value, Vec<File>)> {
    let boundary = content_type
        .strip_prefix("multipart/form-data")?
        .split(';')
        .find_map(|param| param.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut payload = Value::Null;
    let mut files = Vec::new();
    for part in split(body, &delimiter).into_iter().skip(1) {
        if part.starts_with(b"--") {
            break; // the closing delimiter
        }
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let at = find(part, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&part[..at]).to_string();
        let content = &part[at + 4..];
        let content = content.strip_suffix(b"\r\n").unwrap_or(content);
        let disposition = headers.lines().find(|line| line.to_ascii_lowercase().starts_with("content-disposition"))?;
        let name = parameter(disposition, "name")?;
        if name == "payload_json" {
            payload = serde_json::from_slice(content).ok()?;
        } else if name.starts_with("files[") {
            let content_type = headers
                .lines()
                .find_map(|line| line.strip_prefix("Content-Type:").or_else(|| line.strip_prefix("content-type:")))
                .map(|kind| kind.trim().to_owned());
            let filename = parameter(disposition, "filename").unwrap_or_default();
            files.push(File { filename, content_type, bytes: content.to_vec() });
        }
    }
    Some((payload, files))
}

/// The `attachments` of a message with `files`, as Discord shows them.
pub fn attachments(channel_id: u64, files: &[File]) -> Value {
    files
        .iter()
        .map(|file| {
            let id = crate::payloads::snowflake();
            let url = format!("https://cdn.discordapp.com/attachments/{channel_id}/{id}/{}", file.filename);
            json!({"id": id.to_string(), "filename": file.filename, "size": file.bytes.len(), "url": url,
                   "proxy_url": url, "content_type": file.content_type})
        })
        .collect()
}

fn parameter(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|param| {
        let (key, value) = param.trim().split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn split<'a>(mut body: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(at) = find(body, delimiter) {
        parts.push(&body[..at]);
        body = &body[at + delimiter.len()..];
    }
    parts.push(body);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_files_gives_its_json_and_each_file() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json\r\n\r\n{\"content\":\"hi\"}\r\n--xyz\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"t.html\"\r\nContent-Type: text/html\r\n\r\n<p>a\r\n\r\nb</p>\r\n--xyz--\r\n";
        let (payload, files) = parse("multipart/form-data; boundary=xyz", body).unwrap();
        assert_eq!(payload, json!({"content": "hi"}));
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].filename.as_str(), files[0].bytes.as_slice()), ("t.html", &b"<p>a\r\n\r\nb</p>"[..]));
        assert_eq!(files[0].content_type.as_deref(), Some("text/html"));
        assert!(parse("application/json", b"{}").is_none());
    }
}
