//! Raw HTTP/1.1 on both sides of the edge, for the differential and conformance tests: a
//! strict recording backend that frames what it receives (Content-Length or chunked, as
//! a careful origin server would) and answers with raw bytes, and a reader that splits a
//! client's response stream into responses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the backend framed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub line: String,
    /// Lower-case name, value; in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the backend answers to a request whose path starts with a key; every other
/// request gets `200` with its own path as the body, so a response that reaches the wrong
/// request shows.
pub type Answers = Vec<(String, Vec<u8>)>;

pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    pub fn start(answers: Answers) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, answers) = (seen.clone(), Arc::new(answers));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, answers) = (s.clone(), answers.clone());
                std::thread::spawn(move || serve(conn, &s, &answers));
            }
        });
        Recorder { addr, seen }
    }

    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

/// The default answer: the path the backend got, as the body.
pub fn echo(path: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{path}",
        path.len()
    )
    .into_bytes()
}

fn serve(mut conn: TcpStream, seen: &Mutex<Vec<Received>>, answers: &Answers) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut conn, &mut buf) else {
            // Refused (or ended): close without answering, but orderly. Closing with the
            // rest of the request unread would send a reset instead of a FIN, depending on
            // whether that rest had arrived yet, and the edge's message with it.
            let _ = conn.shutdown(std::net::Shutdown::Write);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut sink = [0u8; 8192];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            return;
        };
        let path = req.line.split(' ').nth(1).unwrap_or("/").to_string();
        seen.lock().expect("lock").push(req);
        let answer = answers
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
            .map_or_else(|| echo(&path), |(_, a)| a.clone());
        if conn.write_all(&answer).is_err() {
            return;
        }
        let lower = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        let framed = lower.contains("content-length")
            || lower.contains("transfer-encoding")
            || lower.starts_with("http/1.1 204")
            || lower.starts_with("http/1.1 304");
        if !framed || lower.contains("connection: close") {
            return;
        }
    }
}

fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>, need: usize) -> bool {
    let mut chunk = [0u8; 8192];
    while buf.len() < need {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// One request, framed strictly; `None` at the end of the connection or on anything a
/// strict server refuses (the connection then closes).
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    let head_len = loop {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => break n,
            Ok(httparse::Status::Partial) => {
                let have = buf.len();
                if !fill(conn, buf, have + 1) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&buf[..head_len]).ok()?;
    let line = format!(
        "{} {} HTTP/1.{}",
        req.method.unwrap_or(""),
        req.path.unwrap_or(""),
        req.version.unwrap_or(1)
    );
    let hs: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).to_string(),
            )
        })
        .collect();
    buf.drain(..head_len);
    let te = hs.iter().any(|(k, _)| k == "transfer-encoding");
    let cls: Vec<&String> = hs
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v)
        .collect();
    if te && !cls.is_empty() {
        return None; // RFC 9112 §6.1: a server may reject this; a strict one does
    }
    let body = if te {
        let chunked = hs
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.trim().eq_ignore_ascii_case("chunked"));
        if !chunked {
            return None;
        }
        read_chunked(conn, buf)?
    } else if let Some(cl) = cls.first() {
        if cls.iter().any(|c| c != cl) || !cl.bytes().all(|b| b.is_ascii_digit()) || cl.is_empty() {
            return None;
        }
        let n: usize = cl.parse().ok()?;
        if !fill(conn, buf, n) {
            return None;
        }
        buf.drain(..n).collect()
    } else {
        Vec::new()
    };
    Some(Received {
        line,
        headers: hs,
        body,
    })
}

fn read_chunked(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            let have = buf.len();
            if have > 4096 || !fill(conn, buf, have + 1) {
                return None;
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        buf.drain(..line_end + 2);
        let size = line.split(';').next()?.trim();
        if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let n = usize::from_str_radix(size, 16).ok()?;
        if n == 0 {
            // Trailers up to the empty line.
            loop {
                let p = loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    let have = buf.len();
                    if !fill(conn, buf, have + 1) {
                        return None;
                    }
                };
                buf.drain(..p + 2);
                if p == 0 {
                    return Some(body);
                }
            }
        }
        if !fill(conn, buf, n + 2) {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
        if &buf[n..n + 2] != b"\r\n" {
            return None;
        }
        buf.drain(..n + 2);
    }
}

/// One response of a client's stream: status line, headers (lower-case names, in order),
/// body (decoded when chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub status: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

/// Splits what a client read into responses. `head_only[i]`: the i-th request was a HEAD
/// (its response has no body whatever its headers say). Whatever cannot be parsed ends the
/// list with a pseudo-response naming it.
pub fn split_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Answered> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 512];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => {
                out.push(Answered {
                    status: format!(
                        "<unparsable: {}>",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
                    ),
                    headers: vec![],
                    body: vec![],
                    chunked: false,
                });
                return out;
            }
        };
        let code = resp.code.unwrap_or(0);
        let status = format!("{} {}", code, resp.reason.unwrap_or(""));
        let hs: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect();
        bytes = &bytes[n..];
        if (100..200).contains(&code) {
            out.push(Answered {
                status,
                headers: hs,
                body: vec![],
                chunked: false,
            });
            if code == 101 {
                out.push(Answered {
                    status: "<tunnel>".into(),
                    headers: vec![],
                    body: bytes.to_vec(),
                    chunked: false,
                });
                return out;
            }
            continue;
        }
        let head = head_only
            .get(out.iter().filter(|a| !a.status.starts_with('1')).count())
            .copied()
            .unwrap_or(false);
        let chunked = hs
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().ends_with("chunked"));
        let cl = hs
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let body = if head || code == 204 || code == 304 {
            Vec::new()
        } else if chunked {
            let (body, used) = dechunk(bytes);
            bytes = &bytes[used..];
            body
        } else if let Some(n) = cl {
            let n = n.min(bytes.len());
            let b = bytes[..n].to_vec();
            bytes = &bytes[n..];
            b
        } else {
            let b = bytes.to_vec();
            bytes = &[];
            b
        };
        out.push(Answered {
            status,
            headers: hs,
            body,
            chunked,
        });
    }
    out
}

/// A chunked body decoded and how many bytes it took; undecodable input is kept as is.
fn dechunk(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(p) = bytes[at..].windows(2).position(|w| w == b"\r\n") else {
            body.extend_from_slice(&bytes[at..]);
            return (body, bytes.len());
        };
        let line = String::from_utf8_lossy(&bytes[at..at + p]).to_string();
        let Ok(n) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16) else {
            body.extend_from_slice(&bytes[at..]);
            return (body, bytes.len());
        };
        at += p + 2;
        if n == 0 {
            // Trailers up to the empty line.
            while let Some(p) = bytes[at..].windows(2).position(|w| w == b"\r\n") {
                at += p + 2;
                if p == 0 {
                    break;
                }
            }
            return (body, at);
        }
        let end = (at + n).min(bytes.len());
        body.extend_from_slice(&bytes[at..end]);
        at = (end + 2).min(bytes.len());
    }
}

/// Sends `bytes` on a new connection and reads until the edge closes it (or `wait` passes
/// without a byte). A write the edge cut short is not an error: it may answer and close
/// before it has read everything.
pub fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(wait)).ok();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}
