//! Replies of one conversation go out one after another, in the order their messages were
//! handed to the bus: the parts and edits of two consecutive answers never interleave in a
//! chat, while different conversations reply in parallel. Each reply waits for the one
//! queued before it in its conversation (and for nothing else); a conversation with nothing
//! queued holds no memory.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::Shared;
use parking_lot::Mutex;
use tokio::sync::oneshot;

type Done = Shared<oneshot::Receiver<()>>;

#[derive(Default, Clone)]
pub struct ConversationQueue {
    /// Per conversation: the generation and completion of the reply queued last.
    tails: Arc<Mutex<HashMap<String, (u64, Done)>>>,
    next_generation: Arc<std::sync::atomic::AtomicU64>,
}

/// A reply's place in its conversation's queue.
pub struct Place {
    queue: ConversationQueue,
    conversation: String,
    generation: u64,
    previous: Option<Done>,
    done: Option<oneshot::Sender<()>>,
}

impl ConversationQueue {
    /// Take the next place in `conversation`'s queue (call in hand-off order).
    pub fn enqueue(&self, conversation: String) -> Place {
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (done, finished) = oneshot::channel();
        let previous = self
            .tails
            .lock()
            .insert(conversation.clone(), (generation, finished.shared()))
            .map(|(_, previous)| previous);
        Place {
            queue: self.clone(),
            conversation,
            generation,
            previous,
            done: Some(done),
        }
    }

    /// A place is done: the next reply may go, and the conversation is forgotten when nothing
    /// was queued after it.
    fn release(&self, conversation: &str, generation: u64, done: Option<oneshot::Sender<()>>) {
        drop(done);
        let mut tails = self.tails.lock();
        if tails
            .get(conversation)
            .is_some_and(|(tail, _)| *tail == generation)
        {
            tails.remove(conversation);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tails.lock().len()
    }
}

impl Place {
    /// Wait until every reply queued before this one in its conversation is done (or was
    /// dropped: a failed reply does not hold up the next).
    pub async fn turn(&mut self) {
        if let Some(previous) = &self.previous {
            let _ = previous.clone().await;
        }
        self.previous = None;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let done = self.done.take();
        let (queue, conversation, generation) = (
            self.queue.clone(),
            std::mem::take(&mut self.conversation),
            self.generation,
        );
        // Dropped before its turn came (its caller gave up): the replies queued after it must
        // still wait for the ones before it, so it lets go only once those are done.
        if let Some(previous) = self.previous.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = previous.await;
                queue.release(&conversation, generation, done);
            });
            return;
        }
        queue.release(&conversation, generation, done);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn replies_of_one_conversation_run_in_order_and_others_in_parallel() {
        let queue = ConversationQueue::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (conversation, label, work_ms) in [
            ("c1", "c1-first", 60),
            ("c1", "c1-second", 0),
            ("c2", "c2-only", 0),
            ("c1", "c1-third", 0),
        ] {
            let mut place = queue.enqueue(conversation.to_owned());
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                place.turn().await;
                log.lock().push(format!("{label} start"));
                tokio::time::sleep(Duration::from_millis(work_ms)).await;
                log.lock().push(format!("{label} end"));
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let log = log.lock().clone();
        let at = |entry: &str| log.iter().position(|e| e == entry).unwrap();
        assert!(at("c1-first end") < at("c1-second start"));
        assert!(at("c1-second end") < at("c1-third start"));
        assert!(at("c2-only end") < at("c1-first end"), "{log:?}");
        assert_eq!(queue.len(), 0, "nothing kept once the queues are empty");
    }

    #[tokio::test]
    async fn a_place_given_up_before_its_turn_still_keeps_the_order() {
        let queue = ConversationQueue::default();
        let first = queue.enqueue("c".into());
        let second = queue.enqueue("c".into());
        let mut third = queue.enqueue("c".into());
        drop(second);
        let waited = tokio::time::timeout(Duration::from_millis(100), third.turn()).await;
        assert!(waited.is_err(), "the third ran while the first was running");
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), third.turn())
            .await
            .unwrap();
        drop(third);

        // The same when the one given up was the last queued.
        let first = queue.enqueue("d".into());
        drop(queue.enqueue("d".into()));
        let mut later = queue.enqueue("d".into());
        let waited = tokio::time::timeout(Duration::from_millis(100), later.turn()).await;
        assert!(
            waited.is_err(),
            "the later one ran while the first was running"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), later.turn())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_dropped_reply_releases_the_next() {
        let queue = ConversationQueue::default();
        let first = queue.enqueue("c".into());
        let mut second = queue.enqueue("c".into());
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.turn())
            .await
            .unwrap();
    }
}
