//! The session cookie of the one login: the identity claims and the session's expiry,
//! sealed with AES-256-GCM under a key every replica shares, so any replica opens what
//! another sealed and nothing in the cookie can be read or changed by the browser.
//!
//! Keys come from one file (a mounted Secret): one base64 key of 32 bytes per line. The
//! first line seals; every line opens, so a key is rotated by putting the new one first
//! and dropping the old one once the longest session has expired.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Identity, Via};

/// A sealed session is at most this long (browsers take 4 KB per cookie; a session
/// carries claims, never tokens, and stays well under that).
pub const MAX_SEALED: usize = 1024;
/// Marks the format, so a later one can be told apart.
const PREFIX: &str = "v1.";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the session key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the session key file {path}, line {line}: not the base64 of 32 bytes")]
    Bad { path: String, line: usize },
    #[error("the session key file {path} holds no key")]
    Empty { path: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is malformed")]
    Malformed,
    #[error(
        "the session cookie was not sealed by this edge (tampered, or its key was rotated out)"
    )]
    Foreign,
    #[error("the session has expired")]
    Expired,
    #[error("the session would be {0} bytes, more than {MAX_SEALED}: too many groups")]
    TooLarge(usize),
}

/// What a session holds: the identity's claims and its own end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Unix seconds after which it is refused.
    #[serde(rename = "x")]
    pub expires: u64,
}

impl Session {
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.user.clone(),
            email: self.email.clone(),
            groups: self.groups.clone(),
            via: Via::Session,
        }
    }
}

/// Seals and opens sessions.
pub struct Sealer {
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sealer {
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_text(&text, &shown)
    }

    /// `text`: one base64 key per line; blank lines and `#` comments are skipped.
    pub fn from_text(text: &str, shown: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || KeyError::Bad {
                path: shown.to_string(),
                line: i + 1,
            };
            let raw = STANDARD.decode(line).map_err(|_| bad())?;
            let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| bad())?;
            if raw.len() != 32 {
                return Err(bad());
            }
            keys.push(LessSafeKey::new(key));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                path: shown.to_string(),
            });
        }
        Ok(Sealer {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// The cookie value for `session`; `name` (the cookie's name) is bound into it, so a
    /// value sealed for one cookie does not open as another.
    pub fn seal(&self, name: &str, session: &Session) -> Result<String, SessionError> {
        self.seal_value(name, session, MAX_SEALED)
    }

    /// Seals any value (the login's state cookie, say) the same way, in at most `max` bytes.
    pub fn seal_value<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        max: usize,
    ) -> Result<String, SessionError> {
        let mut data = serde_json::to_vec(value).map_err(|_| SessionError::Malformed)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SessionError::Malformed)?;
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| SessionError::Malformed)?;
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&data);
        let sealed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        if sealed.len() > max {
            return Err(SessionError::TooLarge(sealed.len()));
        }
        Ok(sealed)
    }

    /// The session in `value`, if one of the keys sealed it and it has not expired at `now`.
    pub fn open(&self, name: &str, value: &str, now: u64) -> Result<Session, SessionError> {
        let session: Session = self.open_value(name, value, MAX_SEALED)?;
        if session.expires <= now {
            return Err(SessionError::Expired);
        }
        Ok(session)
    }

    /// The value [`Sealer::seal_value`] sealed as `name`, if one of the keys sealed it.
    pub fn open_value<T: DeserializeOwned>(
        &self,
        name: &str,
        value: &str,
        max: usize,
    ) -> Result<T, SessionError> {
        if value.len() > max {
            return Err(SessionError::Malformed);
        }
        let body = value.strip_prefix(PREFIX).ok_or(SessionError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SessionError::Malformed)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SessionError::Malformed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        for key in &self.keys {
            let mut buf = sealed.to_vec();
            let Ok(nonce) = Nonce::try_assume_unique_for_key(nonce) else {
                return Err(SessionError::Malformed);
            };
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf) {
                return serde_json::from_slice(plain).map_err(|_| SessionError::Malformed);
            }
        }
        Err(SessionError::Foreign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    fn session(expires: u64) -> Session {
        Session {
            user: "alice".into(),
            email: Some("alice@example.test".into()),
            groups: vec!["devs".into(), "ops".into()],
            expires,
        }
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires() {
        let s = Sealer::from_text(K1, "k").unwrap();
        let v = s.seal("_xipgate", &session(1000)).unwrap();
        assert!(v.len() < MAX_SEALED);
        assert_eq!(s.open("_xipgate", &v, 999).unwrap(), session(1000));
        assert_eq!(s.open("_xipgate", &v, 1000), Err(SessionError::Expired));
        // Bound to the cookie's name.
        assert_eq!(s.open("other", &v, 999), Err(SessionError::Foreign));
    }

    #[test]
    fn tampered_and_foreign_cookies_are_refused() {
        let s = Sealer::from_text(K1, "k").unwrap();
        let v = s.seal("_xipgate", &session(1000)).unwrap();
        let mut bytes = v.clone().into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(s.open("_xipgate", &tampered, 1), Err(SessionError::Foreign));
        let other = Sealer::from_text(K2, "k").unwrap();
        assert_eq!(other.open("_xipgate", &v, 1), Err(SessionError::Foreign));
        assert_eq!(s.open("_xipgate", "v1.!!", 1), Err(SessionError::Malformed));
        assert_eq!(
            s.open("_xipgate", &"x".repeat(5000), 1),
            Err(SessionError::Malformed)
        );
    }

    #[test]
    fn a_rotated_key_still_opens_old_sessions_and_seals_new_ones() {
        let old = Sealer::from_text(K1, "k").unwrap();
        let v = old.seal("_xipgate", &session(1000)).unwrap();
        let rotated = Sealer::from_text(&format!("{K2}\n{K1}\n"), "k").unwrap();
        assert!(rotated.open("_xipgate", &v, 1).is_ok());
        let fresh = rotated.seal("_xipgate", &session(1000)).unwrap();
        assert_eq!(old.open("_xipgate", &fresh, 1), Err(SessionError::Foreign));
    }

    #[test]
    fn bad_key_files_are_named() {
        assert!(matches!(
            Sealer::from_text("", "f"),
            Err(KeyError::Empty { .. })
        ));
        assert!(matches!(
            Sealer::from_text("# c\nc2hvcnQ=", "f"),
            Err(KeyError::Bad { line: 2, .. })
        ));
    }
}
