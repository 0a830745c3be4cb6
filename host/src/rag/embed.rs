//! Embeddings through a provider component's `embed` export (the `offline` provider's hashed
//! embedder by default, an OpenAI-compatible API with `openai`): batching, response checks and
//! normalisation to unit length.

use tracing::Instrument;

use crate::contract::chat::{EmbedRequest, EmbedResponse};

use crate::runtime::{CallError, Runtime};
use crate::vectors::normalise;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding with provider `{provider}` failed: {error}")]
    Call { provider: String, error: CallError },
    #[error("provider `{provider}` returned unusable embeddings: {message}")]
    BadResponse { provider: String, message: String },
}

/// The span of one embeddings call, after the GenAI semantic conventions
/// (`embeddings {model}`).
fn embeddings_span(provider: &str, model: Option<&str>, inputs: usize) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "embeddings",
        otel.name = Empty,
        otel.kind = "client",
        gen_ai.operation.name = "embeddings",
        gen_ai.provider.name = provider,
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        databot.embeddings.inputs = crate::telemetry::spans::int(inputs),
        otel.status_code = Empty,
        error.type = Empty,
    );
    if !span.is_disabled() {
        span.record(
            "otel.name",
            format!("embeddings {}", model.unwrap_or(provider)),
        );
    }
    span
}

/// Embedded texts: one unit vector per input, and the model that produced them.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
}

/// Calls one provider plugin for embeddings.
#[derive(Clone)]
pub struct Embedder {
    runtime: Runtime,
    provider: String,
    model: Option<String>,
    batch: usize,
}

impl Embedder {
    pub fn new(runtime: Runtime, provider: String, model: Option<String>, batch: usize) -> Self {
        Self {
            runtime,
            provider,
            model,
            batch: batch.max(1),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Embed `texts` (in batches), each result normalised to unit length.
    pub async fn embed(&self, texts: &[String]) -> Result<Embeddings, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        let mut model = self.model.clone().unwrap_or_default();
        for batch in texts.chunks(self.batch) {
            let request = EmbedRequest {
                model: self.model.as_deref().map(Into::into),
                input: batch.into(),
            };
            let request = serde_json::to_string(&request).map_err(|e| EmbedError::BadResponse {
                provider: self.provider.clone(),
                message: format!("the request cannot be encoded: {e}"),
            })?;
            let span = embeddings_span(&self.provider, self.model.as_deref(), batch.len());
            let text = self
                .runtime
                .provider_embed(&self.provider, &request)
                .instrument(span.clone())
                .await
                .map_err(|error| {
                    crate::telemetry::spans::record_error(&span, error.kind.as_str());
                    EmbedError::Call {
                        provider: self.provider.clone(),
                        error,
                    }
                })?;
            let response =
                parse_response(&text, batch.len()).map_err(|message| EmbedError::BadResponse {
                    provider: self.provider.clone(),
                    message,
                })?;
            if let Some(tokens) = response.usage.as_ref().and_then(|u| u.prompt_tokens) {
                span.record(
                    "gen_ai.usage.input_tokens",
                    crate::telemetry::spans::int(tokens),
                );
            }
            if let Some(answered) = response.model.as_deref() {
                span.record("gen_ai.response.model", answered);
            }
            if let Some(answered) = response.model.filter(|m| !m.is_empty()) {
                model = answered;
            }
            vectors.extend(response.embeddings);
        }
        if model.is_empty() {
            model = self.provider.clone();
        }
        Ok(Embeddings { model, vectors })
    }

    /// Embed one text.
    pub async fn embed_one(&self, text: &str) -> Result<(Vec<f32>, String), EmbedError> {
        let mut out = self.embed(&[text.to_owned()]).await?;
        let vector = out.vectors.pop().ok_or_else(|| EmbedError::BadResponse {
            provider: self.provider.clone(),
            message: "no vector".into(),
        })?;
        Ok((vector, out.model))
    }
}

/// Check a provider's answer: one finite, non-zero vector per input, all of one dimension;
/// normalised to unit length.
fn parse_response(text: &str, expected: usize) -> Result<EmbedResponse, String> {
    let mut response: EmbedResponse =
        serde_json::from_str(text).map_err(|e| format!("not the embed format: {e}"))?;
    if response.embeddings.len() != expected {
        return Err(format!(
            "{} vectors for {expected} texts",
            response.embeddings.len()
        ));
    }
    let dim = response.embeddings.first().map_or(0, Vec::len);
    for vector in &mut response.embeddings {
        if vector.len() != dim || dim == 0 {
            return Err(format!(
                "vectors of different or zero length ({dim} and {})",
                vector.len()
            ));
        }
        if vector.iter().any(|v| !v.is_finite()) {
            return Err("a vector holds NaN or infinity".into());
        }
        normalise(vector);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_checked_and_normalised() {
        let ok = parse_response(r#"{"model":"m","embeddings":[[3,4],[0,2]]}"#, 2).unwrap();
        assert_eq!(ok.embeddings[0], vec![0.6, 0.8]);
        assert_eq!(ok.embeddings[1], vec![0.0, 1.0]);
        assert!(
            parse_response(r#"{"embeddings":[[1,0]]}"#, 2)
                .unwrap_err()
                .contains("1 vectors for 2")
        );
        assert!(parse_response(r#"{"embeddings":[[1,0],[1]]}"#, 2).is_err());
        assert!(parse_response(r#"{"embeddings":[[]]}"#, 1).is_err());
        assert!(parse_response(r#"{"data":[]}"#, 1).is_err());
    }
}
