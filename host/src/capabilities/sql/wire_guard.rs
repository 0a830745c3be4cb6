//! The wire guard of a PostgreSQL or MySQL source: a relay between the driver and the server
//! that reads the length of every server message before its body arrives, and stops the
//! connection when one message is larger than the source allows.
//!
//! The driver reads each server message (one result row is one message) whole into memory
//! before the host sees any of it, so a single `SELECT repeat('x', 300000000)` would put the
//! whole value into host memory whatever the byte cap says. The relay sees the length field
//! first: a message over the limit is never read; the driver gets an error message in its
//! place (PostgreSQL `ErrorResponse`, MySQL `ERR` packet, both SQLSTATE `54000` with a text
//! starting with [`TOO_LARGE_MARKER`]) and the connection is closed, which ends the statement
//! on the server. Memory per connection is the relay's buffer and the largest message allowed.
//!
//! The driver reaches the relay through a Unix socket in a private (0700) directory that
//! lives as long as the source; the relay connects to the server's own address. The drivers
//! of this build speak no TLS, so every byte the relay sees is plain protocol.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// Start of the error text the relay sends in place of an oversized message.
pub const TOO_LARGE_MARKER: &str = "databot: the server sent a message of";

/// SQLSTATE of that error (PostgreSQL's `program_limit_exceeded`).
pub const TOO_LARGE_SQLSTATE: &str = "54000";

/// Bytes read from the server per read (the relay's whole buffer per connection).
const RELAY_BUFFER: usize = 64 * 1024;

/// Which protocol's framing the relay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Type byte, then a big-endian `u32` length that counts itself.
    Postgres,
    /// A little-endian 24-bit payload length and a sequence byte; payloads of exactly
    /// 2^24-1 bytes continue in the next packet.
    Mysql,
}

/// Where the server listens.
#[derive(Debug, Clone)]
pub enum Upstream {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Tcp { host, port } => write!(f, "{host}:{port}"),
            Upstream::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What one relay enforces.
#[derive(Debug, Clone)]
struct Settings {
    protocol: Protocol,
    upstream: Upstream,
    /// Largest server message passed on, in bytes (payload, without the frame header).
    max_message: usize,
    /// The source, for the error text.
    source_name: String,
}

/// A running relay: the socket the driver connects to, removed with the relay.
pub struct WireGuard {
    directory: tempfile::TempDir,
    socket: PathBuf,
    accept_task: tokio::task::JoinHandle<()>,
}

impl WireGuard {
    /// Listen on a new private socket and relay each connection to `upstream`. Call from
    /// within the async runtime. `socket_name` is the file name the driver expects
    /// (`.s.PGSQL.<port>` for PostgreSQL, which takes the directory).
    pub fn start(
        protocol: Protocol,
        upstream: Upstream,
        max_message: usize,
        source_name: &str,
        socket_name: &str,
    ) -> io::Result<Self> {
        Self::start_checked(
            protocol,
            upstream,
            max_message,
            source_name,
            socket_name,
            SOCKET_CHECK,
        )
    }

    /// `start`, checking for a removed socket every `socket_check`.
    fn start_checked(
        protocol: Protocol,
        upstream: Upstream,
        max_message: usize,
        source_name: &str,
        socket_name: &str,
        socket_check: std::time::Duration,
    ) -> io::Result<Self> {
        let directory = tempfile::Builder::new().prefix("databot-sql-").tempdir()?;
        // TempDir is created 0700: only this user reaches the socket.
        let socket = directory.path().join(socket_name);
        let listener = UnixListener::bind(&socket)?;
        let settings = Arc::new(Settings {
            protocol,
            upstream,
            max_message,
            source_name: source_name.to_owned(),
        });
        let accept_task = tokio::spawn(accept_loop(
            listener,
            socket.clone(),
            settings,
            socket_check,
        ));
        Ok(Self {
            directory,
            socket,
            accept_task,
        })
    }

    /// The directory holding the socket (what PostgreSQL's driver takes).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// The socket file (what MySQL's driver takes).
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for WireGuard {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// How often the relay checks that its socket file is still there.
const SOCKET_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

async fn accept_loop(
    mut listener: UnixListener,
    socket: PathBuf,
    settings: Arc<Settings>,
    socket_check: std::time::Duration,
) {
    let mut check = tokio::time::interval(socket_check);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let settings = settings.clone();
                    tokio::spawn(async move {
                        if let Err(error) = relay(client, &settings).await {
                            tracing::debug!(source = %settings.source_name, %error, "SQL relay connection ended");
                        }
                    });
                }
                Err(error) => {
                    // Out of descriptors or similar: the driver's connect fails and is retried.
                    tracing::warn!(source = %settings.source_name, %error, "SQL relay cannot accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = check.tick() => {
                // A temporary-file cleaner may remove the socket of a long-running host:
                // listen again at the same path (its folder made again, private).
                if !socket.exists() {
                    match rebind(&socket) {
                        Ok(fresh) => {
                            tracing::warn!(source = %settings.source_name, "the SQL relay's socket was removed; listening again");
                            listener = fresh;
                        }
                        Err(error) => tracing::error!(source = %settings.source_name, %error, "the SQL relay cannot listen again"),
                    }
                }
            }
        }
    }
}

fn rebind(socket: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(directory) = socket.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)?;
    }
    UnixListener::bind(socket)
}

/// Relay one driver connection until either side closes or the guard stops it.
async fn relay(mut client: UnixStream, settings: &Settings) -> io::Result<()> {
    let upstream = match &settings.upstream {
        Upstream::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
            .await
            .and_then(crate::net::LowLatency::new)
            .map(|stream| Box::new(stream) as Box<dyn Stream>),
        Upstream::Unix(path) => UnixStream::connect(path)
            .await
            .map(|stream| Box::new(stream) as Box<dyn Stream>),
    };
    let upstream = match upstream {
        Ok(stream) => stream,
        Err(error) => {
            // The driver gets the reason as the server's first word instead of a bare EOF.
            let text = format!(
                "databot: the database at {} cannot be reached: {error}",
                settings.upstream
            );
            let message = match settings.protocol {
                Protocol::Postgres => postgres_error("08006", &text),
                Protocol::Mysql => mysql_error(0, 2003, b"HY000", &text),
            };
            let _ = client.write_all(&message).await;
            return Err(error);
        }
    };
    let (server_read, mut server_write) = tokio::io::split(upstream);
    let (client_read, mut client_write) = client.into_split();
    let to_server = async {
        let mut client_read = client_read;
        let result = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
        result.map(drop)
    };
    let to_client = async {
        let result = pump(server_read, &mut client_write, settings).await;
        let _ = client_write.shutdown().await;
        result
    };
    // Either direction ending ends the connection (a tripped guard must not leave the
    // statement running on a half-open socket).
    tokio::select! {
        result = to_server => result,
        result = to_client => result,
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Framing state of the server-to-driver direction.
struct Framer {
    protocol: Protocol,
    max_message: usize,
    /// Bytes of the current message body still to pass.
    body_left: usize,
    header: [u8; 5],
    header_filled: usize,
    /// MySQL: payload bytes of the logical message so far, while packets continue it.
    continued: usize,
}

/// What a complete frame header says.
enum Verdict {
    Pass {
        body: usize,
    },
    TooLarge {
        size: usize,
        sequence: u8,
        mid_message: bool,
    },
}

impl Framer {
    fn new(protocol: Protocol, max_message: usize) -> Self {
        Self {
            protocol,
            max_message,
            body_left: 0,
            header: [0; 5],
            header_filled: 0,
            continued: 0,
        }
    }

    fn header_len(&self) -> usize {
        match self.protocol {
            Protocol::Postgres => 5,
            Protocol::Mysql => 4,
        }
    }

    fn judge(&mut self, header: &[u8]) -> Verdict {
        match self.protocol {
            Protocol::Postgres => {
                let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                // The length counts its own four bytes; anything smaller is not PostgreSQL.
                let body = (length as usize).saturating_sub(4);
                if body > self.max_message {
                    Verdict::TooLarge {
                        size: body,
                        sequence: 0,
                        mid_message: false,
                    }
                } else {
                    Verdict::Pass { body }
                }
            }
            Protocol::Mysql => {
                let body = usize::from(header[0])
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]) << 16;
                let total = self.continued + body;
                if total > self.max_message {
                    return Verdict::TooLarge {
                        size: total,
                        sequence: header[3],
                        mid_message: self.continued > 0,
                    };
                }
                self.continued = if body == 0xFF_FFFF { total } else { 0 };
                Verdict::Pass { body }
            }
        }
    }
}

/// Copy server bytes to the driver, judging every frame header before any of its body.
/// Header bytes split across reads are held back until the header is complete, so a
/// refused message never reaches the driver in part.
async fn pump<R, W>(mut server: R, client: &mut W, settings: &Settings) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut framer = Framer::new(settings.protocol, settings.max_message);
    let header_len = framer.header_len();
    let mut buffer = vec![0u8; RELAY_BUFFER];
    loop {
        let read = server.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        let chunk = &buffer[..read];
        let mut position = 0;
        // Start of the bytes of this chunk not yet written to the driver.
        let mut unsent = 0;
        while position < read {
            if framer.body_left > 0 {
                let take = framer.body_left.min(read - position);
                framer.body_left -= take;
                position += take;
                continue;
            }
            let verdict = if framer.header_filled == 0 && read - position >= header_len {
                let verdict = framer.judge(&chunk[position..position + header_len]);
                if let Verdict::Pass { .. } = verdict {
                    position += header_len;
                }
                verdict
            } else {
                if framer.header_filled == 0 {
                    // A header split across reads: send what precedes it, hold it back.
                    client.write_all(&chunk[unsent..position]).await?;
                }
                let take = (header_len - framer.header_filled).min(read - position);
                framer.header[framer.header_filled..framer.header_filled + take]
                    .copy_from_slice(&chunk[position..position + take]);
                framer.header_filled += take;
                position += take;
                unsent = position;
                if framer.header_filled < header_len {
                    continue;
                }
                framer.header_filled = 0;
                let header = framer.header;
                let verdict = framer.judge(&header[..header_len]);
                if let Verdict::Pass { .. } = verdict {
                    client.write_all(&header[..header_len]).await?;
                }
                verdict
            };
            match verdict {
                Verdict::Pass { body } => framer.body_left = body,
                Verdict::TooLarge {
                    size,
                    sequence,
                    mid_message,
                } => {
                    if framer.header_filled == 0 && unsent < position {
                        client.write_all(&chunk[unsent..position]).await?;
                    }
                    let text = format!(
                        "{TOO_LARGE_MARKER} {size} bytes, more than source `{}` accepts in one message ({} bytes, its max_bytes)",
                        settings.source_name, settings.max_message
                    );
                    tracing::warn!(source = %settings.source_name, size, limit = settings.max_message, "SQL relay refused an oversized server message");
                    // In the middle of a continued MySQL message an error packet would be
                    // read as payload: the driver gets the closed connection only.
                    if !mid_message {
                        let message = match settings.protocol {
                            Protocol::Postgres => postgres_error(TOO_LARGE_SQLSTATE, &text),
                            Protocol::Mysql => mysql_error(sequence, 1105, b"54000", &text),
                        };
                        client.write_all(&message).await?;
                    }
                    client.flush().await?;
                    return Err(io::Error::other(text));
                }
            }
        }
        if unsent < read {
            client.write_all(&chunk[unsent..read]).await?;
        }
    }
}

/// A PostgreSQL `ErrorResponse` with severity ERROR.
fn postgres_error(sqlstate: &str, text: &str) -> Vec<u8> {
    let mut fields = Vec::with_capacity(text.len() + 32);
    for (code, value) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', sqlstate),
        (b'M', text),
    ] {
        fields.push(code);
        fields.extend(value.bytes().filter(|&b| b != 0));
        fields.push(0);
    }
    fields.push(0);
    let mut message = Vec::with_capacity(fields.len() + 5);
    message.push(b'E');
    message.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    message.extend_from_slice(&fields);
    message
}

/// A MySQL `ERR` packet (protocol 4.1 layout) with the given sequence number.
fn mysql_error(sequence: u8, code: u16, sqlstate: &[u8; 5], text: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(text.len() + 9);
    payload.push(0xFF);
    payload.extend_from_slice(&code.to_le_bytes());
    payload.push(b'#');
    payload.extend_from_slice(sqlstate);
    payload.extend_from_slice(text.as_bytes());
    let length = payload.len().min(0xFF_FFFE) as u32;
    payload.truncate(length as usize);
    let mut packet = Vec::with_capacity(payload.len() + 4);
    packet.extend_from_slice(&length.to_le_bytes()[..3]);
    packet.push(sequence);
    packet.extend_from_slice(&payload);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(protocol: Protocol, max_message: usize) -> Settings {
        Settings {
            protocol,
            upstream: Upstream::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
            max_message,
            source_name: "warehouse".into(),
        }
    }

    fn pg_message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn mysql_packet(sequence: u8, body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32).to_le_bytes()[..3].to_vec();
        m.push(sequence);
        m.extend_from_slice(body);
        m
    }

    /// Feed `input` to the pump in reads of `step` bytes; what the driver got, and the result.
    async fn run(protocol: Protocol, limit: usize, input: &[u8], step: usize) -> (Vec<u8>, bool) {
        let (mut server, relay_side) = tokio::io::duplex(step);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(step) {
                if server.write_all(piece).await.is_err() {
                    return;
                }
            }
        });
        let mut out = Vec::new();
        let ok = pump(relay_side, &mut out, &settings(protocol, limit))
            .await
            .is_ok();
        let _ = writer.await;
        (out, ok)
    }

    #[tokio::test]
    async fn messages_within_the_limit_pass_unchanged_whatever_the_read_sizes() {
        let mut stream = Vec::new();
        for i in 0..50u8 {
            stream.extend(pg_message(b'D', &vec![i; usize::from(i) * 7]));
        }
        for step in [1, 2, 3, 5, 7, 64, 4096] {
            let (out, ok) = run(Protocol::Postgres, 400, &stream, step).await;
            assert!(ok, "step {step}");
            assert_eq!(out, stream, "step {step}");
        }
        let mut stream = Vec::new();
        for i in 0..50u8 {
            stream.extend(mysql_packet(i, &vec![i; usize::from(i) * 7]));
        }
        for step in [1, 3, 4, 9, 4096] {
            let (out, ok) = run(Protocol::Mysql, 400, &stream, step).await;
            assert!(ok);
            assert_eq!(out, stream);
        }
    }

    #[tokio::test]
    async fn an_oversized_postgres_message_is_replaced_by_an_error_before_its_body() {
        let mut stream = pg_message(b'T', b"columns");
        let head_len = stream.len();
        // Only the header of the huge message exists: the relay must not wait for its body.
        stream.push(b'D');
        stream.extend_from_slice(&300_000_000u32.to_be_bytes());
        for step in [1, 2, 3, 6, 4096] {
            let (out, ok) = run(Protocol::Postgres, 1000, &stream, step).await;
            assert!(!ok);
            assert_eq!(&out[..head_len], &stream[..head_len], "step {step}");
            assert_eq!(out[head_len], b'E', "step {step}");
            let text = String::from_utf8_lossy(&out[head_len..]);
            assert!(
                text.contains("54000") && text.contains(TOO_LARGE_MARKER),
                "{text}"
            );
            assert!(
                text.contains("warehouse") && text.contains("max_bytes"),
                "{text}"
            );
            let declared = u32::from_be_bytes(out[head_len + 1..head_len + 5].try_into().unwrap());
            assert_eq!(declared as usize + 1, out.len() - head_len);
        }
    }

    #[tokio::test]
    async fn an_oversized_mysql_packet_becomes_an_err_packet_with_its_sequence() {
        let mut stream = mysql_packet(3, b"row");
        let head_len = stream.len();
        stream.extend_from_slice(&[0xFF, 0xFF, 0x0F, 9]);
        let (out, ok) = run(Protocol::Mysql, 1000, &stream, 2).await;
        assert!(!ok);
        assert_eq!(&out[..head_len], &stream[..head_len]);
        let err = &out[head_len..];
        assert_eq!(err[3], 9, "sequence of the refused packet");
        assert_eq!(err[4], 0xFF);
        assert_eq!(&err[7..13], b"#54000");
        let length = usize::from(err[0]) | usize::from(err[1]) << 8 | usize::from(err[2]) << 16;
        assert_eq!(length, err.len() - 4);
    }

    #[tokio::test]
    async fn continued_mysql_packets_count_as_one_message() {
        let mut framer = Framer::new(Protocol::Mysql, 20_000_000);
        assert!(matches!(
            framer.judge(&[0xFF, 0xFF, 0xFF, 0]),
            Verdict::Pass { body: 0xFF_FFFF }
        ));
        // 16 MiB - 1 already passed; 4 MiB more crosses 20 MB in the middle of the message.
        assert!(matches!(
            framer.judge(&[0, 0, 0x40, 1]),
            Verdict::TooLarge {
                mid_message: true,
                ..
            }
        ));
        let mut framer = Framer::new(Protocol::Mysql, 20_000_000);
        assert!(matches!(
            framer.judge(&[0xFF, 0xFF, 0xFF, 0]),
            Verdict::Pass { .. }
        ));
        assert!(matches!(
            framer.judge(&[1, 0, 0, 1]),
            Verdict::Pass { body: 1 }
        ));
        // The message ended: the next one starts from zero.
        assert!(matches!(
            framer.judge(&[0xFF, 0xFF, 0xFF, 2]),
            Verdict::Pass { .. }
        ));
    }

    #[tokio::test]
    async fn a_removed_socket_is_listened_on_again() {
        // The server says ReadyForQuery to whoever connects.
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = server.accept().await {
                let _ = stream.write_all(&pg_message(b'Z', b"I")).await;
            }
        });
        let guard = WireGuard::start_checked(
            Protocol::Postgres,
            Upstream::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            1000,
            "warehouse",
            ".s.PGSQL.5432",
            std::time::Duration::from_millis(20),
        )
        .unwrap();
        std::fs::remove_dir_all(guard.directory()).unwrap();
        for _ in 0..250 {
            if guard.socket().exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut client = UnixStream::connect(guard.socket()).await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got.to_vec(), pg_message(b'Z', b"I"));
    }
}
