//! Before telling the CA a challenge is ready, ask the DNS servers the CA may reach for
//! it (as cert-manager's self-check does): other replicas answer from values they read
//! from the shared store every second or so, and a CA that asks one that has not read them
//! yet fails the order.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Wait for one answer before asking again.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between rounds of questions.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// A UDP answer larger than this is not ours (a TXT answer for two values is ~200 bytes).
const MAX_ANSWER: usize = 4096;

/// Why the self-check did not pass.
#[derive(Debug, thiserror::Error)]
#[error("the DNS server {server} did not answer {name} TXT with the challenge values within {within:?} ({last}); the CA was not told the challenge is ready")]
pub struct SelfCheckError {
    pub server: SocketAddr,
    pub name: String,
    pub within: Duration,
    /// What it answered last, or why there was no answer.
    pub last: String,
}

/// The TXT values `server` answers for `name`.
async fn ask(server: SocketAddr, name: &Name, id: u16) -> Result<Vec<String>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(name.clone(), RecordType::TXT));
    let bytes = q.to_vec().map_err(|e| e.to_string())?;
    socket.send(&bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_ANSWER];
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("no answer within {QUERY_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if m.metadata.id != id {
            continue; // a late answer to an earlier question
        }
        return Ok(m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect());
    }
}

/// Asks every server in `servers` for `name` TXT until each answers all of `want`, for at
/// most `within`.
pub async fn wait_until_answered(
    servers: &[SocketAddr],
    name: &str,
    want: &[String],
    within: Duration,
) -> Result<(), SelfCheckError> {
    let fail = |server: SocketAddr, last: String| SelfCheckError {
        server,
        name: name.to_string(),
        within,
        last,
    };
    let mut qname = Name::from_ascii(name).map_err(|e| {
        fail(
            servers.first().copied().unwrap_or(([0, 0, 0, 0], 0).into()),
            format!("not a DNS name: {e}"),
        )
    })?;
    qname.set_fqdn(true);
    let deadline = Instant::now() + within;
    let mut id: u16 = 1;
    for &server in servers {
        loop {
            id = id.wrapping_add(1);
            let last = match ask(server, &qname, id).await {
                Ok(got) if want.iter().all(|w| got.contains(w)) => break,
                Ok(got) => format!("it answered {got:?}"),
                Err(e) => e,
            };
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(fail(server, last));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dns::{DnsConfig, TxtRecords};

    struct Fixed;
    impl TxtRecords for Fixed {
        fn txt(&self, name: &str) -> Vec<String> {
            if name == "_acme-challenge.a.sslip.io" {
                vec!["one".into(), "two".into()]
            } else {
                Vec::new()
            }
        }
    }

    #[tokio::test]
    async fn passes_when_every_server_answers_and_names_the_one_that_does_not() {
        let cfg = Arc::new(DnsConfig {
            listen: vec![([127, 0, 0, 1], 0).into()],
            zones: vec!["sslip.io".into()],
            edge_ips: vec!["127.0.0.1".parse().expect("ip")],
            ttl: 60,
        });
        let (udp, tcp) = crate::dns::bind(&cfg).await.expect("bind");
        let ours = udp[0].local_addr().expect("addr");
        let (_stop, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::dns::serve(cfg, udp, tcp, Arc::new(Fixed), stop));
        let name = "_acme-challenge.a.sslip.io";
        let want = ["one".to_string(), "two".to_string()];
        let short = Duration::from_millis(1500);
        wait_until_answered(&[ours], name, &want, short)
            .await
            .expect("answered");

        let missing = ["three".to_string()];
        let e = wait_until_answered(&[ours], name, &missing, short)
            .await
            .expect_err("a value it does not have");
        assert_eq!(e.server, ours);
        assert!(e.last.contains("one"), "{e}");

        // A socket that never answers (a replica that is down).
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let silent = silent.local_addr().expect("addr");
        let e = wait_until_answered(&[ours, silent], name, &want, short)
            .await
            .expect_err("one replica silent");
        assert_eq!(e.server, silent);
        assert!(e.to_string().contains(&silent.to_string()), "{e}");
    }
}
