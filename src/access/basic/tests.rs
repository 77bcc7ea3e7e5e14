use std::io::Write;
use std::sync::atomic::Ordering;

use super::*;

/// bcrypt's lowest cost: the tests count runs, they need not be slow.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn basic(f: &tempfile::NamedTempFile) -> Basic {
    let mut b = Basic::load(f.path()).unwrap();
    b.check_interval = Duration::ZERO;
    b
}

fn creds(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn htpasswd_lines_other_than_bcrypt_are_refused_naming_the_line() {
    let good = hash("pw");
    let two_b = good.replacen("$2b$", "$2y$", 1);
    let ok = format!("# comment\n\nann:{good}\nbob:{two_b}\n");
    let users = parse_htpasswd(&ok).unwrap();
    assert_eq!(users.len(), 2);
    let cases = [
        ("ann:$apr1$abc$def\n", 1, "user 'ann': Apache MD5 ($apr1$)"),
        (
            "\nann:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
            2,
            "SHA-1 ({SHA})",
        ),
        ("ann:$6$salt$hash\n", 1, "crypt(3) MD5/SHA"),
        (
            "ann:secret\n",
            1,
            "not a bcrypt hash (crypt or plain text?)",
        ),
        ("ann:$2y$99$abc\n", 1, "a malformed bcrypt hash"),
        ("just-a-name\n", 1, "not 'user:hash'"),
        (":$2y$\n", 1, "no user name"),
        (
            &format!("ann:{good}\nann:{good}\n"),
            2,
            "user 'ann' is listed twice",
        ),
    ];
    for (text, line, want) in cases {
        let (n, why) = parse_htpasswd(text).unwrap_err();
        assert_eq!(n, line, "{text}");
        assert!(why.contains(want), "{text}: {why}");
    }
    assert!(parse_htpasswd("ann:secret")
        .unwrap_err()
        .1
        .contains("only bcrypt is accepted (htpasswd -B)"));
    let f = file("ann:$apr1$abc$def\n");
    let e = Basic::load(f.path()).err().unwrap().to_string();
    assert_eq!(
        e,
        format!(
            "{} line 1: user 'ann': Apache MD5 ($apr1$); only bcrypt is accepted (htpasswd -B)",
            f.path().display()
        )
    );
    assert!(Basic::load(Path::new("/nonexistent/htpasswd")).is_err());
}

#[tokio::test]
async fn bcrypt_is_paid_once_per_credentials_and_never_for_a_remembered_wrong_one() {
    let f = file(&format!("ann:{}\n", hash("right")));
    let b = basic(&f);
    for _ in 0..100 {
        assert_eq!(b.check(&creds("ann", "right")).await.unwrap().user, "ann");
    }
    assert_eq!(b.stats.bcrypt.load(Ordering::Relaxed), 1);
    assert_eq!(b.stats.cached.load(Ordering::Relaxed), 99);
    // A wrong password is never remembered: each costs bcrypt, each is refused.
    for _ in 0..3 {
        assert_eq!(
            b.check(&creds("ann", "wrong")).await,
            Err(BasicError::Wrong)
        );
    }
    assert_eq!(b.stats.bcrypt.load(Ordering::Relaxed), 4);
    assert_eq!(b.stats.refused.load(Ordering::Relaxed), 3);
    // An unknown user is refused, and costs a bcrypt like a wrong password (the answer's
    // time does not tell which users exist), even with another user's password.
    assert_eq!(
        b.check(&creds("eve", "right")).await,
        Err(BasicError::Wrong)
    );
    assert_eq!(b.stats.bcrypt.load(Ordering::Relaxed), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_credentials_arriving_together_pay_bcrypt_once() {
    let f = file(&format!("ann:{}\n", bcrypt::hash("right", 8).unwrap()));
    let b = Arc::new(basic(&f));
    let checks: Vec<_> = (0..32)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.check(&creds("ann", "right")).await })
        })
        .collect();
    for c in checks {
        assert!(c.await.unwrap().is_ok());
    }
    assert_eq!(b.stats.bcrypt.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_changed_file_forgets_remembered_checks_and_a_broken_one_refuses_everyone() {
    let f = file(&format!("ann:{}\n", hash("old")));
    let b = basic(&f);
    b.check(&creds("ann", "old")).await.unwrap();
    b.check(&creds("ann", "old")).await.unwrap();
    std::fs::write(f.path(), format!("ann:{}\n", hash("new"))).unwrap();
    assert_eq!(b.check(&creds("ann", "old")).await, Err(BasicError::Wrong));
    assert_eq!(b.check(&creds("ann", "new")).await.unwrap().user, "ann");
    std::fs::write(f.path(), "ann:plain\n").unwrap();
    assert_eq!(b.check(&creds("ann", "new")).await, Err(BasicError::Broken));
    std::fs::write(f.path(), format!("bob:{}\n", hash("b"))).unwrap();
    assert_eq!(b.check(&creds("ann", "new")).await, Err(BasicError::Wrong));
    assert!(b.check(&creds("bob", "b")).await.is_ok());
}

#[tokio::test]
async fn malformed_credentials_are_refused() {
    let f = file(&format!("ann:{}\n", hash("pw:with:colons")));
    let b = basic(&f);
    assert!(b.check(&creds("ann", "pw:with:colons")).await.is_ok());
    assert!(b
        .check(&STANDARD_NO_PAD.encode("ann:pw:with:colons"))
        .await
        .is_ok());
    for bad in [
        "!!!",
        &STANDARD.encode("no-colon"),
        &STANDARD.encode([0xff, b':', b'x']),
        "",
    ] {
        assert_eq!(b.check(bad).await, Err(BasicError::Malformed), "{bad}");
    }
}
