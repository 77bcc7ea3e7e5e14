//! One try of one request on the fast path: an upstream connection (pooled or new), the
//! request head, the response head, and the body copied to the client as it arrives.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pingora_core::protocols::Stream;
use pingora_core::ErrorType;
use pingora_timeout::tokio_timeout;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::Chunked;
use super::head::{self, Framing, Stamp};
use super::pool::Pool;
use crate::proxy::{rules, ProxySettings};

/// Read buffer for the upstream's response.
const UPSTREAM_BUF: usize = 16 * 1024;
/// Largest response head accepted: Pingora's (pingora-core's
/// `http::v1::common::MAX_HEADER_SIZE`, not exported), so both engines take the same heads.
const MAX_RESPONSE_HEAD: usize = 1_048_575;

pub struct Exchange<'a> {
    pub settings: &'a ProxySettings,
    pub pool: &'a Pool,
    pub addr: SocketAddr,
    pub request: &'a [u8],
    pub head_request: bool,
    /// What the edge adds to the response head.
    pub stamp: Stamp<'a>,
    /// When the request was taken: the clock for idle pool connections and upstream time.
    pub started: Instant,
}

/// Most capacity a [`Scratch`] buffer keeps between requests: a large response head (up
/// to [`MAX_RESPONSE_HEAD`]) grows the buffers to megabytes, which would otherwise stay
/// with the client connection for its life.
const SCRATCH_KEEP: usize = 4 * UPSTREAM_BUF;

/// Buffers kept across the requests of one client connection.
#[derive(Default)]
pub struct Scratch {
    /// The upstream's bytes.
    buf: Vec<u8>,
    /// What goes to the client.
    out: Vec<u8>,
}

impl Scratch {
    /// Gives back what a large response grew the buffers to; called between requests.
    pub fn settle(&mut self) {
        for b in [&mut self.buf, &mut self.out] {
            if b.capacity() > SCRATCH_KEEP {
                b.clear();
                b.shrink_to(SCRATCH_KEEP);
            }
        }
    }
}

/// Runs `f` once with a waker that does nothing: `None` when it is not ready at once.
/// Writes usually complete at once, and then need no timer.
fn poll_once<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Option<T> {
    let mut cx = Context::from_waker(Waker::noop());
    match f(&mut cx) {
        Poll::Ready(t) => Some(t),
        Poll::Pending => None,
    }
}

/// A response passed on completely.
pub struct Done {
    pub status: u16,
    pub upstream_time: Duration,
    /// The body ended with the upstream's close, so the client connection closes too.
    pub close: bool,
}

/// A try that failed, with what is known about how far it got.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, as Pingora names it (the same words in answers and logs).
    pub etype: ErrorType,
    /// The request may have reached the upstream.
    pub sent: bool,
    /// The connection came from the pool (a close racing its reuse is likely).
    pub reused: bool,
    /// Part of the response went to the client: nothing can be retried or answered.
    pub response_started: bool,
    /// The status already sent, when `response_started`.
    pub status_sent: u16,
    /// For the edge's own refusals (`etype` is an `HTTPStatus`): why, in the words the
    /// Pingora path uses, so both paths answer alike.
    pub context: Option<String>,
}

impl Failure {
    fn new(etype: ErrorType, sent: bool, reused: bool) -> Self {
        Failure {
            etype,
            sent,
            reused,
            response_started: false,
            status_sent: 0,
            context: None,
        }
    }

    /// The edge refuses to try (a 503 with no UP instance left, a 403 for an address
    /// outside `upstream.allow`), as the Pingora path's `upstream_peer` does.
    pub fn refused(code: u16, why: String) -> Self {
        Failure {
            context: Some(why),
            ..Failure::new(ErrorType::HTTPStatus(code), false, false)
        }
    }

    fn started(mut self, status: u16) -> Self {
        self.response_started = true;
        self.status_sent = status;
        self
    }
}

fn connect_error(e: &io::Error) -> ErrorType {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            ErrorType::ConnectNoRoute
        }
        _ => ErrorType::ConnectError,
    }
}

impl Exchange<'_> {
    async fn connect(&self) -> Result<(TcpStream, bool), Failure> {
        if let Some(c) = self.pool.take(self.addr, self.started) {
            return Ok((c, true));
        }
        match tokio_timeout(self.settings.connect_timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(c)) => {
                // Small heads and bodies go out at once, as Pingora's connector does.
                let _ = c.set_nodelay(true);
                Ok((c, false))
            }
            Ok(Err(e)) => Err(Failure::new(connect_error(&e), false, false)),
            Err(_) => Err(Failure::new(ErrorType::ConnectTimedout, false, false)),
        }
    }

    async fn write_up(&self, up: &mut TcpStream) -> Result<(), ErrorType> {
        let mut rest = self.request;
        if let Ok(n) = up.try_write(rest) {
            rest = &rest[n..];
        }
        if rest.is_empty() {
            return Ok(());
        }
        match tokio_timeout(self.settings.write_timeout, up.write_all(rest)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ErrorType::WriteError),
            Err(_) => Err(ErrorType::WriteTimedout),
        }
    }

    /// Reads more of the response into `buf`; `Ok(0)` is the upstream's close.
    async fn read_up(&self, up: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, ErrorType> {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(UPSTREAM_BUF);
        }
        match super::io::read_within(up, buf, self.settings.read_timeout).await {
            Some(Ok(n)) => Ok(n),
            Some(Err(_)) => Err(ErrorType::ReadError),
            None => Err(ErrorType::ReadTimedout),
        }
    }

    async fn write_client(&self, client: &mut Stream, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        if let Some(r) = poll_once(|cx| Pin::new(&mut *client).poll_write(cx, rest)) {
            rest = &rest[r?..];
            if rest.is_empty() {
                // Pingora's stream buffers writes; the flush is what sends them.
                if let Some(r) = poll_once(|cx| Pin::new(&mut *client).poll_flush(cx)) {
                    return r;
                }
            }
        }
        match tokio_timeout(self.settings.write_timeout, async {
            client.write_all(rest).await?;
            client.flush().await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Runs the try, using `s` for its buffers.
    pub async fn run(&self, client: &mut Stream, s: &mut Scratch) -> Result<Done, Failure> {
        let (mut up, reused) = self.connect().await?;
        if let Err(etype) = self.write_up(&mut up).await {
            return Err(Failure::new(etype, true, reused));
        }
        let Scratch { buf, out } = s;

        // The response head; interim 1xx heads (103 Early Hints) are passed on first.
        buf.clear();
        let mut interim_sent = false;
        let (resp, upstream_time) = loop {
            let parsed = head::parse_response(buf, self.head_request, &self.stamp, out).map_err(
                |e| match e {
                    head::HeadError::TransferCoding => Failure {
                        context: Some(rules::UNCHUNKED_TRANSFER_CODING.to_string()),
                        ..Failure::new(ErrorType::HTTPStatus(502), true, reused)
                    },
                    _ => Failure::new(ErrorType::InvalidHTTPHeader, true, reused),
                },
            )?;
            match parsed {
                Some(r) if r.status == 101 => {
                    // Upgrades are Pingora's: the fast path never sends one, so any 101 is
                    // a switch nobody asked for (`rules::UNASKED_UPGRADE`).
                    return Err(Failure {
                        context: Some(rules::UNASKED_UPGRADE.to_string()),
                        ..Failure::new(ErrorType::HTTPStatus(502), true, reused)
                    });
                }
                Some(r) if (100..200).contains(&r.status) => {
                    if self.write_client(client, out).await.is_err() {
                        return Err(
                            Failure::new(ErrorType::WriteError, true, reused).started(r.status)
                        );
                    }
                    interim_sent = true;
                    buf.drain(..r.head_len);
                    continue;
                }
                Some(r) => break (r, self.started.elapsed()),
                None if buf.len() >= MAX_RESPONSE_HEAD => {
                    return Err(Failure::new(ErrorType::InvalidHTTPHeader, true, reused));
                }
                None => {}
            }
            let fail = |etype| {
                let f = Failure::new(etype, true, reused);
                if interim_sent {
                    f.started(100)
                } else {
                    f
                }
            };
            match self.read_up(&mut up, buf).await {
                Ok(0) => return Err(fail(ErrorType::ConnectionClosed)),
                Ok(_) => {}
                Err(etype) => return Err(fail(etype)),
            }
        };

        // `out` holds the head for the client; the body follows as it comes.
        let until_close = resp.framing == Framing::UntilClose;
        let mut chunked = Chunked::new();
        let mut left: u64 = match resp.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        // Bytes after the head already in `buf`: this body's part of them.
        let mut pos = resp.head_len;
        let mut done = matches!(resp.framing, Framing::Empty | Framing::Length(0));
        let mut clean = true;
        loop {
            let avail = &buf[pos..];
            let take = match resp.framing {
                Framing::Empty => 0,
                Framing::Length(_) => {
                    let t = left.min(avail.len() as u64) as usize;
                    left -= t as u64;
                    done = left == 0;
                    t
                }
                // Appends to `out` itself: its size lines go out rewritten.
                Framing::Chunked => match chunked.feed(avail, out) {
                    Ok(t) => {
                        done = chunked.is_done();
                        t
                    }
                    Err(_) => {
                        // Whatever went out so far is all the client gets.
                        let _ = self.write_client(client, out).await;
                        return Err(Failure::new(ErrorType::InvalidHTTPHeader, true, reused)
                            .started(resp.status));
                    }
                },
                Framing::UntilClose => avail.len(),
            };
            if resp.framing != Framing::Chunked {
                out.extend_from_slice(&avail[..take]);
            }
            if pos + take < buf.len() {
                // Bytes after the end of the response: the upstream is not trustworthy.
                clean = false;
            }
            if self.write_client(client, out).await.is_err() {
                return Err(Failure::new(ErrorType::WriteError, true, reused).started(resp.status));
            }
            out.clear();
            if done {
                break;
            }
            buf.clear();
            pos = 0;
            match self.read_up(&mut up, buf).await {
                Ok(0) if until_close => break,
                Ok(0) => {
                    return Err(Failure::new(ErrorType::ConnectionClosed, true, reused)
                        .started(resp.status))
                }
                Ok(_) => {}
                Err(etype) => {
                    return Err(Failure::new(etype, true, reused).started(resp.status));
                }
            }
        }
        if resp.reusable && clean && !until_close {
            self.pool.put(self.addr, up, self.started);
        }
        Ok(Done {
            status: resp.status,
            upstream_time,
            close: until_close,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_head_does_not_leave_megabytes_with_the_connection() {
        let mut s = Scratch::default();
        s.buf.resize(MAX_RESPONSE_HEAD, b'x');
        s.out.resize(2 * MAX_RESPONSE_HEAD, b'x');
        s.settle();
        assert!(s.buf.capacity() <= SCRATCH_KEEP && s.out.capacity() <= SCRATCH_KEEP);
        // Small buffers are kept as they are: no allocation per request.
        s.buf.reserve(UPSTREAM_BUF);
        let cap = s.buf.capacity();
        s.settle();
        assert_eq!(s.buf.capacity(), cap);
    }
}
