//! [`TrackedIo`]: the connection wrapper that watches the bytes go by.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::connections::state::{CloseReason, ListenerState};

pin_project! {
    /// A connection counted by perfscope: wraps the IO of one accepted connection (a `TcpStream`, a TLS stream
    /// after its handshake) and passes every read and write through unchanged.
    ///
    /// While the connection's first request head is incomplete it looks for the blank line that ends a head
    /// (`\r\n\r\n`, or `\n\n`) in the bytes read; it notes whether the client closed the connection (a read of
    /// zero bytes or a read error) and whether the server wrote anything; when dropped, it counts the
    /// connection closed with the reason these facts give. See [`crate::connections`] for what each reason
    /// means.
    ///
    /// Made by [`Tracked`](super::Tracked) for `axum::serve`, or by [`ConnectionTracker::track`](super::ConnectionTracker::track)
    /// in an accept loop of one's own.
    pub struct TrackedIo<T> {
        #[pin]
        io: T,
        guard: Guard,
    }
}

impl<T> TrackedIo<T> {
    pub(crate) fn new(io: T, listener: Arc<ListenerState>) -> Self {
        let accepted = Instant::now();
        let id = listener.opened(accepted);
        TrackedIo {
            io,
            guard: Guard {
                listener,
                id,
                accepted,
                head: HeadScan::default(),
                bytes_read: 0,
                wrote: false,
                client_closed: false,
                shed: false,
            },
        }
    }

    /// The wrapped IO.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The wrapped IO, mutably (bytes read or written through it directly are not seen).
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Whether the connection's first request head is still incomplete.
    pub fn head_pending(&self) -> bool {
        !self.guard.head.done
    }

    /// Counts the connection `shed` when it ends, whatever its head and whoever closes it: the server is
    /// closing it to stay within its connection limit. For an accept loop that, at its limit, closes the
    /// oldest connection still sending its first head to admit a new one (or closes the new one).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let (client, server) = tokio::io::duplex(64);
    /// let mut io = perf.connections("public").track(server);
    /// io.mark_shed();
    /// drop((io, client));
    /// assert_eq!(perf.snapshot().connections.listeners[0].closed.shed, 1);
    /// # }
    /// ```
    pub fn mark_shed(&mut self) {
        self.guard.shed = true;
    }
}

impl<T> std::fmt::Debug for TrackedIo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedIo")
            .field("listener", &self.guard.listener.name)
            .field("id", &self.guard.id)
            .field("head_pending", &!self.guard.head.done)
            .field("bytes_read", &self.guard.bytes_read)
            .finish_non_exhaustive()
    }
}

/// Looks for the end of the first request head across reads.
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    /// The last two bytes seen, most recent last.
    prev: [u8; 2],
    /// Whether a byte other than CR and LF was seen (blank lines before a request line are ignored, as
    /// RFC 9112 section 2.2 allows).
    started: bool,
    done: bool,
}

impl HeadScan {
    /// Feeds `bytes`; returns whether the head ended in them.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.done {
            return false;
        }
        for &b in bytes {
            if b == b'\n' {
                if self.started && (self.prev[1] == b'\n' || self.prev == *b"\n\r") {
                    self.done = true;
                    return true;
                }
            } else if b != b'\r' {
                self.started = true;
            }
            self.prev = [self.prev[1], b];
        }
        false
    }
}

/// Counts the connection closed when dropped, whatever ends it.
#[derive(Debug)]
struct Guard {
    listener: Arc<ListenerState>,
    id: u64,
    accepted: Instant,
    head: HeadScan,
    bytes_read: u64,
    wrote: bool,
    client_closed: bool,
    shed: bool,
}

impl Guard {
    fn on_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            self.client_closed = true;
            return;
        }
        self.bytes_read = self.bytes_read.saturating_add(bytes.len() as u64);
        if !self.head.done && self.head.feed(bytes) {
            self.listener
                .head_complete(self.id, self.accepted, Instant::now());
        }
    }

    fn reason(&self) -> CloseReason {
        if self.shed {
            return CloseReason::Shed;
        }
        match (self.head.done, self.client_closed) {
            (true, true) => CloseReason::ClientClosed,
            (true, false) => CloseReason::ServerClosed,
            (false, _) if self.wrote => CloseReason::Refused,
            (false, true) if self.bytes_read == 0 => CloseReason::Empty,
            (false, true) => CloseReason::HeadAbandoned,
            (false, false) => CloseReason::HeadTimeout,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.listener
            .closed(self.id, !self.head.done, self.reason());
    }
}

impl<T: AsyncRead> AsyncRead for TrackedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let poll = this.io.poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                this.guard.on_read(filled.get(before..).unwrap_or_default());
            }
            Poll::Ready(Err(_)) => this.guard.client_closed = true,
            Poll::Pending => {}
        }
        poll
    }
}

impl<T: AsyncWrite> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.guard.wrote |= n > 0;
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            this.guard.wrote |= n > 0;
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<usize> {
        let mut head = HeadScan::default();
        chunks.iter().position(|chunk| head.feed(chunk))
    }

    #[test]
    fn finds_the_end_of_a_head_across_reads() {
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]), Some(0));
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n", b"\r", b"\nbody"]),
            Some(3)
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\nHost: a\n\n"]), Some(0));
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: a\r\n", b"X-Slow: 1\r\n"]),
            None
        );
        // Blank lines before the request line do not end a head.
        assert_eq!(scan(&[b"\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"]), Some(1));
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nA: b\r\n\r"]), None);
    }
}
