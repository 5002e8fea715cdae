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
use tokio::sync::mpsc;

/// A connection accepted by the acceptor, on its way to a loop.
type Accepted = (std::net::TcpStream, SocketAddr);

/// Split `listener` (registered on the calling loop) between `loops` event loops: the
/// acceptor to spawn on this loop, and one [`Handoff`] listener per loop (the first is this
/// loop's).
pub fn split(
    listener: tokio::net::TcpListener,
    loops: usize,
) -> io::Result<(Acceptor, Vec<Handoff>)> {
    let local = listener.local_addr()?;
    let open: Arc<[AtomicUsize]> = (0..loops.max(1)).map(|_| AtomicUsize::new(0)).collect();
    let mut senders = Vec::with_capacity(open.len());
    let mut handoffs = Vec::with_capacity(open.len());
    for index in 0..open.len() {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        handoffs.push(Handoff {
            rx,
            local,
            open: open.clone(),
            index,
        });
    }
    Ok((
        Acceptor {
            listener,
            senders,
            open,
        },
        handoffs,
    ))
}

/// Accepts connections and hands each to the least busy loop.
pub struct Acceptor {
    listener: tokio::net::TcpListener,
    senders: Vec<mpsc::UnboundedSender<Accepted>>,
    open: Arc<[AtomicUsize]>,
}

impl Acceptor {
    /// Open connections per loop, as the acceptor counts them.
    pub fn open_connections(&self) -> Arc<[AtomicUsize]> {
        self.open.clone()
    }

    /// Accept until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut next = 0usize;
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (tcp, addr) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    accept_error(e).await;
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

/// What an accept error means for the loop: a failed connection is skipped; anything else
/// (out of file descriptors, ...) is logged and retried after a pause, as axum does.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One loop's listener: the connections the acceptor hands to it.
pub struct Handoff {
    rx: mpsc::UnboundedReceiver<Accepted>,
    local: SocketAddr,
    open: Arc<[AtomicUsize]>,
    index: usize,
}

impl axum::serve::Listener for Handoff {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
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
                            index: self.index,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    self.open[self.index].fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!("an event loop could not take a connection: {e}");
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A connection served by one loop; counted open until dropped.
pub struct Conn {
    io: TcpStream,
    open: Arc<[AtomicUsize]>,
    index: usize,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open[self.index].fetch_sub(1, Ordering::Relaxed);
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
        let (acceptor, mut handoffs) = split(listener, 3)?;
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
}
