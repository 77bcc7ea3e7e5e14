//! The directory store: one directory every replica shares (a ReadWriteMany volume, or a local
//! directory for one process), so only one replica orders and every replica serves.
//!
//! ```text
//! <store>/account.json                      the ACME account (key and URL)
//! <store>/lock                              flock(2): held by the replica placing an order;
//!                                           its content names that replica and since when
//! <store>/certs/<domain>/certificate.pem    the chain (leaf first) and its key, one file
//! <store>/challenges/_acme-challenge.<domain>   pending DNS-01 values, one per line
//! ```
//!
//! Files are written to a temporary name and renamed into place, so a reader sees the old
//! file or the new one, never half of one. The chain and its key are one file for the same
//! reason: two files renamed one after the other leave a mismatched pair when the writer
//! dies between the renames. Stores written before that (`fullchain.pem` + `privkey.pem`)
//! are migrated at start ([`DirStore::migrate_legacy`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;

use super::{
    unix_now, who_am_i, CertPlace, Follow, HeldBy, LockAttempt, LockHolder, OrderLock, Store,
    StoreError,
};
use crate::tls::{CertKey, CertSource, CertStore, Origin};

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, StoreError> {
    r.map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

/// The flock, held while this replica places an order; released when dropped.
pub struct FileLock {
    file: File,
    holder: LockHolder,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Emptied before the kernel releases the flock with the file, so a name in the
        // file means a current holder (or one that died, whose lock is free anyway).
        let _ = self.file.set_len(0);
    }
}

#[async_trait]
impl OrderLock for FileLock {
    fn holder(&self) -> &LockHolder {
        &self.holder
    }

    async fn lost(&mut self) -> StoreError {
        // The kernel holds a flock as long as the file is open: it cannot be lost.
        std::future::pending().await
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn domain_dir(&self, domain: &str) -> PathBuf {
        self.root.join("certs").join(domain)
    }

    /// The certificate's chain and key, in one file (both halves of a [`CertSource`]).
    ///
    /// [`CertSource`]: crate::tls::CertSource
    pub fn cert_file(&self, domain: &str) -> PathBuf {
        self.domain_dir(domain).join("certificate.pem")
    }

    fn account_file(&self) -> PathBuf {
        self.root.join("account.json")
    }

    fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    fn challenges_dir(&self) -> PathBuf {
        self.root.join("challenges")
    }

    fn challenge_file(&self, name: &str) -> PathBuf {
        self.challenges_dir().join(name)
    }

    /// Creates the directories and tests the lock (at start, so a read-only or missing
    /// volume, or one without working locks, is said early).
    pub fn prepare_dirs(&self) -> Result<(), StoreError> {
        for d in [self.root.join("certs"), self.challenges_dir()] {
            io(&d, std::fs::create_dir_all(&d))?;
        }
        self.lock_self_test()
    }

    fn open_lock(&self) -> Result<File, StoreError> {
        let path = self.lock_file();
        io(
            &path,
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path),
        )
    }

    /// Takes the lock through one open file and tries it through a second: the second
    /// must be refused (flock is per open file, so this holds within one process too).
    fn lock_self_test(&self) -> Result<(), StoreError> {
        let path = self.lock_file();
        let first = self.open_lock()?;
        match first.try_lock() {
            Ok(()) => {}
            // Another replica is ordering right now: the lock excludes, which is the test.
            Err(TryLockError::WouldBlock) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        let second = self.open_lock()?;
        match second.try_lock() {
            Err(TryLockError::WouldBlock) => Ok(()),
            Ok(()) => Err(StoreError::LockNotExclusive { path }),
            Err(TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// The order lock, if no other replica holds it; else who does.
    pub fn lock(&self) -> Result<LockAttempt, StoreError> {
        let path = self.lock_file();
        let mut file = self.open_lock()?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Ok(LockAttempt::Held(HeldBy {
                    holder: read_holder(&mut file),
                    free_at: None,
                }))
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        let holder = LockHolder {
            holder: who_am_i(),
            since: unix_now(),
        };
        let text = serde_json::to_vec(&holder).unwrap_or_default();
        // Synced so replicas on other hosts (NFS) read it while the lock is held.
        io(
            &path,
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(&text))
                .and_then(|_| file.sync_data()),
        )?;
        Ok(LockAttempt::Taken(Box::new(FileLock { file, holder })))
    }

    pub fn account(&self) -> Result<Option<String>, StoreError> {
        let path = self.account_file();
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Writes the account unless one is there: a hard link of the written temporary file
    /// fails when the name exists, so of two replicas writing at once one wins, and the
    /// other reads and uses the winner's.
    pub fn put_account(&self, json: &str) -> Result<String, StoreError> {
        let path = self.account_file();
        let tmp = temp_name(&path);
        write_file(&tmp, json.as_bytes(), true)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(json.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                io(&path, std::fs::read_to_string(&path))
            }
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Writes a new certificate: chain and key in one file, renamed into place at once.
    pub fn put_cert(&self, domain: &str, chain_pem: &str, key_pem: &str) -> Result<(), StoreError> {
        let dir = self.domain_dir(domain);
        io(&dir, std::fs::create_dir_all(&dir))?;
        let mut text = chain_pem.trim_end().to_string();
        text.push('\n');
        text.push_str(key_pem);
        write_atomic(&self.cert_file(domain), text.as_bytes(), true)
    }

    /// Stores of the first layout keep the chain and the key in two files
    /// (`fullchain.pem`, `privkey.pem`). When `domain` has no `certificate.pem` yet, a
    /// matching pair is copied into one; a mismatched pair (a writer that died between
    /// the two renames) is left alone, so a new certificate is ordered. Returns whether
    /// it migrated. The old files stay (an older replica may still read them).
    pub fn migrate_legacy(&self, domain: &str) -> Result<bool, StoreError> {
        let target = self.cert_file(domain);
        if target.exists() {
            return Ok(false);
        }
        let dir = self.domain_dir(domain);
        let (chain, key) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
        let (Ok(chain_pem), Ok(key_pem)) = (
            std::fs::read_to_string(&chain),
            std::fs::read_to_string(&key),
        ) else {
            return Ok(false);
        };
        if let Err(e) = CertKey::from_pem(chain_pem.as_bytes(), key_pem.as_bytes(), &chain, &key) {
            log::warn!("acme: not migrating {}: {e}", dir.display());
            return Ok(false);
        }
        self.put_cert(domain, &chain_pem, &key_pem)?;
        Ok(true)
    }

    /// Publishes the DNS-01 values for one name (`_acme-challenge.<domain>`).
    pub fn put_challenge(&self, name: &str, values: &[String]) -> Result<(), StoreError> {
        let mut text = values.join("\n");
        text.push('\n');
        write_atomic(&self.challenge_file(name), text.as_bytes(), false)
    }

    /// Removes published values once the order is over (done or failed).
    pub fn remove_challenge(&self, name: &str) {
        let _ = std::fs::remove_file(self.challenge_file(name));
    }

    /// Every published challenge: name → values. Reads the shared volume, so it is called
    /// off the DNS server's thread ([`super::challenges`]).
    pub fn read_challenges(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let dir = self.challenges_dir();
        let mut out = Vec::new();
        for entry in io(&dir, std::fs::read_dir(&dir))? {
            let entry = io(&dir, entry)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Temporary files of a write in progress, and anything else, are not names.
            if !name.starts_with("_acme-challenge.") || name.contains(".tmp.") {
                continue;
            }
            let text = match std::fs::read_to_string(entry.path()) {
                Ok(t) => t,
                // Withdrawn between the listing and the read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        path: entry.path(),
                        source: e,
                    })
                }
            };
            let values: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            out.push((name.to_ascii_lowercase(), values));
        }
        Ok(out)
    }
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// `<file>.tmp.<random>`: every container runs as PID 1, so a pid would give two replicas
/// the same name on a shared volume.
fn temp_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState's keys come from the OS's random source; hashing a counter and the clock
    // with them gives a name no other process or call picks (without a dependency for it).
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{:016x}", h.finish()));
    path.with_file_name(name)
}

/// Creates `path` (which must not exist) with `bytes`, synced.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = OpenOptions::new();
    opts.create_new(true).write(true);
    if private {
        opts.mode(0o600);
    }
    let mut f = io(path, opts.open(path))?;
    let written = io(path, f.write_all(bytes).and_then(|_| f.sync_all()));
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), StoreError> {
    let tmp = temp_name(path);
    write_file(&tmp, bytes, private)?;
    let renamed = io(path, std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

#[async_trait]
impl Store for DirStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn prepare(&self, domains: &[String], certs: &CertStore) -> Result<(), StoreError> {
        self.prepare_dirs()?;
        for d in domains {
            if self.migrate_legacy(d)? {
                log::info!("acme: {d}: moved fullchain.pem and privkey.pem into certificate.pem");
            }
            // Chain and key in one file, so both halves of the source name it.
            certs.add(CertSource {
                cert: self.cert_file(d),
                key: self.cert_file(d),
                origin: Origin::Acme,
            });
        }
        certs.refresh();
        Ok(())
    }

    fn cert_place(&self, domain: &str) -> CertPlace {
        CertPlace::File(self.cert_file(domain))
    }

    async fn load_certificate(&self, _domain: &str, certs: &CertStore) -> Result<(), StoreError> {
        certs.refresh();
        Ok(())
    }

    async fn try_lock(&self) -> Result<LockAttempt, StoreError> {
        self.lock()
    }

    async fn read_account(&self) -> Result<Option<String>, StoreError> {
        self.account()
    }

    async fn create_account(&self, json: &str) -> Result<String, StoreError> {
        self.put_account(json)
    }

    async fn write_cert(
        &self,
        domain: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<(), StoreError> {
        self.put_cert(domain, chain_pem, key_pem)
    }

    async fn publish(&self, name: &str, values: &[String]) -> Result<(), StoreError> {
        self.put_challenge(name, values)
    }

    async fn withdraw(&self, published: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        // The flock cannot be lost while held: the values are still this replica's.
        for (name, _) in published {
            self.remove_challenge(name);
        }
        Ok(())
    }

    async fn follow(&self, f: &Follow, shutdown: ShutdownWatch) {
        super::super::challenges::follow_directory(self, f, shutdown).await;
    }
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
