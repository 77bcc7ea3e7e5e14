use super::*;
use proptest::prelude::*;

/// An open edge with the default identity headers and a session cookie `_xipgate`.
fn gate() -> Gate {
    let sealer = crate::access::session::Sealer::from_text(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "test",
    )
    .expect("key");
    Gate::new(
        crate::access::Policy::default(),
        Vec::new(),
        [
            "X-Forwarded-User",
            "X-Forwarded-Email",
            "X-Forwarded-Groups",
        ],
        Some(crate::access::SessionCookie {
            name: "_xipgate".into(),
            sealer,
        }),
    )
}

fn req(raw: &str) -> (Parsed<'_>, String) {
    let mut out = Vec::new();
    let p = parse_request(raw.as_bytes(), &mut out, &gate(), &Balance::default());
    (p, String::from_utf8(out).expect("ascii"))
}

#[test]
fn requests_the_fast_path_takes() {
    let raw = "GET /a?b=1 HTTP/1.1\r\nHost: x.d\r\nAccept: */*\r\nConnection: keep-alive\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Host: evil\r\n\r\n";
    let (p, out) = req(raw);
    let Parsed::Take(plan) = p else {
        panic!("not taken: {p:?}")
    };
    assert_eq!(plan.head_len, raw.len());
    assert_eq!(plan.method, "GET");
    assert_eq!(plan.host, "x.d");
    assert_eq!(plan.xff, Some(&b"10.0.0.9"[..]));
    assert!(!plan.close && !plan.has_origin);
    // Request line and end-to-end headers in order; hop-by-hop and X-Forwarded-* dropped.
    assert_eq!(out, "GET /a?b=1 HTTP/1.1\r\nHost: x.d\r\nAccept: */*\r\n");

    for (raw, close, origin) in [
        ("HEAD / HTTP/1.1\r\nhost: x.d\r\nConnection: close\r\n\r\n", true, false),
        ("DELETE /x HTTP/1.1\r\nHost: x.d\r\nContent-Length: 0\r\n\r\n", false, false),
        ("GET / HTTP/1.1\r\nHost: x.d\r\nOrigin: http://o\r\nConnection: Keep-Alive, close\r\n\r\n", true, true),
    ] {
        match req(raw).0 {
            Parsed::Take(p) => assert_eq!((p.close, p.has_origin), (close, origin), "{raw:?}"),
            other => panic!("{raw:?} not taken: {other:?}"),
        }
    }
}

#[test]
fn everything_else_goes_to_pingora_with_nothing_written() {
    let cases = [
        "GET / HTTP/1.0\r\nHost: x.d\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "CONNECT x.d:443 HTTP/1.1\r\nHost: x.d:443\r\n\r\n",
        "GET http://x.d/ HTTP/1.1\r\nHost: x.d\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x.d\r\nHost: y.d\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: u@x.d\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x.d\r\nContent-Length: 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: x.d\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x.d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "PUT / HTTP/1.1\r\nHost: x.d\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x.d\r\nTE: trailers\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x.d\r\nConnection: x-secret\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x.d\r\nX-Forwarded-For: a\r\nX-Forwarded-For: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x.d\r\nBad Header\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\0.d\r\n\r\n",
    ];
    let latin1: &[u8] = b"GET / HTTP/1.1\r\nHost: \xff.d\r\n\r\n";
    for raw in cases.iter().map(|c| c.as_bytes()).chain([latin1]) {
        let mut out = Vec::new();
        let p = parse_request(raw, &mut out, &gate(), &Balance::default());
        assert_eq!(p, Parsed::Handoff, "{raw:?}");
        assert!(out.is_empty(), "{raw:?} left {out:?}");
    }
    assert_eq!(req("GET / HTTP/1.1\r\nHost: x.d\r\n").0, Parsed::Partial);
    assert_eq!(req("").0, Parsed::Partial);
}

#[test]
fn pipelined_requests_are_taken_one_at_a_time() {
    let first = "GET /1 HTTP/1.1\r\nHost: a.d\r\n\r\n";
    let both = format!("{first}GET /2 HTTP/1.1\r\nHost: b.d\r\n\r\n");
    match req(&both).0 {
        Parsed::Take(p) => assert_eq!((p.head_len, p.host), (first.len(), "a.d")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn forwarded_headers_extend_the_chain() {
    type Case = (
        Option<&'static str>,
        Option<&'static [u8]>,
        Option<&'static str>,
        Option<&'static [u8]>,
        &'static str,
    );
    let cases: [Case; 4] = [
        (
            Some("127.0.0.1"),
            Some(b"10.0.0.9"),
            Some("8080"),
            None,
            "x-forwarded-for: 10.0.0.9, 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: a.d\r\nx-forwarded-port: 8080\r\nvia: 1.1 xipgate-1\r\n\r\n",
        ),
        (
            Some("::1"),
            None,
            None,
            None,
            "x-forwarded-for: ::1\r\nx-forwarded-proto: http\r\nx-forwarded-host: a.d\r\nvia: 1.1 xipgate-1\r\n\r\n",
        ),
        (
            None,
            Some(b"10.0.0.9"),
            Some("80"),
            None,
            "x-forwarded-proto: http\r\nx-forwarded-host: a.d\r\nx-forwarded-port: 80\r\nvia: 1.1 xipgate-1\r\n\r\n",
        ),
        (
            None,
            None,
            None,
            Some(b"1.0 fred, 1.1 other"),
            "x-forwarded-proto: http\r\nx-forwarded-host: a.d\r\nvia: 1.0 fred, 1.1 other, 1.1 xipgate-1\r\n\r\n",
        ),
    ];
    for (client, prev, port, via, want) in cases {
        let mut out = Vec::new();
        finish_upstream_request(
            &Forwarded {
                client,
                prev,
                host: "a.d",
                port,
                tls: false,
                via,
                pseudonym: "xipgate-1",
                identity: None,
                signed: None,
            },
            &mut out,
        );
        assert_eq!(String::from_utf8(out).expect("ascii"), want);
    }
    let mut out = Vec::new();
    let tls = Forwarded {
        client: None,
        prev: None,
        host: "a.d",
        port: None,
        tls: true,
        via: None,
        pseudonym: "xipgate-1",
        identity: None,
        signed: None,
    };
    finish_upstream_request(&tls, &mut out);
    assert!(String::from_utf8(out)
        .expect("ascii")
        .starts_with("x-forwarded-proto: https\r\n"));
}

#[test]
fn forged_forwarding_headers_are_dropped_and_via_is_kept_for_the_chain() {
    let raw = "GET / HTTP/1.1\r\nHost: x.d\r\nForwarded: for=6.6.6.6;host=evil.example;proto=https\r\nX-Real-IP: 6.6.6.6\r\nX_Forwarded_Host: evil\r\nx_forwarded_for: 6.6.6.6\r\nVia: 1.0 fred\r\nAccept: */*\r\n\r\n";
    let (p, out) = req(raw);
    let Parsed::Take(plan) = p else {
        panic!("not taken: {p:?}")
    };
    assert_eq!(out, "GET / HTTP/1.1\r\nHost: x.d\r\nAccept: */*\r\n");
    assert_eq!(
        plan.xff, None,
        "an `_` spelling is not the client's X-Forwarded-For"
    );
    assert_eq!(plan.via, Some(&b"1.0 fred"[..]));
    // Two Via headers: joined by Pingora's path, as two X-Forwarded-For are.
    let mut out = Vec::new();
    let two = b"GET / HTTP/1.1\r\nHost: x.d\r\nVia: 1.0 a\r\nVia: 1.0 b\r\n\r\n";
    assert_eq!(
        parse_request(two, &mut out, &gate(), &Balance::default()),
        Parsed::Handoff
    );
}

const STAMP: Stamp<'static> = Stamp {
    served_by: "pod-1",
    instance_status: None,
    close: false,
    session_cookie: Some("_xipgate"),
    set_cookie: None,
};

fn resp(raw: &str, head_request: bool) -> Result<Option<ResponseHead>, HeadError> {
    parse_response(raw.as_bytes(), head_request, &STAMP, &mut Vec::new())
}

#[test]
fn response_framing_and_reuse() {
    use Framing::*;
    let cases: &[(&str, bool, Framing, bool)] = &[
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            false,
            Length(5),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            false,
            Length(5),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
            Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
            Chunked,
            false,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", false, UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            true,
            Empty,
            true,
        ),
        ("HTTP/1.1 204 No Content\r\n\r\n", false, Empty, true),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
            Empty,
            true,
        ),
        (
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            false,
            Empty,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            true,
        ),
        // A close wins, wherever it stands.
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
            Length(1),
            false,
        ),
    ];
    for (raw, head, framing, reusable) in cases {
        let r = resp(raw, *head).expect("valid").expect("complete");
        assert_eq!((r.framing, r.reusable), (*framing, *reusable), "{raw:?}");
    }
    assert_eq!(
        resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false),
        Ok(None)
    );
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/9.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
    ] {
        assert!(resp(bad, false).is_err(), "{bad:?} accepted");
    }
    // Framing only an exact final `chunked` can give: anything else is refused, not read
    // to the close while the header goes on.
    for te in [
        "gzip",
        "chunked,",
        "chunked, gzip",
        "chunked\r\nTransfer-Encoding: gzip",
    ] {
        for head_request in [false, true] {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                resp(&raw, head_request),
                Err(HeadError::TransferCoding),
                "{te:?}"
            );
        }
    }
}

#[test]
fn the_client_gets_the_head_without_hop_by_hop_headers_and_with_the_stamp() {
    let raw = "HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Served-By: spoofed\r\nX-App: 1\r\n\r\nok";
    let mut out = Vec::new();
    parse_response(raw.as_bytes(), false, &STAMP, &mut out).expect("valid");
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nX-App: 1\r\nx-served-by: pod-1\r\n\r\n"
    );

    let stamp = Stamp {
        served_by: "bad\r\nx-injected: 1",
        instance_status: Some("DOWN"),
        close: true,
        session_cookie: None,
        set_cookie: None,
    };
    let mut out = Vec::new();
    parse_response(
        b"HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n",
        false,
        &stamp,
        &mut out,
    )
    .expect("valid");
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "HTTP/1.1 500 \r\nContent-Length: 0\r\nx-xipgate-instance-status: DOWN\r\nconnection: close\r\n\r\n"
    );

    // A body that ends with the upstream's close closes the client connection too.
    let mut out = Vec::new();
    parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false, &STAMP, &mut out).expect("valid");
    assert!(String::from_utf8(out)
        .expect("ascii")
        .ends_with("connection: close\r\n\r\n"));
}

proptest! {
    #[test]
    fn request_parsing_never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        if let Parsed::Take(p) = parse_request(&bytes, &mut out, &gate(), &Balance::default()) {
            prop_assert!(p.head_len <= bytes.len());
            prop_assert!(out.starts_with(p.method.as_bytes()));
        } else {
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn a_taken_request_keeps_every_end_to_end_header(
        names in proptest::collection::vec("[a-z]{1,8}-[a-z]{1,8}", 0..6),
        value in "[ -~]{0,20}",
    ) {
        let mut raw = String::from("GET /p HTTP/1.1\r\nHost: a.d\r\n");
        for n in &names {
            raw.push_str(&format!("{n}: {}\r\n", value.trim()));
        }
        raw.push_str("\r\n");
        let (p, out) = req(&raw);
        let dropped = |n: &str| n.starts_with("x-forwarded-") || n == "keep-alive" || n == "proxy-connection";
        prop_assert!(matches!(p, Parsed::Take(_)));
        for n in names.iter().filter(|n| !dropped(n)) {
            let line = format!("\r\n{n}: {}\r\n", value.trim());
            prop_assert!(out.contains(&line), "{} missing from {}", line, out);
        }
    }

    #[test]
    fn response_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_response(&bytes, false, &STAMP, &mut Vec::new());
    }
}

#[test]
fn folded_values_are_unfolded_to_one_space() {
    for (folded, flat) in [
        (&b"1\r\n 2"[..], &b"1 2"[..]),
        (b"1 \r\n\t 2", b"1 2"),
        (b"a\r\n b\r\n c", b"a b c"),
        (b"plain", b"plain"),
    ] {
        assert_eq!(
            super::unfold(folded),
            flat,
            "{:?}",
            String::from_utf8_lossy(folded)
        );
    }
}

#[test]
fn the_logged_request_line_skips_leading_empty_lines() {
    for (raw, want) in [
        (&b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"[..], "GET /a?b"),
        (b"\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a"),
        (b"\nDELETE /d HTTP/1.1\r\n\r\n", "DELETE /d"),
        (b"", ""),
    ] {
        assert_eq!(
            logged_request_line(raw),
            want,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn identity_headers_and_the_session_cookie_never_go_upstream() {
    let raw = "GET /a HTTP/1.1\r\nHost: x.d\r\nX-Forwarded-User: admin\r\nX_Forwarded_Groups: ops\r\nx-forwarded-email: a@b\r\nCookie: a=1; _xipgate=v1.x; b=2\r\nAccept: text/html\r\nX-Requested-With: XMLHttpRequest\r\n\r\n";
    let (p, out) = req(raw);
    let Parsed::Take(plan) = p else {
        panic!("not taken: {p:?}")
    };
    assert_eq!(
        out,
        "GET /a HTTP/1.1\r\nHost: x.d\r\nCookie: a=1; b=2\r\nAccept: text/html\r\nX-Requested-With: XMLHttpRequest\r\n"
    );
    assert_eq!(plan.cookie, Some(&b"a=1; _xipgate=v1.x; b=2"[..]));
    assert_eq!(plan.accept, Some(&b"text/html"[..]));
    assert!(plan.x_requested_with && plan.authorization.is_none());
    // Only the session cookie: no Cookie header at all. Two Cookie headers: Pingora's.
    let (_, out) = req("GET / HTTP/1.1\r\nHost: x.d\r\nCookie: _xipgate=v1.x\r\n\r\n");
    assert_eq!(out, "GET / HTTP/1.1\r\nHost: x.d\r\n");
    let two = "GET / HTTP/1.1\r\nHost: x.d\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n";
    assert_eq!(req(two).0, Parsed::Handoff);
    // The edge's own identity headers come after the client's are gone.
    let who = Identity {
        user: "alice".into(),
        email: None,
        groups: vec!["a".into(), "b".into()],
        via: crate::access::Via::Session,
    };
    let names = [
        "x-forwarded-user".to_string(),
        "x-forwarded-email".into(),
        "x-forwarded-groups".into(),
    ];
    let mut out = Vec::new();
    finish_upstream_request(
        &Forwarded {
            client: None,
            prev: None,
            host: "a.d",
            port: None,
            tls: false,
            via: None,
            pseudonym: "xipgate-1",
            identity: Some((&names, &who)),
            signed: None,
        },
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "x-forwarded-proto: http\r\nx-forwarded-host: a.d\r\nx-forwarded-user: alice\r\nx-forwarded-groups: a,b\r\nvia: 1.1 xipgate-1\r\n\r\n"
    );
}

#[test]
fn a_backend_cannot_set_the_edge_s_cookie() {
    let raw = "HTTP/1.1 200 OK\r\nSet-Cookie: _xipgate=evil; Path=/\r\nSet-Cookie: app=1\r\nContent-Length: 0\r\n\r\n";
    let mut out = Vec::new();
    parse_response(raw.as_bytes(), false, &STAMP, &mut out).expect("valid");
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "HTTP/1.1 200 OK\r\nSet-Cookie: app=1\r\nContent-Length: 0\r\nx-served-by: pod-1\r\n\r\n"
    );
}
