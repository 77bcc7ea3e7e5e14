//! The fast path (src/proxy/fast/) through the real binary. A raw backend answers every
//! response shape HTTP/1.1 allows (Content-Length, 1 MiB, chunked split across reads with a
//! trailer, close-delimited, 204, HEAD, 103 Early Hints); raw clients check that each
//! arrives byte-exact on one kept-alive connection, pipelined, next to requests handed to
//! Pingora (a body, an unknown host), over one pooled upstream connection, and after the
//! backend closed that pooled connection. `downstream.fast_path: false` is the reference.
//!
//! Who answered is visible: Pingora's HTTP/1 server adds `Date` to every final response,
//! the fast path passes the upstream's head through (this backend sends no `Date`). So a
//! fast path that silently handed everything to Pingora fails here too.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream as Upstream};

const LEN_BODY: &[u8] = b"nineteen bytes body";
const BIG_LEN: usize = 1 << 20;
const EARLY_BODY: &[u8] = b"after the hints";
const CLOSE_BODY: &[u8] = b"this body ends when the backend closes";
const CHUNKED_BODY: &[u8] = b"alpha-bravo-bravo-charlie";
/// `/chunked` as the backend writes it: one write per piece with a pause between, split
/// inside a size line, a chunk's data and the trailer, so every boundary falls across the
/// proxy's reads.
const CHUNKED_PIECES: [&str; 6] = [
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n6\r\nalp",
    "ha-\r\nC",
    "\r\nbravo-bra",
    "vo-\r\n7\r\ncharlie\r\n0\r\n",
    "X-Checksum: ab",
    "c123\r\n\r\n",
];
const FAST_OFF: &str = "  downstream:\n    fast_path: false\n";

/// The 1 MiB body: not periodic at any buffer size, so a lost, doubled or reordered read
/// shows up as a mismatch.
fn big_body() -> Vec<u8> {
    (0..BIG_LEN)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// How the backend treats its kept-alive connections.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    KeepAlive,
    /// Closes right after every `n`-th response, although it said keep-alive: the pooled
    /// connection is dead when next wanted, and the pool must notice.
    CloseAfter(usize),
    /// Reads the `n+1`-th request and closes without answering: the close races the reuse,
    /// the proxy learns of it only after sending, and must retry on a new connection.
    DropAfter(usize),
}

/// What the backend saw.
#[derive(Default)]
struct Counts {
    conns: AtomicUsize,
    requests: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counts {
    /// (connections accepted, requests answered, requests dropped unanswered)
    fn get(&self) -> (usize, usize, usize) {
        let load = |a: &AtomicUsize| a.load(SeqCst);
        (load(&self.conns), load(&self.requests), load(&self.dropped))
    }
}

/// A raw HTTP/1.1 backend answering by path (see [`answer`]). It lives as long as the
/// test's runtime.
async fn start_backend(mode: Mode) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            c.conns.fetch_add(1, SeqCst);
            tokio::spawn(serve_backend_conn(sock, mode, c.clone()));
        }
    });
    (addr, counts)
}

async fn serve_backend_conn(mut s: Upstream, mode: Mode, counts: Arc<Counts>) {
    // Small pieces must leave as separate segments (CHUNKED_PIECES, the 103).
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    for served in 0.. {
        let end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        };
        if mode == Mode::DropAfter(served) {
            counts.dropped.fetch_add(1, SeqCst);
            return;
        }
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let len: usize = header_in(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < len {
            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        counts.requests.fetch_add(1, SeqCst);
        let keep = answer(&mut s, &head, &body).await.unwrap_or(false);
        if !keep || matches!(mode, Mode::CloseAfter(n) if (served + 1) % n == 0) {
            return;
        }
    }
}

/// Writes the answer for the request's path; `Ok(false)`: close the connection after it.
async fn answer(s: &mut Upstream, head: &str, body: &[u8]) -> std::io::Result<bool> {
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let pause = || tokio::time::sleep(Duration::from_millis(15));
    // Keep-Alive and Connection are hop-by-hop: the client must not see them.
    let with_len = |b: &[u8]| {
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nContent-Length: {}\r\n\r\n", b.len()).into_bytes();
        if method != "HEAD" {
            r.extend_from_slice(b);
        }
        r
    };
    let reply = match target.split('?').next().unwrap_or("") {
        "/len" => with_len(LEN_BODY),
        "/big" => with_len(&big_body()),
        // The request as received, head and body: what the proxy forwarded.
        "/echo" => with_len(&[head.as_bytes(), body].concat()),
        "/nocontent" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        "/chunked" => {
            for piece in CHUNKED_PIECES {
                s.write_all(piece.as_bytes()).await?;
                pause().await;
            }
            return Ok(true);
        }
        "/early" => {
            s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                .await?;
            pause().await;
            with_len(EARLY_BODY)
        }
        "/close" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                .await?;
            pause().await;
            s.write_all(CLOSE_BODY).await?;
            return Ok(false);
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    };
    s.write_all(&reply).await?;
    Ok(true)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Values of header `name` in a raw head, in order.
fn headers_in<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    let value = |l: &'a str| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    };
    head.lines().skip(1).filter_map(value).collect()
}

fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    headers_in(head, name).first().copied()
}

/// One response as the client got it.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// The trailer section of a chunked body, raw.
    trailer: String,
    /// Interim (1xx) heads received before it.
    interim: Vec<String>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.head, name)
    }

    /// Answered by the fast path rather than Pingora (see the module comment).
    fn fast(&self) -> bool {
        self.header("date").is_none()
    }
}

/// A blocking client on one connection reading responses one at a time, whatever their
/// framing, so requests can share (or be pipelined on) one socket.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect to xipgate");
        // A response that never ends fails the read here instead of hanging the test.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write request");
    }

    fn call(&mut self, method: &str, host: &str, path: &str) -> Resp {
        self.send(&request(method, host, path, ""));
        self.read_response(method == "HEAD")
    }

    /// Reads more; 0 at the server's close.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.s.read(&mut chunk).unwrap_or_else(|e| {
            let have = String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]);
            panic!("reading a response: {e} (have {have:?})")
        });
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    fn take_through(&mut self, delim: &[u8]) -> String {
        loop {
            if let Some(p) = find(&self.buf, delim) {
                let taken: Vec<u8> = self.buf.drain(..p + delim.len()).collect();
                return String::from_utf8(taken).expect("ASCII");
            }
            assert!(self.fill() > 0, "closed before {delim:?}");
        }
    }

    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "closed {} bytes short", n - self.buf.len());
        }
        self.buf.drain(..n).collect()
    }

    fn read_response(&mut self, head_request: bool) -> Resp {
        let mut interim = Vec::new();
        let (status, head) = loop {
            let head = self.take_through(b"\r\n\r\n");
            let status: u16 = head[9..12].parse().expect("status code");
            if !(100..200).contains(&status) {
                break (status, head);
            }
            interim.push(head);
        };
        let mut r = Resp {
            status,
            head,
            body: Vec::new(),
            trailer: String::new(),
            interim,
        };
        if head_request || status == 204 || status == 304 {
            return r;
        }
        if r.header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"))
        {
            loop {
                let line = self.take_through(b"\r\n");
                let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
                if size == 0 {
                    break;
                }
                r.body.extend(self.take_exact(size));
                assert_eq!(self.take_exact(2), b"\r\n", "chunk without its CRLF");
            }
            // Trailer fields, up to the empty line.
            loop {
                match self.take_through(b"\r\n") {
                    end if end == "\r\n" => break,
                    line => r.trailer.push_str(&line),
                }
            }
        } else if let Some(len) = r.header("content-length") {
            r.body = self.take_exact(len.parse().expect("Content-Length"));
        } else {
            while self.fill() > 0 {}
            r.body = std::mem::take(&mut self.buf);
        }
        r
    }

    /// True when the server closed the connection, with nothing more sent.
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }
}

fn request(method: &str, host: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
}

/// A backend registered as one instance in a stub Eureka, and xipgate in front of it.
struct Env {
    backend: Arc<Counts>,
    inst: Inst,
    host: String,
    x: Xipgate,
    _eureka: StubEureka,
}

async fn env(extra: &str, mode: Mode) -> Env {
    let (addr, backend) = start_backend(mode).await;
    let eureka = StubEureka::start().await;
    let inst = Inst::up("shapes", "shapes-5f7c9-q8r2t", addr);
    eureka.serve(std::slice::from_ref(&inst)).await;
    // Returns once /readyz says the registry table is loaded.
    let x = Xipgate::start(&eureka.url(), extra);
    let host = format!("{}.{DOMAIN}", inst.label());
    Env {
        backend,
        inst,
        host,
        x,
        _eureka: eureka,
    }
}

/// Every shape on the kept-alive connection `c`, `/close` last (it ends the connection).
/// With `fast`, also what only the fast path guarantees: it answered each one, the 103 and
/// the trailer pass through, hop-by-hop headers do not, the close-delimited body closes
/// the client connection. Returns (request, status, body), to compare the two modes.
fn all_shapes(e: &Env, c: &mut Client, fast: bool) -> Vec<(String, u16, Vec<u8>)> {
    let big = big_body();
    let wanted: [(&str, &str, u16, &[u8]); 8] = [
        ("GET", "/len", 200, LEN_BODY),
        ("GET", "/big", 200, &big),
        ("GET", "/chunked", 200, CHUNKED_BODY),
        // Content-Length and no body: the next request must not wait for one.
        ("HEAD", "/len", 200, b""),
        ("GET", "/nocontent", 204, b""),
        ("GET", "/early", 200, EARLY_BODY),
        ("GET", "/len", 200, LEN_BODY),
        ("GET", "/close", 200, CLOSE_BODY),
    ];
    let mut got = Vec::new();
    for (method, path, status, body) in wanted {
        let r = c.call(method, &e.host, path);
        let what = format!("{method} {path}");
        assert_eq!(r.status, status, "{what}: {}", r.head);
        // Not assert_eq: no Debug print of a MiB on failure.
        assert!(
            r.body == body,
            "{what}: {} bytes, not as sent",
            r.body.len()
        );
        assert_eq!(r.header("x-served-by"), Some(e.inst.id.as_str()), "{what}");
        if method == "HEAD" {
            assert_eq!(r.header("content-length"), Some("19"), "{what}");
        }
        if fast {
            assert!(
                r.fast(),
                "{what} was not answered by the fast path: {}",
                r.head
            );
            assert_eq!(r.header("keep-alive"), None, "{what}: {}", r.head);
            match path {
                "/early" => {
                    let hints = r.interim.first().map(String::as_str).unwrap_or_default();
                    assert!(hints.starts_with("HTTP/1.1 103 "), "{what}: {r:?}");
                    assert_eq!(header_in(hints, "link"), Some("</style.css>; rel=preload"));
                }
                "/chunked" => assert_eq!(r.trailer, "X-Checksum: abc123\r\n", "{what}"),
                "/close" => {
                    assert_eq!(r.header("connection"), Some("close"), "{what}: {}", r.head);
                    assert!(c.closed(), "{what}: the client connection stayed open");
                }
                _ => assert_eq!(r.header("connection"), None, "{what}: {}", r.head),
            }
        }
        got.push((what, r.status, r.body));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_arrives_intact_on_one_keepalive_connection() {
    let e = env("", Mode::KeepAlive).await;
    // What the backend receives: Host unchanged, the forwarding headers set (the client's
    // X-Forwarded-For extended), hop-by-hop headers gone, other headers kept.
    let mut c = Client::connect(e.x.proxy);
    let sent = "Connection: keep-alive\r\nKeep-Alive: timeout=30\r\nX-Forwarded-For: 203.0.113.9\r\nX-Custom: kept\r\n";
    c.send(&request("GET", &e.host, "/echo", sent));
    let r = c.read_response(false);
    assert!(r.status == 200 && r.fast(), "{r:?}");
    let seen = String::from_utf8(r.body).unwrap();
    assert!(seen.starts_with("GET /echo HTTP/1.1\r\n"), "{seen}");
    let port = e.x.proxy.port().to_string();
    for (name, value) in [
        ("host", Some(e.host.as_str())),
        ("x-forwarded-for", Some("203.0.113.9, 127.0.0.1")),
        ("x-forwarded-proto", Some("http")),
        ("x-forwarded-host", Some(e.host.as_str())),
        ("x-forwarded-port", Some(port.as_str())),
        ("x-custom", Some("kept")),
        ("connection", None),
        ("keep-alive", None),
    ] {
        let want: Vec<&str> = value.into_iter().collect();
        assert_eq!(headers_in(&seen, name), want, "{name} upstream:\n{seen}");
    }
    // Then every shape, on the same connection.
    all_shapes(&e, &mut c, true);
    assert_eq!(e.backend.get().1, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let e = env("", Mode::KeepAlive).await;
    let mut c = Client::connect(e.x.proxy);
    // One write; the slow chunked answer first, so a reordered reply would show.
    let mut batch = request("GET", &e.host, "/chunked", "");
    batch.extend(request("HEAD", &e.host, "/len", ""));
    batch.extend(request("GET", &e.host, "/echo?third", ""));
    batch.extend(request("GET", &e.host, "/len", ""));
    c.send(&batch);
    assert_eq!(c.read_response(false).body, CHUNKED_BODY);
    let head = c.read_response(true);
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("19"))
    );
    let echo = c.read_response(false);
    assert!(
        echo.body.starts_with(b"GET /echo?third HTTP/1.1\r\n"),
        "{echo:?}"
    );
    let last = c.read_response(false);
    assert!(last.body == LEN_BODY && last.fast(), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_and_both_modes_agree() {
    let mut results = Vec::new();
    for (fast, extra) in [(true, ""), (false, FAST_OFF)] {
        let e = env(extra, Mode::KeepAlive).await;
        let mut c = Client::connect(e.x.proxy);
        for i in 0..20 {
            let r = c.call("GET", &e.host, "/len");
            assert_eq!(
                (r.status, r.body.as_slice()),
                (200, LEN_BODY),
                "request {i}"
            );
            assert_eq!(r.fast(), fast, "request {i}: {}", r.head);
        }
        // New client connections that close reuse the upstream connection all the same.
        for i in 0..5 {
            let mut c = Client::connect(e.x.proxy);
            c.send(&request("GET", &e.host, "/len", "Connection: close\r\n"));
            assert_eq!(c.read_response(false).body, LEN_BODY, "close {i}");
            assert!(c.closed(), "Connection: close was not honoured");
        }
        if fast {
            let n = e.backend.get().0;
            assert!(
                (1..=2).contains(&n),
                "25 requests took {n} upstream connections"
            );
        }
        results.push(all_shapes(&e, &mut Client::connect(e.x.proxy), fast));
    }
    assert!(
        results[0] == results[1],
        "the fast path and Pingora answer differently"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_is_handed_to_pingora_on_the_same_connection() {
    let e = env("", Mode::KeepAlive).await;
    let mut c = Client::connect(e.x.proxy);
    let first = c.call("GET", &e.host, "/len");
    assert!(first.body == LEN_BODY && first.fast(), "{first:?}");
    // The fast path does not take a body: the head it already read must reach Pingora.
    let posted = "posted=42&note=handed-over";
    let extra = format!("Content-Length: {}\r\n", posted.len());
    let mut post = request("POST", &e.host, "/echo", &extra);
    post.extend_from_slice(posted.as_bytes());
    c.send(&post);
    let r = c.read_response(false);
    assert!(r.status == 200 && !r.fast(), "{r:?}");
    assert_eq!(r.header("x-served-by"), Some(e.inst.id.as_str()));
    let seen = String::from_utf8(r.body).unwrap();
    assert!(seen.starts_with("POST /echo HTTP/1.1\r\n"), "{seen}");
    assert!(
        seen.ends_with(&format!("\r\n\r\n{posted}")),
        "the backend got: {seen}"
    );
    // The connection goes on (back on the fast path after Pingora's answer).
    for path in ["/len", "/chunked"] {
        let r = c.call("GET", &e.host, path);
        assert_eq!(r.status, 200, "GET {path} after the POST: {r:?}");
        assert!(r.fast(), "GET {path} after the POST: {r:?}");
    }
    assert_eq!(e.backend.get().1, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_label_after_a_fast_request_gets_pingoras_404() {
    let e = env("", Mode::KeepAlive).await;
    let mut c = Client::connect(e.x.proxy);
    let first = c.call("GET", &e.host, "/len");
    assert!(first.body == LEN_BODY && first.fast(), "{first:?}");
    let r = c.call("GET", &format!("no-such-thing.{DOMAIN}"), "/len");
    assert!(r.status == 404 && !r.fast(), "{r:?}");
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("no service or instance is called 'no-such-thing'"),
        "{body}"
    );
    assert_eq!(e.backend.get().1, 1, "the 404 reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_the_backend_closed_are_not_fatal() {
    for mode in [Mode::CloseAfter(3), Mode::DropAfter(3)] {
        let e = env("", mode).await;
        let mut c = Client::connect(e.x.proxy);
        for i in 0..12 {
            let r = c.call("GET", &e.host, "/len");
            assert!(
                r.status == 200 && r.body == LEN_BODY && r.fast(),
                "{mode:?} {i}: {r:?}"
            );
        }
        // Every connection answered 3 and was closed (or dropped the 4th), so each
        // recovery was needed; the requests that went to a dead connection were re-sent.
        let dropped = if mode == Mode::DropAfter(3) { 3 } else { 0 };
        assert_eq!(
            e.backend.get(),
            (4, 12, dropped),
            "{mode:?}: connections, answers, drops"
        );
    }
}
