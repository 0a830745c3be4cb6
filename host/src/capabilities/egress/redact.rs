//! Credentials the host injected into a request are masked out of its response before the
//! guest reads it: a server that echoes the request (a redirect's `Location` to the same
//! path, an error page quoting the URL or the headers) would otherwise hand the guest the
//! token it must never hold. Masking keeps every length (each byte of a match becomes `*`),
//! so `content-length` stays true, and it works across body chunk boundaries.

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

/// The byte strings to mask in one response.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    patterns: Vec<Arc<[u8]>>,
}

impl Secrets {
    /// Mask `value` and its space- or slash-separated pieces of at least 8 bytes: a server
    /// may echo `Bearer T` or just `T`, a path prefix `/bot<token>` or just `bot<token>`.
    pub fn add(&mut self, value: &[u8]) {
        let pieces = value.split(|&b| b == b' ' || b == b'/');
        for pattern in std::iter::once(value).chain(pieces) {
            if pattern.len() >= MIN_PIECE && !self.patterns.iter().any(|p| **p == *pattern) {
                self.patterns.push(Arc::from(pattern));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Mask every whole occurrence in `bytes`, in place.
    fn mask(&self, bytes: &mut [u8]) {
        for pattern in &self.patterns {
            let mut start = 0;
            while let Some(found) = memchr::memmem::find(&bytes[start..], pattern) {
                let at = start + found;
                bytes[at..at + pattern.len()].fill(b'*');
                start = at + pattern.len();
            }
        }
    }

    /// How many trailing bytes of `bytes` could be the start of an occurrence that the next
    /// chunk completes (held back until it comes).
    fn partial_tail(&self, bytes: &[u8]) -> usize {
        self.patterns
            .iter()
            .filter_map(|pattern| {
                (1..pattern.len().min(bytes.len() + 1))
                    .rev()
                    .find(|&k| bytes.ends_with(&pattern[..k]))
            })
            .max()
            .unwrap_or(0)
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

/// A body with the secrets masked; it holds back only a possible partial match.
struct RedactingBody {
    inner: WasiBody,
    secrets: Secrets,
    held: BytesMut,
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl RedactingBody {
    /// The held bytes that can no longer be part of an occurrence, masked.
    fn release(&mut self, all: bool) -> Option<Bytes> {
        self.secrets.mask(&mut self.held);
        let keep = if all {
            0
        } else {
            self.secrets.partial_tail(&self.held)
        };
        let ready = self.held.len() - keep;
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
        assert_eq!(secrets.patterns.len(), 1, "only the whole value");
        let mut text = b"Bearer token and abc".to_vec();
        secrets.mask(&mut text);
        assert_eq!(text, b"Bearer token and abc");
    }
}
