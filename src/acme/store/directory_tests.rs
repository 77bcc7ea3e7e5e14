//! The directory store's own tests (kept apart: the store is long enough).

use super::*;

fn store() -> (tempfile::TempDir, DirStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    store.prepare_dirs().expect("prepare");
    (dir, store)
}

/// A self-signed certificate and its key, PEM.
fn pair(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
    (c.cert.pem(), c.signing_key.serialize_pem())
}

#[test]
fn published_values_are_read_back_until_withdrawn() {
    let (_dir, store) = store();
    let name = "_acme-challenge.10-0-0-5.example.com";
    store
        .put_challenge(name, &["v1".into(), "v2".into()])
        .expect("publish");
    let all = store.read_challenges().expect("read");
    assert_eq!(all, [(name.to_string(), vec!["v1".into(), "v2".into()])]);
    store.remove_challenge(name);
    assert!(store.read_challenges().expect("read").is_empty());
}

#[test]
fn only_one_holder_of_the_order_lock_at_a_time_and_the_others_see_who() {
    let (dir, a) = store();
    let b = DirStore::new(dir.path());
    let LockAttempt::Taken(held) = a.lock().expect("lock") else {
        panic!("free at first");
    };
    match b.lock().expect("lock") {
        LockAttempt::Held(HeldBy {
            holder: Some(h),
            free_at: None,
        }) => {
            assert_eq!(&h, held.holder());
            assert!(
                h.holder.contains(&format!("pid {}", std::process::id())),
                "{h:?}"
            );
            assert!(h.since.abs_diff(unix_now()) < 60, "{h:?}");
        }
        LockAttempt::Held(h) => panic!("the holder did not say who it is: {h:?}"),
        LockAttempt::Taken(_) => panic!("taken twice"),
    }
    drop(held);
    assert!(
        matches!(b.lock().expect("lock"), LockAttempt::Taken(_)),
        "free again"
    );
}

#[test]
fn a_certificate_and_its_key_are_one_file_renamed_into_place_at_once() {
    let (dir, store) = store();
    let (chain, key) = pair("a.example.com");
    store.put_cert("example.com", &chain, &key).expect("write");
    let file = store.cert_file("example.com");
    let ck = CertKey::load(&file, &file).expect("chain and key load from the one file");
    assert_eq!(ck.names, ["a.example.com"]);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("certs/example.com"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["certificate.pem"], "one file, no temporary left");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "it holds the key");
}

#[test]
fn the_first_account_written_is_the_one_every_writer_gets_back() {
    let (dir, a) = store();
    let b = DirStore::new(dir.path());
    assert_eq!(a.account().expect("read"), None);
    assert_eq!(a.put_account("{\"a\":1}").expect("write"), "{\"a\":1}");
    assert_eq!(
        b.put_account("{\"b\":2}").expect("write"),
        "{\"a\":1}",
        "the second writer gets the first one's account"
    );
    assert_eq!(b.account().expect("read").as_deref(), Some("{\"a\":1}"));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("account"))
        .collect();
    assert_eq!(names, ["account.json"], "no temporary left");
}

#[test]
fn temporary_names_differ_between_writes_of_the_same_process() {
    let path = Path::new("/store/account.json");
    let (a, b) = (temp_name(path), temp_name(path));
    assert_ne!(a, b);
    for t in [a, b] {
        let name = t.to_string_lossy().to_string();
        assert!(name.starts_with("/store/account.json.tmp."), "{name}");
        assert!(
            !name.ends_with(&format!(".tmp.{}", std::process::id())),
            "{name}"
        );
    }
}

#[test]
fn legacy_pairs_are_migrated_when_they_match_and_left_when_they_do_not() {
    let (dir, store) = store();
    let (chain, key) = pair("a.example.com");
    let (_, other_key) = pair("b.example.com");
    for (domain, key) in [("good.example.com", &key), ("torn.example.com", &other_key)] {
        let d = dir.path().join("certs").join(domain);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("fullchain.pem"), &chain).expect("chain");
        std::fs::write(d.join("privkey.pem"), key).expect("key");
    }
    assert!(store.migrate_legacy("good.example.com").expect("migrate"));
    let file = store.cert_file("good.example.com");
    CertKey::load(&file, &file).expect("the migrated pair loads");
    assert!(
        !store.migrate_legacy("good.example.com").expect("again"),
        "done once"
    );
    assert!(!store.migrate_legacy("torn.example.com").expect("migrate"));
    assert!(!store.cert_file("torn.example.com").exists());
    assert!(!store
        .migrate_legacy("none.example.com")
        .expect("nothing to migrate"));
}

#[test]
fn a_store_whose_lock_cannot_be_taken_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("lock")).expect("a directory where the lock goes");
    let err = DirStore::new(dir.path())
        .prepare_dirs()
        .expect_err("refused");
    assert!(err.to_string().contains("lock"), "{err}");
}
