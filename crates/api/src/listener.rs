//! The API's listening socket. Every open connection costs a file descriptor
//! and a task whether or not it sends requests, so their number is bounded:
//! at the limit the listener stops accepting and new clients wait in the
//! kernel's backlog until a connection closes. Responses go out without
//! Nagle's delay, which would otherwise hold the tail of a large response
//! until the client acknowledges the rest.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const OPEN_CONNECTIONS: &str = "skyhose_api_connections_open";
pub const CONNECTIONS_LIMITED: &str = "skyhose_api_connections_at_limit_total";

/// A TCP listener that keeps at most `limit` accepted connections open.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, limit: usize) -> Self {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(limit.max(1))),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        if self.permits.available_permits() == 0 {
            metrics::counter!(CONNECTIONS_LIMITED).increment(1);
            tracing::warn!("API connection limit reached; new connections wait");
        }
        // The semaphore is never closed, so waiting for a permit cannot fail;
        // a connection without one is still served rather than dropped.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%addr, error = %err, "could not turn off Nagle's algorithm");
        }
        metrics::gauge!(OPEN_CONNECTIONS).increment(1.0);
        (
            Connection {
                stream,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; its slot is given back when it is dropped.
pub struct Connection {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_CONNECTIONS).decrement(1.0);
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
