//! Credentials the host injected into a request are masked out of its response before the
//! guest reads it: a server that echoes the request (a redirect's `Location` to the same
//! path, an error page quoting the URL or the headers) would otherwise hand the guest the
//! token it must never hold. Guarantees:
//! - every length is kept (each byte of a match becomes `*`), so `content-length` stays true;
//! - matches are found across body chunk boundaries, ignoring ASCII case, and in the forms an
//!   echo takes: the value, its pieces (split at space, `/` and `:`), their percent-encoded
//!   and JSON-escaped (`\/`) forms;
//! - what is held back at a chunk's end does not depend on the content (always the longest
//!   pattern less one byte), so where frames end tells the guest nothing about the secret;
//! - the request asks for an identity encoding and no range, and a response that is
//!   compressed or partial anyway is refused (`Secrets::check_plain`): masking cannot see
//!   into compressed bytes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// Shortest piece of an injected value masked on its own (shorter pieces, like `Bearer`, are
/// not secrets and would mask ordinary text).
const MIN_PIECE: usize = 8;

/// The byte strings to mask in one response (lower case; matching ignores ASCII case).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    patterns: Vec<Arc<[u8]>>,
    longest: usize,
}

/// `text` percent-encoded the way a URL's path or query carries it.
fn percent_encoded(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        }
    }
    out
}

/// `text` with `/` written `\/`, as JSON encoders may.
fn json_escaped(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    for &b in text {
        if b == b'/' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

impl Secrets {
    /// Mask `value`, its pieces of at least 8 bytes, and their encoded forms.
    pub fn add(&mut self, value: &[u8]) {
        let pieces = value.split(|&b| matches!(b, b' ' | b'/' | b':'));
        for piece in std::iter::once(value).chain(pieces) {
            if piece.len() < MIN_PIECE {
                continue;
            }
            for form in [piece.to_vec(), percent_encoded(piece), json_escaped(piece)] {
                let form = form.to_ascii_lowercase();
                if !self.patterns.iter().any(|p| **p == *form) {
                    self.longest = self.longest.max(form.len());
                    self.patterns.push(Arc::from(form));
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Mask every whole occurrence in `bytes`, in place, ignoring ASCII case.
    fn mask(&self, bytes: &mut [u8]) {
        self.mask_starting_before(bytes, bytes.len());
    }

    /// Mask the occurrences that start before `end` (whole, even where they run past it).
    /// Later ones are left as they are: more bytes may make them part of a longer match,
    /// which a masked piece would hide.
    fn mask_starting_before(&self, bytes: &mut [u8], end: usize) {
        let lower = bytes.to_ascii_lowercase();
        for pattern in &self.patterns {
            for at in memchr::memmem::find_iter(&lower, &pattern[..]) {
                if at >= end {
                    break;
                }
                bytes[at..at + pattern.len()].fill(b'*');
            }
        }
    }

    /// Make the request safe to mask the answer of: an identity encoding (a compressed echo
    /// would pass unseen) and no range (a slice could cut an echo where no pattern matches).
    pub fn prepare(&self, headers: &mut http::HeaderMap) {
        if self.is_empty() {
            return;
        }
        headers.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
        headers.remove(http::header::RANGE);
        headers.remove(http::header::IF_RANGE);
    }

    /// Refuse a response the masking cannot cover: compressed or partial.
    pub fn check_plain(&self, response: &http::Response<WasiBody>) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        let encoded = response
            .headers()
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return Err("the server compressed its answer although the host asked for none; a response to a request that carries a host credential must be uncompressed".into());
        }
        if response.status() == http::StatusCode::PARTIAL_CONTENT {
            return Err("the server answered with part of the content (206); a response to a request that carries a host credential must be whole".into());
        }
        Ok(())
    }

    /// `response` with the secrets masked in its header values and its body.
    pub fn redact(self, mut response: http::Response<WasiBody>) -> http::Response<WasiBody> {
        if self.is_empty() {
            return response;
        }
        for value in response.headers_mut().values_mut() {
            let mut bytes = value.as_bytes().to_vec();
            self.mask(&mut bytes);
            if bytes != value.as_bytes()
                && let Ok(masked) = http::HeaderValue::from_bytes(&bytes)
            {
                *value = masked;
            }
        }
        response.map(|body| {
            RedactingBody {
                inner: body,
                secrets: self,
                held: BytesMut::new(),
                trailers: None,
                ended: false,
            }
            .boxed_unsync()
        })
    }
}

/// A body with the secrets masked. It always holds back the last `longest - 1` bytes until
/// more arrive or the body ends.
struct RedactingBody {
    inner: WasiBody,
    secrets: Secrets,
    held: BytesMut,
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl RedactingBody {
    /// The held bytes that can no longer be part of an occurrence, masked. An occurrence
    /// that starts in them ends within what is held (the tail kept is one byte shorter than
    /// the longest pattern), so it is masked whole.
    fn release(&mut self, all: bool) -> Option<Bytes> {
        let keep = if all {
            0
        } else {
            self.held.len().min(self.secrets.longest.saturating_sub(1))
        };
        let ready = self.held.len() - keep;
        self.secrets.mask_starting_before(&mut self.held, ready);
        (ready > 0).then(|| self.held.split_to(ready).freeze())
    }
}

impl Body for RedactingBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        loop {
            if self.ended {
                if let Some(data) = self.release(true) {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                return Poll::Ready(self.trailers.take().map(|mut trailers| {
                    for value in trailers.values_mut() {
                        let mut bytes = value.as_bytes().to_vec();
                        self.secrets.mask(&mut bytes);
                        if let Ok(masked) = http::HeaderValue::from_bytes(&bytes) {
                            *value = masked;
                        }
                    }
                    Ok(Frame::trailers(trailers))
                }));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.held.extend_from_slice(&data);
                        if let Some(ready) = self.release(false) {
                            return Poll::Ready(Some(Ok(Frame::data(ready))));
                        }
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        self.ended = true;
                    }
                },
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_empty() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let mut secrets = Secrets::default();
        for value in values {
            secrets.add(value.as_bytes());
        }
        secrets
    }

    async fn redacted_body(secrets: Secrets, chunks: &[&str]) -> (String, String) {
        let frames: Vec<Result<Frame<Bytes>, HttpError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c.as_bytes()))))
            .collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
        let response = http::Response::builder()
            .header(
                "location",
                "https://api.example/bot123456:SECRET-token/getMe",
            )
            .body(body)
            .unwrap();
        let response = secrets.redact(response);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (location, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn injected_values_are_masked_in_headers_and_across_chunks() {
        let secrets = secrets(&["/bot123456:SECRET-token", "Bearer xoxb-abcdefgh"]);
        // (":" splits pieces too: "SECRET-token" alone is masked wherever it appears.)
        let (location, body) = redacted_body(
            secrets,
            &[
                "no route for /bot1234",
                "56:SECRET-to",
                "ken/sendMessage; you sent xoxb-abc",
                "defgh",
            ],
        )
        .await;
        let stars = |n: usize| "*".repeat(n);
        assert_eq!(location, format!("https://api.example{}/getMe", stars(23)));
        assert_eq!(
            body,
            format!(
                "no route for {}/sendMessage; you sent {}",
                stars(23),
                stars(13)
            )
        );
    }

    #[tokio::test]
    async fn a_body_without_secrets_is_unchanged_and_a_partial_match_at_the_end_is_kept() {
        let secrets = secrets(&["Bearer xoxb-abcdefgh"]);
        let (_, body) = redacted_body(secrets, &["plain text ending in xoxb-ab"]).await;
        assert_eq!(body, "plain text ending in xoxb-ab");
    }

    #[test]
    fn short_pieces_are_not_masked_on_their_own() {
        let secrets = secrets(&["Bearer abc"]);
        let mut text = b"Bearer token and abc".to_vec();
        secrets.mask(&mut text);
        assert_eq!(text, b"Bearer token and abc");
    }

    #[test]
    fn encoded_and_case_changed_echoes_are_masked_too() {
        let secrets = secrets(&["/bot123456:AAH-secret_Token"]);
        for echo in [
            "GET /BOT123456:AAH-SECRET_TOKEN/x",
            "next=%2Fbot123456%3AAAH-secret_Token%2Fx",
            "{\"path\":\"\\/bot123456:AAH-secret_Token\\/x\"}",
            "just the part after the colon: AAH-secret_Token",
        ] {
            let mut text = echo.as_bytes().to_vec();
            secrets.mask(&mut text);
            let text = String::from_utf8(text).unwrap();
            assert!(
                !text.to_ascii_lowercase().contains("aah-secret_token"),
                "{echo} -> {text}"
            );
        }
    }

    #[tokio::test]
    async fn what_is_held_back_does_not_depend_on_the_content() {
        // Two bodies of the same length, one ending in a prefix of the secret and one not:
        // the same bytes come out first.
        let frames = |text: &str| -> Vec<Result<Frame<Bytes>, HttpError>> {
            vec![Ok(Frame::data(Bytes::copy_from_slice(text.as_bytes())))]
        };
        let first_frame = |text: &'static str| async move {
            let body =
                http_body_util::StreamBody::new(futures::stream::iter(frames(text))).boxed_unsync();
            let response = secrets(&["Bearer xoxb-abcdefgh"]).redact(http::Response::new(body));
            let mut body = response.into_body();
            body.frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()
                .len()
        };
        assert_eq!(
            first_frame("0123456789012345678901234567xoxb-abc").await,
            first_frame("0123456789012345678901234567zzzzzzzz").await
        );
    }

    #[test]
    fn compressed_or_partial_answers_are_refused_and_the_request_asks_for_identity() {
        let secrets = secrets(&["Bearer xoxb-abcdefgh"]);
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::ACCEPT_ENCODING, "gzip, br".parse().unwrap());
        headers.insert(http::header::RANGE, "bytes=0-10".parse().unwrap());
        secrets.prepare(&mut headers);
        assert_eq!(headers[http::header::ACCEPT_ENCODING], "identity");
        assert!(headers.get(http::header::RANGE).is_none());
        let empty = || {
            http_body_util::Empty::new()
                .map_err(|e| match e {})
                .boxed_unsync()
        };
        let gzip = http::Response::builder()
            .header("content-encoding", "gzip")
            .body(empty())
            .unwrap();
        assert!(secrets.check_plain(&gzip).is_err());
        let partial = http::Response::builder().status(206).body(empty()).unwrap();
        assert!(secrets.check_plain(&partial).is_err());
        let plain = http::Response::builder().body(empty()).unwrap();
        assert!(secrets.check_plain(&plain).is_ok());
        // Nothing injected: nothing changes.
        assert!(Secrets::default().check_plain(&gzip).is_ok());
    }
}
