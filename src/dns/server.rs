//! The network side: binding UDP+TCP and serving [`reply`]: UDP through hickory-server,
//! TCP through [`super::tcp`] (which limits connections per client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, ResponseCode};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::tcp::{accept_loop, Slots, TCP_MAX, TCP_PER_CLIENT};
use super::{reply, DnsConfig, DnsError, TxtRecords};

/// A TCP connection that sends no request for this long is closed.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `serve` waits for the socket tasks to stop after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Attempts to find a port free for both UDP and TCP when the configured port is 0.
const PORT_ZERO_TRIES: usize = 20;

/// hickory-server's request handler: decodes nothing itself, asks [`reply`].
struct Handler {
    cfg: Arc<DnsConfig>,
    txt: Arc<dyn TxtRecords>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let queries = request.queries.queries();
        let r = reply(
            &self.cfg,
            self.txt.as_ref(),
            &request.metadata,
            queries.len(),
            queries.first().map(|q| q.original()),
            request.edns.as_ref(),
        );
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = r.edns.as_ref() {
            builder.edns(edns);
        }
        // The question section is echoed byte for byte from the request (0x20 case kept).
        let response = builder.build(
            r.metadata,
            r.answers.iter(),
            r.authorities.iter(),
            std::iter::empty(),
            r.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                log::warn!("dns: cannot send a response to {}: {e}", request.src());
                let mut metadata = r.metadata;
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        // So that `0.0.0.0:53` and `[::]:53` can both be listed.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // During a zero-downtime upgrade (`xipgate -u`) the new process binds the DNS port
    // while the old one still answers on it: SO_REUSEPORT lets both hold it until the
    // old one exits. (Pingora hands the HTTP listeners over; the DNS sockets are ours.)
    if addr.port() != 0 {
        socket.set_reuse_port(true)?;
    }
    Ok(socket)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// UDP and TCP on the same address. With port 0, UDP picks a port and TCP takes the same
/// one, retried with a new port if TCP finds it taken.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let tries = if addr.port() == 0 { PORT_ZERO_TRIES } else { 1 };
    let mut last_err = None;
    for _ in 0..tries {
        let udp = bind_udp(addr).map_err(|source| DnsError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        let local = udp.local_addr().map_err(|source| DnsError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        match bind_tcp(local) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                last_err = Some((local, e));
            }
            Err(source) => {
                return Err(DnsError::Bind {
                    proto: "tcp",
                    addr: local,
                    source,
                })
            }
        }
    }
    let (addr, source) = last_err.expect("at least one try was made");
    Err(DnsError::Bind {
        proto: "tcp",
        addr,
        source,
    })
}

/// Binds UDP and TCP on every `cfg.listen` address (IPv6 addresses as v6-only). Port 0
/// gets one free port shared by UDP and TCP; read it back with `local_addr()`.
pub async fn bind(cfg: &DnsConfig) -> Result<(Vec<UdpSocket>, Vec<TcpListener>), DnsError> {
    if cfg.listen.is_empty() {
        return Err(DnsError::NoSockets);
    }
    let mut udp = Vec::with_capacity(cfg.listen.len());
    let mut tcp = Vec::with_capacity(cfg.listen.len());
    for &addr in &cfg.listen {
        let (u, t) = bind_pair(addr).await?;
        udp.push(u);
        tcp.push(t);
    }
    Ok((udp, tcp))
}

/// Serves DNS on the given sockets until `shutdown` becomes true (or its sender is
/// dropped: nothing could stop the server any more). Returns an error if the config is
/// invalid, there is no socket, or a socket fails before shutdown.
pub async fn serve(
    cfg: Arc<DnsConfig>,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    txt: Arc<dyn TxtRecords>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DnsError> {
    // `cfg` was validated with the configuration (config::validate names the key).
    if udp.is_empty() && tcp.is_empty() {
        return Err(DnsError::NoSockets);
    }
    let zones = cfg.zones.join(", ");
    // TCP is served by our own accept loops, which count connections per client.
    let slots = Slots::new(TCP_PER_CLIENT, TCP_MAX);
    let mut tcp_tasks = JoinSet::new();
    for listener in tcp {
        if let Ok(a) = listener.local_addr() {
            log::info!("dns: serving {zones} on tcp {a}");
        }
        tcp_tasks.spawn(accept_loop(
            listener,
            cfg.clone(),
            txt.clone(),
            slots.clone(),
        ));
    }
    let has_udp = !udp.is_empty();
    let mut server = Server::new(Handler { cfg, txt });
    for socket in udp {
        if let Ok(a) = socket.local_addr() {
            log::info!("dns: serving {zones} on udp {a}");
        }
        server.register_socket(socket);
    }

    let token = server.shutdown_token().clone();
    let done = server.block_until_done();
    tokio::pin!(done);
    let stopped = |what: String| Err(DnsError::Server(what));
    tokio::select! {
        res = &mut done, if has_udp => {
            return stopped(match res {
                Ok(()) => "the socket tasks stopped unexpectedly".into(),
                Err(e) => e.to_string(),
            });
        }
        Some(_) = tcp_tasks.join_next() => {
            return stopped("a tcp accept loop stopped unexpectedly".into());
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    // Aborting the accept loops ends their connections too.
    tcp_tasks.shutdown().await;
    token.cancel();
    match tokio::time::timeout(SHUTDOWN_GRACE, done).await {
        Ok(Ok(())) => log::info!("dns: stopped"),
        Ok(Err(e)) => log::warn!("dns: error while stopping: {e}"),
        Err(_) => log::warn!("dns: sockets did not stop within {SHUTDOWN_GRACE:?}"),
    }
    Ok(())
}
