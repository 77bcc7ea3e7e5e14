//! Reading request heads off a client connection, for both engines: the idle wait between
//! requests, one deadline for a whole head (`downstream.header_timeout`), and whether a
//! new plain connection speaks HTTP/2 (the h2c preface).
//!
//! Why here and not in Pingora: Pingora bounds each read of a head (60 s), not the head,
//! so a client sending a byte a minute keeps its connection for ever; and its h2c check
//! waits for 24 bytes with no deadline at all, so a client that sends fewer (one `\0`, or
//! HAProxy's `OPTIONS / HTTP/1.0` health check, 22 bytes) was never answered.

use std::time::{Duration, Instant};

use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_timeout::tokio_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::io;

/// Read buffer per client connection.
pub const READ_BUF: usize = 4096;
/// How often an idle client connection looks for a graceful shutdown.
const SHUTDOWN_CHECK: Duration = Duration::from_secs(1);
/// The largest head read before Pingora's engine is given it anyway: Pingora's own limit
/// (pingora-core's `MAX_HEADER_SIZE`), which it answers with 400.
pub const LONGEST_HEAD: usize = 1024 * 1024;

/// The HTTP/2 connection preface a prior-knowledge h2c client starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plain connection say about HTTP/2.
#[derive(Debug, PartialEq, Eq)]
pub enum Preface {
    /// The whole preface: an h2c connection.
    Whole,
    /// The start of it: the next bytes decide.
    Part,
    /// Not HTTP/2: HTTP/1 (or garbage, which Pingora's HTTP/1 parser answers).
    Not,
}

/// Decides from the first bytes, as soon as one byte differs from the preface.
pub fn preface(buf: &[u8]) -> Preface {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] != H2_PREFACE[..n] {
        Preface::Not
    } else if n == H2_PREFACE.len() {
        Preface::Whole
    } else {
        Preface::Part
    }
}

/// Whether the bytes from `from` on (with the 3 before, for an end split across reads)
/// hold the blank line that ends a head (CRLF or bare LF, as httparse allows).
pub fn head_ends(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3);
    let tail = &buf[start..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// How a read of more head bytes ended.
#[derive(Debug, PartialEq, Eq)]
pub enum More {
    Read,
    /// Closed or failed: nothing to answer.
    Closed,
    /// The head's deadline passed.
    TimedOut,
}

/// Reads more of a head that has started, until `deadline`.
pub async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>, deadline: Instant) -> More {
    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
        return More::TimedOut;
    };
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_BUF);
    }
    match tokio_timeout(left, stream.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => More::Read,
        Ok(_) => More::Closed,
        Err(_) => More::TimedOut,
    }
}

/// Waits for the next request on an idle connection: up to `keepalive`. Once the
/// connection has `served` a request, a graceful shutdown (checked every
/// [`SHUTDOWN_CHECK`]) closes it while idle, so its client connects to the process that
/// took over. A new connection's first request is always read and answered: its client
/// may have sent it already, and closing would fail it (tests/upgrade.rs caught that).
/// `false`: close the connection.
pub async fn wait_for_request(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    keepalive: Duration,
    served: bool,
    shutdown: &ShutdownWatch,
) -> bool {
    let mut left = keepalive;
    loop {
        if served && *shutdown.borrow() {
            return false;
        }
        let wait = left.min(SHUTDOWN_CHECK);
        buf.reserve(READ_BUF);
        match io::read_within(stream, buf, wait).await {
            Some(Ok(n)) => return n > 0,
            Some(Err(_)) => return false,
            None if left > wait => left -= wait,
            None => return false,
        }
    }
}

/// Writes a whole answer within `wait`, then closes the connection: a client that does
/// not read cannot hold it.
pub async fn answer_and_close(stream: &mut Stream, bytes: &[u8], wait: Duration) {
    let _ = tokio_timeout(wait, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await;
    let _ = tokio_timeout(wait, finish(stream)).await;
}

/// Ends a connection the edge closes, before it is dropped. Over TLS that is a
/// close_notify (a client must be able to tell the end from a cut). Plain TCP is only
/// flushed: the `close(2)` when the stream drops sends the FIN, so a `shutdown(2)` first
/// is one more system call a connection for nothing (bench/cost.sh, issue 27). It also
/// reads nothing: a client that pipelined more after a `Connection: close` gets a reset
/// either way, as from nginx and HAProxy.
pub async fn finish(stream: &mut Stream) -> std::io::Result<()> {
    if stream.get_ssl_digest().is_some() {
        stream.shutdown().await
    } else {
        stream.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain TCP: what was written arrives, and no FIN until the stream is dropped (no
    /// `shutdown(2)` before the close).
    #[tokio::test]
    async fn finishing_a_plain_connection_flushes_and_leaves_the_fin_to_the_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut peer = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let mut stream: Stream =
            Box::new(pingora_core::protocols::l4::stream::Stream::from(accepted));
        stream
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("write");
        finish(&mut stream).await.expect("finish");

        let mut got = vec![0u8; 64];
        let n = peer.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], b"HTTP/1.1 200 OK\r\n\r\n");
        let early = tokio_timeout(Duration::from_millis(200), peer.read(&mut got)).await;
        assert!(early.is_err(), "a FIN before the close: {early:?}");
        drop(stream);
        let n = peer.read(&mut got).await.expect("read after the close");
        assert_eq!(n, 0, "the close sends the FIN");
    }

    #[test]
    fn the_first_bytes_decide_h2c_as_soon_as_they_can() {
        for (bytes, want) in [
            (&b"P"[..], Preface::Part),
            (b"PRI * HTTP/2.0\r\n", Preface::Part),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Preface::Whole),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04",
                Preface::Whole,
            ),
            (b"\0", Preface::Not),
            (b"OPTIONS / HTTP/1.0\r\n\r\n", Preface::Not),
            (b"POST / HTTP/1.1\r\n", Preface::Not),
            (b"PRI * HTTP/1.1\r\n", Preface::Not),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Preface::Not),
        ] {
            assert_eq!(preface(bytes), want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn a_head_ends_at_a_blank_line_even_split_across_reads() {
        for (bytes, from, want) in [
            (&b"GET / HTTP/1.1\r\nA: b\r\n\r\n"[..], 0, true),
            (b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 22, true),
            (b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 24, true),
            (b"GET / HTTP/1.1\nA: b\n\n", 19, true),
            (b"GET / HTTP/1.1\r\nA: b\r\n", 0, false),
            (b"GET / HTTP/1.1\r\nA: b\r\n\r", 0, false),
        ] {
            assert_eq!(
                head_ends(bytes, from),
                want,
                "{:?} from {from}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
