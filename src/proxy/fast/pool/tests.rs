use super::*;
use std::future::Future;
use std::io::Write;

/// A loopback pair: the pooled (client) end as tokio's, the backend's end as a blocking
/// std socket, so the test writes or closes it without letting the reactor run.
async fn pair(listener: &std::net::TcpListener) -> (TcpStream, std::net::TcpStream) {
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

fn listener() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    (l, addr)
}

#[tokio::test]
async fn an_open_idle_connection_is_reused() {
    let (l, addr) = listener();
    let pool = Pool::new(4, Duration::from_secs(60));
    let (c, _server) = pair(&l).await;
    pool.put(addr, c, Instant::now());
    assert_eq!(pool.idle_count(addr), 1);
    let c = pool.take(addr, Instant::now()).expect("reused");
    pool.put(addr, c, Instant::now());
    assert_eq!(pool.idle_count(addr), 1);
}

/// The backend's close or stray bytes (the rest of a HEAD/204 answer in a later segment)
/// arrive after the connection went back, and the next request takes it before the
/// reactor has looked: the socket itself is asked.
#[tokio::test]
async fn a_close_or_stray_bytes_the_reactor_has_not_seen_retire_a_connection() {
    let (l, addr) = listener();
    let pool = Pool::new(4, Duration::from_secs(60));

    let (c, mut server) = pair(&l).await;
    pool.put(addr, c, Instant::now());
    server
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
        .expect("stray bytes");
    assert!(
        pool.take(addr, Instant::now()).is_none(),
        "a connection with unasked data was handed out"
    );

    let (c, server) = pair(&l).await;
    pool.put(addr, c, Instant::now());
    drop(server);
    assert!(
        pool.take(addr, Instant::now()).is_none(),
        "a connection the backend closed was handed out"
    );
    assert_eq!(pool.idle_count(addr), 0);
}

#[tokio::test]
async fn age_retires_a_connection() {
    let (l, addr) = listener();
    let pool = Pool::new(4, Duration::from_millis(50));
    let (c, _server) = pair(&l).await;
    let put_at = Instant::now();
    pool.put(addr, c, put_at);
    assert!(pool
        .take(addr, put_at + Duration::from_millis(80))
        .is_none());
}

/// The bound is on all idle connections, whatever their address (Pingora's pool size),
/// and the least recently used one makes room.
#[tokio::test]
async fn the_bound_is_total_and_the_least_recently_used_goes() {
    let pool = Pool::new(2, Duration::from_secs(60));
    let mut keep = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let (l, addr) = listener();
        let (c, s) = pair(&l).await;
        pool.put(addr, c, Instant::now());
        keep.push(s);
        addrs.push(addr);
    }
    let counts: Vec<usize> = addrs.iter().map(|a| pool.idle_count(*a)).collect();
    assert_eq!(counts, [0, 1, 1], "two in all, the oldest gone");

    // Many to one address: still two.
    let (l, addr) = listener();
    for _ in 0..5 {
        let (c, s) = pair(&l).await;
        pool.put(addr, c, Instant::now());
        keep.push(s);
    }
    assert_eq!(pool.idle_count(addr), 2);
    assert_eq!(pool.len(), 2);
}

#[tokio::test]
async fn a_put_drops_timed_out_connections_first() {
    let pool = Pool::new(8, Duration::from_millis(50));
    let (l1, a1) = listener();
    let (l2, a2) = listener();
    let (c, _s1) = pair(&l1).await;
    let old = Instant::now();
    pool.put(a1, c, old - Duration::from_millis(80));
    let (c, _s2) = pair(&l2).await;
    pool.put(a2, c, Instant::now());
    assert_eq!((pool.idle_count(a1), pool.idle_count(a2)), (0, 1));
}

/// The periodic sweep: closed by the backend, timed out, or an address that left the
/// table: closed; the rest stays.
#[tokio::test]
async fn the_sweep_closes_what_cannot_be_reused() {
    let pool = Pool::new(8, Duration::from_secs(60));
    let (l1, closed_addr) = listener();
    let (l2, gone_addr) = listener();
    let (l3, live_addr) = listener();
    let (c, s1) = pair(&l1).await;
    pool.put(closed_addr, c, Instant::now());
    let (c, _s2) = pair(&l2).await;
    pool.put(gone_addr, c, Instant::now());
    let (c, _s3) = pair(&l3).await;
    pool.put(live_addr, c, Instant::now());
    drop(s1);
    let n = pool.sweep(Instant::now(), |a| a != gone_addr);
    assert_eq!(n, 2);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.idle_count(live_addr), 1);
    let n = pool.sweep(Instant::now() + Duration::from_secs(61), |_| true);
    assert_eq!((n, pool.len()), (1, 0), "timed out");
}

/// The sweep sleeps on an empty pool: `wait_filled` is pending until a connection goes
/// in, also when the `put` comes before anyone waits.
#[tokio::test]
async fn wait_filled_returns_only_once_a_connection_is_in() {
    let (l, addr) = listener();
    let pool = Pool::new(4, Duration::from_secs(60));
    let mut cx = Context::from_waker(Waker::noop());
    let (c, _server) = pair(&l).await;
    {
        let mut waiting = std::pin::pin!(pool.wait_filled());
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "empty pool");
        pool.put(addr, c, Instant::now());
        assert!(
            waiting.as_mut().poll(&mut cx).is_ready(),
            "filled while waiting"
        );
    }
    // Emptied and filled again before the next wait: that wait returns at once.
    let c = pool.take(addr, Instant::now()).expect("taken");
    pool.put(addr, c, Instant::now());
    let mut again = std::pin::pin!(pool.wait_filled());
    assert!(again.as_mut().poll(&mut cx).is_ready());
    drop(pool.take(addr, Instant::now()));
    let mut empty = std::pin::pin!(pool.wait_filled());
    assert!(empty.as_mut().poll(&mut cx).is_pending(), "emptied again");
}
