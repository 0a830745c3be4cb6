//! How long work reports how far it has come (plugin loads, knowledge-base ingestion,
//! schedule backfills), to whoever shows it (the CLI's progress bars). A leaf: the work
//! says what it found and what it starts; it never knows how that is drawn.

pub trait Progress: Send + Sync {
    /// `count` more items to do.
    fn found(&self, count: u64);
    /// The next item starts (`what` names it): the one before is done.
    fn next(&self, what: &str);
}
