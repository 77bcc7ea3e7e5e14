//! The ACME store: one directory every replica shares (a ReadWriteMany volume, or a local
//! directory for one process), so only one replica orders and every replica serves.
//!
//! ```text
//! <store>/account.json                  the ACME account (key and URL)
//! <store>/lock                          flock(2): held by the replica placing an order
//! <store>/certs/<domain>/fullchain.pem  the certificate, leaf first
//! <store>/certs/<domain>/privkey.pem    its key
//! <store>/challenges/_acme-challenge.<domain>   pending DNS-01 values, one per line
//! ```
//!
//! Files are written to a temporary name and renamed into place, so a reader sees the old
//! file or the new one, never half of one. Every replica's DNS server reads the challenge
//! files on each TXT query, so whichever replica the CA's resolver reaches answers.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::dns::TxtRecords;

/// What went wrong with the store itself.
#[derive(Debug, thiserror::Error)]
#[error("ACME store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: std::io::Error,
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, StoreError> {
    r.map_err(|source| StoreError {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Held while this replica places an order; released when dropped.
pub struct OrderLock {
    _file: File,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cert_file(&self, domain: &str) -> PathBuf {
        self.root.join("certs").join(domain).join("fullchain.pem")
    }

    pub fn key_file(&self, domain: &str) -> PathBuf {
        self.root.join("certs").join(domain).join("privkey.pem")
    }

    fn account_file(&self) -> PathBuf {
        self.root.join("account.json")
    }

    fn challenge_file(&self, name: &str) -> PathBuf {
        self.root.join("challenges").join(name)
    }

    /// Creates the directories (at start, so a read-only or missing volume is said early).
    pub fn prepare(&self) -> Result<(), StoreError> {
        for d in [self.root.join("certs"), self.root.join("challenges")] {
            io(&d, std::fs::create_dir_all(&d))?;
        }
        Ok(())
    }

    /// The order lock, if no other replica holds it.
    pub fn try_lock(&self) -> Result<Option<OrderLock>, StoreError> {
        let path = self.root.join("lock");
        let file = io(
            &path,
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path),
        )?;
        match file.try_lock() {
            Ok(()) => Ok(Some(OrderLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(StoreError { path, source: e }),
        }
    }

    pub fn read_account(&self) -> Result<Option<String>, StoreError> {
        let path = self.account_file();
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError { path, source: e }),
        }
    }

    pub fn write_account(&self, json: &str) -> Result<(), StoreError> {
        write_atomic(&self.account_file(), json.as_bytes(), true)
    }

    /// Writes a new certificate: the key first, then the chain, each renamed into place
    /// (a reader between the two sees a mismatched pair, refuses it and keeps the old).
    pub fn write_cert(
        &self,
        domain: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<(), StoreError> {
        let dir = self.root.join("certs").join(domain);
        io(&dir, std::fs::create_dir_all(&dir))?;
        write_atomic(&self.key_file(domain), key_pem.as_bytes(), true)?;
        write_atomic(&self.cert_file(domain), chain_pem.as_bytes(), false)
    }

    /// Publishes the DNS-01 values for one name (`_acme-challenge.<domain>`).
    pub fn publish(&self, name: &str, values: &[String]) -> Result<(), StoreError> {
        let mut text = values.join("\n");
        text.push('\n');
        write_atomic(&self.challenge_file(name), text.as_bytes(), false)
    }

    /// Removes published values once the order is over (done or failed).
    pub fn withdraw(&self, name: &str) {
        let _ = std::fs::remove_file(self.challenge_file(name));
    }
}

impl TxtRecords for Store {
    fn txt(&self, name: &str) -> Vec<String> {
        // Only challenge names, and never a path: a query name cannot leave the directory.
        if !name.starts_with("_acme-challenge.") || name.contains('/') || name.contains("..") {
            return Vec::new();
        }
        std::fs::read_to_string(self.challenge_file(name))
            .map(|s| {
                s.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut opts = OpenOptions::new();
    opts.create(true).truncate(true).write(true);
    if private {
        opts.mode(0o600);
    }
    let mut f = io(&tmp, opts.open(&tmp))?;
    io(&tmp, f.write_all(bytes).and_then(|_| f.sync_all()))?;
    io(path, std::fs::rename(&tmp, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_values_are_answered_until_withdrawn_and_nothing_else_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        store.prepare().expect("prepare");
        let name = "_acme-challenge.10-0-0-5.example.com";
        store
            .publish(name, &["v1".into(), "v2".into()])
            .expect("publish");
        assert_eq!(store.txt(name), ["v1", "v2"]);
        assert!(store.txt("other.example.com").is_empty());
        assert!(store.txt("_acme-challenge.../../account.json").is_empty());
        store.withdraw(name);
        assert!(store.txt(name).is_empty());
    }

    #[test]
    fn only_one_holder_of_the_order_lock_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Store::new(dir.path());
        let b = Store::new(dir.path());
        a.prepare().expect("prepare");
        let held = a.try_lock().expect("lock").expect("free");
        assert!(b.try_lock().expect("lock").is_none(), "taken by a");
        drop(held);
        assert!(b.try_lock().expect("lock").is_some(), "free again");
    }
}
