//! Table tests over [`answer`] for every rule.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::*;

pub(super) fn cfg() -> DnsConfig {
    DnsConfig {
        listen: vec![],
        zones: vec!["sslip.io".into(), "xip.example.com".into()],
        edge_ips: vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        ttl: 60,
    }
}

/// A name from text, labels taken as they are (`Name::from_ascii` refuses `--1`, which
/// the wire carries fine).
fn name(text: &str) -> Name {
    let labels: Vec<&[u8]> = text
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::as_bytes)
        .collect();
    let mut n = Name::from_labels(labels).unwrap();
    n.set_fqdn(text.ends_with('.'));
    n
}

fn query(text: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(text), qtype));
    m
}

/// RFC 8482's answer to ANY, as [`rdata`] shows it.
const RFC8482: &str = "HINFO \"RFC8482\" \"\"";

/// What a response says, in a form a table can hold.
#[derive(Debug, PartialEq)]
struct Seen {
    rcode: ResponseCode,
    aa: bool,
    answers: Vec<String>,
    soa_in_authority: bool,
}

fn rdata(d: &RData) -> String {
    match d {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::NS(ns) => format!("NS {}", ns.0.to_ascii()),
        RData::SOA(s) => format!("SOA {} {}", s.mname.to_ascii(), s.rname.to_ascii()),
        RData::HINFO(h) => format!(
            "HINFO {:?} {:?}",
            String::from_utf8_lossy(&h.cpu),
            String::from_utf8_lossy(&h.os)
        ),
        other => format!("{other:?}"),
    }
}

fn ask(c: &DnsConfig, name: &str, qtype: RecordType) -> Seen {
    let req = query(name, qtype);
    let resp = answer(c, &req);
    assert_eq!(resp.metadata.id, 4242);
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    assert!(resp.metadata.recursion_desired, "RD is copied");
    assert!(!resp.metadata.recursion_available);
    assert_eq!(resp.queries, req.queries, "question echoed");
    for r in &resp.answers {
        assert!(r.name.eq_case(req.queries[0].name()) || matches!(r.data, RData::SOA(_)));
        assert_eq!(r.ttl, 60);
    }
    Seen {
        rcode: resp.metadata.response_code,
        aa: resp.metadata.authoritative,
        answers: resp.answers.iter().map(|r| rdata(&r.data)).collect(),
        soa_in_authority: resp
            .authorities
            .iter()
            .any(|r| matches!(r.data, RData::SOA(_))),
    }
}

fn ok(answers: &[&str]) -> Seen {
    Seen {
        rcode: ResponseCode::NoError,
        aa: true,
        answers: answers.iter().map(|s| s.to_string()).collect(),
        soa_in_authority: false,
    }
}

fn nodata() -> Seen {
    Seen {
        rcode: ResponseCode::NoError,
        aa: true,
        answers: vec![],
        soa_in_authority: true,
    }
}

fn err(rcode: ResponseCode) -> Seen {
    Seen {
        rcode,
        aa: false,
        answers: vec![],
        soa_in_authority: false,
    }
}

#[test]
fn answer_rules() {
    use RecordType::*;
    let c = cfg();
    let edge4 = ok(&["192.0.2.10"]);
    let edge6 = ok(&["2001:db8::10"]);
    let soa = "SOA ns.sslip.io. hostmaster.sslip.io.";
    let table: Vec<(&str, RecordType, Seen)> = vec![
        // dashed IPv4, anchored at the zone
        ("10-0-0-5.sslip.io.", A, ok(&["10.0.0.5"])),
        ("order-service.10-0-0-5.sslip.io.", A, ok(&["10.0.0.5"])),
        ("ORDER-Service.10-0-0-5.SSLIP.io.", A, ok(&["10.0.0.5"])),
        (
            "order-service-7d9f8-x2k4q-8080.127-0-0-1.sslip.io.",
            A,
            ok(&["127.0.0.1"]),
        ),
        ("pod-10-0-0-7.10-0-0-5.sslip.io.", A, ok(&["10.0.0.5"])),
        ("a.b.c.10-0-0-5.sslip.io.", A, ok(&["10.0.0.5"])),
        // dotted IPv4
        ("10.0.0.5.sslip.io.", A, ok(&["10.0.0.5"])),
        ("order-service-0.10.0.0.5.sslip.io.", A, ok(&["10.0.0.5"])),
        ("1.2.3.4.5.sslip.io.", A, ok(&["2.3.4.5"])),
        // not exactly an address: the edge
        ("10-0-0-7-8080.sslip.io.", A, edge4),
        ("x.999.1.1.1.sslip.io.", A, ok(&["192.0.2.10"])),
        ("10-0-0-05.sslip.io.", A, ok(&["192.0.2.10"])),
        ("10-0-0-5.sslip.io.evil.com.", A, err(ResponseCode::Refused)),
        ("order-service.sslip.io.", A, ok(&["192.0.2.10"])),
        ("order-service.sslip.io.", AAAA, edge6),
        // ANY: RFC 8482's one small HINFO, never every record the name has
        ("order-service.sslip.io.", ANY, ok(&[RFC8482])),
        ("ns.sslip.io.", A, ok(&["192.0.2.10"])),
        // dashed IPv6
        ("--1.sslip.io.", AAAA, ok(&["::1"])),
        ("app.2001-db8--1.sslip.io.", AAAA, ok(&["2001:db8::1"])),
        ("app.2001-DB8--1.sslip.io.", ANY, ok(&[RFC8482])),
        // the other family: NODATA
        ("10-0-0-5.sslip.io.", AAAA, nodata()),
        ("10.0.0.5.sslip.io.", AAAA, nodata()),
        ("--1.sslip.io.", A, nodata()),
        ("10-0-0-5.sslip.io.", MX, nodata()),
        // apex
        ("sslip.io.", A, ok(&["192.0.2.10"])),
        ("sslip.io.", AAAA, ok(&["2001:db8::10"])),
        ("SSLIP.IO.", SOA, ok(&[soa])),
        ("sslip.io.", NS, ok(&["NS ns.sslip.io."])),
        ("sslip.io.", ANY, ok(&[RFC8482])),
        ("sslip.io.", MX, nodata()),
        ("sslip.io.", TXT, nodata()),
        ("sslip.io.", CAA, nodata()),
        ("sslip.io.", AXFR, err(ResponseCode::Refused)),
        // SOA / NS below the apex: NODATA
        ("order-service.sslip.io.", SOA, nodata()),
        ("order-service.sslip.io.", NS, nodata()),
        ("order-service.sslip.io.", MX, nodata()),
        ("order-service.sslip.io.", TXT, nodata()),
        // a second, longer zone
        ("svc.10-1-2-3.xip.example.com.", A, ok(&["10.1.2.3"])),
        ("xip.example.com.", A, ok(&["192.0.2.10"])),
        ("example.com.", A, err(ResponseCode::Refused)),
        // outside every zone
        ("google.com.", A, err(ResponseCode::Refused)),
        ("10-0-0-5.nip.io.", A, err(ResponseCode::Refused)),
        ("io.", A, err(ResponseCode::Refused)),
        (".", NS, err(ResponseCode::Refused)),
        ("xsslip.io.", A, err(ResponseCode::Refused)),
    ];
    for (name, qtype, want) in table {
        assert_eq!(ask(&c, name, qtype), want, "{name} {qtype}");
    }
}

#[test]
fn nodata_and_apex_details() {
    let c = cfg();
    let resp = answer(&c, &query("a.10-0-0-5.SSLIP.IO.", RecordType::AAAA));
    assert_eq!(resp.authorities.len(), 1);
    let soa = &resp.authorities[0];
    assert_eq!(soa.name.to_ascii(), "sslip.io.");
    let RData::SOA(s) = &soa.data else {
        panic!("not a SOA")
    };
    assert_eq!(s.minimum, 60);
    assert!(s.refresh > s.retry && s.expire > s.refresh);

    let resp = answer(&c, &query("sslip.io.", RecordType::NS));
    let glue: Vec<String> = resp
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, rdata(&r.data)))
        .collect();
    assert_eq!(
        glue,
        ["ns.sslip.io. 192.0.2.10", "ns.sslip.io. 2001:db8::10"]
    );

    // IPv4-only edge: AAAA for a service name is NODATA.
    let v4only = DnsConfig {
        edge_ips: vec!["127.0.0.1".parse::<IpAddr>().unwrap()],
        ..cfg()
    };
    assert_eq!(ask(&v4only, "svc.sslip.io.", RecordType::AAAA), nodata());
    assert_eq!(
        ask(&v4only, "svc.sslip.io.", RecordType::A),
        ok(&["127.0.0.1"])
    );
    // No edge IPs at all: NODATA, not an error.
    let none = DnsConfig {
        edge_ips: vec![],
        ..cfg()
    };
    assert_eq!(ask(&none, "svc.sslip.io.", RecordType::A), nodata());
    assert_eq!(
        ask(&none, "svc.10-0-0-5.sslip.io.", RecordType::A),
        ok(&["10.0.0.5"])
    );
}

#[test]
fn malformed_and_other_opcodes() {
    let c = cfg();
    let mut none = Message::new(1, MessageType::Query, OpCode::Query);
    assert_eq!(
        answer(&c, &none).metadata.response_code,
        ResponseCode::FormErr
    );
    none.add_query(Query::query(
        Name::from_ascii("a.sslip.io.").unwrap(),
        RecordType::A,
    ));
    none.add_query(Query::query(
        Name::from_ascii("b.sslip.io.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        answer(&c, &none).metadata.response_code,
        ResponseCode::FormErr
    );

    let mut notify = query("sslip.io.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let r = answer(&c, &notify);
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(r.metadata.op_code, OpCode::Notify);
    let mut update = query("sslip.io.", RecordType::SOA);
    update.metadata.op_code = OpCode::Update;
    assert_eq!(
        answer(&c, &update).metadata.response_code,
        ResponseCode::NotImp
    );

    let mut resp = query("sslip.io.", RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    assert_eq!(
        answer(&c, &resp).metadata.response_code,
        ResponseCode::FormErr
    );

    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        answer(&c, &chaos).metadata.response_code,
        ResponseCode::Refused
    );
    let mut chaos_in_zone = query("sslip.io.", RecordType::TXT);
    chaos_in_zone.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        answer(&c, &chaos_in_zone).metadata.response_code,
        ResponseCode::Refused
    );

    assert_eq!(
        answer(&c, &query("sslip.io.", RecordType::OPT))
            .metadata
            .response_code,
        ResponseCode::FormErr
    );
}

#[test]
fn edns_is_answered_with_edns() {
    let c = cfg();
    let mut q = query("svc.sslip.io.", RecordType::A);
    assert!(answer(&c, &q).edns.is_none());
    let mut e = Edns::new();
    e.set_max_payload(4096);
    q.set_edns(e.clone());
    let r = answer(&c, &q);
    assert_eq!(r.edns.as_ref().map(Edns::max_payload), Some(EDNS_PAYLOAD));
    assert_eq!(r.answers.len(), 1);
    e.set_version(1);
    q.set_edns(e);
    let r = answer(&c, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::BADVERS);
    assert!(r.edns.is_some());
    // And it survives the wire: the extended rcode travels in the OPT record.
    let back = Message::from_vec(&r.to_vec().unwrap()).unwrap();
    // (BADVERS and BADSIG share the value 16; the decoder names it BADSIG.)
    assert_eq!(u16::from(back.metadata.response_code), 16);
    assert!(back.edns.is_some());
}

#[test]
fn tcp_connections_are_limited_per_client_and_in_all() {
    use super::tcp::Slots;
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "192.0.2.2".parse().unwrap();
    let c: IpAddr = "2001:db8::3".parse().unwrap();
    // 2 per client, 3 in all.
    let slots = Slots::new(2, 3);
    let a1 = slots.take(a).expect("a's first");
    let a2 = slots.take(a).expect("a's second");
    assert!(
        slots.take(a).is_none(),
        "a's third is over the per-client limit"
    );
    let b1 = slots.take(b).expect("b is another client");
    assert!(slots.take(c).is_none(), "a fourth in all is over the total");
    assert_eq!(slots.held_by(c), 0, "a refused client holds nothing");
    drop(a1);
    assert_eq!(
        slots.held_by(a),
        1,
        "a closed connection gives its place back"
    );
    let c1 = slots.take(c).expect("room again");
    drop((a2, b1, c1));
    for ip in [a, b, c] {
        assert_eq!(slots.held_by(ip), 0);
    }
    let again: Vec<_> = (0..2).map(|_| slots.take(a)).collect();
    assert!(again.iter().all(Option::is_some), "all places are back");
}
