//! Fault-injecting HTTP/1.1 backends on loopback, for `tests/backend_faults.rs`.
//!
//! Every backend counts the connections it accepted and the request heads it read (one
//! read head = one upstream attempt that reached it), so a test can bound the retries the
//! proxy made. Include with `#[path = "common/faulty.rs"] mod faulty;`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// What a backend does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers every request, keeps connections alive, reads bodies by Content-Length.
    Healthy,
    /// Nothing listens: connecting is refused. The port stays bound (without `listen()`),
    /// so no other process can take it while the test runs.
    Refuse,
    /// Reads the request, writes half of a response head, then resets (SO_LINGER 0).
    ResetInHead,
    /// Reads the request, writes a complete head promising 1000 bytes and 10 of them,
    /// then resets: the response has already started when the fault hits.
    ResetInBody,
    /// Reads the request and answers only after this long.
    Slow(Duration),
    /// Answers the first request of a connection without `Connection: close`, then closes
    /// the connection (without answering) when the next request arrives on it.
    CloseKeptAlive,
    /// Answers every request keeping the connection alive, and closes a connection that
    /// stays idle this long (what a backend's keep-alive timeout does).
    CloseIdle(Duration),
}

pub struct FaultyBackend {
    pub name: String,
    pub fault: Fault,
    pub addr: SocketAddr,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
    /// Request heads read: upstream attempts that reached this backend.
    pub requests: Arc<AtomicUsize>,
    /// Complete responses written.
    pub answered: Arc<AtomicUsize>,
    /// Connections this backend closed for being idle (`Fault::CloseIdle`).
    pub idle_closed: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
    _bound: Option<TcpSocket>,
}

struct Counters {
    conns: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    idle_closed: Arc<AtomicUsize>,
}

impl FaultyBackend {
    pub async fn start(name: &str, fault: Fault) -> Self {
        let conns = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let idle_closed = Arc::new(AtomicUsize::new(0));
        if fault == Fault::Refuse {
            let sock = TcpSocket::new_v4().expect("socket");
            sock.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
            let addr = sock.local_addr().expect("addr");
            return FaultyBackend {
                name: name.into(),
                fault,
                addr,
                conns,
                requests,
                answered,
                idle_closed,
                task: None,
                _bound: Some(sock),
            };
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let counters = Arc::new(Counters {
            conns: conns.clone(),
            requests: requests.clone(),
            answered: answered.clone(),
            idle_closed: idle_closed.clone(),
        });
        let n = name.to_string();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                counters.conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, n.clone(), fault, counters.clone()));
            }
        });
        FaultyBackend {
            name: name.into(),
            fault,
            addr,
            conns,
            requests,
            answered,
            idle_closed,
            task: Some(task),
            _bound: None,
        }
    }

    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Upstream attempts that reached this backend (request heads read).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    pub fn idle_closed(&self) -> usize {
        self.idle_closed.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// One parsed request: method, whether the client asked to close.
struct Req {
    method: String,
    close: bool,
}

/// Reads one request head and its Content-Length body. `None` when the peer closed.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < len {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    buf.drain(..len);
    Some(Req {
        method: head.split_whitespace().next().unwrap_or("").to_string(),
        close: header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
    })
}

fn ok_response(name: &str, req: &Req, close: bool) -> Vec<u8> {
    let body = format!("{{\"backend\":\"{name}\",\"method\":\"{}\"}}", req.method);
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Backend: {name}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    if req.method != "HEAD" {
        out.push_str(&body);
    }
    out.into_bytes()
}

fn reset(sock: TcpStream) {
    let _ = sock.set_zero_linger();
    drop(sock);
}

async fn serve(mut sock: TcpStream, name: String, fault: Fault, c: Arc<Counters>) {
    let mut buf = Vec::new();
    let mut served_on_this_conn = 0usize;
    loop {
        let req = match fault {
            Fault::CloseIdle(idle) => {
                match tokio::time::timeout(idle, read_request(&mut sock, &mut buf)).await {
                    Ok(req) => req,
                    Err(_) => {
                        drop(sock);
                        c.idle_closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
            _ => read_request(&mut sock, &mut buf).await,
        };
        let Some(req) = req else { return };
        c.requests.fetch_add(1, Ordering::SeqCst);
        match fault {
            Fault::Healthy | Fault::Refuse | Fault::CloseIdle(_) => {
                if sock
                    .write_all(&ok_response(&name, &req, req.close))
                    .await
                    .is_err()
                {
                    return;
                }
                c.answered.fetch_add(1, Ordering::SeqCst);
                if req.close {
                    return;
                }
            }
            Fault::ResetInHead => {
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
                    .await;
                let _ = sock.flush().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                return reset(sock);
            }
            Fault::ResetInBody => {
                let _ = sock
                    .write_all(format!("HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Length: 1000\r\n\r\n0123456789").as_bytes())
                    .await;
                let _ = sock.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return reset(sock);
            }
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                if sock
                    .write_all(&ok_response(&name, &req, true))
                    .await
                    .is_ok()
                {
                    c.answered.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            Fault::CloseKeptAlive => {
                if served_on_this_conn >= 1 {
                    // A kept-alive connection, reused: close it without answering.
                    return;
                }
                if sock
                    .write_all(&ok_response(&name, &req, req.close))
                    .await
                    .is_err()
                {
                    return;
                }
                served_on_this_conn += 1;
                c.answered.fetch_add(1, Ordering::SeqCst);
                if req.close {
                    return;
                }
            }
        }
    }
}
