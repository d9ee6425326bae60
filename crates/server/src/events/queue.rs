//! The bounded queue of events waiting for the sender: first in, first
//! out, at most `cap` events. A push that finds it full drops the oldest
//! event waiting, and the drop takes its place in the order as a gap (one
//! gap, at the front, counts every drop since the sender last took from
//! the queue), so the backend hears of every loss exactly where it was.

use std::collections::VecDeque;

/// One entry waiting to be sent.
#[derive(Debug)]
pub(super) enum Entry {
    Event(Queued),
    /// Events dropped here: sequence numbers `first..=last`, `dropped` of them.
    Gap {
        first: u64,
        last: u64,
        dropped: u64,
        at_ms: u64,
    },
}

/// An event, encoded with its id.
#[derive(Debug)]
pub(super) struct Queued {
    pub seq: u64,
    pub json: Box<str>,
    /// For a disconnect of this node's session: its client id and session
    /// serial (the node's registry forgets the session once its disconnect
    /// is delivered, or dropped).
    pub ends: Option<(Box<str>, u64)>,
}

impl Entry {
    /// The highest sequence number this entry settles.
    pub fn last_seq(&self) -> u64 {
        match self {
            Entry::Event(q) => q.seq,
            Entry::Gap { last, .. } => *last,
        }
    }

    /// Whether it is an event (not a gap).
    pub fn is_event(&self) -> bool {
        matches!(self, Entry::Event(_))
    }
}

pub(super) struct Queue {
    entries: VecDeque<Entry>,
    /// `Entry::Event`s in `entries`.
    events: usize,
    cap: usize,
    /// The last sequence number given.
    seq: u64,
}

impl Queue {
    /// A queue of at most `cap` events whose sequence numbers start after
    /// `start`.
    pub fn new(cap: usize, start: u64) -> Self {
        Queue {
            entries: VecDeque::new(),
            events: 0,
            cap: cap.max(1),
            seq: start,
        }
    }

    /// The next event's sequence number, given for good.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The last sequence number given.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a batch of `batch` entries is there, or the queue is full
    /// (no point waiting for more: they would push out the oldest).
    pub fn is_ready(&self, batch: usize) -> bool {
        self.entries.len() >= batch || self.events >= self.cap
    }

    /// Appends `event`; when the queue was full, the oldest event waiting
    /// is dropped into the gap at the front and returned.
    pub fn push(&mut self, event: Queued, at_ms: u64) -> Option<Queued> {
        let dropped = if self.events >= self.cap {
            self.drop_oldest(at_ms)
        } else {
            None
        };
        self.entries.push_back(Entry::Event(event));
        self.events += 1;
        dropped
    }

    fn drop_oldest(&mut self, at_ms: u64) -> Option<Queued> {
        let at = usize::from(matches!(self.entries.front(), Some(Entry::Gap { .. })));
        let Some(Entry::Event(oldest)) = self.entries.remove(at) else {
            return None;
        };
        self.events -= 1;
        match self.entries.front_mut() {
            Some(Entry::Gap {
                last,
                dropped,
                at_ms: when,
                ..
            }) if at == 1 => {
                *last = oldest.seq;
                *dropped += 1;
                *when = at_ms;
            }
            _ => self.entries.push_front(Entry::Gap {
                first: oldest.seq,
                last: oldest.seq,
                dropped: 1,
                at_ms,
            }),
        }
        Some(oldest)
    }

    /// Takes up to `max` entries from the front, in order.
    pub fn take(&mut self, max: usize) -> Vec<Entry> {
        let n = max.min(self.entries.len());
        let taken: Vec<Entry> = self.entries.drain(..n).collect();
        self.events -= taken.iter().filter(|e| e.is_event()).count();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &mut Queue) -> Option<u64> {
        let seq = q.next_seq();
        let event = Queued {
            seq,
            json: format!("{seq}").into(),
            ends: None,
        };
        q.push(event, 7).map(|d| d.seq)
    }

    fn shape(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Entry::Event(q) => q.seq.to_string(),
                Entry::Gap {
                    first,
                    last,
                    dropped,
                    ..
                } => format!("gap {first}-{last} ({dropped})"),
            })
            .collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_into_one_gap_at_the_front() {
        let mut q = Queue::new(3, 0);
        for _ in 0..3 {
            assert_eq!(push(&mut q), None);
        }
        assert_eq!(push(&mut q), Some(1));
        assert_eq!(push(&mut q), Some(2));
        assert_eq!(shape(&q.take(10)), ["gap 1-2 (2)", "3", "4", "5"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_gap_taken_by_the_sender_is_not_grown_again() {
        let mut q = Queue::new(2, 0);
        for _ in 0..3 {
            push(&mut q);
        }
        let first = q.take(2);
        assert_eq!(shape(&first), ["gap 1-1 (1)", "2"]);
        assert_eq!(first[0].last_seq(), 1);
        push(&mut q);
        push(&mut q);
        assert_eq!(shape(&q.take(10)), ["gap 3-3 (1)", "4", "5"]);
        assert_eq!(q.last_seq(), 5);
    }

    #[test]
    fn a_queue_of_one_keeps_the_newest() {
        let mut q = Queue::new(1, 0);
        for _ in 0..4 {
            push(&mut q);
        }
        assert_eq!(shape(&q.take(10)), ["gap 1-3 (3)", "4"]);
    }
}
