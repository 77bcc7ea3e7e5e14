//! `Authorization: Basic` against an htpasswd file of bcrypt hashes. bcrypt is slow on
//! purpose, so a successful check is remembered for a while, keyed by an HMAC of the
//! credentials (a per-process random key: the cache never holds a password or a hash an
//! attacker could test guesses against). A wrong password is never remembered. The file is
//! read again when it changes, and the remembered checks are forgotten then, so a changed
//! password stops working at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use ring::hmac;
use ring::rand::SystemRandom;

use super::{Identity, Via};

/// The htpasswd file is looked at (a `stat`) at most this often, on use.
pub const HTPASSWD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A successful check is remembered this long.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// At most this many successful checks are remembered.
pub const CACHE_MAX_ENTRIES: usize = 10_000;
/// bcrypt runs on at most this many blocking threads at once, so a flood of guesses cannot
/// take every blocking thread.
pub const MAX_CONCURRENT_BCRYPT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}")]
    Line {
        path: String,
        line: usize,
        why: String,
    },
    #[error("no random key for the cache of checked credentials")]
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    #[error("basic credentials are not base64 of 'user:password'")]
    Malformed,
    #[error("wrong user or password")]
    Wrong,
    #[error("the edge cannot check basic credentials now: its htpasswd file is broken")]
    Broken,
}

/// The users and their bcrypt hashes. Only bcrypt (`$2y$`, `$2b$`, `$2a$`) is accepted:
/// Apache's MD5 (`$apr1$`), SHA-1 (`{SHA}`), crypt and plain text are refused at load.
pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err((n, "not 'user:hash'".into()));
        };
        if user.is_empty() {
            return Err((n, "no user name".into()));
        }
        if let Some(why) = not_bcrypt(hash) {
            return Err((
                n,
                format!("user '{user}': {why}; only bcrypt is accepted (htpasswd -B)"),
            ));
        }
        if users.insert(user.to_string(), hash.to_string()).is_some() {
            return Err((n, format!("user '{user}' is listed twice")));
        }
    }
    Ok(users)
}

fn not_bcrypt(hash: &str) -> Option<String> {
    let kind = if hash.starts_with("$apr1$") {
        "Apache MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$1$") || hash.starts_with("$5$") || hash.starts_with("$6$") {
        "crypt(3) MD5/SHA"
    } else if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        "not a bcrypt hash (crypt or plain text?)"
    } else {
        // $2y$NN$ + 22 characters of salt + 31 of hash.
        let parts: Vec<&str> = hash.split('$').collect();
        let cost_ok = parts
            .get(2)
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| (4..=31).contains(&c));
        let body_ok = parts.get(3).is_some_and(|b| {
            b.len() == 53
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
        });
        if parts.len() == 4 && cost_ok && body_ok {
            return None;
        }
        "a malformed bcrypt hash"
    };
    Some(kind.to_string())
}

/// What is known of the file, to tell that it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    changed: i64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
        changed: m.ctime_nsec() + m.ctime() * 1_000_000_000,
    })
}

struct Loaded {
    /// `None`: the file became unreadable or broken; everyone is refused until it is fixed.
    users: Option<Arc<HashMap<String, String>>>,
    stamp: Option<Stamp>,
    checked: Instant,
    /// Bumped at every reload: remembered checks of an older generation are void.
    generation: u64,
}

type Tag = [u8; 32];

/// A check running now, shared by everyone asking with the same credentials meanwhile.
type Running = Arc<tokio::sync::OnceCell<bool>>;

/// How many checks ran bcrypt, were answered from the cache, or were refused.
#[derive(Debug, Default)]
pub struct BasicStats {
    pub bcrypt: AtomicU64,
    pub cached: AtomicU64,
    pub refused: AtomicU64,
}

pub struct Basic {
    path: PathBuf,
    /// [`HTPASSWD_CHECK_INTERVAL`] (shorter in tests).
    check_interval: Duration,
    loaded: RwLock<Loaded>,
    key: hmac::Key,
    /// Successful checks: when, and of which generation of the file.
    cache: Mutex<HashMap<Tag, (Instant, u64)>>,
    /// Checks running now, so the same credentials arriving together pay bcrypt once.
    in_flight: Mutex<HashMap<(Tag, u64), Running>>,
    bcrypt_slots: tokio::sync::Semaphore,
    pub stats: Arc<BasicStats>,
}

fn read(path: &Path) -> Result<(HashMap<String, String>, Stamp), HtpasswdError> {
    let shown = || path.display().to_string();
    let st = stamp(path).map_err(|source| HtpasswdError::Read {
        path: shown(),
        source,
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
        path: shown(),
        source,
    })?;
    let users = parse_htpasswd(&text).map_err(|(line, why)| HtpasswdError::Line {
        path: shown(),
        line,
        why,
    })?;
    Ok((users, st))
}

impl Basic {
    /// Reads the file; a file that cannot be read or holds anything but bcrypt is an error.
    pub fn load(path: &Path) -> Result<Basic, HtpasswdError> {
        let (users, st) = read(path)?;
        Ok(Basic {
            path: path.to_path_buf(),
            check_interval: HTPASSWD_CHECK_INTERVAL,
            loaded: RwLock::new(Loaded {
                users: Some(Arc::new(users)),
                stamp: Some(st),
                checked: Instant::now(),
                generation: 0,
            }),
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                .map_err(|_| HtpasswdError::Random)?,
            cache: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_BCRYPT),
            stats: Arc::default(),
        })
    }

    /// The users now, reading the file again when it changed (looked at once a second).
    fn users(&self) -> (Option<Arc<HashMap<String, String>>>, u64) {
        {
            let l = self.loaded.read().unwrap_or_else(|p| p.into_inner());
            if l.checked.elapsed() < self.check_interval {
                return (l.users.clone(), l.generation);
            }
        }
        let mut l = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if l.checked.elapsed() >= self.check_interval {
            l.checked = Instant::now();
            let now = stamp(&self.path).ok();
            if now.is_none() || now != l.stamp {
                match read(&self.path) {
                    Ok((users, st)) => {
                        l.users = Some(Arc::new(users));
                        l.stamp = Some(st);
                        log::info!(
                            "xipgate.access.basic.htpasswd: {} read again",
                            self.path.display()
                        );
                    }
                    Err(e) => {
                        // Fail closed: a half-written or broken file must not keep a removed
                        // user or an old password working.
                        log::error!("xipgate.access.basic.htpasswd: {e}; basic credentials are refused until it is fixed");
                        l.users = None;
                        l.stamp = now;
                    }
                }
                l.generation += 1;
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        }
        (l.users.clone(), l.generation)
    }

    /// Who the credentials (the base64 after `Basic `) say is asking.
    pub async fn check(&self, credentials: &str) -> Result<Identity, BasicError> {
        let r = self.check_inner(credentials.trim()).await;
        if r.is_err() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn check_inner(&self, credentials: &str) -> Result<Identity, BasicError> {
        let raw = STANDARD
            .decode(credentials)
            .or_else(|_| STANDARD_NO_PAD.decode(credentials))
            .map_err(|_| BasicError::Malformed)?;
        let colon = raw
            .iter()
            .position(|b| *b == b':')
            .ok_or(BasicError::Malformed)?;
        let user = std::str::from_utf8(&raw[..colon]).map_err(|_| BasicError::Malformed)?;
        let password = raw[colon + 1..].to_vec();
        let identity = || Identity {
            user: user.to_string(),
            email: None,
            groups: Vec::new(),
            via: Via::Basic,
        };
        let (users, generation) = self.users();
        let users = users.ok_or(BasicError::Broken)?;
        let Some(hash) = users.get(user).cloned() else {
            // An unknown user costs what a wrong password does, so the time of the answer
            // does not tell which users exist: a bcrypt against another user's hash, whose
            // result is ignored.
            if let Some(other) = users.values().next().cloned() {
                self.bcrypt(password, other).await;
            }
            return Err(BasicError::Wrong);
        };
        let tag: Tag = hmac::sign(&self.key, &raw)
            .as_ref()
            .try_into()
            .map_err(|_| BasicError::Wrong)?;
        if self.remembered(&tag, generation) {
            self.stats.cached.fetch_add(1, Ordering::Relaxed);
            return Ok(identity());
        }
        let cell = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((tag, generation))
            .or_default()
            .clone();
        let ok = *cell
            .get_or_init(|| async {
                // Remembered by a check that finished between the look above and now.
                if self.remembered(&tag, generation) {
                    return true;
                }
                self.bcrypt(password, hash).await
            })
            .await;
        if ok {
            self.remember(tag, generation);
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tag, generation));
        if ok {
            Ok(identity())
        } else {
            Err(BasicError::Wrong)
        }
    }

    /// One bcrypt check on a blocking thread, at most [`MAX_CONCURRENT_BCRYPT`] at once.
    async fn bcrypt(&self, password: Vec<u8>, hash: String) -> bool {
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        self.stats.bcrypt.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
    }

    fn remembered(&self, tag: &Tag, generation: u64) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(tag)
            .is_some_and(|(at, g)| *g == generation && at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, tag: Tag, generation: u64) {
        // A reload while bcrypt ran: the check was against the old file, so it is not kept.
        let current = self
            .loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation;
        if current != generation {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX_ENTRIES {
                if let Some(k) = cache.keys().next().copied() {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(tag, (Instant::now(), generation));
    }
}

#[cfg(test)]
mod tests;
