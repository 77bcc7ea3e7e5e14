//! The certificates the TLS listeners serve, chosen per handshake by SNI, and reloaded
//! when their files change (cert-manager renews a mounted Secret in place; ACME writes
//! new files into its store), or handed over in memory by their owner (ACME's Kubernetes
//! store reads them from Secrets: [`CertStore::put`]).
//!
//! Handshakes read one `Arc` snapshot; a reload builds a new snapshot and swaps it, so a
//! handshake never waits for a reload and never sees half of one. A file that cannot be
//! read or parsed keeps the certificate loaded before it, and the error is shown.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::Serialize;

use super::cert::CertKey;

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `xipgate.tls.certificates`: files someone else keeps current.
    File,
    /// Issued by xipgate's ACME client into its store.
    Acme,
}

/// A certificate's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSource {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub origin: Origin,
}

/// What identifies one version of the files: a replaced file (a new inode, as a Secret
/// update or an atomic rename makes) or a rewritten one (mtime, size) both count.
type Stamp = [(u64, i64, i64, u64); 2];

fn stamp(s: &CertSource) -> std::io::Result<Stamp> {
    let one =
        |p: &PathBuf| std::fs::metadata(p).map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
    Ok([one(&s.cert)?, one(&s.key)?])
}

/// Where a slot's certificate comes from: files looked at by [`CertStore::refresh`], or an
/// owner that hands it over ([`CertStore::put`]) under a label that names where it is kept
/// (`secret <namespace>/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Files(CertSource),
    Held { label: String, origin: Origin },
}

impl Place {
    fn origin(&self) -> Origin {
        match self {
            Place::Files(s) => s.origin,
            Place::Held { origin, .. } => *origin,
        }
    }

    fn label(&self) -> String {
        match self {
            Place::Files(s) => s.cert.display().to_string(),
            Place::Held { label, .. } => label.clone(),
        }
    }
}

struct Slot {
    place: Place,
    stamp: Option<Stamp>,
    loaded: Option<Arc<CertKey>>,
    loaded_at: Option<SystemTime>,
    error: Option<String>,
}

/// What a handshake reads.
#[derive(Default)]
struct Active {
    by_name: HashMap<String, Arc<CertKey>>,
    /// For a client that sent no SNI or a name no certificate covers (as nginx does):
    /// the first certificate loaded.
    default: Option<Arc<CertKey>>,
}

/// One certificate's state, for the console, the API and the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    pub origin: Origin,
    /// The certificate's file, or for one held in memory where its owner keeps it
    /// (`secret <namespace>/<name>`).
    pub cert_file: String,
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_after: Option<u64>,
    pub seconds_left: Option<i64>,
    pub loaded_at: Option<u64>,
    /// Why the files on disk are not what is served (the last good one stays).
    pub error: Option<String>,
}

#[derive(Default)]
pub struct CertStore {
    slots: Mutex<Vec<Slot>>,
    active: RwLock<Arc<Active>>,
}

/// The certificate for `sni`: the exact name, else the wildcard one label up
/// (`*.example.com` covers `a.example.com`, neither `example.com` nor `a.b.example.com`).
pub fn pick<'a, T>(by_name: &'a HashMap<String, T>, sni: &str) -> Option<&'a T> {
    let sni = sni.trim_end_matches('.');
    by_name.get(sni).or_else(|| {
        let (first, parent) = sni.split_once('.')?;
        if first.is_empty() || parent.is_empty() {
            return None;
        }
        by_name.get(&format!("*.{parent}"))
    })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl CertStore {
    pub fn new(sources: Vec<CertSource>) -> Self {
        let store = CertStore::default();
        for s in sources {
            store.add(s);
        }
        store
    }

    /// Adds a certificate's files (they may not exist yet: an ACME certificate before its
    /// first issue). Loaded at the next [`CertStore::refresh`].
    pub fn add(&self, source: CertSource) {
        self.add_place(Place::Files(source));
    }

    /// Adds a certificate its owner hands over with [`CertStore::put`]; until then it is
    /// shown as not issued yet.
    pub fn add_held(&self, label: &str, origin: Origin) {
        self.add_place(Place::Held {
            label: label.to_string(),
            origin,
        });
    }

    fn add_place(&self, place: Place) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.iter().any(|s| s.place == place) {
            return;
        }
        let error = matches!(place, Place::Held { .. }).then(|| "not issued yet".to_string());
        slots.push(Slot {
            place,
            stamp: None,
            loaded: None,
            loaded_at: None,
            error,
        });
    }

    /// Serves `ck` from the slot added as `label` ([`CertStore::add_held`]), to new
    /// connections from now on.
    pub fn put(&self, label: &str, ck: CertKey) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = slots
            .iter_mut()
            .find(|s| matches!(&s.place, Place::Held { label: l, .. } if l == label))
        else {
            return;
        };
        log::info!("tls: loaded {label} for {}", ck.names.join(", "));
        slot.loaded = Some(Arc::new(ck));
        slot.loaded_at = Some(SystemTime::now());
        slot.error = None;
        let active = build_active(&slots);
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(active);
    }

    /// Records why the certificate held as `label` could not be replaced (the one loaded
    /// before stays).
    pub fn held_error(&self, label: &str, error: String) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots
            .iter_mut()
            .find(|s| matches!(&s.place, Place::Held { label: l, .. } if l == label))
        {
            slot.error = Some(error);
        }
    }

    /// Loads every certificate whose files changed since the last look; returns how many
    /// were replaced. Cheap when nothing changed: two `stat`s per certificate.
    pub fn refresh(&self) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = 0;
        for slot in slots.iter_mut() {
            let Place::Files(source) = &slot.place else {
                continue;
            };
            let st = match stamp(source) {
                Ok(st) => st,
                Err(e) => {
                    let msg = if source.origin == Origin::Acme && slot.loaded.is_none() {
                        "not issued yet".to_string()
                    } else {
                        format!("cannot read {}: {e}", source.cert.display())
                    };
                    if slot.error.as_deref() != Some(msg.as_str()) && slot.loaded.is_some() {
                        log::warn!("tls: {msg}; still serving the certificate loaded before");
                    }
                    slot.error = Some(msg);
                    continue;
                }
            };
            if slot.stamp == Some(st) {
                continue;
            }
            slot.stamp = Some(st);
            match CertKey::load(&source.cert, &source.key) {
                Ok(ck) => {
                    log::info!(
                        "tls: loaded {} for {}",
                        source.cert.display(),
                        ck.names.join(", ")
                    );
                    slot.loaded = Some(Arc::new(ck));
                    slot.loaded_at = Some(SystemTime::now());
                    slot.error = None;
                    changed += 1;
                }
                Err(e) => {
                    log::warn!("tls: {e}; still serving the certificate loaded before");
                    slot.error = Some(e.to_string());
                }
            }
        }
        if changed > 0 {
            let active = build_active(&slots);
            *self.active.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(active);
        }
        changed
    }

    /// The certificate for a handshake.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertKey>> {
        let active = self
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        sni.map(str::to_ascii_lowercase)
            .and_then(|s| pick(&active.by_name, &s).cloned())
            .or_else(|| active.default.clone())
    }

    pub fn status(&self, now: SystemTime) -> Vec<CertStatus> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .map(|s| CertStatus {
                origin: s.place.origin(),
                cert_file: s.place.label(),
                names: s
                    .loaded
                    .as_ref()
                    .map(|c| c.names.clone())
                    .unwrap_or_default(),
                not_after: s.loaded.as_ref().map(|c| unix(c.not_after)),
                seconds_left: s.loaded.as_ref().map(|c| c.seconds_left(now)),
                loaded_at: s.loaded_at.map(unix),
                error: s.error.clone(),
            })
            .collect()
    }

    /// The loaded certificate of these files, if any (ACME decides on renewal by it).
    pub fn loaded(&self, cert: &std::path::Path) -> Option<Arc<CertKey>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .find(|s| matches!(&s.place, Place::Files(f) if f.cert == cert))
            .and_then(|s| s.loaded.clone())
    }

    /// The certificate held as `label`, if one has been put.
    pub fn loaded_held(&self, label: &str) -> Option<Arc<CertKey>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .find(|s| matches!(&s.place, Place::Held { label: l, .. } if l == label))
            .and_then(|s| s.loaded.clone())
    }
}

/// Name → certificate: where two certificates cover a name, the one valid longest wins
/// (a renewed certificate takes over from the one it renews, whichever source it is in).
fn build_active(slots: &[Slot]) -> Active {
    let mut by_name: HashMap<String, Arc<CertKey>> = HashMap::new();
    for ck in slots.iter().filter_map(|s| s.loaded.as_ref()) {
        for n in &ck.names {
            let better = by_name
                .get(n)
                .is_none_or(|cur| ck.not_after > cur.not_after);
            if better {
                by_name.insert(n.clone(), ck.clone());
            }
        }
    }
    Active {
        by_name,
        default: slots.iter().find_map(|s| s.loaded.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_picks_the_exact_name_then_the_wildcard_one_label_up() {
        let map: HashMap<String, &str> = [
            ("*.10-0-0-5.example.com", "wild"),
            ("10-0-0-5.example.com", "apex"),
            ("console.10-0-0-5.example.com", "exact"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let cases = [
            ("order-service.10-0-0-5.example.com", Some("wild")),
            ("console.10-0-0-5.example.com", Some("exact")),
            ("10-0-0-5.example.com", Some("apex")),
            ("10-0-0-5.example.com.", Some("apex")),
            ("a.b.10-0-0-5.example.com", None),
            ("example.com", None),
            (".10-0-0-5.example.com", None),
            ("", None),
        ];
        for (sni, want) in cases {
            assert_eq!(pick(&map, sni).copied(), want, "{sni}");
        }
    }

    #[test]
    fn a_held_certificate_is_served_once_put_and_named_by_its_label() {
        let store = CertStore::default();
        let label = "secret xipgate/xipgate-acme-example-com";
        store.add_held(label, Origin::Acme);
        assert!(store.lookup(Some("a.example.com")).is_none());
        let status = store.status(SystemTime::now());
        assert_eq!(status[0].cert_file, label);
        assert_eq!(status[0].error.as_deref(), Some("not issued yet"));

        let c =
            rcgen::generate_simple_self_signed(vec!["*.example.com".to_string()]).expect("rcgen");
        let ck = CertKey::from_pem(
            c.cert.pem().as_bytes(),
            c.signing_key.serialize_pem().as_bytes(),
            std::path::Path::new(label),
            std::path::Path::new(label),
        )
        .expect("pair");
        store.put(label, ck);
        let served = store.lookup(Some("a.example.com")).expect("served");
        assert_eq!(served.names, ["*.example.com"]);
        assert!(store.loaded_held(label).is_some());
        assert_eq!(
            store.refresh(),
            0,
            "held certificates are not files to look at"
        );
        let status = store.status(SystemTime::now());
        assert_eq!(status[0].error, None);
        assert_eq!(status[0].names, ["*.example.com"]);
    }
}
