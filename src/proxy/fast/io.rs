//! Reads with a deadline that arm the deadline's timer only when they have to wait.
//!
//! Every read on the fast path has a deadline, and arming one (Pingora's timer wheel: a
//! lock, a shared `Notify`, a waiter list) was ~3% of the CPU per request in the bench
//! profile. Under load the bytes a read waits for (the backend's answer, the client's next
//! request) have usually arrived by the time the task runs again after letting the other
//! connections go first; then the read completes without any timer.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pingora_timeout::fast_timeout::fast_timeout;
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a timed read gives: the read's result, or `None` when the deadline passed.
pub type Timed = Option<io::Result<usize>>;

/// Reads into `buf` (appending) within `wait`.
pub async fn read_within<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> Timed {
    tokio::task::yield_now().await;
    {
        let mut cx = Context::from_waker(Waker::noop());
        let mut now = pin!(r.read_buf(buf));
        if let Poll::Ready(res) = now.as_mut().poll(&mut cx) {
            return Some(res);
        }
        // Not there yet: nothing was read, and the future holds nothing else.
    }
    fast_timeout(wait, r.read_buf(buf)).await.ok()
}
