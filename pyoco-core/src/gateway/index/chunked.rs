//! An ordered set stored as a list of sorted chunks: a few bytes more than its keys, where a
//! `BTreeSet` of small keys costs two to three times them (its nodes are half full when keys
//! arrive in order, which is how runs arrive).

use std::mem::size_of;

/// Keys per chunk: inserts and removals move at most this many keys.
const CHUNK: usize = 512;

/// A set of `K` in ascending order. Every chunk is non-empty and sorted, and every key of a
/// chunk is below every key of the next one.
#[derive(Debug, Clone)]
pub(super) struct ChunkedSet<K> {
    chunks: Vec<Vec<K>>,
    len: usize,
}

impl<K> Default for ChunkedSet<K> {
    fn default() -> Self {
        ChunkedSet {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Copy> ChunkedSet<K> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds `key`, or would: the first whose last key is not below it, else
    /// the last one.
    fn chunk_of(&self, key: &K) -> usize {
        let i = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|last| last < key));
        i.min(self.chunks.len().saturating_sub(1))
    }

    /// Adds `key`; false if it was there.
    pub(super) fn insert(&mut self, key: K) -> bool {
        if self.chunks.is_empty() {
            self.chunks.push(vec![key]);
            self.len = 1;
            return true;
        }
        // Keys arriving in order (a replay, a checkpoint load) go at the end.
        if let Some(tail) = self.chunks.last_mut()
            && tail.last().is_some_and(|last| *last < key)
            && tail.len() < CHUNK
        {
            tail.push(key);
            self.len += 1;
            return true;
        }
        let i = self.chunk_of(&key);
        let last = self.chunks.len() - 1;
        let chunk = &mut self.chunks[i];
        let pos = match chunk.binary_search(&key) {
            Ok(_) => return false,
            Err(pos) => pos,
        };
        if chunk.len() < CHUNK {
            chunk.insert(pos, key);
        } else if (i == last && pos == chunk.len()) || (i == 0 && pos == 0) {
            // Keys arriving in order start a new chunk and leave the full one full.
            let mut fresh = Vec::with_capacity(CHUNK);
            fresh.push(key);
            self.chunks.insert(if pos == 0 { i } else { i + 1 }, fresh);
        } else {
            let mut right = Vec::with_capacity(CHUNK);
            right.extend_from_slice(&chunk[CHUNK / 2..]);
            chunk.truncate(CHUNK / 2);
            if pos <= CHUNK / 2 {
                chunk.insert(pos, key);
            } else {
                right.insert(pos - CHUNK / 2, key);
            }
            self.chunks.insert(i + 1, right);
        }
        self.len += 1;
        true
    }

    /// Takes `key` out; false if it was not there.
    pub(super) fn remove(&mut self, key: &K) -> bool {
        if self.chunks.is_empty() {
            return false;
        }
        let i = self.chunk_of(key);
        let Ok(pos) = self.chunks[i].binary_search(key) else {
            return false;
        };
        self.chunks[i].remove(pos);
        self.len -= 1;
        let left = self.chunks[i].len();
        if left == 0 {
            self.chunks.remove(i);
        } else if left < CHUNK / 4 {
            // A sparse chunk joins a neighbour it fits in, so removals cannot leave many
            // nearly empty chunks behind.
            if i + 1 < self.chunks.len() && left + self.chunks[i + 1].len() <= CHUNK {
                let next = self.chunks.remove(i + 1);
                self.chunks[i].extend_from_slice(&next);
            } else if i > 0 && left + self.chunks[i - 1].len() <= CHUNK {
                let this = self.chunks.remove(i);
                self.chunks[i - 1].extend_from_slice(&this);
            }
        }
        true
    }

    /// Keys not above `upper` (every key without one), largest first.
    pub(super) fn iter_desc(&self, upper: Option<K>) -> impl Iterator<Item = K> + '_ {
        let (i, head): (usize, &[K]) = match upper {
            None => (self.chunks.len(), &[]),
            Some(upper) => {
                let i = self
                    .chunks
                    .partition_point(|c| c.last().is_some_and(|last| *last <= upper));
                let head = self
                    .chunks
                    .get(i)
                    .map_or(&[][..], |c| &c[..c.partition_point(|k| *k <= upper)]);
                (i, head)
            }
        };
        head.iter()
            .rev()
            .chain(self.chunks[..i].iter().rev().flat_map(|c| c.iter().rev()))
            .copied()
    }

    /// The first chunk holding keys not below `lower`, and where they start in it.
    fn start_at(&self, lower: &K) -> (usize, usize) {
        let i = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|last| last < lower));
        let pos = self
            .chunks
            .get(i)
            .map_or(0, |c| c.partition_point(|k| k < lower));
        (i, pos)
    }

    /// Keys not below `lower`, smallest first.
    pub(super) fn iter_asc(&self, lower: K) -> impl Iterator<Item = K> + '_ {
        let (i, pos) = self.start_at(&lower);
        let head = self.chunks.get(i).map_or(&[][..], |c| &c[pos..]);
        let rest = self.chunks.get(i + 1..).unwrap_or(&[]);
        head.iter().chain(rest.iter().flatten()).copied()
    }

    /// How many keys are not below `lower` (O(chunks), not O(keys)).
    pub(super) fn count_from(&self, lower: K) -> usize {
        let (i, pos) = self.start_at(&lower);
        let head = self.chunks.get(i).map_or(0, |c| c.len() - pos);
        let rest = self.chunks.get(i + 1..).unwrap_or(&[]);
        head + rest.iter().map(Vec::len).sum::<usize>()
    }

    /// Bytes this set holds on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Vec<K>>()
            + self
                .chunks
                .iter()
                .map(|c| c.capacity() * size_of::<K>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A deterministic mix of in-order, reverse and scattered inserts and removals, checked
    /// against a `BTreeSet` after every step.
    #[test]
    fn behaves_like_a_btreeset() {
        let mut set = ChunkedSet::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 7;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u32
        };
        for i in 0..6000u32 {
            let key = match i % 4 {
                0 => i,
                1 => 100_000 - i,
                _ => next() % 20_000,
            };
            assert_eq!(set.insert(key), model.insert(key));
            if i % 3 == 0 {
                let gone = next() % 20_000;
                assert_eq!(set.remove(&gone), model.remove(&gone));
            }
            if i % 500 == 0 {
                assert_eq!(set.len(), model.len());
                assert!(set.iter_desc(None).eq(model.iter().rev().copied()));
                let pivot = next() % 20_000;
                assert!(
                    set.iter_desc(Some(pivot))
                        .eq(model.range(..=pivot).rev().copied())
                );
                assert!(set.iter_asc(pivot).eq(model.range(pivot..).copied()));
                assert_eq!(set.count_from(pivot), model.range(pivot..).count());
            }
        }
        for key in model.clone() {
            assert!(set.remove(&key));
        }
        assert!(set.is_empty());
        assert_eq!(set.iter_desc(None).count(), 0);
    }

    #[test]
    fn keys_in_order_fill_chunks() {
        let mut set = ChunkedSet::default();
        for i in 0..(CHUNK as u32 * 10) {
            set.insert(i);
        }
        assert!(set.heap_bytes() <= CHUNK * 10 * size_of::<u32>() + 16 * size_of::<Vec<u32>>());
    }
}
