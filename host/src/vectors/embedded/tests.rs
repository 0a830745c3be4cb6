//! The embedded store's tests: search, persistence, the log, damage and locking.

use super::*;
use sha2::{Digest, Sha256};

fn unit(values: &[f32]) -> Vec<f32> {
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    values.iter().map(|v| v / norm).collect()
}

fn chunk(id: &str, source: &str, group: &str, vector: &[f32]) -> Chunk {
    Chunk {
        id: id.into(),
        source: source.into(),
        group: group.into(),
        hash: "h".into(),
        text: format!("text of {id}"),
        metadata: Default::default(),
        vector: unit(vector),
    }
}

/// A deterministic pseudo-random unit vector.
fn random_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..dim)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    unit(&values)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn ids(hits: &[Match]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

/// Everything a store holds, comparable across opens.
fn contents(store: &EmbeddedStore) -> Vec<(String, String, Vec<f32>)> {
    let inner = store.inner.read();
    let mut all: Vec<_> = inner
        .chunks
        .iter()
        .enumerate()
        .map(|(row, c)| {
            (
                c.id.clone(),
                c.group.clone(),
                inner.matrix[row * inner.dim..(row + 1) * inner.dim].to_vec(),
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[tokio::test]
async fn search_ranks_by_cosine_filters_by_kind_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag/kb.bin");
    let store = EmbeddedStore::open(&path).unwrap();
    store
        .upsert(
            vec![
                chunk("a", "schema:pg/a", "schema:pg", &[1.0, 0.0, 0.0]),
                chunk("b", "doc:b.md#0", "doc:b.md", &[0.9, 0.1, 0.0]),
                chunk("c", "doc:c.md#0", "doc:c.md", &[0.0, 0.0, 1.0]),
            ],
            "m",
        )
        .await
        .unwrap();
    let hits = store
        .search(&unit(&[1.0, 0.05, 0.0]), 2, None)
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(hits[0].score > hits[1].score);
    let docs = store
        .search(&unit(&[1.0, 0.0, 0.0]), 5, Some("doc"))
        .await
        .unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].id, "b");

    // Replace, delete, reopen.
    store
        .upsert(
            vec![chunk("a", "schema:pg/a", "schema:pg", &[0.0, 1.0, 0.0])],
            "m",
        )
        .await
        .unwrap();
    assert_eq!(store.delete_group("doc:c.md").await.unwrap(), 1);
    assert_eq!(store.len(), 2);
    drop(store);
    let reopened = EmbeddedStore::open(&path).unwrap();
    assert_eq!(reopened.len(), 2);
    let hits = reopened
        .search(&unit(&[0.0, 1.0, 0.0]), 1, None)
        .await
        .unwrap();
    assert_eq!(hits[0].id, "a");
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    let stats = reopened.stats().await.unwrap();
    assert_eq!(stats.dim, Some(3));
    assert_eq!(stats.by_kind.get("schema"), Some(&1));
}

#[tokio::test]
async fn a_different_dimension_is_refused() {
    let store = EmbeddedStore::in_memory();
    store
        .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m1")
        .await
        .unwrap();
    let error = store
        .upsert(vec![chunk("b", "doc:b#0", "doc:b", &[1.0, 0.0, 0.0])], "m2")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("2-dimensional"), "{error}");
    assert!(store.search(&[1.0, 0.0, 0.0], 1, None).await.is_err());
}

#[tokio::test]
async fn a_different_dimension_is_refused_without_touching_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let store = EmbeddedStore::open(&path).unwrap();
    store
        .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m1")
        .await
        .unwrap();
    store
        .upsert(vec![chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0])], "m1")
        .await
        .unwrap();
    let log = log_path_of(&path);
    let (snapshot, logged) = (std::fs::read(&path).unwrap(), std::fs::read(&log).unwrap());
    let error = store
        .upsert(vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 0.0, 0.0])], "m2")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("2-dimensional"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), snapshot);
    assert_eq!(std::fs::read(&log).unwrap(), logged);
    drop(store);
    assert_eq!(EmbeddedStore::open(&path).unwrap().len(), 2);
}

#[test]
fn damaged_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    std::fs::write(&path, b"hello, not a store").unwrap();
    let error = EmbeddedStore::open(&path).err().unwrap().to_string();
    assert!(error.contains("bad magic"), "{error}");
    let inner = Inner {
        dim: 2,
        chunks: vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])],
        matrix: vec![1.0, 0.0],
        ..Inner::default()
    };
    let mut bytes = encode(&inner);
    assert!(decode(&bytes).is_ok());
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    assert!(decode(&bytes).err().unwrap().contains("checksum"));
    bytes.truncate(40);
    assert!(decode(&bytes).is_err());
    // A log that is no log.
    std::fs::write(&path, encode(&inner)).unwrap();
    std::fs::write(log_path_of(&path), b"garbage").unwrap();
    let error = EmbeddedStore::open(&path).err().unwrap().to_string();
    assert!(error.contains("kb.bin.log"), "{error}");
    assert!(error.contains("bad magic"), "{error}");
}

#[tokio::test]
async fn one_writer_per_file_and_readers_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let writer = EmbeddedStore::open(&path).unwrap();
    let busy = EmbeddedStore::open(&path).err().unwrap().to_string();
    assert!(busy.contains("in use"), "{busy}");
    writer
        .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m")
        .await
        .unwrap();
    let reader = EmbeddedStore::open_read_only(&path).unwrap();
    assert_eq!(reader.len(), 1);
    let refused = reader.delete_group("doc:a").await.unwrap_err().to_string();
    assert!(refused.contains("read-only"), "{refused}");
    drop(writer);
    assert!(EmbeddedStore::open(&path).is_ok());
}

#[test]
fn swap_remove_keeps_rows_aligned() {
    let store = EmbeddedStore::in_memory();
    store
        .upsert_in_memory(
            vec![
                chunk("a", "doc:x#0", "x", &[1.0, 0.0]),
                chunk("b", "doc:y#0", "y", &[0.0, 1.0]),
                chunk("c", "doc:x#1", "x", &[1.0, 1.0]),
            ],
            "m",
        )
        .unwrap();
    assert_eq!(store.remove_where(|c| c.id == "a"), 1);
    let hits = store.search_now(&unit(&[0.0, 1.0]), 1, None);
    assert_eq!(hits[0].id, "b");
    let hits = store.search_now(&unit(&[1.0, 1.0]), 1, None);
    assert_eq!(hits[0].id, "c");
    assert!((hits[0].score - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn changes_after_the_first_go_to_the_log_and_replay_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let log = log_path_of(&path);
    let store = EmbeddedStore::open(&path).unwrap();
    store
        .upsert(
            vec![
                chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0, 0.0]),
                chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0, 0.0]),
                chunk("c", "doc:c#0", "doc:c", &[0.0, 0.0, 1.0]),
            ],
            "m",
        )
        .await
        .unwrap();
    // The first change wrote a snapshot (there was none) and an empty log after it.
    let snapshot = std::fs::read(&path).unwrap();
    assert_eq!(file_len(&log), LOG_HEADER_LEN as u64);
    store
        .upsert(vec![chunk("d", "doc:d#0", "doc:d", &[1.0, 1.0, 0.0])], "m")
        .await
        .unwrap();
    store
        .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[0.0, 1.0, 1.0])], "m")
        .await
        .unwrap();
    assert_eq!(
        store.delete_ids(&["b".into(), "zz".into()]).await.unwrap(),
        1
    );
    assert_eq!(store.delete_group("doc:c").await.unwrap(), 1);
    assert_eq!(store.delete_group("doc:nothing").await.unwrap(), 0);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        snapshot,
        "the snapshot is untouched"
    );
    assert!(file_len(&log) > LOG_HEADER_LEN as u64);
    let before = contents(&store);
    assert_eq!(
        before.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["a", "d"]
    );
    // A reader next to the writer replays the log too.
    let reader = EmbeddedStore::open_read_only(&path).unwrap();
    assert_eq!(contents(&reader), before);
    drop(store);
    let reopened = EmbeddedStore::open(&path).unwrap();
    assert_eq!(contents(&reopened), before);
    let hits = reopened.search_now(&unit(&[0.0, 1.0, 1.0]), 1, None);
    assert_eq!(ids(&hits), ["a"]);
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    // And the reopened writer appends after what it replayed.
    reopened
        .upsert(vec![chunk("e", "doc:e#0", "doc:e", &[0.0, 0.0, 1.0])], "m")
        .await
        .unwrap();
    drop(reopened);
    assert_eq!(EmbeddedStore::open(&path).unwrap().len(), 3);
}

#[tokio::test]
async fn a_change_whose_caller_goes_away_lands_in_memory_and_log_alike() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let store = EmbeddedStore::open(&path).unwrap();
    store
        .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m")
        .await
        .unwrap();
    // Polled once (it starts appending), then dropped, as a timed-out call is.
    let abandoned = tokio::time::timeout(
        std::time::Duration::ZERO,
        store.upsert(vec![chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0])], "m"),
    )
    .await;
    // The next change waits for the abandoned one to finish.
    store
        .upsert(vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 1.0])], "m")
        .await
        .unwrap();
    let in_memory = contents(&store);
    let held: Vec<_> = in_memory.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(held, ["a", "b", "c"], "abandoned: {}", abandoned.is_err());
    drop(store);
    assert_eq!(contents(&EmbeddedStore::open(&path).unwrap()), in_memory);
}

/// A store whose snapshot holds `a` and whose log holds `b` then `c` (one record each).
async fn store_with_two_records(path: &Path) -> (u64, u64) {
    let store = EmbeddedStore::open(path).unwrap();
    store
        .upsert(vec![chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0])], "m")
        .await
        .unwrap();
    store
        .upsert(vec![chunk("b", "doc:b#0", "doc:b", &[0.0, 1.0])], "m")
        .await
        .unwrap();
    let after_first = file_len(&log_path_of(path));
    store
        .upsert(vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 1.0])], "m")
        .await
        .unwrap();
    (after_first, file_len(&log_path_of(path)))
}

#[tokio::test]
async fn a_torn_last_record_is_dropped_and_cut_away_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    for (case, damage) in ["cut short", "bad checksum", "zeros after it", "half a head"]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("kb{case}.bin"));
        let log = log_path_of(&path);
        let (after_first, full) = store_with_two_records(&path).await;
        let mut bytes = std::fs::read(&log).unwrap();
        match damage {
            "cut short" => bytes.truncate(full as usize - 5),
            "bad checksum" => *bytes.last_mut().unwrap() ^= 0x01,
            "zeros after it" => {
                // A crash that extended the file but never wrote the record's bytes.
                bytes.truncate(after_first as usize);
                bytes.extend(std::iter::repeat_n(0u8, 100));
            }
            _ => bytes.truncate(after_first as usize + 5),
        }
        std::fs::write(&log, &bytes).unwrap();

        let reader = EmbeddedStore::open_read_only(&path).unwrap();
        let held: Vec<_> = contents(&reader).into_iter().map(|c| c.0).collect();
        assert_eq!(held, ["a", "b"], "{damage}");
        assert_eq!(
            file_len(&log),
            bytes.len() as u64,
            "a reader changes nothing"
        );

        let writer = EmbeddedStore::open(&path).unwrap();
        assert_eq!(writer.len(), 2, "{damage}");
        assert_eq!(
            file_len(&log),
            after_first,
            "{damage}: the tail is cut away"
        );
        writer
            .upsert(vec![chunk("d", "doc:d#0", "doc:d", &[1.0, -1.0])], "m")
            .await
            .unwrap();
        drop(writer);
        let reopened = EmbeddedStore::open(&path).unwrap();
        let held: Vec<_> = contents(&reopened).into_iter().map(|c| c.0).collect();
        assert_eq!(held, ["a", "b", "d"], "{damage}");
    }
}

#[tokio::test]
async fn a_damaged_record_in_the_middle_is_an_error_naming_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let log = log_path_of(&path);
    let (after_first, _) = store_with_two_records(&path).await;
    let mut bytes = std::fs::read(&log).unwrap();
    // A byte inside the first record's payload.
    bytes[(LOG_HEADER_LEN + after_first as usize) / 2] ^= 0x10;
    std::fs::write(&log, &bytes).unwrap();
    for error in [
        EmbeddedStore::open(&path).err().unwrap(),
        EmbeddedStore::open_read_only(&path).err().unwrap(),
    ] {
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        let error = error.to_string();
        assert!(error.contains(&log.display().to_string()), "{error}");
        assert!(error.contains("record 1"), "{error}");
        assert!(error.contains("checksum"), "{error}");
    }
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "left untouched");
    // A damaged length is no torn tail either, even though it points past the end.
    bytes[(LOG_HEADER_LEN + after_first as usize) / 2] ^= 0x10;
    bytes[LOG_HEADER_LEN + 3] = 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let error = EmbeddedStore::open(&path).err().unwrap().to_string();
    assert!(
        error.contains("record 1 at byte 20: impossible length"),
        "{error}"
    );
}

#[tokio::test]
async fn a_single_upsert_writes_about_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let log = log_path_of(&path);
    let store = EmbeddedStore::open(&path).unwrap();
    let dim = 384;
    let many: Vec<Chunk> = (0..2000)
        .map(|i| Chunk {
            vector: random_vector(i, dim),
            ..chunk(&format!("c{i}"), "doc:x#0", "doc:x", &[1.0])
        })
        .collect();
    store.upsert(many, "m").await.unwrap();
    let snapshot_len = file_len(&path);
    assert!(snapshot_len > 2000 * dim as u64 * 4);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    for i in 0..20u64 {
        let before = file_len(&log);
        let one = Chunk {
            vector: random_vector(10_000 + i, dim),
            ..chunk(&format!("new{i}"), "doc:y#0", "doc:y", &[1.0])
        };
        store.upsert(vec![one], "m").await.unwrap();
        let grew = file_len(&log) - before;
        // The vector (1,536 bytes), the chunk's JSON and a 12-byte head.
        assert!(
            grew > dim as u64 * 4 && grew < dim as u64 * 4 + 512,
            "one upsert appended {grew} bytes"
        );
    }
    assert_eq!(
        file_len(&path),
        snapshot_len,
        "the snapshot was not rewritten"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
    let before = file_len(&log);
    assert_eq!(store.delete_ids(&["c7".into()]).await.unwrap(), 1);
    assert!(file_len(&log) - before < 100);
    drop(store);
    assert_eq!(EmbeddedStore::open(&path).unwrap().len(), 2019);
}

#[tokio::test]
async fn compaction_folds_the_log_into_the_snapshot_and_keeps_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let log = log_path_of(&path);
    let store = EmbeddedStore::open(&path).unwrap();
    store.set_compact_min(0);
    store
        .upsert(
            vec![chunk("seed", "doc:s#0", "doc:s", &[1.0, 0.0, 0.0, 0.0])],
            "m",
        )
        .await
        .unwrap();
    // One point at a time, as a plugin does: the log is folded in as it outgrows the
    // snapshot, so the files stay proportional to the content.
    let mut compactions = 0;
    for i in 0..300u64 {
        let before = file_len(&log);
        let point = Chunk {
            vector: random_vector(i, 4),
            ..chunk(&format!("p{i}"), "plugin:x/notes", "notes", &[1.0])
        };
        store.upsert(vec![point], "m").await.unwrap();
        if file_len(&log) < before {
            compactions += 1;
            assert_eq!(file_len(&log), LOG_HEADER_LEN as u64);
        }
        if i % 7 == 0 {
            store.delete_ids(&[format!("p{}", i / 2)]).await.unwrap();
        }
        assert!(file_len(&log) <= file_len(&path) + 1024);
    }
    assert!((3..40).contains(&compactions), "{compactions} compactions");
    let expected = contents(&store);
    assert!(
        file_len(&log) > LOG_HEADER_LEN as u64,
        "some changes are in the log"
    );
    store.compact().await.unwrap();
    assert_eq!(file_len(&log), LOG_HEADER_LEN as u64);
    assert_eq!(contents(&store), expected);
    drop(store);
    let reopened = EmbeddedStore::open(&path).unwrap();
    assert_eq!(contents(&reopened), expected);
    let query = random_vector(123, 4);
    assert_eq!(
        ids(&reopened.search_now(&query, 5, None)),
        ids(&EmbeddedStore::open_read_only(&path)
            .unwrap()
            .search_now(&query, 5, None))
    );
}

#[tokio::test]
async fn a_log_continuing_another_snapshot_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    let log = log_path_of(&path);
    let (_, _) = store_with_two_records(&path).await;
    let old_log = std::fs::read(&log).unwrap();
    // A crash between a compaction's two renames: new snapshot, old log.
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.delete_ids(&["a".into()]).await.unwrap();
        store.compact().await.unwrap();
    }
    std::fs::write(&log, &old_log).unwrap();
    let store = EmbeddedStore::open(&path).unwrap();
    let held: Vec<_> = contents(&store).into_iter().map(|c| c.0).collect();
    assert_eq!(held, ["b", "c"], "the old log is not applied again");
    // The next change starts a log that continues the snapshot.
    store
        .upsert(vec![chunk("d", "doc:d#0", "doc:d", &[1.0, -1.0])], "m")
        .await
        .unwrap();
    drop(store);
    let held: Vec<_> = contents(&EmbeddedStore::open(&path).unwrap())
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(held, ["b", "c", "d"]);
    // A snapshot deleted by hand (to start over) does not come back from its log.
    std::fs::remove_file(&path).unwrap();
    assert!(file_len(&log) > 0);
    assert!(EmbeddedStore::open_read_only(&path).unwrap().is_empty());
    let store = EmbeddedStore::open(&path).unwrap();
    assert!(store.is_empty());
    store
        .upsert(
            vec![chunk("x", "doc:x#0", "doc:x", &[1.0, 0.0, 0.0])],
            "other",
        )
        .await
        .unwrap();
    drop(store);
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.stats().await.unwrap().dim, Some(3));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn a_version_1_file_still_opens_and_is_upgraded_on_the_next_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.bin");
    // Version 1 as it was written before the log existed (built by hand here).
    let chunks = [
        chunk("a", "doc:a#0", "doc:a", &[1.0, 0.0]),
        chunk("b", "schema:pg/b", "schema:pg", &[0.0, 1.0]),
    ];
    let header = serde_json::to_vec(&serde_json::json!({
        "model": "old-model",
        "chunks": chunks,
    }))
    .unwrap();
    let mut v1 = Vec::new();
    v1.extend_from_slice(b"DBRAG\0\0\0");
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&2u32.to_le_bytes());
    v1.extend_from_slice(&(header.len() as u64).to_le_bytes());
    v1.extend_from_slice(&header);
    for c in &chunks {
        for v in &c.vector {
            v1.extend_from_slice(&v.to_le_bytes());
        }
    }
    let digest = Sha256::digest(&v1);
    v1.extend_from_slice(&digest);
    std::fs::write(&path, &v1).unwrap();

    let reader = EmbeddedStore::open_read_only(&path).unwrap();
    assert_eq!(reader.len(), 2);
    let store = EmbeddedStore::open(&path).unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.dim, stats.model.as_deref()),
        (Some(2), Some("old-model"))
    );
    assert_eq!(ids(&store.search_now(&unit(&[0.1, 1.0]), 1, None)), ["b"]);
    assert_eq!(std::fs::read(&path).unwrap(), v1, "opening changes nothing");
    store
        .upsert(
            vec![chunk("c", "doc:c#0", "doc:c", &[1.0, 1.0])],
            "old-model",
        )
        .await
        .unwrap();
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        VERSION
    );
    let reopened = EmbeddedStore::open(&path).unwrap();
    assert_eq!(reopened.len(), 3);
    assert_eq!(
        ids(&reopened.search_now(&unit(&[1.0, 1.0]), 1, None)),
        ["c"]
    );
    // A version from the future is refused with what this build reads.
    let mut future = v1.clone();
    future[8..12].copy_from_slice(&9u32.to_le_bytes());
    let body = future.len() - 32;
    let digest = Sha256::digest(&future[..body]);
    future[body..].copy_from_slice(&digest);
    assert!(decode(&future).err().unwrap().contains("format version 9"));
}
