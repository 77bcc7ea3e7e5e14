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

#[test]
fn forged_forwarding_headers_never_reach_upstream() {
    // Spring's ForwardedHeaderFilter reads `Forwarded` first; `X-Real-IP` is nginx's
    // convention; an `_` spelling is the same header to CGI-style frameworks.
    for name in [
        "Forwarded",
        "forwarded",
        "X-Real-IP",
        "x_real_ip",
        "X_Forwarded_Host",
        "x_forwarded-for",
        "X-Forwarded_Proto",
        "x_forwarded_port",
        "Via",
    ] {
        assert!(dropped_upstream(name), "{name}");
    }
    for name in [
        "X-Forwarded",
        "Forwarded-For",
        "X_Custom_Header",
        "X-Real",
        "X-Real-IPs",
        "Viaduct",
    ] {
        assert!(!dropped_upstream(name), "{name}");
    }
}

#[test]
fn the_edges_own_via_entry_is_a_loop() {
    let me = "xipgate-00112233aabbccdd";
    let cases: &[(&[&[u8]], bool)] = &[
        (&[], false),
        (&[b"1.1 xipgate-00112233aabbccdd"], true),
        (&[b"1.1 XIPGATE-00112233AABBCCDD"], true),
        (&[b"1.0 fred, 1.1 xipgate-00112233aabbccdd (comment)"], true),
        (&[b"1.1 a", b"2 xipgate-00112233aabbccdd"], true),
        (&[b"HTTP/1.1 xipgate-00112233aabbccdd:8080"], false),
        (&[b"1.1 xipgate-99112233aabbccdd"], false), // another edge: a chain, not a loop
        (&[b"1.1 xipgate-00112233aabbccdde"], false),
        (&[b"xipgate-00112233aabbccdd"], false), // no protocol: not a Via entry of ours
        (&[b"1.1 proxy, 1.1 xipgate"], false),
        (&[b""], false),
        (&[b" , ,"], false),
    ];
    for (values, want) in cases {
        assert_eq!(
            looped(values.iter().copied(), me),
            *want,
            "{:?}",
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn via_extends_the_chain_with_the_edge() {
    let via = |vals: &[&[u8]], proto: &str| {
        let mut out = Vec::new();
        via_into(&mut out, vals.iter().copied(), proto, "xipgate-1");
        String::from_utf8(out).unwrap()
    };
    assert_eq!(via(&[], "1.1"), "1.1 xipgate-1");
    assert_eq!(via(&[b"1.0 fred"], "1.1"), "1.0 fred, 1.1 xipgate-1");
    assert_eq!(
        via(&[b"1.0 a", b" ", b"2 b"], "2"),
        "1.0 a, 2 b, 2 xipgate-1"
    );
    assert_eq!(via(&[b"1.1 \x01bad"], "1.0"), "1.0 xipgate-1");
    for (v, want) in [
        (http::Version::HTTP_10, "1.0"),
        (http::Version::HTTP_11, "1.1"),
        (http::Version::HTTP_2, "2"),
    ] {
        assert_eq!(via_protocol(v), want);
    }
    // One pseudonym per process, a valid Via received-by token.
    let me = pseudonym();
    assert_eq!(me, pseudonym());
    assert!(
        me.starts_with("xipgate-") && me.len() == "xipgate-".len() + 16,
        "{me}"
    );
    assert!(looped([format!("1.1 {me}").as_bytes()], me));
}

#[test]
fn which_clients_asked_to_close() {
    use http::Version;
    for (version, connection, want) in [
        (Version::HTTP_11, &[][..], false),
        (Version::HTTP_11, &[&b"keep-alive"[..]][..], false),
        (Version::HTTP_11, &[&b"close"[..]][..], true),
        (Version::HTTP_11, &[&b"Keep-Alive, Close"[..]][..], true),
        (Version::HTTP_11, &[&b"Upgrade"[..]][..], false),
        (
            Version::HTTP_11,
            &[&b"upgrade"[..], &b" close "[..]][..],
            true,
        ),
        (Version::HTTP_10, &[][..], true),
        (Version::HTTP_10, &[&b"keep-alive"[..]][..], false),
        (Version::HTTP_10, &[&b"Upgrade"[..]][..], true),
        (Version::HTTP_09, &[][..], true),
    ] {
        assert_eq!(
            client_closes(version, connection.iter().copied()),
            want,
            "{version:?} {connection:?}"
        );
    }
}

proptest::proptest! {
    /// Whatever the address, X-Forwarded-For gets what `Display` writes.
    #[test]
    fn an_address_is_written_as_display_writes_it(v4 in proptest::prelude::any::<[u8; 4]>(), v6 in proptest::prelude::any::<[u16; 8]>()) {
        for ip in [std::net::IpAddr::from(v4), std::net::IpAddr::from(v6)] {
            proptest::prop_assert_eq!(address_text(ip), ip.to_string());
        }
    }
}

#[test]
fn edge_addresses_are_written_as_display_writes_them() {
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "10.0.0.5",
        "100.9.90.199",
        "::1",
        "::ffff:1.2.3.4",
    ] {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        assert_eq!(address_text(ip), ip.to_string());
    }
}
