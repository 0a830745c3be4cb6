//! The embedded store's file formats: the snapshot (header, matrix, SHA-256 trailer) and the
//! log (header naming its snapshot, checksummed records), encoded and decoded.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::*;

pub(super) const MAGIC: &[u8; 8] = b"DBRAG\0\0\0";

/// Snapshot format written; 2 may be continued by a log.
pub(super) const VERSION: u32 = 2;

/// Snapshot formats read (1 is 2 without a log).
pub(super) const READABLE_VERSIONS: [u32; 2] = [1, 2];

pub(super) const LOG_MAGIC: &[u8; 8] = b"DBRAGLOG";

pub(super) const LOG_VERSION: u32 = 1;

/// Magic, version, snapshot tag.
pub(super) const LOG_HEADER_LEN: usize = 20;

/// Payload length and checksum before each record's payload.
pub(super) const RECORD_HEAD_LEN: usize = 12;

/// A change bigger than this is written as a new snapshot instead of a log record.
pub(super) const MAX_RECORD_BYTES: usize = 1 << 30;

/// The first 8 bytes of a snapshot's SHA-256 trailer: which snapshot a log continues.
pub(super) type Tag = [u8; 8];

#[derive(Serialize, Deserialize)]
pub(super) struct Header {
    pub(super) model: String,
    pub(super) chunks: Vec<Chunk>,
}

/// One change in the log, as read back.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum LogOp {
    /// Chunks without vectors; the vectors follow the JSON, `dim` values each.
    Upsert {
        model: String,
        dim: usize,
        chunks: Vec<Chunk>,
    },
    DeleteIds {
        ids: Vec<String>,
    },
    DeleteGroup {
        group: String,
    },
}

/// One change in the log, as written (the same JSON as `LogOp`).
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum LogOpRef<'a> {
    Upsert {
        model: &'a str,
        dim: usize,
        chunks: &'a [Chunk],
    },
    DeleteIds {
        ids: &'a [String],
    },
    DeleteGroup {
        group: &'a str,
    },
}

/// How far the log was good.
pub(super) struct LogScan {
    /// Offset after the last good record (where the next append goes).
    pub(super) good_len: u64,
    pub(super) records: usize,
    /// Why the bytes after `good_len` were dropped (a torn last record).
    pub(super) torn: Option<String>,
}

pub(super) fn encode(inner: &Inner) -> Vec<u8> {
    let header = Header {
        model: inner.model.clone(),
        chunks: inner.chunks.clone(),
    };
    // Proven invariant: the header is strings and `serde_json::Value` maps (string keys, no
    // NaN), which always serialise. Never write an empty header in its place: that would be
    // a valid-looking snapshot without its chunks.
    let header = serde_json::to_vec(&header).expect("a store header always serialises");
    let mut out = Vec::with_capacity(32 + header.len() + inner.matrix.len() * 4 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(inner.dim as u32).to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for value in &inner.matrix {
        out.extend_from_slice(&value.to_le_bytes());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

pub(super) fn decode(bytes: &[u8]) -> Result<Inner, String> {
    if bytes.len() < 24 + 32 || &bytes[..8] != MAGIC {
        return Err("not a databot knowledge base file (bad magic or too short)".into());
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err("checksum mismatch (truncated or modified)".into());
    }
    let version = u32::from_le_bytes(body[8..12].try_into().map_err(|_| "short header")?);
    if !READABLE_VERSIONS.contains(&version) {
        return Err(format!(
            "format version {version}, this databot reads versions {READABLE_VERSIONS:?}"
        ));
    }
    let dim = u32::from_le_bytes(body[12..16].try_into().map_err(|_| "short header")?) as usize;
    let header_len =
        u64::from_le_bytes(body[16..24].try_into().map_err(|_| "short header")?) as usize;
    let header_end = 24usize
        .checked_add(header_len)
        .filter(|end| *end <= body.len())
        .ok_or("header length beyond the end of the file")?;
    let header: Header =
        serde_json::from_slice(&body[24..header_end]).map_err(|e| format!("bad header: {e}"))?;
    let floats = &body[header_end..];
    if floats.len() != header.chunks.len() * dim * 4 {
        return Err(format!(
            "{} chunks of {dim} dimensions need {} bytes of vectors, found {}",
            header.chunks.len(),
            header.chunks.len() * dim * 4,
            floats.len()
        ));
    }
    let matrix = floats_of(floats);
    let mut index = HashMap::with_capacity(header.chunks.len());
    for (row, chunk) in header.chunks.iter().enumerate() {
        if index.insert(chunk.id.clone(), row).is_some() {
            return Err(format!("duplicate chunk id {}", chunk.id));
        }
    }
    Ok(Inner {
        dim,
        model: header.model,
        chunks: header.chunks,
        matrix,
        index,
    })
}

pub(super) fn floats_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Which snapshot `bytes` (a valid snapshot) is.
pub(super) fn tag_of(bytes: &[u8]) -> Tag {
    let mut tag = [0; 8];
    let trailer = &bytes[bytes.len().saturating_sub(32)..];
    let n = trailer.len().min(8);
    tag[..n].copy_from_slice(&trailer[..n]);
    tag
}

pub(super) fn log_header(tag: &Tag) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER_LEN);
    out.extend_from_slice(LOG_MAGIC);
    out.extend_from_slice(&LOG_VERSION.to_le_bytes());
    out.extend_from_slice(tag);
    out
}

/// The snapshot a log continues.
pub(super) fn parse_log_header(bytes: &[u8]) -> Result<Tag, String> {
    if bytes.len() < LOG_HEADER_LEN || &bytes[..8] != LOG_MAGIC {
        return Err("not a databot knowledge base log (bad magic or too short)".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != LOG_VERSION {
        return Err(format!(
            "log format version {version}, this databot reads version {LOG_VERSION}"
        ));
    }
    let mut tag = [0; 8];
    tag.copy_from_slice(&bytes[12..LOG_HEADER_LEN]);
    Ok(tag)
}

pub(super) fn upsert_record(chunks: &[Chunk], model: &str) -> Option<Vec<u8>> {
    let dim = chunks.first().map_or(0, |c| c.vector.len());
    let vectors: Vec<&[f32]> = chunks.iter().map(|c| c.vector.as_slice()).collect();
    op_record(&LogOpRef::Upsert { model, dim, chunks }, &vectors)
}

/// A framed log record: `u32` payload length, 8 bytes of the payload's SHA-256, payload
/// (`u32` JSON length, the JSON operation, the vectors). `None` for a change too big for
/// one record (it is written as a new snapshot instead).
pub(super) fn op_record(op: &LogOpRef<'_>, vectors: &[&[f32]]) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(op).ok()?;
    let floats: usize = vectors.iter().map(|v| v.len()).sum();
    let payload_len = 4 + json.len() + floats * 4;
    if payload_len > MAX_RECORD_BYTES {
        return None;
    }
    let mut record = Vec::with_capacity(RECORD_HEAD_LEN + payload_len);
    record.extend_from_slice(&u32::try_from(payload_len).ok()?.to_le_bytes());
    record.extend_from_slice(&[0; 8]);
    record.extend_from_slice(&u32::try_from(json.len()).ok()?.to_le_bytes());
    record.extend_from_slice(&json);
    for vector in vectors {
        for value in *vector {
            record.extend_from_slice(&value.to_le_bytes());
        }
    }
    let digest = Sha256::digest(&record[RECORD_HEAD_LEN..]);
    record[4..RECORD_HEAD_LEN].copy_from_slice(&digest[..8]);
    Some(record)
}

/// A record's payload: the operation and its vectors.
pub(super) fn decode_payload(payload: &[u8]) -> Result<(LogOp, Vec<f32>), String> {
    let json_len = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("payload shorter than its JSON length")?;
    let json_end = 4usize
        .checked_add(json_len)
        .filter(|end| *end <= payload.len())
        .ok_or("JSON length beyond the record")?;
    let op: LogOp =
        serde_json::from_slice(&payload[4..json_end]).map_err(|e| format!("bad operation: {e}"))?;
    let floats = &payload[json_end..];
    if !floats.len().is_multiple_of(4) {
        return Err(format!(
            "{} bytes of vectors is not whole values",
            floats.len()
        ));
    }
    Ok((op, floats_of(floats)))
}

/// Replay the log records in `bytes` (header checked) onto `inner`. A bad last record is
/// torn (left out); a bad record with more after it is an error.
pub(super) fn replay(bytes: &[u8], inner: &mut Inner, location: &str) -> Result<LogScan, String> {
    let mut at = LOG_HEADER_LEN;
    let mut records = 0;
    let torn = |at: usize, records: usize, why: String| LogScan {
        good_len: at as u64,
        records,
        torn: Some(why),
    };
    while at < bytes.len() {
        let rest = &bytes[at..];
        let number = records + 1;
        if rest.len() < RECORD_HEAD_LEN {
            return Ok(torn(
                at,
                records,
                format!(
                    "record {number}: {} bytes, shorter than a record head",
                    rest.len()
                ),
            ));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_RECORD_BYTES {
            // No record is this long: a damaged length, not an interrupted append.
            return Err(format!(
                "record {number} at byte {at}: impossible length {len}"
            ));
        }
        let end = RECORD_HEAD_LEN + len;
        if end > rest.len() {
            return Ok(torn(
                at,
                records,
                format!(
                    "record {number}: {len} bytes announced, {} there",
                    rest.len() - RECORD_HEAD_LEN
                ),
            ));
        }
        let payload = &rest[RECORD_HEAD_LEN..end];
        if Sha256::digest(payload)[..8] != rest[4..RECORD_HEAD_LEN] {
            // The last record, or zeros a crash left after the end: an interrupted append.
            if end == rest.len() || rest.iter().all(|b| *b == 0) {
                return Ok(torn(
                    at,
                    records,
                    format!("record {number}: checksum mismatch"),
                ));
            }
            return Err(format!(
                "record {number} at byte {at}: checksum mismatch, with {} more bytes after it",
                rest.len() - end
            ));
        }
        let (op, floats) =
            decode_payload(payload).map_err(|e| format!("record {number} at byte {at}: {e}"))?;
        inner
            .apply(op, &floats, location)
            .map_err(|e| format!("record {number} at byte {at}: {e}"))?;
        at += end;
        records += 1;
    }
    Ok(LogScan {
        good_len: at as u64,
        records,
        torn: None,
    })
}
