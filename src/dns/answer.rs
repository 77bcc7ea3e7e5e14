//! The answer to one query: a pure function of the config and the request. The server
//! and the tests both go through [`reply`], so the rules live in one place.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, HINFO, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::labels::{classify, Target};
use super::{DnsConfig, NoTxt, TxtRecords};

/// TTL of TXT answers: they are ACME challenge values, current for a minute at most.
pub const TXT_TTL: u32 = 0;

/// UDP payload size we advertise in EDNS answers (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// SOA serial. There are no zone transfers and the data is synthetic, so it never changes.
pub const SOA_SERIAL: u32 = 1;
/// SOA refresh / retry / expire, in seconds (RFC 1912 §2.2 ranges; only a secondary would
/// read them, and there is none).
pub const SOA_REFRESH: i32 = 3600;
pub const SOA_RETRY: i32 = 600;
pub const SOA_EXPIRE: i32 = 1_209_600;
/// The CPU field of the one HINFO record that answers every ANY query (RFC 8482 §4.2; its
/// OS field is empty).
pub const ANY_HINFO_CPU: &str = "RFC8482";
/// Label of the zone's name server: `ns.<zone>` (which resolves to the edge IPs).
pub const NS_LABEL: &str = "ns";
/// Mailbox label of the SOA `RNAME`: `hostmaster.<zone>`.
pub const HOSTMASTER_LABEL: &str = "hostmaster";

/// A response, section by section, before it is put into a [`Message`] (for [`answer`])
/// or encoded straight from the request's question bytes (the server).
#[derive(Clone, Debug)]
pub struct Reply {
    pub metadata: Metadata,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// OPT to send back: present exactly when the request had one.
    pub edns: Option<Edns>,
}

/// The response to `request`. Never panics; never returns NXDOMAIN (every name under a
/// zone exists). See the module docs of `dns` for the rules.
pub fn answer(cfg: &DnsConfig, request: &Message) -> Message {
    answer_with(cfg, &NoTxt, request)
}

/// [`answer`], with TXT records from `txt`.
pub fn answer_with(cfg: &DnsConfig, txt: &dyn TxtRecords, request: &Message) -> Message {
    let r = reply(
        cfg,
        txt,
        &request.metadata,
        request.queries.len(),
        request.queries.first(),
        request.edns.as_ref(),
    );
    let mut m = Message::new(r.metadata.id, MessageType::Response, r.metadata.op_code);
    m.metadata = r.metadata;
    m.queries = request.queries.clone();
    m.answers = r.answers;
    m.authorities = r.authorities;
    m.additionals = r.additionals;
    m.edns = r.edns;
    m
}

/// The rules, on the parts of a request: its header, its number of questions, the first
/// question and its OPT record.
pub fn reply(
    cfg: &DnsConfig,
    txt: &dyn TxtRecords,
    request: &Metadata,
    query_count: usize,
    query: Option<&Query>,
    request_edns: Option<&Edns>,
) -> Reply {
    let metadata = Metadata::response_from_request(request);
    let edns = request_edns.map(|e| {
        let mut out = Edns::new();
        // Encode for the smaller of the client's buffer and ours (512 at least, RFC 6891).
        out.set_max_payload(e.max_payload().clamp(512, EDNS_PAYLOAD));
        out
    });
    let mut r = Reply {
        metadata,
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
        edns,
    };
    let fail = |mut r: Reply, code: ResponseCode| {
        r.metadata.response_code = code;
        r
    };

    if request.message_type != MessageType::Query {
        return fail(r, ResponseCode::FormErr);
    }
    if request.op_code != OpCode::Query {
        return fail(r, ResponseCode::NotImp);
    }
    if request_edns.is_some_and(|e| e.version() > 0) {
        return fail(r, ResponseCode::BADVERS);
    }
    let q = match (query_count, query) {
        (1, Some(q)) => q,
        _ => return fail(r, ResponseCode::FormErr),
    };
    let qtype = q.query_type();
    if matches!(qtype, RecordType::OPT) {
        return fail(r, ResponseCode::FormErr);
    }
    if q.query_class() != DNSClass::IN {
        return fail(r, ResponseCode::Refused);
    }
    let Some(c) = classify(&cfg.zones, q.name()) else {
        return fail(r, ResponseCode::Refused);
    };
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        // No zone transfers: the zone is synthetic and unbounded.
        return fail(r, ResponseCode::Refused);
    }

    r.metadata.authoritative = true;
    let mut zone = q.name().trim_to(c.zone_labels).to_lowercase();
    zone.set_fqdn(true);
    let name = q.name().clone();
    let ttl = cfg.ttl;
    if qtype == RecordType::ANY {
        // RFC 8482: ANY gets one small synthesized HINFO, not every record the name has
        // (at the apex that was ~5x the query's size over UDP, an amplifier). Resolvers
        // ask for the types they need.
        r.answers.push(Record::from_rdata(
            name,
            ttl,
            RData::HINFO(HINFO::new(ANY_HINFO_CPU.to_string(), String::new())),
        ));
        return r;
    }

    let want_a = qtype == RecordType::A;
    let want_aaaa = qtype == RecordType::AAAA;
    match c.target {
        Target::V4(ip) if want_a => {
            r.answers
                .push(Record::from_rdata(name.clone(), ttl, RData::A(A(ip))))
        }
        Target::V6(ip) if want_aaaa => {
            r.answers
                .push(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(ip))))
        }
        Target::Edge => r
            .answers
            .extend(edge_records(cfg, &name, want_a, want_aaaa)),
        _ => {}
    }
    if qtype == RecordType::TXT {
        let owner = name.to_lowercase().to_ascii();
        for value in txt.txt(owner.trim_end_matches('.')) {
            r.answers.push(Record::from_rdata(
                name.clone(),
                TXT_TTL,
                RData::TXT(TXT::new(vec![value])),
            ));
        }
    }
    if c.apex {
        if qtype == RecordType::SOA {
            r.answers.push(soa_record(cfg, &zone, name.clone()));
        }
        if qtype == RecordType::NS {
            if let Some(ns) = ns_name(&zone) {
                r.answers.push(Record::from_rdata(
                    name.clone(),
                    ttl,
                    RData::NS(NS(ns.clone())),
                ));
                // Glue-like additional data: the addresses of ns.<zone>.
                r.additionals.extend(edge_records(cfg, &ns, true, true));
            }
        }
    }
    if r.answers.is_empty() {
        // NODATA (RFC 2308 §2.2): NOERROR, no answers, the SOA in the authority section.
        r.authorities.push(soa_record(cfg, &zone, zone.clone()));
    }
    r
}

/// A/AAAA records of the edge IPs, named `name`, for the families asked for.
fn edge_records<'a>(
    cfg: &'a DnsConfig,
    name: &'a Name,
    v4: bool,
    v6: bool,
) -> impl Iterator<Item = Record> + 'a {
    cfg.edge_ips.iter().filter_map(move |ip| match ip {
        IpAddr::V4(ip) if v4 => Some(Record::from_rdata(name.clone(), cfg.ttl, RData::A(A(*ip)))),
        IpAddr::V6(ip) if v6 => Some(Record::from_rdata(
            name.clone(),
            cfg.ttl,
            RData::AAAA(AAAA(*ip)),
        )),
        _ => None,
    })
}

/// `ns.<zone>`, or `None` if the zone is already too long to take one more label.
fn ns_name(zone: &Name) -> Option<Name> {
    zone.prepend_label(NS_LABEL).ok()
}

/// The zone's SOA, owned by `owner`: `ns.<zone> hostmaster.<zone> 1 3600 600 1209600 <ttl>`.
fn soa_record(cfg: &DnsConfig, zone: &Name, owner: Name) -> Record {
    let mname = ns_name(zone).unwrap_or_else(|| zone.clone());
    let rname = zone
        .prepend_label(HOSTMASTER_LABEL)
        .unwrap_or_else(|_| zone.clone());
    let soa = SOA::new(
        mname,
        rname,
        SOA_SERIAL,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        cfg.ttl,
    );
    Record::from_rdata(owner, cfg.ttl, RData::SOA(soa))
}
