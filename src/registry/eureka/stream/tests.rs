use std::io::Write;

use proptest::prelude::*;

use super::*;
use crate::instance::Status;
use crate::registry::eureka::parse::parse_apps;
use crate::standin::{self, Registration};

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(body).expect("write");
    e.finish().expect("finish")
}

/// Reads `bytes` through `Utf8Checked` in reads of the given sizes (cycled).
fn read_checked(bytes: &[u8], sizes: &[usize]) -> io::Result<Vec<u8>> {
    struct Chunks<'a> {
        bytes: &'a [u8],
        sizes: &'a [usize],
        at: usize,
    }
    impl Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let want = self.sizes[self.at % self.sizes.len()].max(1);
            self.at += 1;
            let n = want.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }
    let mut out = Vec::new();
    Utf8Checked::new(Chunks {
        bytes,
        sizes,
        at: 0,
    })
    .read_to_end(&mut out)?;
    Ok(out)
}

proptest! {
    /// However the reads cut the bytes, the reader fails exactly when they are not UTF-8.
    #[test]
    fn utf8_check_agrees_with_from_utf8_at_any_cut(
        text in "\\PC{0,40}",
        noise in proptest::collection::vec(any::<u8>(), 0..4),
        at in any::<prop::sample::Index>(),
        sizes in proptest::collection::vec(1usize..7, 1..5),
    ) {
        let mut bytes = text.into_bytes();
        let at = at.index(bytes.len() + 1);
        bytes.splice(at..at, noise);
        let valid = std::str::from_utf8(&bytes).is_ok();
        let read = read_checked(&bytes, &sizes);
        prop_assert_eq!(read.is_ok(), valid);
        if let Ok(out) = read {
            prop_assert_eq!(out, bytes);
        }
    }
}

#[test]
fn utf8_check_table() {
    // (bytes, valid): cut characters of each length, stray continuation bytes, overlongs,
    // surrogates, a character cut by the end.
    let cases: [(&[u8], bool); 8] = [
        ("aé€😀z".as_bytes(), true),
        (b"", true),
        (b"a\x80", false),
        (b"\xc0\xaf", false),
        (b"\xed\xa0\x80", false),
        (b"ok\xe2\x82", false),
        (b"\xf0\x9f\x98", false),
        (b"\xff", false),
    ];
    for (bytes, valid) in cases {
        for size in 1..5 {
            assert_eq!(
                read_checked(bytes, &[size]).is_ok(),
                valid,
                "{bytes:?} in reads of {size}"
            );
        }
    }
}

/// A registry in the shape bench/gen_registry.py and real Jackson servers send.
fn registry(n: usize) -> String {
    let regs: Vec<Registration> = (0..n)
        .map(|i| {
            let app = format!("svc-{}", i % 7);
            let mut r = Registration::spring(&app, &format!("{app}-pod{i}"), "10.1.2.3", 8080);
            r.metadata.push(("zone".into(), format!("zone-{}", i % 3)));
            if i % 5 == 0 {
                r.status = Status::Down;
            }
            r
        })
        .collect();
    standin::full(&regs)
}

/// The streaming parse gives what the whole-body parse gives, or declines.
fn agrees(body: &[u8]) -> bool {
    let wire = gzip(body);
    let Some((streamed, bytes)) = parse_apps_gzip(&wire, usize::MAX, None) else {
        return false;
    };
    let whole = parse_apps(body).expect("the whole-body parse takes it too");
    assert_eq!(bytes, body.len());
    assert_eq!(streamed.instances, whole.instances);
    assert_eq!(streamed.skipped, whole.skipped);
    assert_eq!(streamed.deleted, whole.deleted);
    assert_eq!(streamed.apps_hashcode, whole.apps_hashcode);
    true
}

#[test]
fn streaming_parse_matches_the_whole_body_parse() {
    let big = registry(300);
    assert!(agrees(big.as_bytes()));
    assert_eq!(
        parse_apps_gzip(&gzip(big.as_bytes()), usize::MAX, None)
            .expect("parsed")
            .0
            .instances
            .len(),
        300
    );
    // Trailing whitespace is fine, as in the whole-body parse.
    assert!(agrees(format!("{big} \n").as_bytes()));
    assert!(agrees(
        br#"{"applications":{"apps__hashcode":"","application":[]}}"#
    ));
    // Every fixture the one-pass parse takes, the streaming parse takes the same way.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut taken = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures").flatten() {
        let path = entry.path();
        let Ok(body) = std::fs::read(&path) else {
            continue;
        };
        let one_pass = super::super::parse::parse_apps_json_in_one_pass(&body).is_some();
        assert_eq!(agrees(&body), one_pass, "{}", path.display());
        taken += usize::from(one_pass);
    }
    assert!(taken > 0, "no fixture in the one-pass shape");
}

#[test]
fn streaming_parse_declines_what_the_whole_body_parse_must_explain() {
    let big = registry(20);
    let mut bad_utf8 = big.clone().into_bytes();
    // In a field nobody reads (the recorded instance shape has a vipAddress).
    let at = bad_utf8
        .windows(12)
        .position(|w| w == b"\"vipAddress\"")
        .expect("a vipAddress")
        + 15;
    bad_utf8[at] = 0xff;
    let cases: Vec<Vec<u8>> = vec![
        bad_utf8,
        format!("{big} x").into_bytes(),
        big.as_bytes()[..big.len() - 1].to_vec(),
        b"<applications><application/></applications>".to_vec(),
        br#"{"applications":{"application":{"name":"A","instance":[]}}}"#.to_vec(),
        Vec::new(),
    ];
    for body in cases {
        assert!(
            parse_apps_gzip(&gzip(&body), usize::MAX, None).is_none(),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    // Over the limit: declined (the whole-body path then says it is too large).
    let body = big.as_bytes();
    assert!(parse_apps_gzip(&gzip(body), body.len() - 1, None).is_none());
    assert!(parse_apps_gzip(&gzip(body), body.len(), None).is_some());
    // A corrupted gzip trailer (its CRC) is not taken either.
    let mut wire = gzip(body);
    let crc = wire.len() - 8;
    wire[crc] ^= 0xff;
    assert!(parse_apps_gzip(&wire, usize::MAX, None).is_none());
}
