use super::*;

#[test]
fn hop_by_hop_and_edge_headers() {
    for name in [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "HTTP2-Settings",
        "X-Forwarded-For",
        "x-forwarded-host",
    ] {
        assert!(dropped_upstream(name), "{name}");
    }
    for name in [
        "Authorization",
        "Cookie",
        "Host",
        "X-Forwarded",
        "Accept",
        "Origin",
    ] {
        assert!(!dropped_upstream(name), "{name}");
    }
    for name in [
        "Connection",
        "keep-alive",
        "X-Served-By",
        "X-Xipgate-Instance-Status",
    ] {
        assert!(dropped_downstream(name), "{name}");
    }
    for name in [
        "Content-Type",
        "Set-Cookie",
        "Content-Length",
        "Transfer-Encoding",
    ] {
        assert!(!dropped_downstream(name), "{name}");
    }
}

#[test]
fn transfer_coding_must_end_in_exactly_chunked() {
    let cases: &[(&[&[u8]], bool)] = &[
        (&[b"chunked"], true),
        (&[b"Chunked"], true),
        (&[b" chunked\t"], true),
        (&[b"gzip, chunked"], true),
        (&[b"gzip", b"chunked"], true),
        (&[b"chunked,"], false),
        (&[b"chunked, "], false),
        (&[b"chunked, gzip"], false),
        (&[b"chunked", b"gzip"], false),
        (&[b"gzip"], false),
        (&[b"chunkeds"], false),
        (&[b""], false),
        (&[], false),
    ];
    for (values, want) in cases {
        assert_eq!(
            transfer_coding_chunked(values.iter().copied()),
            *want,
            "{values:?}"
        );
    }
}

#[test]
fn content_length_is_digits_only() {
    let cases: &[(&[u8], Option<u64>)] = &[
        (b"5", Some(5)),
        (b"0", Some(0)),
        (b" 5\t", Some(5)),
        (b"5, 5", Some(5)),
        (b"5,5,5", Some(5)),
        (b"5, 6", None),
        (b"+5", None),
        (b"-5", None),
        (b"5\xc2\xa0", None),     // no-break space
        (b"5\xe2\x80\x83", None), // em space
        (b"0x5", None),
        (b"", None),
        (b",", None),
        (b"5,", None),
        (b"1e3", None),
        (b"18446744073709551615", None), // 20 digits
        (b"9999999999999999999", Some(9_999_999_999_999_999_999)),
    ];
    for (v, want) in cases {
        assert_eq!(content_length(v), *want, "{:?}", String::from_utf8_lossy(v));
    }
}

#[test]
fn request_targets() {
    for t in [
        "/",
        "/a/b?c=d&e=%20",
        "/a;b=c",
        "/~user/x.y_z-1",
        "/a:b@c!$'()*+,=",
    ] {
        assert!(plain_origin_form(t), "{t}");
    }
    for t in [
        "/a#frag",
        "/a{|}^`[]",
        "/a b",
        "/a\"b",
        "*",
        "http://x/",
        "/a\\b",
        "/a<b>",
    ] {
        assert!(!plain_origin_form(t), "{t}");
    }
}

#[test]
fn forwarded_for_joins_in_order_and_drops_bad_values() {
    let join =
        |vals: &[&[u8]]| String::from_utf8(forwarded_for(vals.iter().copied(), "9.9.9.9")).unwrap();
    assert_eq!(join(&[]), "9.9.9.9");
    assert_eq!(join(&[b"1.1.1.1"]), "1.1.1.1, 9.9.9.9");
    assert_eq!(join(&[b"", b"6.6.6.6"]), "6.6.6.6, 9.9.9.9");
    assert_eq!(
        join(&[b"1.1.1.1", b" 2.2.2.2, 3.3.3.3 "]),
        "1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9"
    );
    assert_eq!(join(&[b"\xff\xfe", b"1.1.1.1"]), "1.1.1.1, 9.9.9.9");
    assert_eq!(join(&[b"a\x01b"]), "9.9.9.9");
}

#[test]
fn retries() {
    use ErrorType::*;
    let base = FailedTry {
        etype: &ConnectRefused,
        route: RouteKind::Service,
        idempotent: true,
        sent: false,
        reused: false,
        response_started: false,
        upstream_fault: true,
        tries: 1,
        max_tries: 3,
    };
    let svc = RouteKind::Service;
    let inst = RouteKind::Instance;
    // (etype, route, idempotent, sent, reused, started, upstream fault, tries, retried)
    let cases = [
        (
            ConnectRefused,
            svc,
            false,
            false,
            false,
            false,
            true,
            1,
            true,
        ),
        (
            ConnectRefused,
            inst,
            true,
            false,
            false,
            false,
            true,
            1,
            false,
        ),
        (
            ConnectRefused,
            svc,
            true,
            false,
            false,
            false,
            true,
            3,
            false,
        ),
        (ReadTimedout, svc, true, true, false, false, true, 1, true),
        (ReadTimedout, svc, false, true, false, false, true, 1, false),
        (ReadTimedout, inst, true, true, true, false, true, 1, false),
        (
            ConnectionClosed,
            inst,
            true,
            true,
            true,
            false,
            true,
            1,
            true,
        ),
        (
            ConnectionClosed,
            inst,
            true,
            true,
            false,
            false,
            true,
            1,
            false,
        ),
        (
            ConnectionClosed,
            inst,
            false,
            true,
            true,
            false,
            true,
            1,
            false,
        ),
        (ReadError, inst, true, true, true, false, true, 1, true),
        (
            InvalidHTTPHeader,
            inst,
            true,
            true,
            true,
            false,
            true,
            1,
            false,
        ),
        (
            InvalidHTTPHeader,
            svc,
            true,
            true,
            true,
            false,
            true,
            1,
            true,
        ),
        (
            ConnectionClosed,
            svc,
            true,
            true,
            true,
            true,
            true,
            1,
            false,
        ),
        (ReadError, svc, true, true, false, false, false, 1, false),
        (
            HTTPStatus(502),
            svc,
            true,
            true,
            false,
            false,
            true,
            1,
            false,
        ),
    ];
    for (i, (etype, route, idempotent, sent, reused, started, fault, tries, want)) in
        cases.into_iter().enumerate()
    {
        let f = FailedTry {
            etype: &etype,
            route,
            idempotent,
            sent,
            reused,
            response_started: started,
            upstream_fault: fault,
            tries,
            ..base
        };
        assert_eq!(retry(&f), want, "case {i}: {f:?}");
    }
}

#[test]
fn instance_status_header_only_on_instance_hosts_not_up() {
    use crate::registry::Status::*;
    for (route, status, want) in [
        (RouteKind::Instance, Down, Some("DOWN")),
        (RouteKind::Instance, Starting, Some("STARTING")),
        (RouteKind::Instance, OutOfService, Some("OUT_OF_SERVICE")),
        (RouteKind::Instance, Up, None),
        (RouteKind::Service, Down, None),
        (RouteKind::Service, Up, None),
    ] {
        assert_eq!(
            instance_status_header(route, status),
            want,
            "{route:?} {status:?}"
        );
    }
}

#[test]
fn https_redirects_keep_host_and_path_on_the_https_port() {
    let cases = [
        (
            "a.example.com",
            443,
            "/x?y=1",
            "https://a.example.com/x?y=1",
        ),
        (
            "a.example.com:8080",
            8443,
            "/",
            "https://a.example.com:8443/",
        ),
        ("[::1]:8080", 8443, "/p", "https://[::1]:8443/p"),
        ("[::1]", 443, "/p", "https://[::1]/p"),
        ("a.example.com", 443, "*", "https://a.example.com/"),
    ];
    for (host, port, path, want) in cases {
        assert_eq!(https_location(host, port, path), want, "{host} {path}");
    }
}
