//! The DNS-01 values the DNS server answers, held in memory.
//!
//! The DNS server answers every query on one thread; reading the shared store there (an
//! NFS volume, say) would let one slow read stop every answer. So the server reads only
//! [`Challenges`], a map swapped whole, which each store keeps current in the background
//! ([`super::Store::follow`]): the directory store re-reads its `challenges/` directory
//! ([`follow_directory`]), the Kubernetes store watches its ConfigMap. Only names with an
//! order in flight are in it: a query for any other `_acme-challenge` name touches nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pingora_core::server::ShutdownWatch;

use super::store::{DirStore, Follow, StoreError};
use crate::dns::TxtRecords;

/// How often every replica re-reads the published values (the ordering replica's own
/// values are in memory at once; the self-check waits for the others).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// A read of the store slower than this is logged (answers go on from memory).
const SLOW_READ: Duration = Duration::from_secs(5);

type Values = BTreeMap<String, Vec<String>>;

/// Name (lower-case, no trailing dot) → values, as last read.
#[derive(Default)]
pub struct Challenges {
    values: RwLock<Arc<Values>>,
}

impl Challenges {
    /// Replaces every value at once (what the store holds now).
    pub fn replace(&self, values: Values) {
        *self.values.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(values);
    }

    fn current(&self) -> Arc<Values> {
        self.values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// This replica's own values, answered before the next refresh.
    pub fn publish(&self, name: &str, values: &[String]) {
        let mut all = (*self.current()).clone();
        all.insert(name.to_ascii_lowercase(), values.to_vec());
        self.replace(all);
    }

    pub fn withdraw(&self, name: &str) {
        let mut all = (*self.current()).clone();
        all.remove(&name.to_ascii_lowercase());
        self.replace(all);
    }

    /// Reads the store once (blocking file work) and replaces the map.
    pub fn refresh_from(&self, store: &DirStore) -> Result<(), StoreError> {
        let read = store.read_challenges()?;
        self.replace(read.into_iter().collect());
        Ok(())
    }
}

impl TxtRecords for Challenges {
    fn txt(&self, name: &str) -> Vec<String> {
        self.current().get(name).cloned().unwrap_or_default()
    }
}

/// Re-reads the directory store every [`REFRESH_INTERVAL`], off the DNS server's thread,
/// until shutdown. A read that hangs is waited for (never stacked: one blocking thread at
/// most), and said.
pub async fn follow_directory(store: &DirStore, f: &Follow, mut shutdown: ShutdownWatch) {
    let mut failing = false;
    loop {
        let (s, challenges) = (store.clone(), f.challenges.clone());
        let read = tokio::task::spawn_blocking(move || challenges.refresh_from(&s));
        tokio::pin!(read);
        let result = tokio::select! {
            _ = shutdown.changed() => return,
            r = tokio::time::timeout(SLOW_READ, &mut read) => match r {
                Ok(r) => r,
                Err(_) => {
                    log::warn!(
                        "acme: reading {} has taken over {SLOW_READ:?}; DNS answers the values read before",
                        store.root().display()
                    );
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        r = &mut read => r,
                    }
                }
            },
        };
        match result {
            Ok(Ok(())) => {
                failing = false;
                f.state.store_ok();
            }
            Ok(Err(e)) => {
                if !failing {
                    failing = true;
                    log::warn!("acme: {e}; DNS answers the values read before");
                }
                f.state.store_failed(e.to_string());
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_from_memory_even_while_the_store_hangs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        store.prepare_dirs().expect("prepare");
        let name = "_acme-challenge.10-0-0-5.example.com";
        store.put_challenge(name, &["v1".into()]).expect("publish");
        let challenges = Arc::new(Challenges::default());
        challenges.refresh_from(&store).expect("refresh");
        assert_eq!(challenges.txt(name), ["v1"]);
        assert!(challenges
            .txt("_acme-challenge.other.example.com")
            .is_empty());

        // A read that never returns (a FIFO no one writes, as a hung NFS read): the
        // answers must not wait for it.
        let fifo = dir
            .path()
            .join("challenges/_acme-challenge.stalled.example.com");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo reads a NUL-terminated path and nothing else.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
        let (c, s) = (challenges.clone(), store.clone());
        std::thread::spawn(move || c.refresh_from(&s));
        let (tx, rx) = std::sync::mpsc::channel();
        let c = challenges.clone();
        std::thread::spawn(move || {
            let _ = tx.send((c.txt(name), c.txt("_acme-challenge.stalled.example.com")));
        });
        let (v, stalled) = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("answered while the store hangs");
        assert_eq!(v, ["v1"]);
        assert!(stalled.is_empty());
        // Unblock the reader so the test leaves no thread hanging.
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
    }

    #[test]
    fn own_values_are_answered_at_once_and_withdrawn() {
        let c = Challenges::default();
        c.publish("_acme-challenge.A.example.com", &["x".into(), "y".into()]);
        assert_eq!(c.txt("_acme-challenge.a.example.com"), ["x", "y"]);
        c.withdraw("_acme-challenge.a.example.com");
        assert!(c.txt("_acme-challenge.a.example.com").is_empty());
    }
}
