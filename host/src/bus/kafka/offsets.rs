//! What of a partition may be committed: messages run concurrently (different conversations
//! share a partition) and finish in any order, but the committed offset only moves past a
//! message once it and every message before it have finished.

use std::collections::{BTreeSet, HashMap};

/// One partition's messages handed out and not finished.
#[derive(Debug, Default)]
pub struct PartitionProgress {
    unfinished: BTreeSet<i64>,
    /// One past the highest offset handed out.
    next: Option<i64>,
    /// The last offset stored for commit.
    stored: Option<i64>,
}

impl PartitionProgress {
    pub fn started(&mut self, offset: i64) {
        self.unfinished.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |next| next.max(offset + 1)));
    }

    pub fn finished(&mut self, offset: i64) {
        self.unfinished.remove(&offset);
    }

    /// The offset to commit (the next message to read after a restart): the first unfinished
    /// message, or one past the last handed out.
    pub fn committable(&self) -> Option<i64> {
        self.unfinished.first().copied().or(self.next)
    }

    /// The committable offset if it moved since the last call.
    pub fn take_new_commit(&mut self) -> Option<i64> {
        let committable = self.committable()?;
        if self.stored == Some(committable) {
            return None;
        }
        self.stored = Some(committable);
        Some(committable)
    }

    pub fn unfinished(&self) -> usize {
        self.unfinished.len()
    }
}

/// Progress of every partition this replica owns.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: HashMap<i32, PartitionProgress>,
}

impl Progress {
    pub fn started(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .started(offset);
    }

    pub fn finished(&mut self, partition: i32, offset: i64) {
        if let Some(progress) = self.partitions.get_mut(&partition) {
            progress.finished(offset);
        }
    }

    /// Partitions whose committable offset moved, with it.
    pub fn new_commits(&mut self) -> Vec<(i32, i64)> {
        self.partitions
            .iter_mut()
            .filter_map(|(partition, progress)| {
                progress
                    .take_new_commit()
                    .map(|offset| (*partition, offset))
            })
            .collect()
    }

    /// Unfinished messages of these partitions.
    pub fn unfinished_in(&self, partitions: &[i32]) -> usize {
        partitions
            .iter()
            .filter_map(|partition| self.partitions.get(partition))
            .map(PartitionProgress::unfinished)
            .sum()
    }

    /// Stop tracking a partition (revoked); its committable offset, if any.
    pub fn remove(&mut self, partition: i32) -> Option<i64> {
        self.partitions
            .remove(&partition)
            .and_then(|progress| progress.committable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_waits_for_the_first_unfinished_message() {
        let mut progress = PartitionProgress::default();
        assert_eq!(progress.committable(), None);
        for offset in 10..15 {
            progress.started(offset);
        }
        progress.finished(11);
        progress.finished(13);
        assert_eq!(progress.committable(), Some(10), "10 still runs");
        progress.finished(10);
        assert_eq!(progress.committable(), Some(12));
        progress.finished(12);
        progress.finished(14);
        assert_eq!(
            progress.committable(),
            Some(15),
            "all done: one past the last"
        );
        assert_eq!(progress.take_new_commit(), Some(15));
        assert_eq!(progress.take_new_commit(), None, "unchanged");
        progress.started(15);
        assert_eq!(progress.take_new_commit(), None, "15 runs: still 15");
        progress.finished(15);
        assert_eq!(progress.take_new_commit(), Some(16));
    }

    #[test]
    fn partitions_are_tracked_apart() {
        let mut progress = Progress::default();
        progress.started(0, 5);
        progress.started(1, 7);
        progress.finished(1, 7);
        let mut commits = progress.new_commits();
        commits.sort_unstable();
        assert_eq!(commits, vec![(0, 5), (1, 8)]);
        assert_eq!(progress.unfinished_in(&[0, 1]), 1);
        assert_eq!(progress.remove(0), Some(5));
        assert_eq!(progress.unfinished_in(&[0]), 0);
        progress.finished(0, 5);
        assert_eq!(
            progress.new_commits(),
            vec![],
            "a removed partition stays removed"
        );
    }
}
