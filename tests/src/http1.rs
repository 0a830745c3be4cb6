//! A small HTTP/1.1 client over one TCP connection that it keeps alive between requests, for
//! benchmarks that compare a client reusing its connection with one that opens a new one each
//! time. It behaves like common clients: Nagle's algorithm stays on, and the request head and
//! body go out in two writes (the pattern that stalls on a server that delays its ACKs).

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer: status, lower-case headers, body (de-chunked).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the first byte of the answer arrived.
    pub first_byte: Instant,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A connection to `127.0.0.1:port`, reused for every request until the server closes it.
pub struct Http1Client {
    port: u16,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
    /// Connections opened so far (1 for a client whose connection was kept all along).
    pub connections: usize,
}

impl Http1Client {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            stream: None,
            buffer: Vec::with_capacity(16 * 1024),
            connections: 0,
        }
    }

    /// Send a request with a JSON body and read the whole answer. The connection is kept when
    /// the server keeps it; `close` asks for a fresh connection afterwards.
    pub async fn post_json(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
        close: bool,
    ) -> std::io::Result<Answer> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
            self.stream = Some(stream);
            self.buffer.clear();
            self.connections += 1;
        }
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.port,
            body.len()
        );
        if close {
            head.push_str("connection: close\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let answer = self.exchange(head.as_bytes(), body.as_bytes()).await;
        if close || answer.is_err() {
            self.stream = None;
        }
        let answer = answer?;
        if answer
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.stream = None;
        }
        Ok(answer)
    }

    async fn exchange(&mut self, head: &[u8], body: &[u8]) -> std::io::Result<Answer> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        stream.write_all(head).await?;
        stream.write_all(body).await?;
        let first_byte = self.fill(1).await?;
        let head_end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill(self.buffer.len() + 1).await?;
        };
        let (status, headers) = crate::parse_head(&self.buffer[..head_end]);
        self.buffer.drain(..head_end);
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let body = if chunked {
            self.read_chunked().await?
        } else if let Some(length) = length {
            self.fill(length).await?;
            self.buffer.drain(..length).collect()
        } else {
            // Delimited by the end of the connection.
            while self.read_more().await? > 0 {}
            self.stream = None;
            std::mem::take(&mut self.buffer)
        };
        Ok(Answer {
            status,
            headers,
            body,
            first_byte,
        })
    }

    async fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                self.fill(self.buffer.len() + 1).await?;
            };
            let size = std::str::from_utf8(&self.buffer[..line_end])
                .ok()
                .and_then(|s| {
                    usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok()
                })
                .ok_or_else(|| std::io::Error::other("bad chunk size"))?;
            self.buffer.drain(..line_end + 2);
            if size == 0 {
                // The last chunk: an empty trailer ends it.
                self.fill(2).await?;
                self.buffer.drain(..2);
                return Ok(body);
            }
            self.fill(size + 2).await?;
            body.extend_from_slice(&self.buffer[..size]);
            self.buffer.drain(..size + 2);
        }
    }

    /// Read until the buffer holds at least `wanted` bytes; when the first of them arrived.
    async fn fill(&mut self, wanted: usize) -> std::io::Result<Instant> {
        let mut at = Instant::now();
        while self.buffer.len() < wanted {
            if self.read_more().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            at = Instant::now();
        }
        Ok(at)
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        let mut chunk = [0u8; 16 * 1024];
        let read = stream.read(&mut chunk).await?;
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(read)
    }
}
