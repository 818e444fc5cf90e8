//! What keeps the streaming server's resources bounded: how long a client
//! may take to send its request headers (an idle keep-alive connection is
//! one that has not sent them), how long an upgraded session may stay
//! silent, and how accept errors (EMFILE when the process is out of file
//! descriptors) are waited out instead of retried in a tight loop.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The kubelet streaming library's defaults: 30 s to create a stream, and
/// 4 h without traffic before a session is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub read_header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            read_header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(4 * 60 * 60),
        }
    }
}

/// Accept errors back off from 10 ms to 1 s; a success starts over.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    next: Duration,
    failures: u64,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
            failures: 0,
        }
    }
}

impl AcceptBackoff {
    /// How long to wait after a failure; logs the first of a run.
    pub(crate) fn failed(&mut self, error: &io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(%error, "the streaming server cannot accept connections; backing off");
        }
        self.failures += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    pub(crate) fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "the streaming server accepts connections again"
            );
        }
        *self = Self::default();
    }
}

/// An upgraded connection that fails with `TimedOut` once nothing has been
/// read or written for `limit`, which ends the session that owns it.
pub(crate) struct IdleTimeout<T> {
    inner: T,
    limit: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    pub(crate) fn new(inner: T, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limit,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// `Err` once the connection has been silent for the limit; otherwise
    /// arms the timer for the new deadline.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let deadline = self.last_activity + self.limit;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(()) if self.last_activity + self.limit <= Instant::now() => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no traffic for {:?}", self.limit),
                    ));
                }
                Poll::Ready(()) => continue,
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn silence_ends_the_connection_and_traffic_keeps_it() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut watched = IdleTimeout::new(a, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        // Traffic every 6 s keeps it open past the 10 s limit.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(watched.read(&mut buf).await.unwrap(), 1);
        }
        let started = Instant::now();
        let err = watched.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn accept_backoff_grows_to_a_second_and_starts_over() {
        let mut backoff = AcceptBackoff::default();
        let e = io::Error::from_raw_os_error(24);
        let waits: Vec<_> = (0..10).map(|_| backoff.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        backoff.succeeded();
        assert_eq!(backoff.failed(&e), Duration::from_millis(10));
    }
}
