//! DNS over TCP (RFC 7766), served here rather than by hickory-server: hickory-server
//! 0.26 takes every connection its listener accepts, so one client could hold them all
//! (each connection is a task and a buffer until [`TCP_TIMEOUT`]). Here each client
//! address may hold at most [`TCP_PER_CLIENT`] connections, and all clients together
//! [`TCP_MAX`]; a connection beyond either is closed as soon as it is accepted. The
//! answers are [`answer_with`]'s, as over UDP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::server::TCP_TIMEOUT;
use super::{answer_with, DnsConfig, TxtRecords};

/// TCP connections one client address may hold at once. A resolver needs one or two
/// (RFC 7766 §6.2.2 lets it reuse one for many queries); a few more for resolvers behind
/// one NAT address.
pub const TCP_PER_CLIENT: usize = 16;
/// TCP connections all clients together may hold at once.
pub const TCP_MAX: usize = 1024;
/// A DNS message header's size: a shorter message cannot even be answered with FORMERR.
const HEADER_LEN: usize = 12;
/// After a failed accept (e.g. no file descriptor left), wait this long before the next,
/// rather than spin on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How many connections each client holds, and all together.
#[derive(Debug)]
pub(super) struct Slots {
    per_client: usize,
    max: usize,
    held: Mutex<(HashMap<IpAddr, usize>, usize)>,
}

/// One connection's place, given back when the connection ends.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    pub(super) fn new(per_client: usize, max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            per_client,
            max,
            held: Mutex::new((HashMap::new(), 0)),
        })
    }

    /// A place for one more connection from `ip`, or `None` when it (or everyone) holds
    /// as many as allowed.
    pub(super) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        // A poisoned lock only means another connection panicked while counting: the
        // counts are still whole numbers, so go on with them.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (clients, total) = &mut *held;
        let mine = clients.entry(ip).or_default();
        if *mine >= self.per_client || *total >= self.max {
            if *mine == 0 {
                clients.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Slot {
            slots: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds now.
    #[cfg(test)]
    pub(super) fn held_by(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.0.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        let (clients, total) = &mut *held;
        *total = total.saturating_sub(1);
        if let Some(n) = clients.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections on `listener` until the task is aborted; the connections' tasks
/// end with it.
pub(super) async fn accept_loop(
    listener: TcpListener,
    cfg: Arc<DnsConfig>,
    txt: Arc<dyn TxtRecords>,
    slots: Arc<Slots>,
) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("dns: tcp accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(slot) = slots.take(peer.ip()) else {
            log::debug!("dns: tcp connection from {peer} refused: too many connections");
            drop(stream);
            continue;
        };
        let (cfg, txt) = (cfg.clone(), txt.clone());
        connections.spawn(async move {
            serve_connection(stream, peer, &cfg, txt.as_ref()).await;
            drop(slot);
        });
    }
}

/// Answers the connection's queries in order until it closes, sends nothing for
/// [`TCP_TIMEOUT`], or sends a message that is not DNS.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    cfg: &DnsConfig,
    txt: &dyn TxtRecords,
) {
    loop {
        // The whole message within the timeout: a client that trickles bytes is closed
        // as an idle one is.
        let request = match tokio::time::timeout(TCP_TIMEOUT, read_message(&mut stream)).await {
            Ok(Ok(Some(request))) => request,
            // Closed by the client, or idle for too long.
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                log::debug!("dns: tcp read from {peer}: {e}");
                return;
            }
        };
        let Some(response) = respond(cfg, txt, &request) else {
            return;
        };
        let Ok(len) = u16::try_from(response.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(2 + response.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&response);
        match tokio::time::timeout(TCP_TIMEOUT, stream.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::debug!("dns: tcp write to {peer}: {e}");
                return;
            }
            Err(_) => return,
        }
    }
}

/// One length-prefixed message, or `None` when the client closed the connection.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(Some(message))
}

/// The encoded response to one request; FORMERR for one that does not decode, `None` for
/// one too short to carry even an ID (the connection is then closed).
fn respond(cfg: &DnsConfig, txt: &dyn TxtRecords, request: &[u8]) -> Option<Vec<u8>> {
    let response = match Message::from_vec(request) {
        Ok(request) => answer_with(cfg, txt, &request),
        Err(_) if request.len() >= HEADER_LEN => {
            let id = u16::from_be_bytes([request[0], request[1]]);
            let mut m = Message::new(id, MessageType::Response, OpCode::Query);
            m.metadata.response_code = ResponseCode::FormErr;
            m
        }
        Err(_) => return None,
    };
    response.to_vec().ok()
}
