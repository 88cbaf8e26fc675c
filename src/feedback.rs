//! The feedback link of a closed ticket: a token that names the ticket and proves that franz made it, so that the
//! desk's public feedback page (`/feedback/TOKEN`) takes a rating from whoever holds the link (the submitter it was
//! mailed to) without a sign-in, and nobody can make one for another ticket.
//!
//! The token is the ticket id and an HMAC-SHA-256 of it under a key of this franz (`desk/feedback.key`, made once,
//! readable by its owner only), both base64url. It reveals the id, which says nothing about the ticket to anyone
//! without a sign-in, and nothing else. Rotating the key (deleting the file) ends every link mailed before.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};

/// The bytes of the key.
const KEY_BYTES: usize = 32;
/// The bytes of the MAC a token carries: 128 bits, beyond guessing.
const TAG_BYTES: usize = 16;

/// The key that signs feedback links. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Key([u8; KEY_BYTES]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(redacted)")
    }
}

/// Where the key of the desk's directory `desk_dir` is.
pub fn key_path(desk_dir: &Path) -> PathBuf {
    desk_dir.join("feedback.key")
}

impl Key {
    /// The key of `desk_dir`, made (readable by its owner only) if there is none yet. Two processes making it at
    /// once agree on one: the file appears whole or not at all (a hard link of a finished file), and the loser
    /// reads the winner's.
    pub fn in_dir(desk_dir: &Path) -> anyhow::Result<Key> {
        let path = key_path(desk_dir);
        if let Some(key) = read(&path)? {
            return Ok(key);
        }
        crate::files::private_dir(desk_dir)?;
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|error| anyhow::anyhow!("no random bytes for the feedback key: {error}"))?;
        let draft = tempfile::NamedTempFile::new_in(desk_dir)
            .with_context(|| format!("cannot write a file in {}", desk_dir.display()))?;
        crate::files::private_file(draft.path())?;
        // On disk before it is linked: a crash must not leave a short key that stops the desk from starting.
        let written = std::fs::write(draft.path(), bytes).and_then(|()| draft.as_file().sync_all());
        written.with_context(|| format!("cannot write {}", draft.path().display()))?;
        match std::fs::hard_link(draft.path(), &path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).with_context(|| format!("cannot create {}", path.display())),
        }
        read(&path)?.with_context(|| format!("{} vanished as it was made", path.display()))
    }

    /// A key from bytes (tests).
    #[cfg(test)]
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Key {
        Key(bytes)
    }

    /// The feedback token of ticket `ticket_id`.
    pub fn token(&self, ticket_id: &str) -> String {
        let tag = self.tag(ticket_id);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(ticket_id), URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES]))
    }

    /// The ticket `token` names, if this key made it; anything else (a changed id, a forged or cut tag, not a token
    /// at all) is none. The comparison takes the same time however much of a forged tag is right.
    pub fn ticket_of(&self, token: &str) -> Option<String> {
        let (id, tag) = token.split_once('.')?;
        // A ticket id has at most 64 characters of 4 bytes: no longer token is taken apart.
        if id.len() > 400 || tag.len() > 40 {
            return None;
        }
        let id = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(id.as_bytes());
        (tag.len() == TAG_BYTES && mac.verify_truncated_left(&tag).is_ok()).then_some(id)
    }

    fn mac(&self) -> Hmac<sha2::Sha256> {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(b"franz feedback:");
        mac
    }

    fn tag(&self, ticket_id: &str) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(ticket_id.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

fn read(path: &Path) -> anyhow::Result<Option<Key>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|bytes: Vec<u8>| {
                anyhow::anyhow!(
                    "{} holds {} bytes, not a feedback key of {KEY_BYTES}; delete it to make a new one (links mailed \
                     before stop working)",
                    path.display(),
                    bytes.len()
                )
            })?;
            Ok(Some(Key(bytes)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_ticket_and_no_changed_or_forged_token_names_any() {
        let key = Key::from_bytes([7; KEY_BYTES]);
        let token = key.token("8f0b16f3-85b5-56c7-8823-483334746b7e");
        assert_eq!(key.ticket_of(&token).as_deref(), Some("8f0b16f3-85b5-56c7-8823-483334746b7e"));
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "a path segment: {token}");
        let (id, tag) = token.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode("8f0b16f3-85b5-56c7-8823-483334746b7f");
        assert_eq!(key.ticket_of(&format!("{other}.{tag}")), None, "another ticket with this tag");
        assert_eq!(key.ticket_of(&format!("{id}.{}", &tag[..tag.len() - 2])), None, "a cut tag");
        assert_eq!(key.ticket_of(&format!("{id}.{}A", &tag[..tag.len() - 1])), None, "a changed tag");
        assert_eq!(key.ticket_of(&Key::from_bytes([8; KEY_BYTES]).token("8f0b16f3")), None, "another key's");
        for junk in ["", ".", "no-dot", "!!.!!", &format!("{}.{tag}", "A".repeat(5000))] {
            assert_eq!(key.ticket_of(junk), None, "{junk:.40}");
        }
        assert_eq!(format!("{key:?}"), "Key(redacted)");
    }

    #[test]
    fn the_key_is_made_once_private_and_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let desk = dir.path().join("desk");
        let first = Key::in_dir(&desk).unwrap();
        let again = Key::in_dir(&desk).unwrap();
        assert_eq!(first.token("t"), again.token("t"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(key_path(&desk)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        }
        std::fs::write(key_path(&desk), b"short").unwrap();
        let error = Key::in_dir(&desk).unwrap_err().to_string();
        assert!(error.contains("holds 5 bytes"), "{error}");
    }
}
