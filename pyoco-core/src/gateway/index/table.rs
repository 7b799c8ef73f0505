//! The index's table: one fixed-size slot per run (its id, `updated_at` and interned field
//! values), the id lookup, the interned values and one ordered set of keys per field value.
//! [`super::RunIndex`] wraps it in a lock and answers queries from it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::ControlFlow;
use std::sync::Arc;

use hashbrown::HashTable;

use super::chunked::ChunkedSet;
use crate::gateway::observed::Observed;

/// `f64` with a total order (runs without `updated_at` sort as 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrdF64(pub(crate) f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The fields `GET /runs` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Status,
    Flow,
    Tag,
    WorkflowYamlSha256,
    ScheduleId,
    /// The run's `tenant_id` (lists of an API key show its tenant's runs only).
    Tenant,
}

pub(super) const FIELDS: [Field; 6] = [
    Field::Status,
    Field::Flow,
    Field::Tag,
    Field::WorkflowYamlSha256,
    Field::ScheduleId,
    Field::Tenant,
];

impl Field {
    pub(super) fn at(self) -> usize {
        self as usize
    }
}

/// `f64` bits whose unsigned order is [`f64::total_cmp`]'s.
pub(super) fn ord_bits(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

pub(super) fn from_ord_bits(o: u64) -> f64 {
    f64::from_bits(if o >> 63 == 1 { o & !(1 << 63) } else { !o })
}

/// A run's place in one ordered set: `updated_at` (as [`ord_bits`], split so the key is 12
/// bytes, not 16), then its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    pub(super) hi: u32,
    pub(super) lo: u32,
    pub(super) slot: u32,
}

impl Key {
    pub(super) fn new(updated_at: f64, slot: u32) -> Key {
        let bits = ord_bits(updated_at);
        Key {
            hi: (bits >> 32) as u32,
            lo: bits as u32,
            slot,
        }
    }

    pub(super) fn bits(self) -> u64 {
        u64::from(self.hi) << 32 | u64::from(self.lo)
    }

    pub(super) fn updated_at(self) -> f64 {
        from_ord_bits(self.bits())
    }
}

/// High word of a [`Slot::id`] naming a run id that is not a UUID (its low word indexes
/// `Inner::other_ids`). UUIDs with this high word are stored like other ids.
pub(super) const OTHER_ID: u64 = u64::MAX;

/// A run id as the index holds it: a lower-case hyphenated UUID (what pyoco and the original
/// generate) as its 128 bits, anything else as text.
#[derive(Debug, Clone, Copy)]
pub(super) enum RunId<'a> {
    Uuid(u128),
    Other(&'a str),
}

impl<'a> RunId<'a> {
    pub(super) fn of(run_id: &'a str) -> RunId<'a> {
        // Only the form that formats back to the same text (36 characters, lower case).
        if run_id.len() == 36
            && !run_id.bytes().any(|b| b.is_ascii_uppercase())
            && let Ok(uuid) = uuid::Uuid::try_parse(run_id)
        {
            let v = uuid.as_u128();
            if (v >> 64) as u64 != OTHER_ID {
                return RunId::Uuid(v);
            }
        }
        RunId::Other(run_id)
    }

    pub(super) fn hash(self, hasher: &RandomState) -> u64 {
        match self {
            RunId::Uuid(v) => hasher.hash_one(v),
            RunId::Other(s) => hasher.hash_one(s),
        }
    }
}

/// One run: 48 bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Slot {
    /// A UUID's high and low words, or `[OTHER_ID, index into other_ids]`.
    pub(super) id: [u64; 2],
    pub(super) updated_at: f64,
    /// The interned value of each of [`FIELDS`] (0: absent).
    pub(super) values: [u32; 6],
}

/// Slots per allocation: the slot table grows by this, not by doubling.
pub(super) const SLOTS_PER_CHUNK: usize = 4096;

#[derive(Debug)]
pub(super) struct Inner {
    /// Every run, by slot number; freed slots are reused.
    pub(super) slots: Vec<Vec<Slot>>,
    pub(super) free: Vec<u32>,
    /// Slot numbers, found by run id.
    pub(super) by_id: HashTable<u32>,
    pub(super) hasher: RandomState,
    /// Run ids that are not UUIDs (tests, other writers), and their free places.
    pub(super) other_ids: Vec<Box<str>>,
    pub(super) free_other: Vec<u64>,
    /// Interned field values (0 is "absent"): a million runs share a handful of statuses,
    /// flows and tags.
    pub(super) values: Vec<Arc<str>>,
    pub(super) value_ids: HashMap<Arc<str>, u32>,
    /// The runs of each field value, by `updated_at`. Every run is in one status set (value 0
    /// when it has none), so together they are the list of all runs.
    pub(super) by_value: HashMap<(Field, u32), ChunkedSet<Key>>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashTable::new(),
            hasher: RandomState::new(),
            other_ids: Vec::new(),
            free_other: Vec::new(),
            values: vec![Arc::from("")],
            value_ids: HashMap::new(),
            by_value: HashMap::new(),
        }
    }
}

impl Inner {
    pub(super) fn slot(&self, n: u32) -> &Slot {
        let n = n as usize;
        &self.slots[n / SLOTS_PER_CHUNK][n % SLOTS_PER_CHUNK]
    }

    pub(super) fn slot_mut(&mut self, n: u32) -> &mut Slot {
        let n = n as usize;
        &mut self.slots[n / SLOTS_PER_CHUNK][n % SLOTS_PER_CHUNK]
    }

    pub(super) fn run_id(&self, n: u32) -> String {
        match self.slot(n).id {
            [OTHER_ID, i] => self.other_ids[i as usize].to_string(),
            [hi, lo] => uuid::Uuid::from_u128(u128::from(hi) << 64 | u128::from(lo))
                .hyphenated()
                .to_string(),
        }
    }

    pub(super) fn value(&self, n: u32, field: Field) -> Option<&Arc<str>> {
        match self.slot(n).values[field.at()] {
            0 => None,
            v => self.values.get(v as usize),
        }
    }

    pub(super) fn find(&self, id: RunId<'_>) -> Option<u32> {
        let hash = id.hash(&self.hasher);
        self.by_id
            .find(hash, |&n| match (id, self.slot(n).id) {
                (RunId::Uuid(v), [hi, lo]) => {
                    hi != OTHER_ID && v == (u128::from(hi) << 64 | u128::from(lo))
                }
                (RunId::Other(s), [OTHER_ID, i]) => *self.other_ids[i as usize] == *s,
                _ => false,
            })
            .copied()
    }

    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.value_ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        let arc: Arc<str> = Arc::from(s);
        self.values.push(arc.clone());
        self.value_ids.insert(arc, id);
        id
    }

    /// The sets a slot is in: its status (even none), and each other field it has.
    pub(super) fn sets_of(slot: &Slot) -> impl Iterator<Item = (Field, u32)> + '_ {
        FIELDS
            .iter()
            .zip(slot.values)
            .filter(|(field, v)| **field == Field::Status || *v != 0)
            .map(|(field, v)| (*field, v))
    }

    pub(super) fn unlink(&mut self, n: u32) {
        let slot = *self.slot(n);
        let key = Key::new(slot.updated_at, n);
        for set_id in Self::sets_of(&slot) {
            if let Some(set) = self.by_value.get_mut(&set_id) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_value.remove(&set_id);
                }
            }
        }
    }

    pub(super) fn link(&mut self, n: u32) {
        let slot = *self.slot(n);
        let key = Key::new(slot.updated_at, n);
        for set_id in Self::sets_of(&slot) {
            self.by_value.entry(set_id).or_default().insert(key);
        }
    }

    pub(super) fn remove(&mut self, run_id: &str) {
        let id = RunId::of(run_id);
        let Some(n) = self.find(id) else {
            return;
        };
        self.unlink(n);
        let hash = id.hash(&self.hasher);
        if let Ok(entry) = self.by_id.find_entry(hash, |&m| m == n) {
            entry.remove();
        }
        if let [OTHER_ID, i] = self.slot(n).id {
            self.other_ids[i as usize] = Box::from("");
            self.free_other.push(i);
        }
        *self.slot_mut(n) = Slot::default();
        self.free.push(n);
    }

    /// A slot for a run not in the index yet, entered in the id table.
    pub(super) fn add(&mut self, run_id: &str) -> u32 {
        self.add_id(RunId::of(run_id))
    }

    /// [`Inner::add`] for an id already read.
    pub(super) fn add_id(&mut self, run_id: RunId<'_>) -> u32 {
        let id = match run_id {
            RunId::Uuid(v) => [(v >> 64) as u64, v as u64],
            RunId::Other(s) => {
                let i = match self.free_other.pop() {
                    Some(i) => {
                        self.other_ids[i as usize] = Box::from(s);
                        i
                    }
                    None => {
                        self.other_ids.push(Box::from(s));
                        self.other_ids.len() as u64 - 1
                    }
                };
                [OTHER_ID, i]
            }
        };
        let n = match self.free.pop() {
            Some(n) => n,
            None => {
                // Every chunk but the last is full.
                let n = self.slots.len().saturating_sub(1) * SLOTS_PER_CHUNK
                    + self.slots.last().map_or(0, Vec::len);
                if self.slots.last().is_none_or(|c| c.len() == SLOTS_PER_CHUNK) {
                    self.slots.push(Vec::with_capacity(SLOTS_PER_CHUNK));
                }
                if let Some(chunk) = self.slots.last_mut() {
                    chunk.push(Slot::default());
                }
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        self.slot_mut(n).id = id;
        let hash = run_id.hash(&self.hasher);
        let Inner {
            by_id,
            slots,
            other_ids,
            hasher,
            ..
        } = self;
        by_id.insert_unique(hash, n, |&m| {
            let m = m as usize;
            match slots[m / SLOTS_PER_CHUNK][m % SLOTS_PER_CHUNK].id {
                [OTHER_ID, i] => RunId::Other(&other_ids[i as usize]).hash(hasher),
                [hi, lo] => RunId::Uuid(u128::from(hi) << 64 | u128::from(lo)).hash(hasher),
            }
        });
        n
    }

    pub(super) fn upsert(&mut self, run_id: &str, doc: &Observed) {
        let n = match self.find(RunId::of(run_id)) {
            Some(n) => {
                self.unlink(n);
                n
            }
            None => self.add(run_id),
        };
        let raw = [
            &doc.status,
            &doc.flow_name,
            &doc.tag,
            &doc.workflow_yaml_sha256,
            &doc.schedule_id,
            &doc.tenant_id,
        ];
        let mut values = [0u32; 6];
        for (value, raw) in values.iter_mut().zip(raw) {
            if let Some(raw) = raw {
                *value = self.intern(raw);
            }
        }
        let slot = self.slot_mut(n);
        slot.updated_at = doc.updated_at.unwrap_or(0.0);
        slot.values = values;
        self.link(n);
    }

    /// Calls `visit` with the keys of `keys` (in `updated_at`, slot order, ascending or
    /// descending) in list order: runs with equal `updated_at` by run id, in the same
    /// direction. Ties are rare (timestamps have microseconds), so they are sorted here
    /// rather than paying for the run id in every set.
    pub(super) fn in_list_order(
        &self,
        keys: impl Iterator<Item = Key>,
        descending: bool,
        mut visit: impl FnMut(Key) -> ControlFlow<()>,
    ) {
        let mut keys = keys.peekable();
        let mut group: Vec<(String, Key)> = Vec::new();
        while let Some(key) = keys.next() {
            let ends_group = keys.peek().is_none_or(|next| next.bits() != key.bits());
            if ends_group && group.is_empty() {
                if visit(key).is_break() {
                    return;
                }
                continue;
            }
            group.push((self.run_id(key.slot), key));
            if ends_group {
                group.sort();
                if descending {
                    group.reverse();
                }
                for (_, key) in group.drain(..) {
                    if visit(key).is_break() {
                        return;
                    }
                }
            }
        }
    }

    /// Every run, newest first, from `upper` down: the status sets merged.
    pub(super) fn all_desc(&self, upper: Option<Key>) -> impl Iterator<Item = Key> + '_ {
        let mut heads: Vec<_> = self
            .by_value
            .iter()
            .filter(|((field, _), _)| *field == Field::Status)
            .map(|(_, set)| set.iter_desc(upper).peekable())
            .collect();
        std::iter::from_fn(move || {
            let (_, best) = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(i, head)| head.peek().map(|k| (*k, i)))
                .max()?;
            heads[best].next()
        })
    }

    /// Bytes held on the heap (the id table, slots, sets, ids and values).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let slots = self.slots.capacity() * size_of::<Vec<Slot>>()
            + self.slots.iter().map(Vec::capacity).sum::<usize>() * size_of::<Slot>();
        let sets = self.by_value.capacity() * size_of::<((Field, u32), ChunkedSet<Key>)>()
            + self
                .by_value
                .values()
                .map(ChunkedSet::heap_bytes)
                .sum::<usize>();
        let ids = self.by_id.allocation_size()
            + (self.free.capacity() + self.free_other.capacity() * 2) * size_of::<u32>()
            + self.other_ids.capacity() * size_of::<Box<str>>()
            + self.other_ids.iter().map(|s| s.len()).sum::<usize>();
        let values = self.values.iter().map(|v| v.len() + 16).sum::<usize>()
            + self.values.capacity() * size_of::<Arc<str>>()
            + self.value_ids.capacity() * size_of::<(Arc<str>, u32)>();
        slots + sets + ids + values
    }
}
