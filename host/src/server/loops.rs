//! Connections shared out between event loops.
//!
//! One acceptor task (on the first loop) accepts every connection and hands it to the loop
//! with the fewest open connections; that loop serves it start to end. Without it, loops
//! that all wait on the one listening socket take connections in whatever order they wake,
//! and a client's pool of keep-alive connections can land on one loop while the others
//! idle. Handing over costs one message per connection, not per request; a single loop takes
//! its connections the same way.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

/// A connection accepted by the acceptor, on its way to a loop.
type Accepted = (std::net::TcpStream, SocketAddr);

/// Split `listener` (registered on the calling loop) between `loops` event loops: the
/// acceptor to spawn on this loop, and one [`Handoff`] listener per loop (the first is this
/// loop's).
/// At most `max_connections` connections are open at once.
pub fn split(
    listener: tokio::net::TcpListener,
    loops: usize,
    max_connections: usize,
) -> io::Result<(Acceptor, Vec<Handoff>)> {
    let local = listener.local_addr()?;
    let open: Arc<[AtomicUsize]> = (0..loops.max(1)).map(|_| AtomicUsize::new(0)).collect();
    let closed = Arc::new(Notify::new());
    let mut senders = Vec::with_capacity(open.len());
    let mut handoffs = Vec::with_capacity(open.len());
    for index in 0..open.len() {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        handoffs.push(Handoff {
            rx,
            local,
            open: open.clone(),
            closed: closed.clone(),
            index,
        });
    }
    Ok((
        Acceptor {
            listener,
            senders,
            open,
            closed,
            max_connections: max_connections.max(1),
        },
        handoffs,
    ))
}

/// Accepts connections and hands each to the least busy loop.
pub struct Acceptor {
    listener: tokio::net::TcpListener,
    senders: Vec<mpsc::UnboundedSender<Accepted>>,
    open: Arc<[AtomicUsize]>,
    /// Signalled when a connection closes.
    closed: Arc<Notify>,
    max_connections: usize,
}

impl Acceptor {
    /// Open connections per loop, as the acceptor counts them.
    pub fn open_connections(&self) -> Arc<[AtomicUsize]> {
        self.open.clone()
    }

    /// Accept until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut next = 0usize;
        let mut backoff = Backoff::default();
        loop {
            if !self.wait_below_cap(&mut stop).await {
                return;
            }
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (tcp, addr) = match accepted {
                Ok(c) => {
                    backoff.reset();
                    c
                }
                Err(e) => {
                    backoff.after(e, self.open_total()).await;
                    continue;
                }
            };
            // Streams are many small writes: without TCP_NODELAY, Nagle's algorithm and
            // the client's delayed ACK hold tokens back for up to 40 ms.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY not set: {e}");
            }
            let std = match tcp.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("handing a connection to an event loop failed: {e}");
                    continue;
                }
            };
            // Fewest open connections; ties go round-robin, starting after the last pick.
            let n = self.senders.len();
            let pick = (0..n)
                .map(|i| (next + i) % n)
                .min_by_key(|&i| self.open[i].load(Ordering::Relaxed))
                .unwrap_or(0);
            next = (pick + 1) % n;
            self.open[pick].fetch_add(1, Ordering::Relaxed);
            if self.senders[pick].send((std, addr)).is_err() {
                // That loop is gone (shutting down): the connection is closed with it.
                self.open[pick].fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Acceptor {
    fn open_total(&self) -> usize {
        self.open.iter().map(|o| o.load(Ordering::Relaxed)).sum()
    }

    /// Wait until fewer than `max_connections` are open; false if `stop` turned true first.
    async fn wait_below_cap(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        let mut logged = false;
        loop {
            // Registered before the count is read, so a close in between is not missed.
            let closed = self.closed.notified();
            let open = self.open_total();
            if open < self.max_connections {
                if logged {
                    tracing::info!(open, "below the client connection limit again: accepting");
                }
                return true;
            }
            if !logged {
                logged = true;
                tracing::warn!(
                    open,
                    limit = self.max_connections,
                    "client connection limit reached (llmgate.max_client_connections): new connections wait until one closes"
                );
            }
            tokio::select! {
                () = closed => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
    }
}

/// The pause after a failed accept.
#[derive(Default)]
struct Backoff {
    pause: Duration,
    logged: bool,
}

impl Backoff {
    fn reset(&mut self) {
        if self.logged {
            tracing::info!("accepting connections again");
        }
        *self = Self::default();
    }

    /// A connection that failed before it was accepted is skipped. Anything else (out of
    /// file descriptors, ...) pauses accepting: 10 ms, doubling up to 1 s, logged once
    /// until an accept succeeds again.
    async fn after(&mut self, e: io::Error, open: usize) {
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
        ) {
            return;
        }
        self.pause = (self.pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        if !self.logged {
            self.logged = true;
            let fds = matches!(e.raw_os_error(), Some(23 | 24));
            tracing::error!(
                open,
                "accepting a connection failed: {e}{}; pausing accepts",
                if fds {
                    " (out of file descriptors: lower llmgate.max_client_connections or raise the process's RLIMIT_NOFILE)"
                } else {
                    ""
                }
            );
        }
        tokio::time::sleep(self.pause).await;
    }
}

/// One loop's listener: the connections the acceptor hands to it.
pub struct Handoff {
    rx: mpsc::UnboundedReceiver<Accepted>,
    local: SocketAddr,
    open: Arc<[AtomicUsize]>,
    closed: Arc<Notify>,
    index: usize,
}

impl Handoff {
    /// The next connection handed to this loop (pending forever once the acceptor stopped).
    pub async fn next(&mut self) -> (Conn, SocketAddr) {
        loop {
            let Some((std, addr)) = self.rx.recv().await else {
                // The acceptor has stopped: no more connections come to this loop.
                return std::future::pending().await;
            };
            match TcpStream::from_std(std) {
                Ok(io) => {
                    return (
                        Conn {
                            io,
                            open: self.open.clone(),
                            closed: self.closed.clone(),
                            index: self.index,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    self.open[self.index].fetch_sub(1, Ordering::Relaxed);
                    self.closed.notify_one();
                    tracing::warn!("an event loop could not take a connection: {e}");
                }
            }
        }
    }
}

impl axum::serve::Listener for Handoff {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A connection served by one loop; counted open until dropped.
pub struct Conn {
    io: TcpStream,
    open: Arc<[AtomicUsize]>,
    closed: Arc<Notify>,
    index: usize,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open[self.index].fetch_sub(1, Ordering::Relaxed);
        self.closed.notify_one();
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Connections go to the loop with the fewest open ones, and a closed connection is no
    /// longer counted.
    #[tokio::test]
    async fn connections_go_to_the_least_busy_loop() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (acceptor, mut handoffs) = split(listener, 3, 1000)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(acceptor.run(stop_rx));
        let mut clients = Vec::new();
        let mut served = Vec::new();
        for round in 0..2 {
            for h in &mut handoffs {
                clients.push(tokio::net::TcpStream::connect(addr).await?);
                let (conn, _) = tokio::time::timeout(Duration::from_secs(5), h.accept()).await?;
                assert_eq!(conn.index, h.index, "round {round}");
                served.push(conn);
            }
        }
        let open: Vec<usize> = handoffs[0]
            .open
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect();
        assert_eq!(open, vec![2, 2, 2]);
        // Close one of loop 1's connections: the next connection goes to loop 1.
        drop(served.remove(1));
        clients.push(tokio::net::TcpStream::connect(addr).await?);
        let (mut conn, _) =
            tokio::time::timeout(Duration::from_secs(5), handoffs[1].accept()).await?;
        assert_eq!(conn.index, 1);
        // The handed-over connection works both ways.
        let client = clients
            .last_mut()
            .ok_or_else(|| anyhow::anyhow!("no client"))?;
        client.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        conn.write_all(b"pong").await?;
        client.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        stop_tx.send(true)?;
        tokio::time::timeout(Duration::from_secs(5), task).await??;
        Ok(())
    }

    /// At the cap, a new connection is not handed to any loop until an open one closes.
    #[tokio::test]
    async fn the_acceptor_waits_at_the_connection_cap() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (acceptor, mut handoffs) = split(listener, 1, 2)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(acceptor.run(stop_rx));
        let h = &mut handoffs[0];
        let _c1 = tokio::net::TcpStream::connect(addr).await?;
        let _c2 = tokio::net::TcpStream::connect(addr).await?;
        let _c3 = tokio::net::TcpStream::connect(addr).await?;
        let first = tokio::time::timeout(Duration::from_secs(5), h.next()).await?;
        let _second = tokio::time::timeout(Duration::from_secs(5), h.next()).await?;
        // The third waits while two are open...
        assert!(
            tokio::time::timeout(Duration::from_millis(300), h.next())
                .await
                .is_err(),
            "a third connection was handed over at a cap of 2"
        );
        // ...and is handed over once one closes.
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), h.next()).await;
        assert!(third.is_ok(), "not handed over after a connection closed");
        stop_tx.send(true)?;
        tokio::time::timeout(Duration::from_secs(5), task).await??;
        Ok(())
    }
}
