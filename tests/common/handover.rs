//! Listeners bound by the test and handed to xipgate already listening, so no port is
//! reserved and released (a window in which another process could take it).
//!
//! Pingora binds listeners from address strings; the one way it takes a listener that is
//! already bound is its upgrade handoff: a process started with `-u` waits on
//! `upgrade_sock` for the old process to send its listening sockets. The harness plays
//! the old process. The message is Pingora's own (pingora-core 0.9.1,
//! `server/transfer_fd`): one stream connection, the bind addresses joined by spaces as
//! the payload, the descriptors in the same order as one SCM_RIGHTS message.

use std::io::IoSlice;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};

/// Listening sockets on loopback port 0, ready to hand over.
pub struct Listeners(Vec<TcpListener>);

impl Listeners {
    pub fn bind(count: usize) -> Self {
        Listeners(
            (0..count)
                .map(|_| {
                    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
                    // Pingora hands the descriptor to tokio, which needs it non-blocking.
                    l.set_nonblocking(true).expect("non-blocking listener");
                    l
                })
                .collect(),
        )
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.0
            .iter()
            .map(|l| l.local_addr().expect("bound address"))
            .collect()
    }

    /// Sends every listener to the process waiting on `sock` (started with `-u`), retrying
    /// while the socket is not there yet, as Pingora's own sender does. The descriptors
    /// are duplicated into the receiver, so dropping ours afterwards leaves its copies open.
    pub fn hand_over(self, sock: &Path, within: Duration) -> nix::Result<()> {
        let keys = self
            .addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let fds: Vec<i32> = self.0.iter().map(|l| l.as_raw_fd()).collect();
        let addr = UnixAddr::new(sock).expect("upgrade_sock path");
        let deadline = Instant::now() + within;
        let conn = loop {
            let s = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::empty(),
                None,
            )
            .expect("unix socket");
            match connect(s.as_raw_fd(), &addr) {
                Ok(()) => break s,
                Err(Errno::ENOENT | Errno::ECONNREFUSED) if Instant::now() < deadline => {
                    // No readiness signal exists before the socket file does.
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        let iov = [IoSlice::new(keys.as_bytes())];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(conn.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map(drop)
    }
}
