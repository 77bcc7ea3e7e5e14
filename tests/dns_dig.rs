//! The DNS server end to end: bound on 127.0.0.1 (UDP and TCP on one free port), queried
//! with the real `dig` binary (Debian package `bind9-dnsutils`). A missing `dig` fails the
//! test: CI installs it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use xipgate::dns::{bind, serve, DnsConfig, NoTxt, TCP_PER_CLIENT};

const EDGE_V4: &str = "192.0.2.1";
const EDGE_V6: &str = "2001:db8::53";

/// A DNS server on its own runtime, stopped (and checked to stop) on drop.
struct TestServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), xipgate::dns::DnsError>>>,
    rt: tokio::runtime::Runtime,
}

impl TestServer {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let cfg = DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            zones: vec!["sslip.io".into()],
            edge_ips: vec![EDGE_V4.parse().unwrap(), EDGE_V6.parse().unwrap()],
            ttl: 60,
        };
        let (udp, tcp) = rt.block_on(bind(&cfg)).expect("bind 127.0.0.1:0");
        let addr = udp[0].local_addr().unwrap();
        assert_eq!(
            tcp[0].local_addr().unwrap(),
            addr,
            "UDP and TCP share the port"
        );
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = rt.spawn(serve(Arc::new(cfg), udp, tcp, Arc::new(NoTxt), rx));
        TestServer {
            addr,
            stop,
            task: Some(task),
            rt,
        }
    }

    /// Runs `dig @127.0.0.1 -p PORT <args>` and parses its output.
    fn dig(&self, args: &[&str]) -> Dig {
        let port = self.addr.port().to_string();
        let mut cmd = Command::new("dig");
        cmd.args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"])
            .args([
                "+noall",
                "+comments",
                "+answer",
                "+authority",
                "+additional",
            ])
            .args(args);
        let out = cmd.output().unwrap_or_else(|e| {
            panic!(
                "cannot run `dig` ({e}): install it with `apt-get install bind9-dnsutils` \
                 (this test needs the real dig and does not skip without it)"
            )
        });
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "dig {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Dig::parse(&text)
    }

    /// Whether `dig <args>` got an answer at all (exit status 0), and what it printed.
    fn answered(&self, args: &[&str]) -> (bool, String) {
        let port = self.addr.port().to_string();
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("cannot run `dig`: install it with `apt-get install bind9-dnsutils`");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success() && text.contains("status: NOERROR"),
            text,
        )
    }

    /// `dig +short` lines.
    fn short(&self, args: &[&str]) -> Vec<String> {
        let port = self.addr.port().to_string();
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=1", "+short"])
            .args(args)
            .output()
            .expect("cannot run `dig`: install it with `apt-get install bind9-dnsutils`");
        assert!(out.status.success(), "dig +short {args:?} failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let res = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
            if !std::thread::panicking() {
                let res = res.expect("serve returns within 5 s of shutdown");
                res.expect("serve task")
                    .expect("serve returns Ok on shutdown");
            }
        }
    }
}

/// One resource record line of dig's output.
#[derive(Debug, Clone, PartialEq)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

/// What dig printed: header status and flags, and the three record sections.
#[derive(Debug, Default)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    raw: String,
}

impl Dig {
    fn parse(text: &str) -> Dig {
        let mut d = Dig {
            raw: text.to_string(),
            ..Dig::default()
        };
        let mut section = "";
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
                if let Some(s) = rest.split("status: ").nth(1) {
                    d.status = s.split(',').next().unwrap_or("").trim().to_string();
                }
            } else if let Some(rest) = line.strip_prefix(";; flags:") {
                let flags = rest.split(';').next().unwrap_or("");
                d.flags = flags.split_whitespace().map(str::to_string).collect();
            } else if line.starts_with(";; ") && line.ends_with("SECTION:") {
                section = line.trim_start_matches(";; ").trim_end_matches(" SECTION:");
            } else if !line.is_empty() && !line.starts_with(';') {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 5 {
                    continue;
                }
                let rr = Rr {
                    name: f[0].to_string(),
                    ttl: f[1].parse().unwrap_or(u32::MAX),
                    rtype: f[3].to_string(),
                    data: f[4..].join(" "),
                };
                match section {
                    "ANSWER" => d.answer.push(rr),
                    "AUTHORITY" => d.authority.push(rr),
                    "ADDITIONAL" => d.additional.push(rr),
                    _ => {}
                }
            }
        }
        d
    }

    fn answers(&self, rtype: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect()
    }

    fn aa(&self) -> bool {
        self.flags.iter().any(|f| f == "aa")
    }

    fn assert_nodata(&self, what: &str) {
        assert_eq!(self.status, "NOERROR", "{what}: {}", self.raw);
        assert!(
            self.answer.is_empty(),
            "{what}: no answer expected: {}",
            self.raw
        );
        assert!(
            self.authority.iter().any(|r| r.rtype == "SOA"),
            "{what}: SOA in authority: {}",
            self.raw
        );
        assert!(self.aa(), "{what}: aa: {}", self.raw);
    }
}

#[test]
fn dig_is_installed() {
    let out = Command::new("dig").arg("-v").output();
    assert!(
        out.is_ok(),
        "`dig` is not installed: apt-get install bind9-dnsutils (the DNS tests need it)"
    );
}

#[test]
fn a_for_instance_and_service_hosts() {
    let s = TestServer::start();
    let encoded = [
        "order-service-7d9f8-x2k4q-8080.127-0-0-1.sslip.io",
        "order-service.127-0-0-1.sslip.io",
        "ORDER-Service.127-0-0-1.SSLIP.IO",
        "user-service-0.127.0.0.1.sslip.io",
        "pod-10-0-0-7-8080.127-0-0-1.sslip.io",
        "a.b.c.127-0-0-1.sslip.io",
        "127-0-0-1.sslip.io",
        "127.0.0.1.sslip.io",
    ];
    for host in encoded {
        let d = s.dig(&[host, "A", "+norec"]);
        assert_eq!(d.status, "NOERROR", "{host}: {}", d.raw);
        assert!(d.aa(), "{host}: aa flag: {}", d.raw);
        assert_eq!(d.answers("A"), ["127.0.0.1"], "{host}: {}", d.raw);
        assert_eq!(
            d.answer[0].name,
            format!("{host}."),
            "{host}: name echoed as asked"
        );
        assert_eq!(d.answer[0].ttl, 60);
        assert_eq!(s.short(&[host]), ["127.0.0.1"], "{host} +short");
    }
    let to_edge = [
        "order-service.sslip.io",
        "10-0-0-7-8080.sslip.io",
        "x.999.1.1.1.sslip.io",
        "10-0-0-05.sslip.io",
        "ns.sslip.io",
        "sslip.io",
    ];
    for host in to_edge {
        let d = s.dig(&[host, "A"]);
        assert_eq!(d.status, "NOERROR", "{host}: {}", d.raw);
        assert_eq!(d.answers("A"), [EDGE_V4], "{host}: {}", d.raw);
    }
}

#[test]
fn aaaa() {
    let s = TestServer::start();
    for (host, want) in [
        ("--1.sslip.io", "::1"),
        ("svc.2001-db8--5.sslip.io", "2001:db8::5"),
        ("order-service.sslip.io", EDGE_V6),
        ("sslip.io", EDGE_V6),
    ] {
        // `-q` because dig would read a name starting with `-` as an option.
        let d = s.dig(&["-q", host, "-t", "AAAA"]);
        assert_eq!(d.status, "NOERROR", "{host}: {}", d.raw);
        assert_eq!(d.answers("AAAA"), [want], "{host}: {}", d.raw);
    }
    // An IPv4 name asked for AAAA, and an IPv6 name asked for A: NODATA.
    s.dig(&["order-service.127-0-0-1.sslip.io", "AAAA"])
        .assert_nodata("AAAA of a dashed IPv4");
    s.dig(&["-q", "--1.sslip.io", "-t", "A"])
        .assert_nodata("A of a dashed IPv6");
}

#[test]
fn soa_and_ns_at_the_apex() {
    let s = TestServer::start();
    let d = s.dig(&["sslip.io", "SOA"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.aa());
    let soa = d.answers("SOA");
    assert_eq!(soa.len(), 1, "{}", d.raw);
    let f: Vec<&str> = soa[0].split_whitespace().collect();
    assert_eq!(
        f[..2],
        ["ns.sslip.io.", "hostmaster.sslip.io."],
        "{}",
        d.raw
    );
    let nums: Vec<u32> = f[2..].iter().map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        nums.len(),
        5,
        "serial refresh retry expire minimum: {}",
        d.raw
    );
    assert!(
        nums[1] > nums[2] && nums[3] > nums[1],
        "refresh > retry, expire > refresh"
    );
    assert_eq!(nums[4], 60, "minimum = ttl");

    let d = s.dig(&["sslip.io", "NS"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answers("NS"), ["ns.sslip.io."], "{}", d.raw);
    let glue: Vec<&str> = d
        .additional
        .iter()
        .filter(|r| r.name == "ns.sslip.io.")
        .map(|r| r.data.as_str())
        .collect();
    assert_eq!(glue, [EDGE_V4, EDGE_V6], "glue for ns.sslip.io: {}", d.raw);

    // SOA and NS exist only at the apex.
    s.dig(&["order-service.sslip.io", "NS"])
        .assert_nodata("NS below the apex");
}

#[test]
fn nodata_for_types_without_data() {
    let s = TestServer::start();
    for (host, qtype) in [
        ("sslip.io", "MX"),
        ("order-service.127-0-0-1.sslip.io", "MX"),
        ("order-service.sslip.io", "TXT"),
        ("sslip.io", "CAA"),
    ] {
        let d = s.dig(&[host, qtype]);
        d.assert_nodata(&format!("{host} {qtype}"));
        let soa = d.authority.iter().find(|r| r.rtype == "SOA").unwrap();
        assert_eq!(soa.name, "sslip.io.", "SOA is the zone's: {}", d.raw);
    }
}

#[test]
fn refused_outside_the_zone() {
    let s = TestServer::start();
    for host in [
        "example.com",
        "10-0-0-5.nip.io",
        "sslip.io.example.com",
        "io",
        ".",
    ] {
        let d = s.dig(&[host, "A"]);
        assert_eq!(d.status, "REFUSED", "{host}: {}", d.raw);
        assert!(d.answer.is_empty());
        assert!(!d.aa());
    }
}

#[test]
fn over_tcp_and_without_edns() {
    let s = TestServer::start();
    let d = s.dig(&["+tcp", "order-service.127-0-0-1.sslip.io", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answers("A"), ["127.0.0.1"], "{}", d.raw);
    let d = s.dig(&["+tcp", "sslip.io", "MX"]);
    d.assert_nodata("MX over TCP");
    let d = s.dig(&["+tcp", "example.com", "A"]);
    assert_eq!(d.status, "REFUSED", "{}", d.raw);
    let d = s.dig(&["+noedns", "svc.10-1-2-3.sslip.io", "A"]);
    assert_eq!(d.answers("A"), ["10.1.2.3"], "{}", d.raw);
    // Several queries on one TCP connection (dig keeps it open with +keepopen).
    let d = s.dig(&[
        "+tcp",
        "+keepopen",
        "a.sslip.io",
        "A",
        "b.127-0-0-1.sslip.io",
        "A",
    ]);
    assert_eq!(d.answer.len(), 2, "{}", d.raw);
}

#[test]
fn serve_stops_on_shutdown() {
    let s = TestServer::start();
    assert_eq!(s.short(&["sslip.io"]), [EDGE_V4]);
    drop(s); // Drop asserts that serve returned Ok within 5 s.
}

#[test]
fn any_is_answered_with_one_small_hinfo() {
    let s = TestServer::start();
    for host in [
        "sslip.io",
        "order-service.sslip.io",
        "10-0-0-5.sslip.io",
        "app.127-0-0-1.sslip.io",
    ] {
        for transport in ["+notcp", "+tcp"] {
            let d = s.dig(&[transport, host, "ANY"]);
            assert_eq!(d.status, "NOERROR", "{host} {transport}: {}", d.raw);
            assert!(d.aa(), "{host}: {}", d.raw);
            assert_eq!(d.answer.len(), 1, "only the HINFO: {}", d.raw);
            assert_eq!(d.answers("HINFO"), ["\"RFC8482\" \"\""], "{}", d.raw);
            assert_eq!(d.answer[0].name, format!("{host}."), "{}", d.raw);
            assert!(
                d.authority.is_empty() && d.additional.is_empty(),
                "{}",
                d.raw
            );
        }
    }
}

/// A length-prefixed query for `name` A, as DNS over TCP carries it.
fn tcp_query(name: &str) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let body = m.to_vec().unwrap();
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// Sends one query on `c` and reads the length-prefixed answer: `None` when the server
/// closed the connection instead.
fn ask_tcp(c: &mut TcpStream) -> Option<Message> {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may already have closed it: a failed write is no answer too.
    c.write_all(&tcp_query("a.sslip.io.")).ok()?;
    let mut len = [0u8; 2];
    c.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut body).ok()?;
    Message::from_vec(&body).ok()
}

#[test]
fn tcp_connections_are_limited_per_client() {
    let s = TestServer::start();
    // Hold as many connections as one client may, each shown to be served by an answer.
    let mut held: Vec<TcpStream> = (0..TCP_PER_CLIENT)
        .map(|k| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            let answer = ask_tcp(&mut c);
            assert!(answer.is_some(), "connection {k} is served");
            c
        })
        .collect();
    // One more from the same address is closed unanswered, with raw bytes and with dig.
    let mut extra = TcpStream::connect(s.addr).unwrap();
    assert!(
        ask_tcp(&mut extra).is_none(),
        "one over the limit gets no answer"
    );
    let (ok, text) = s.answered(&["+tcp", "a.sslip.io", "A"]);
    assert!(!ok, "dig over TCP from the full client: {text}");
    // Other clients, and UDP, are not affected.
    let (ok, text) = s.answered(&["-b", "127.0.0.2", "+tcp", "a.sslip.io", "A"]);
    assert!(ok, "dig over TCP from another address: {text}");
    let (ok, text) = s.answered(&["a.sslip.io", "A"]);
    assert!(ok, "dig over UDP: {text}");
    // A connection that ends gives its place back (the server notices the close on its
    // own time: no signal to wait on but the answer itself).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = TcpStream::connect(s.addr).unwrap();
        if ask_tcp(&mut c).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's place came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
