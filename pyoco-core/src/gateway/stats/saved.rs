//! The counters' part of a run index checkpoint: what [`Stats::save`] writes and
//! [`Stats::restore`] reads back. Only what is not per run is saved — the groups, the window
//! and the kept failures; each run's group and status are rebuilt from the index's entries
//! through a [`Restorer`].

use std::hash::BuildHasher;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    FAILURES_KEPT, Failure, Group, GroupKey, Inner, OrdF64, Stats, Tracked, slot_of, window,
};

/// What a checkpoint of the run index keeps of the counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Each group's tenant, flow, tag and schedule, by group number.
    pub groups: Vec<[Option<String>; 4]>,
    pub window: Vec<(u64, Vec<(u32, window::Cell)>)>,
    /// The kept failures, oldest first.
    pub failures: Vec<Failure>,
}

/// Rebuilds the counters from a checkpoint (see [`Stats::restore`]); holds their lock.
#[derive(Debug)]
pub struct Restorer<'a> {
    stats: &'a Stats,
    inner: std::sync::MutexGuard<'a, Inner>,
}

impl Restorer<'_> {
    /// The group of runs with these tenant, flow, tag and schedule (empty: absent).
    pub fn group(&mut self, tenant: &str, flow: &str, tag: &str, schedule_id: &str) -> u32 {
        let key = GroupKey {
            tenant: self.inner.intern(Some(tenant)),
            flow: self.inner.intern(Some(flow)),
            tag: self.inner.intern(Some(tag)),
            schedule_id: self.inner.intern(Some(schedule_id)),
        };
        self.inner.group(key)
    }

    /// Counts one stored run (as the checkpoint found it: no end is filed again).
    pub fn run(&mut self, run_id: &str, group: u32, status: &str) {
        let slot = slot_of(Some(status).filter(|s| !s.is_empty()));
        let hash = self.stats.hasher.hash_one(run_id);
        let tracked = Tracked {
            group,
            status: slot as u8,
        };
        if let Some(old) = self.inner.runs.insert(hash, tracked)
            && let Some(g) = self.inner.groups.get_mut(old.group as usize)
        {
            let old = usize::from(old.status);
            g.counts[old] = g.counts[old].saturating_sub(1);
        }
        if let Some(g) = self.inner.groups.get_mut(group as usize) {
            g.counts[slot] += 1;
        }
    }
}

impl Stats {
    /// What a checkpoint keeps (see [`Saved`]), as of `now`.
    pub fn save(&self, now: f64) -> Saved {
        let inner = self.lock();
        let text = |s: &Option<Arc<str>>| s.as_deref().map(str::to_string);
        Saved {
            groups: inner
                .groups
                .iter()
                .map(|g| {
                    [
                        text(&g.key.tenant),
                        text(&g.key.flow),
                        text(&g.key.tag),
                        text(&g.key.schedule_id),
                    ]
                })
                .collect(),
            window: inner.window.saved(now),
            failures: inner.failures.values().cloned().collect(),
        }
    }

    /// Starts over from a checkpoint: the groups, window and failures of `saved`; the runs
    /// are then added one by one through the returned [`Restorer`]. A failure whose group is
    /// unknown is dropped.
    pub fn restore(&self, saved: Saved, now: f64) -> Restorer<'_> {
        let mut inner = Inner::default();
        for [tenant, flow, tag, schedule_id] in saved.groups {
            let key = GroupKey {
                tenant: inner.intern(tenant.as_deref()),
                flow: inner.intern(flow.as_deref()),
                tag: inner.intern(tag.as_deref()),
                schedule_id: inner.intern(schedule_id.as_deref()),
            };
            // Not `group()`: numbers must stay those of the saved window and failures.
            let id = u32::try_from(inner.groups.len()).unwrap_or(u32::MAX);
            inner.groups.push(Group {
                key: key.clone(),
                ..Group::default()
            });
            inner.group_ids.entry(key).or_insert(id);
        }
        let groups = inner.groups.len();
        let window: Vec<_> = saved
            .window
            .into_iter()
            .map(|(slot, cells)| {
                let cells = cells.into_iter().filter(|(g, _)| (*g as usize) < groups);
                (slot, cells.collect())
            })
            .collect();
        inner.window.restore(now, window);
        for failure in saved.failures.into_iter().rev().take(FAILURES_KEPT) {
            if failure.group as usize >= groups {
                continue;
            }
            let key = (OrdF64(failure.at), failure.run_id.clone());
            let hash = self.hasher.hash_one(&*failure.run_id);
            inner.failure_of.insert(hash, key.clone());
            inner.failures.insert(key, failure);
        }
        let mut guard = self.lock();
        *guard = inner;
        Restorer {
            stats: self,
            inner: guard,
        }
    }
}
