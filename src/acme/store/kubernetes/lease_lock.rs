//! The order Lease read and written around the rule of [`super::lease`]: [`acquire`]
//! takes it when the rule says so, and a task renews it while the holder orders.
//!
//! A write that meets another (409) reads the Lease again and decides again. While the
//! holder orders, the task renews the Lease every third of its duration; when it could not
//! renew for two thirds of it, or finds another holder, the lock is lost and the order
//! stops, before any other replica may take it over. Releasing clears the holder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};

use super::lease::{decide, released, Decision, Record, Seen};
use super::objects::Lease;
use crate::acme::store::{unix, HeldBy, LockAttempt, LockHolder, OrderLock, StoreError};
use crate::kube::{Client, KubeError, Resource};

/// Reads and writes that meet another writer (409) are retried this often from a fresh
/// read before the attempt fails.
pub const MAX_CONFLICTS: u32 = 5;

/// Where the Lease is and who this replica is.
#[derive(Clone)]
pub struct LeaseRef {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub me: String,
    pub duration: Duration,
    /// 409s met and retried from a fresh read (shown as `acme_store.conflicts`).
    pub conflicts: Arc<AtomicU64>,
}

impl LeaseRef {
    fn what(&self) -> String {
        format!("the Lease {}/{}", self.namespace, self.name)
    }

    async fn get(&self) -> Result<Option<Lease>, KubeError> {
        match self
            .client
            .get::<Lease>(&Resource::LEASES, &self.namespace, &self.name)
            .await
        {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the Lease (none was read) or replaces the version read.
    async fn write(&self, read: Option<Lease>, r: &Record) -> Result<Lease, KubeError> {
        match read {
            None => {
                let l = Lease::new(&self.name, &self.namespace, r.to_spec());
                self.client
                    .create(&Resource::LEASES, &self.namespace, &l)
                    .await
            }
            Some(mut l) => {
                l.spec = r.to_spec();
                self.client
                    .replace(&Resource::LEASES, &self.namespace, &self.name, &l)
                    .await
            }
        }
    }
}

/// The version of the Lease last read and when this replica first read it.
pub type Observed = Mutex<Option<(String, SystemTime)>>;

fn seen_since(observed: &Observed, version: &str, now: SystemTime) -> SystemTime {
    let mut o = observed.lock().unwrap_or_else(|p| p.into_inner());
    match o.as_ref() {
        Some((v, since)) if v == version => *since,
        _ => {
            *o = Some((version.to_string(), now));
            now
        }
    }
}

/// Takes the Lease if [`decide`] says so, and starts renewing it.
pub async fn acquire(at: &LeaseRef, observed: &Observed) -> Result<LockAttempt, StoreError> {
    for _ in 0..MAX_CONFLICTS {
        let read = at.get().await?;
        let now = SystemTime::now();
        let record = read.as_ref().map(|l| Record::from_spec(&l.spec));
        let seen = match (&read, &record) {
            (Some(l), Some(r)) => Some(Seen {
                record: r,
                since: seen_since(observed, &l.metadata.resource_version, now),
            }),
            _ => None,
        };
        match decide(seen, &at.me, now, at.duration) {
            Decision::Held {
                holder,
                since,
                free_at,
            } => {
                return Ok(LockAttempt::Held(HeldBy {
                    holder: Some(LockHolder {
                        holder,
                        since: unix(since.unwrap_or(now)),
                    }),
                    free_at: Some(free_at),
                }))
            }
            Decision::Write(r) => match at.write(read, &r).await {
                Ok(written) => {
                    let since = unix(r.acquired.unwrap_or(now));
                    return Ok(LockAttempt::Taken(Box::new(LeaseLock::start(
                        at.clone(),
                        written,
                        since,
                    ))));
                }
                Err(e) if e.is_conflict() => {
                    at.conflicts.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    Err(StoreError::Conflicts {
        what: at.what(),
        attempts: MAX_CONFLICTS,
    })
}

/// Renews the Lease read last (`lease`); re-reads it on a conflict. `Err(None)` when
/// another replica holds it now; `Err(Some(e))` when the renewal did not go through.
async fn renew(at: &LeaseRef, lease: &mut Lease) -> Result<(), Option<StoreError>> {
    for _ in 0..MAX_CONFLICTS {
        let now = SystemTime::now();
        let r = Record::from_spec(&lease.spec);
        let seen = Seen {
            record: &r,
            since: now,
        };
        let Decision::Write(next) = decide(Some(seen), &at.me, now, at.duration) else {
            return Err(None);
        };
        match at.write(Some(lease.clone()), &next).await {
            Ok(l) => {
                *lease = l;
                return Ok(());
            }
            Err(e) if e.is_conflict() => {
                at.conflicts.fetch_add(1, Ordering::Relaxed);
                match at.get().await {
                    Ok(Some(l)) => *lease = l,
                    Ok(None) => return Err(None),
                    Err(e) => return Err(Some(e.into())),
                }
            }
            Err(e) => return Err(Some(e.into())),
        }
    }
    Err(Some(StoreError::Conflicts {
        what: at.what(),
        attempts: MAX_CONFLICTS,
    }))
}

/// The Lease held: a task renews it until released, dropped or lost.
pub struct LeaseLock {
    holder: LockHolder,
    lost: watch::Receiver<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
}

impl LeaseLock {
    fn start(at: LeaseRef, lease: Lease, since: u64) -> LeaseLock {
        let (lost_tx, lost) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel();
        let holder = LockHolder {
            holder: at.me.clone(),
            since,
        };
        let task = tokio::spawn(keep(at, lease, lost_tx, stop_rx));
        LeaseLock {
            holder,
            lost,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// Renews every third of the duration; gives up after two thirds without a renewal (the
/// others take over only after a whole one); releases when told to stop, and says whether
/// the API server took that.
async fn keep(
    at: LeaseRef,
    mut lease: Lease,
    lost: watch::Sender<Option<String>>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), StoreError> {
    let every = at.duration / 3;
    let give_up = at.duration * 2 / 3;
    let mut renewed = Instant::now();
    let mut holding = true;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(every), if holding => {}
        }
        match renew(&at, &mut lease).await {
            Ok(()) => renewed = Instant::now(),
            Err(None) => {
                holding = false;
                let _ = lost.send(Some(format!(
                    "{} was taken over by another replica while this one ordered",
                    at.what()
                )));
            }
            Err(Some(e)) if renewed.elapsed() >= give_up => {
                holding = false;
                // Said inside LockLost's own "ACME store:".
                let e = match e {
                    StoreError::Kube(k) => k.to_string(),
                    e => e.to_string(),
                };
                let _ = lost.send(Some(format!(
                    "{} could not be renewed for {:?} ({e}); the order stopped so that another replica can take over",
                    at.what(),
                    renewed.elapsed()
                )));
            }
            Err(Some(e)) => log::warn!("acme: renewing {}: {e}; trying again", at.what()),
        }
    }
    if !holding {
        return Ok(());
    }
    release(&at, lease).await.map_err(|e| {
        log::warn!(
            "acme: releasing {}: {e}; it frees itself within {:?}",
            at.what(),
            at.duration
        );
        e
    })
}

/// Clears the holder of the version read last; a 409 reads it again and releases that
/// while it is still this replica's (another writer may have touched it meanwhile).
async fn release(at: &LeaseRef, mut lease: Lease) -> Result<(), StoreError> {
    for _ in 0..MAX_CONFLICTS {
        let r = Record::from_spec(&lease.spec);
        if r.holder.as_deref() != Some(at.me.as_str()) {
            return Ok(()); // another replica's now
        }
        match at
            .write(Some(lease), &released(&r, SystemTime::now()))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() => {
                at.conflicts.fetch_add(1, Ordering::Relaxed);
                match at.get().await? {
                    Some(l) => lease = l,
                    None => return Ok(()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflicts {
        what: at.what(),
        attempts: MAX_CONFLICTS,
    })
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        // The task releases the Lease on its own (an order cut short by shutdown).
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[async_trait]
impl OrderLock for LeaseLock {
    fn holder(&self) -> &LockHolder {
        &self.holder
    }

    async fn lost(&mut self) -> StoreError {
        loop {
            if let Some(why) = self.lost.borrow().clone() {
                return StoreError::LockLost(why);
            }
            if self.lost.changed().await.is_err() {
                // The task ended without saying why: treat it as lost.
                return StoreError::LockLost("the Lease renewal stopped".into());
            }
        }
    }

    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000 + s)
    }

    #[test]
    fn a_version_is_seen_since_its_first_read() {
        let o = Observed::default();
        assert_eq!(seen_since(&o, "7", at(1)), at(1));
        assert_eq!(seen_since(&o, "7", at(9)), at(1));
        assert_eq!(seen_since(&o, "8", at(10)), at(10));
    }
}
