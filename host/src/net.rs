//! TCP sockets without transport stalls, for every connection the host opens or accepts.
//!
//! Two timers of TCP meet badly in request/response traffic: Nagle's algorithm holds a small
//! write back until the previous one is acknowledged, and the receiver delays that
//! acknowledgement (~40 ms on Linux) hoping to piggyback it. A peer that writes a request head
//! and its body (or a response head and its first chunk) in two writes then waits ~40 ms
//! between them. `TCP_NODELAY` stops our own writes from waiting; acknowledging at once after
//! every read (`TCP_QUICKACK`, which Linux resets by itself, so it is set again after each
//! read) stops our delayed ACK from holding back a peer that keeps Nagle on. A new connection
//! starts in quick-ACK mode, which is why only kept-alive connections showed the stall.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that sends small writes at once and acknowledges what it reads at once.
pub struct LowLatency {
    stream: TcpStream,
}

impl LowLatency {
    /// Turn Nagle's algorithm off on `stream` and wrap it. Fails only if the socket refuses
    /// the option (it is then not a usable TCP socket).
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

/// Acknowledge what has arrived now instead of after the delayed-ACK timer.
#[cfg(target_os = "linux")]
fn quick_ack(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor owned by `stream`, a pointer to a live c_int and its
    // exact size; setsockopt reads nothing else.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &TcpStream) {}

impl AsyncRead for LowLatency {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            quick_ack(&self.stream);
        }
        polled
    }
}

impl AsyncWrite for LowLatency {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_wrapped_stream_has_nodelay_and_carries_bytes_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut stream = LowLatency::new(TcpStream::connect(address).await.unwrap()).unwrap();
            assert!(stream.get_ref().nodelay().unwrap());
            stream.write_all(b"ping").await.unwrap();
            let mut answer = [0u8; 4];
            stream.read_exact(&mut answer).await.unwrap();
            answer
        });
        let (accepted, _) = listener.accept().await.unwrap();
        let mut server = LowLatency::new(accepted).unwrap();
        let mut request = [0u8; 4];
        server.read_exact(&mut request).await.unwrap();
        assert_eq!(&request, b"ping");
        server.write_all(b"pong").await.unwrap();
        assert_eq!(&client.await.unwrap(), b"pong");
    }
}
