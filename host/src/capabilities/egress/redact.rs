//! Credentials the host injected into a request are masked out of its response before the
//! guest reads it: a server that echoes the request (a redirect's `Location` to the same
//! path, an error page quoting the URL or the headers, a message quoting a truncated token)
//! would otherwise hand the guest the token it must never hold. Guarantees:
//! - every run of 8 or more bytes of a credential is masked, ignoring ASCII case, in the
//!   forms an echo takes: as sent, percent-encoded, JSON-escaped (`\/`); a credential is cut
//!   into pieces at space, `/` and `:` first (so `Bearer` or `/bot` alone mask nothing), and
//!   pieces shorter than 8 bytes are not masked on their own;
//! - every length is kept (each masked byte becomes `*`), so `content-length` stays true;
//! - matches are found across body chunk boundaries by holding back the last 7 bytes of what
//!   has arrived, whatever they are: where frames end tells the guest nothing, and a streamed
//!   answer is late by at most 7 bytes;
//! - the request asks for no encoding and no range (`prepare`), and a response that is
//!   compressed, transfer-encoded other than chunked, or partial is refused (`check_plain`):
//!   masking cannot see into compressed bytes.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aho_corasick::AhoCorasick;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// Length of the runs matched: the shortest stretch of a credential that is masked.
const WINDOW: usize = 8;

/// The credentials of one request, to mask in its response.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The pieces (at least `WINDOW` bytes) of the values injected, in order.
    pieces: Vec<Vec<u8>>,
}

/// Matchers built lately, by the pieces they mask: a plugin's injected values rarely change
/// (a minted token every hour), so requests reuse the matcher instead of building it again.
/// Cleared whole when full.
static MASKERS: std::sync::LazyLock<parking_lot::Mutex<HashMap<Vec<Vec<u8>>, Masker>>> =
    std::sync::LazyLock::new(Default::default);
const MAX_MASKERS: usize = 256;

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
    /// Mask `value`: the runs of its pieces, in each form.
    pub fn add(&mut self, value: &[u8]) {
        for piece in value.split(|&b| matches!(b, b' ' | b'/' | b':')) {
            if piece.len() >= WINDOW && !self.pieces.iter().any(|p| p == piece) {
                self.pieces.push(piece.to_vec());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The matcher for these pieces (from `MASKERS` when built before); `None` when there is
    /// nothing to mask.
    fn masker(&self) -> Option<Masker> {
        if self.is_empty() {
            return None;
        }
        if let Some(masker) = MASKERS.lock().get(&self.pieces) {
            return Some(masker.clone());
        }
        let mut windows = BTreeSet::new();
        for piece in &self.pieces {
            for form in [piece.clone(), percent_encoded(piece), json_escaped(piece)] {
                for window in form.windows(WINDOW) {
                    windows.insert(window.to_ascii_lowercase());
                }
            }
        }
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&windows)
            .map_err(|error| tracing::error!("building the credential matcher: {error}"))
            .ok()?;
        let masker = Masker(Arc::new(matcher));
        let mut maskers = MASKERS.lock();
        if maskers.len() >= MAX_MASKERS {
            maskers.clear();
        }
        maskers.insert(self.pieces.clone(), masker.clone());
        Some(masker)
    }

    /// Make the request safe to mask the answer of: no content or transfer encoding (a
    /// compressed echo would pass unseen) and no range.
    pub fn prepare(&self, headers: &mut http::HeaderMap) {
        if self.is_empty() {
            return;
        }
        headers.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
        for header in [
            http::header::TE,
            http::header::RANGE,
            http::header::IF_RANGE,
        ] {
            headers.remove(header);
        }
    }

    /// Refuse a response the masking cannot cover: compressed or partial.
    pub fn check_plain(&self, response: &http::Response<WasiBody>) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        let headers = response.headers();
        let encoded = headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let transfer_encoded = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if encoded || transfer_encoded {
            return Err("the server encoded its answer although the host asked for none; a response to a request that carries a host credential must be uncompressed".into());
        }
        if response.status() == http::StatusCode::PARTIAL_CONTENT {
            return Err("the server answered with part of the content (206); a response to a request that carries a host credential must be whole".into());
        }
        Ok(())
    }

    /// `response` with the secrets masked in its header values and its body.
    pub fn redact(self, mut response: http::Response<WasiBody>) -> http::Response<WasiBody> {
        let Some(masker) = self.masker() else {
            return response;
        };
        for value in response.headers_mut().values_mut() {
            let mut bytes = value.as_bytes().to_vec();
            masker.mask(&mut bytes);
            if bytes != value.as_bytes()
                && let Ok(masked) = http::HeaderValue::from_bytes(&bytes)
            {
                *value = masked;
            }
        }
        response.map(|body| {
            RedactingBody {
                inner: body,
                masker,
                held: BytesMut::new(),
                marks: Vec::new(),
                trailers: None,
                ended: false,
            }
            .boxed_unsync()
        })
    }
}

/// Masks the runs of a request's credentials.
#[derive(Clone)]
struct Masker(Arc<AhoCorasick>);

impl Masker {
    /// Mask every run in `bytes`, in place.
    fn mask(&self, bytes: &mut [u8]) {
        let mut marks = vec![false; bytes.len()];
        self.mark_starting_before(bytes, &mut marks, bytes.len());
        apply(bytes, &marks);
    }

    /// Mark the bytes of the runs in `bytes` that start before `end` (whole, also where they
    /// run past it). The bytes themselves stay as they are, so a run that starts later is
    /// still found when more bytes come.
    fn mark_starting_before(&self, bytes: &[u8], marks: &mut [bool], end: usize) {
        for found in self.0.find_overlapping_iter(bytes) {
            if found.start() < end {
                marks[found.start()..found.end()].fill(true);
            }
        }
    }
}

/// `bytes` with every marked byte replaced by `*`.
fn apply(bytes: &mut [u8], marks: &[bool]) {
    for (byte, marked) in bytes.iter_mut().zip(marks) {
        if *marked {
            *byte = b'*';
        }
    }
}

/// A body with the secrets masked. It always holds back the last `WINDOW - 1` bytes until
/// more arrive or the body ends.
struct RedactingBody {
    inner: WasiBody,
    masker: Masker,
    /// What arrived and is not released yet, as it arrived, and which of it is masked.
    held: BytesMut,
    marks: Vec<bool>,
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl RedactingBody {
    /// The held bytes that can no longer be part of a run, masked. A run that starts in them
    /// ends within what is held (the tail kept is one byte shorter than a run), so it is
    /// masked whole.
    fn release(&mut self, all: bool) -> Option<Bytes> {
        let keep = if all {
            0
        } else {
            self.held.len().min(WINDOW - 1)
        };
        let ready = self.held.len() - keep;
        self.marks.resize(self.held.len(), false);
        self.masker
            .mark_starting_before(&self.held, &mut self.marks, ready);
        if ready == 0 {
            return None;
        }
        let mut out = self.held.split_to(ready);
        apply(&mut out, &self.marks[..ready]);
        self.marks.drain(..ready);
        Some(out.freeze())
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
                        self.masker.mask(&mut bytes);
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

    fn masker(secrets: &Secrets) -> Masker {
        secrets.masker().expect("something to mask")
    }

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
        // Pieces: `bot123456`, `SECRET-token`, `xoxb-abcdefgh` (`Bearer`, `/`, `:` are not
        // secret and stay).
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
        assert_eq!(
            location,
            format!("https://api.example/{}:{}/getMe", stars(9), stars(12))
        );
        assert_eq!(
            body,
            format!(
                "no route for /{}:{}/sendMessage; you sent {}",
                stars(9),
                stars(12),
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
        assert!(secrets(&["Bearer abc"]).is_empty());
        assert!(secrets(&["/bot12:abc"]).is_empty());
    }

    #[tokio::test]
    async fn any_chunking_masks_exactly_what_masking_the_whole_body_does() {
        let body = "a /bot123456:SECRET-token b xoxb-abcdefgh c SECRET-tok d";
        let values = ["/bot123456:SECRET-token", "Bearer xoxb-abcdefgh"];
        let mut whole = body.as_bytes().to_vec();
        masker(&secrets(&values)).mask(&mut whole);
        let whole = String::from_utf8(whole).unwrap();
        assert!(
            !whole.contains("SECRET") && !whole.contains("xoxb"),
            "{whole}"
        );
        for first in 0..body.len() {
            for second in first..body.len() {
                let chunks = [&body[..first], &body[first..second], &body[second..]];
                let (_, masked) = redacted_body(secrets(&values), &chunks).await;
                assert_eq!(masked, whole, "chunks at {first} and {second}");
            }
        }
    }

    #[test]
    fn a_truncated_echo_is_masked_from_eight_bytes_on() {
        let secrets = secrets(&["Bearer xoxb-1234567890-abcdef"]);
        let mut text = "invalid token xoxb-1234… (Bearer)".as_bytes().to_vec();
        masker(&secrets).mask(&mut text);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "invalid token *********… (Bearer)"
        );
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
            masker(&secrets).mask(&mut text);
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
        headers.insert(http::header::TE, "gzip".parse().unwrap());
        secrets.prepare(&mut headers);
        assert_eq!(headers[http::header::ACCEPT_ENCODING], "identity");
        assert!(headers.get(http::header::RANGE).is_none());
        assert!(headers.get(http::header::TE).is_none());
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
        let transfer_gzip = http::Response::builder()
            .header("transfer-encoding", "gzip, chunked")
            .body(empty())
            .unwrap();
        assert!(secrets.check_plain(&transfer_gzip).is_err());
        let chunked = http::Response::builder()
            .header("transfer-encoding", "chunked")
            .body(empty())
            .unwrap();
        assert!(secrets.check_plain(&chunked).is_ok());
        let partial = http::Response::builder().status(206).body(empty()).unwrap();
        assert!(secrets.check_plain(&partial).is_err());
        let plain = http::Response::builder().body(empty()).unwrap();
        assert!(secrets.check_plain(&plain).is_ok());
        // Nothing injected: nothing changes.
        assert!(Secrets::default().check_plain(&gzip).is_ok());
    }
}
