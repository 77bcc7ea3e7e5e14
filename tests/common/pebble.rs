//! Debian's `pebble` (Let's Encrypt's ACME test server) on loopback, for the ACME tests.
//!
//! The Debian package ships no certificate for pebble's own HTTPS, so one is made with the
//! test CA ([`super::pki`]); the CA that signs issued certificates is pebble's own, new at
//! every start, fetched from its management interface (`/roots/0`). Pebble takes its
//! addresses from its config file and cannot report a port it chose itself, so free ports
//! are reserved for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::Ca;

pub struct Pebble {
    child: Child,
    /// The ACME directory URL.
    pub directory: String,
    /// The CA that signs pebble's own HTTPS certificate (xipgate.acme.directory_ca).
    pub https_ca: PathBuf,
    /// The root that issued certificates chain to.
    pub root: PathBuf,
    pub log: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Starts pebble validating against the DNS server at `dns`, issuing certificates
    /// valid for `validity`.
    pub fn start(dir: &Path, dns: std::net::SocketAddr, validity: Duration) -> Pebble {
        let bin = ["/usr/bin/pebble", "/usr/local/bin/pebble"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("the ACME tests need pebble: apt-get install pebble (or ./dev deps)")
            });
        let ca = Ca::new(dir, "pebble-https");
        let leaf = ca.leaf(dir, "pebble", &["localhost", "127.0.0.1"], 1);
        let (acme, mgmt) = (crate::common::free_port(), crate::common::free_port());
        let config = dir.join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({"pebble": {
                "listenAddress": format!("127.0.0.1:{acme}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                "certificate": leaf.cert,
                "privateKey": leaf.key,
                "httpPort": crate::common::free_port(),
                "tlsPort": crate::common::free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity.as_secs(),
            }})
            .to_string(),
        )
        .expect("write pebble config");
        let log = dir.join("pebble.log");
        let child = Command::new(bin)
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(dns.to_string())
            // No random wait before validating; no nonce rejections; no reused
            // authorizations (every order runs its challenges).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(&log).expect("pebble log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        let directory = format!("https://127.0.0.1:{acme}/dir");
        let root = dir.join("pebble-root.pem");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = Command::new("curl")
                .args(["-sf", "--max-time", "2", "--cacert"])
                .arg(&ca.file)
                .arg("-o")
                .arg(&root)
                .arg(format!("https://127.0.0.1:{mgmt}/roots/0"))
                .status()
                .is_ok_and(|s| s.success());
            if got {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Pebble {
            child,
            directory,
            https_ca: ca.file.clone(),
            root,
            log,
        }
    }

    /// SIGSTOP: pebble keeps its sockets, the kernel accepts connections, nothing answers
    /// (a CA that hangs). [`Pebble::resume`] undoes it.
    pub fn pause(&self) {
        signal(&self.child, libc::SIGSTOP);
    }

    pub fn resume(&self) {
        signal(&self.child, libc::SIGCONT);
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends `sig` to a child process (SIGSTOP/SIGCONT for fault injection).
pub fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}
