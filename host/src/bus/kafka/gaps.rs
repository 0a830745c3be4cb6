//! Records a partition skipped: per owned partition, the offset the next polled record should
//! have. The inbound topic's producers are idempotent and nothing compacts it, so a record
//! past that offset means records were not delivered here although they were written (seen
//! with a broker that made a record visible before an earlier one). The consumer then fetches
//! again from the missing offset, for up to `REFETCH_FOR`; a gap still there after that is a
//! real hole in the log (a transaction marker, a compacted record) and is logged and passed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a gap is fetched again before it is taken as a hole in the log.
pub const REFETCH_FOR: Duration = Duration::from_secs(1);

/// What to do with a polled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It follows the previous one (or is the first of this ownership): take it.
    Take,
    /// Records before it were not delivered: fetch again from this offset, and leave this
    /// record for then.
    Refetch(i64),
}

#[derive(Debug, Default)]
pub struct GapWatch {
    partitions: HashMap<i32, Expected>,
}

#[derive(Debug, Clone, Copy)]
struct Expected {
    next: i64,
    /// Since when the records from `next` have been fetched again.
    refetching_since: Option<Instant>,
}

impl GapWatch {
    /// The partition changed hands: its next record starts a new ownership.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Judge the record at `offset` of `partition`, polled at `now`.
    pub fn check(&mut self, partition: i32, offset: i64, now: Instant) -> Verdict {
        if let Some(expected) = self.partitions.get_mut(&partition)
            && offset > expected.next
        {
            match expected.refetching_since {
                None => {
                    tracing::warn!(
                        partition,
                        expected = expected.next,
                        received = offset,
                        "the bus consumer skipped records; fetching them again"
                    );
                    expected.refetching_since = Some(now);
                    return Verdict::Refetch(expected.next);
                }
                Some(since) if now.duration_since(since) < REFETCH_FOR => {
                    return Verdict::Refetch(expected.next);
                }
                Some(_) => tracing::warn!(
                    partition,
                    missing_from = expected.next,
                    missing_to = offset - 1,
                    "records never arrived although fetched again for a second; going on past \
                     them (a hole in the log)"
                ),
            }
        }
        self.partitions.insert(
            partition,
            Expected {
                next: offset + 1,
                refetching_since: None,
            },
        );
        Verdict::Take
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_record_is_fetched_again_and_a_hole_passed_in_time() {
        let mut watch = GapWatch::default();
        let start = Instant::now();
        assert_eq!(watch.check(1, 10, start), Verdict::Take);
        assert_eq!(watch.check(1, 11, start), Verdict::Take);
        // 12 was skipped: fetch again from it; the record that came early waits.
        assert_eq!(watch.check(1, 13, start), Verdict::Refetch(12));
        assert_eq!(watch.check(1, 13, start), Verdict::Refetch(12));
        // It arrives on the fetch again, and the rest follows.
        assert_eq!(watch.check(1, 12, start), Verdict::Take);
        assert_eq!(watch.check(1, 13, start), Verdict::Take);
        // A real hole: fetched again for `REFETCH_FOR`, then passed.
        assert_eq!(watch.check(1, 20, start), Verdict::Refetch(14));
        let later = start + REFETCH_FOR;
        assert_eq!(watch.check(1, 20, later), Verdict::Take);
        assert_eq!(watch.check(1, 21, later), Verdict::Take);
        // Other partitions, and a new ownership, start afresh.
        assert_eq!(watch.check(2, 500, later), Verdict::Take);
        watch.forget(1);
        assert_eq!(watch.check(1, 90, later), Verdict::Take);
    }
}
