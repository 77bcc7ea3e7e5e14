//! A network namespace of the test's own, so backends can listen on pod-like addresses
//! (10.244.0.x) that a real kube-apiserver accepts in an EndpointSlice (its validation
//! refuses loopback addresses), while nothing leaves the machine.
//!
//! [`enter`] moves the CURRENT THREAD into a new network namespace (`unshare(CLONE_NEWNET)`
//! is per thread), brings `lo` up and puts [`POD_NET`] on it. Whatever the thread starts
//! afterwards inherits the namespace: threads (a tokio runtime built after `enter`),
//! processes (xipgate, kube-apiserver, etcd, curl). Inside, 127.0.0.1 is the namespace's
//! own loopback, and every address of [`POD_NET`] is local (a prefix on `lo` is a local
//! route), so a backend binds `pod_ip(7)` and xipgate connects to it. Connections to a pod
//! address come from 10.244.0.1 (the prefix's own address), those to 127.0.0.1 from
//! 127.0.0.1. Several pods may use the same port, each on its own address, as in a
//! cluster.
//!
//! Use it first thing in a test, before a runtime exists:
//!
//! ```ignore
//! #[test]
//! fn routes_pods() {
//!     netns::enter();
//!     netns::runtime().block_on(async {
//!         let kube = KubeApi::start().await;
//!         let pod = Backend::start_at("web-0", (netns::pod_ip(5), 8080).into()).await;
//!         // ... xipgate with `upstream: {allow: ["10.244.0.0/16"]}` in its extra YAML
//!         // (the harness allows only 127.0.0.0/8), pointed at kube.url
//!     });
//! }
//! ```
//!
//! or `#[tokio::test(flavor = "current_thread")]` with `netns::enter()` as the body's first
//! line (the body runs on the test thread itself). Not a multi-thread `#[tokio::test]`: its
//! workers exist before the body runs and stay in the host namespace. Needs root
//! (CAP_SYS_ADMIN), as the tests have here and in CI; the namespace goes away when the
//! thread and the processes it started are gone.

#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// The pod network put on `lo` inside the namespace.
pub const POD_NET: &str = "10.244.0.0/16";
const POD_BASE: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);
const POD_MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 0, 0);
/// The address the prefix is attached with (an alias of `lo`).
const LO_ALIAS: &str = "lo:pods";

/// `10.244.0.<n>`: a pod address, local inside the namespace.
pub fn pod_ip(n: u8) -> IpAddr {
    let [a, b, c, _] = POD_BASE.octets();
    IpAddr::V4(Ipv4Addr::new(a, b, c, n))
}

/// Moves this thread into a new network namespace with `lo` up and [`POD_NET`] local.
/// Panics (saying why) when it cannot: a test that needs pod addresses must not run
/// without them.
pub fn enter() {
    if let Err(e) = try_enter() {
        panic!(
            "entering a network namespace of the test's own (unshare(CLONE_NEWNET), needs root): {e}"
        );
    }
}

/// A multi-thread tokio runtime whose threads are created now, so after [`enter`] they
/// live in the namespace.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn try_enter() -> io::Result<()> {
    // SAFETY: unshare takes flags only; it changes this thread's namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let sock = Socket::new()?;
    let mut lo = ifreq("lo");
    sock.ioctl(libc::SIOCGIFFLAGS, &mut lo, "get lo's flags")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    unsafe { lo.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    sock.ioctl(libc::SIOCSIFFLAGS, &mut lo, "bring lo up")?;
    // An alias of lo carries the pod prefix: its address, then its mask (setting the
    // address first gives it the class mask).
    let mut alias = ifreq(LO_ALIAS);
    alias.ifr_ifru.ifru_addr = sockaddr(pod_ip(1));
    sock.ioctl(libc::SIOCSIFADDR, &mut alias, "add 10.244.0.1 to lo")?;
    let mut alias = ifreq(LO_ALIAS);
    alias.ifr_ifru.ifru_netmask = sockaddr(IpAddr::V4(POD_MASK));
    sock.ioctl(
        libc::SIOCSIFNETMASK,
        &mut alias,
        "set the pod prefix's mask",
    )?;
    Ok(())
}

struct Socket(libc::c_int);

impl Socket {
    fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is closed on drop.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket(fd))
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq, what: &str) -> io::Result<()> {
        // SAFETY: every request used here takes a `struct ifreq`, which `req` is.
        if unsafe { libc::ioctl(self.0, request as _, req as *mut libc::ifreq) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

fn sockaddr(ip: IpAddr) -> libc::sockaddr {
    let IpAddr::V4(v4) = ip else {
        unreachable!("the pod network is IPv4")
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; the kernel reads it
    // as sockaddr_in because of sin_family.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}
