//! `default_zones`, config validation, and the property test that `answer` never panics.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use proptest::prelude::*;

use super::tests::cfg;
use super::*;

#[test]
fn default_zones_table() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (domains, want) in [
        (s(&["10-0-0-5.sslip.io"]), Some(s(&["sslip.io"]))),
        (s(&["127-0-0-1.sslip.io"]), Some(s(&["sslip.io"]))),
        (s(&["10.0.0.5.nip.io"]), Some(s(&["nip.io"]))),
        (s(&["10-0-0-5.SSLIP.IO."]), Some(s(&["sslip.io"]))),
        (
            s(&["10-0-0-5.sslip.io", "10-0-0-6.sslip.io"]),
            Some(s(&["sslip.io"])),
        ),
        (
            s(&["10-0-0-5.sslip.io", "10-0-0-5.nip.io"]),
            Some(s(&["nip.io", "sslip.io"])),
        ),
        (s(&["apps.example.com"]), Some(s(&["apps.example.com"]))),
        (
            s(&["example.com", "apps.example.com"]),
            Some(s(&["example.com"])),
        ),
        (s(&["localhost"]), Some(s(&["localhost"]))),
        (
            s(&["10-0-0-5.xip.example.com"]),
            Some(s(&["xip.example.com"])),
        ),
        (s(&[]), None),
        (s(&["10-0-0-5.io"]), None),
        (s(&["10-0-0-5"]), None),
        (s(&["10.0.0.5"]), None),
        (s(&["1.2.3.4.io"]), None),
        (s(&["a..b"]), None),
        (s(&[""]), None),
        (s(&["10-0-0-5.sslip.io", ""]), None),
    ] {
        assert_eq!(default_zones(&domains), want, "{domains:?}");
    }
}

#[test]
fn validate_config() {
    assert!(cfg().validate().is_ok());
    for zones in [
        vec![],
        vec!["".to_string()],
        vec![".".into()],
        vec!["a..b".into()],
    ] {
        assert!(DnsConfig { zones, ..cfg() }.validate().is_err());
    }
}

fn any_label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..64),
        "[0-9]{1,4}".prop_map(String::into_bytes),
        "[0-9]{1,3}-[0-9]{1,3}-[0-9]{1,3}-[0-9]{1,3}".prop_map(String::into_bytes),
        "[0-9a-fA-F-]{1,40}".prop_map(String::into_bytes),
        Just(b"sslip".to_vec()),
        Just(b"io".to_vec()),
    ]
}

proptest! {
    #[test]
    fn answer_never_panics(
        labels in proptest::collection::vec(any_label(), 0..12),
        in_zone in any::<bool>(),
        qtype in any::<u16>(),
        class in any::<u16>(),
        opcode in 0u8..16,
        qcount in 0usize..3,
        edns in proptest::option::of((any::<u16>(), any::<u8>())),
        edge in proptest::collection::vec(any::<[u8; 16]>(), 0..3),
    ) {
        let mut labels = labels;
        if in_zone {
            labels.push(b"sslip".to_vec());
            labels.push(b"io".to_vec());
        }
        let Ok(name) = Name::from_labels(labels) else { return Ok(()) };
        let c = DnsConfig {
            edge_ips: edge.iter().map(|b| IpAddr::from(*b)).chain([IpAddr::from([10, 0, 0, 1])]).collect(),
            ..cfg()
        };
        let mut m = Message::new(7, MessageType::Query, OpCode::from_u8(opcode));
        for _ in 0..qcount {
            let mut q = Query::query(name.clone(), RecordType::from(qtype));
            q.set_query_class(DNSClass::from(class));
            m.add_query(q);
        }
        if let Some((payload, version)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            e.set_version(version);
            m.set_edns(e);
        }
        let r = answer(&c, &m);
        prop_assert_eq!(r.metadata.id, 7);
        prop_assert_eq!(r.metadata.message_type, MessageType::Response);
        prop_assert_ne!(r.metadata.response_code, ResponseCode::NXDomain);
        // Whatever came back can be put on the wire.
        prop_assert!(r.to_vec().is_ok());
    }
}
