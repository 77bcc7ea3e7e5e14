//! Reads with a deadline that arm the deadline's timer only when they have to wait.
//!
//! Every read on the fast path has a deadline, and arming one was ~3% of the CPU per request
//! in the bench profile. Under load the bytes a read waits for (the backend's answer, the
//! client's next request) have usually arrived by the time the task runs again after letting
//! the other connections go first; then the read completes without any timer.
//!
//! The deadlines are Tokio's timers (`pingora_timeout::tokio_timeout`, armed only when the
//! read has to wait), not Pingora's `fast_timeout`: that one needs a thread that wakes every
//! 10 ms for as long as the process lives, ~100 system calls a second at idle and a share
//! of every request's under load (bench/cost.sh, issue 27).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pingora_timeout::tokio_timeout;
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
    tokio_timeout(wait, r.read_buf(buf)).await.ok()
}
