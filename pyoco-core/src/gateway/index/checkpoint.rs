//! A checkpoint of the index: every run's id, `updated_at` and interned field values, plus
//! what the operations counters keep beyond them (window, failures), as of one revision of
//! the runs bucket. Loading one and replaying only the later writes replaces the replay of
//! every stored run (7 s at a million runs on the reference machine; the replay alone is 3.4 s,
//! see BENCHMARKS.md).
//!
//! Encoding: `MAGIC`, then [`Checkpoint`] in postcard (compact varints; ~31 bytes per run).
//! Anything that does not decode, or does not hold together (a value number out of range, a
//! run twice), is refused as a whole and the gateway replays the bucket instead.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::table::{Field, Inner, OTHER_ID, RunId, Slot, ord_bits};
use crate::gateway::stats::{Saved, Stats};

/// What a checkpoint starts with; the last byte is the format's version.
const MAGIC: &[u8; 8] = b"PYOCOIX\x01";

/// A checkpoint as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    /// Creation time of the runs bucket's stream it was taken from (Unix ns): a bucket
    /// deleted and created again numbers its revisions from 1 again.
    pub(super) stream_created_ns: i128,
    /// The last revision of the runs bucket applied.
    pub(super) revision: u64,
    /// Interned field values; 0 is "absent" and must be the empty string.
    pub(super) values: Vec<String>,
    /// Every run, ascending by `updated_at`.
    pub(super) runs: Vec<SavedRun>,
    pub(super) stats: Option<Saved>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SavedRun {
    pub(super) id: SavedId,
    pub(super) updated_at: f64,
    pub(super) values: [u32; 6],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum SavedId {
    /// A UUID's high and low words (fixed width: random words do not shrink as varints).
    Uuid(
        #[serde(with = "postcard::fixint::le")] u64,
        #[serde(with = "postcard::fixint::le")] u64,
    ),
    Text(String),
}

/// A checkpoint as it is written: [`Checkpoint`]'s fields in the same order, the runs read
/// straight from the index's slots (no copy of every run held while encoding).
#[derive(Serialize)]
struct Writing<'a> {
    stream_created_ns: i128,
    revision: u64,
    values: Vec<&'a str>,
    runs: InOrder<'a>,
    stats: Option<Saved>,
}

/// The index's runs, ascending by `updated_at`, serialised as a sequence of [`SavedRun`].
struct InOrder<'a> {
    inner: &'a Inner,
    slots: Vec<u32>,
}

impl Serialize for InOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.slots.len()))?;
        for &n in &self.slots {
            seq.serialize_element(&self.inner.saved_run(n))?;
        }
        seq.end()
    }
}

/// Encodes `inner` (and the counters' `stats`) as the checkpoint at `revision` of the runs
/// stream created at `stream_created_ns`.
pub(super) fn encode(
    inner: &Inner,
    stats: Option<Saved>,
    stream_created_ns: i128,
    revision: u64,
) -> Result<Vec<u8>, String> {
    let mut slots: Vec<u32> = inner.by_id.iter().copied().collect();
    slots.sort_unstable_by_key(|&n| ord_bits(inner.slot(n).updated_at));
    let writing = Writing {
        stream_created_ns,
        revision,
        values: inner.values.iter().map(|v| &**v).collect(),
        runs: InOrder { inner, slots },
        stats,
    };
    postcard::to_extend(&writing, MAGIC.to_vec()).map_err(|e| e.to_string())
}

impl Checkpoint {
    pub(super) fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not a run index checkpoint of this version")?;
        let (checkpoint, rest): (Checkpoint, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after the checkpoint", rest.len()));
        }
        Ok(checkpoint)
    }
}

impl Inner {
    /// Slot `n` as a checkpoint stores it.
    fn saved_run(&self, n: u32) -> SavedRun {
        let slot = self.slot(n);
        let id = match slot.id {
            [OTHER_ID, i] => SavedId::Text(self.other_ids[i as usize].to_string()),
            [hi, lo] => SavedId::Uuid(hi, lo),
        };
        SavedRun {
            id,
            updated_at: slot.updated_at,
            values: slot.values,
        }
    }

    /// The index a checkpoint describes; an error when it does not hold together.
    pub(super) fn restored(values: Vec<String>, runs: Vec<SavedRun>) -> Result<Inner, String> {
        let mut inner = Inner::default();
        if values.first().map(String::as_str) != Some("") {
            return Err("value 0 is not the empty string".into());
        }
        // As interned: 0 is "absent"; a value written as "" has a number of its own.
        for value in &values[1..] {
            let before = inner.values.len();
            if inner.intern(value) as usize != before {
                return Err(format!("value {value:?} interned twice"));
            }
        }
        for run in runs {
            if let Some(v) = run.values.iter().find(|v| **v as usize >= values.len()) {
                return Err(format!("value number {v} out of range"));
            }
            let n = match &run.id {
                SavedId::Uuid(hi, lo) if *hi != OTHER_ID => {
                    let v = u128::from(*hi) << 64 | u128::from(*lo);
                    if inner.find(RunId::Uuid(v)).is_some() {
                        return Err("a run is listed twice".into());
                    }
                    inner.add_id(RunId::Uuid(v))
                }
                SavedId::Uuid(..) => return Err("a UUID with the reserved high word".into()),
                SavedId::Text(text) => {
                    if inner.find(RunId::of(text)).is_some() {
                        return Err(format!("run {text:?} is listed twice"));
                    }
                    inner.add_id(RunId::of(text))
                }
            };
            let slot = inner.slot_mut(n);
            slot.updated_at = run.updated_at;
            slot.values = run.values;
            inner.link(n);
        }
        Ok(inner)
    }

    /// Rebuilds `stats` from this index and the counters' part of a checkpoint: each run's
    /// group (tenant, flow, tag, schedule) and status come from its slot.
    pub(super) fn restore_stats(&self, stats: &Stats, saved: Saved, now: f64) {
        let mut restorer = stats.restore(saved, now);
        let mut groups: HashMap<[u32; 4], u32> = HashMap::new();
        let at = |slot: &Slot, field: Field| slot.values[field.at()];
        for &n in self.by_id.iter() {
            let slot = self.slot(n);
            let combo = [
                at(slot, Field::Tenant),
                at(slot, Field::Flow),
                at(slot, Field::Tag),
                at(slot, Field::ScheduleId),
            ];
            let group = *groups.entry(combo).or_insert_with(|| {
                let text = |v: u32| &*self.values[v as usize];
                restorer.group(
                    text(combo[0]),
                    text(combo[1]),
                    text(combo[2]),
                    text(combo[3]),
                )
            });
            let status = &*self.values[at(slot, Field::Status) as usize];
            restorer.run(&self.run_id(n), group, status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Query, RunIndex};
    use super::*;
    use crate::gateway::stats::Filter;
    use crate::model::now;

    fn doc(i: usize, updated: f64) -> Vec<u8> {
        let status = ["COMPLETED", "FAILED", "RUNNING"][i % 3];
        serde_json::json!({
            "status": status,
            "flow_name": format!("flow-{}", i % 4),
            "tag": "default",
            "tenant_id": if i.is_multiple_of(5) { serde_json::json!("acme") } else { serde_json::Value::Null },
            "updated_at": updated,
            "start_time": updated - 1.0,
            "end_time": if status == "RUNNING" { serde_json::Value::Null } else { serde_json::json!(updated) },
            "error": if status == "FAILED" { serde_json::json!("ValueError: boom") } else { serde_json::Value::Null },
        })
        .to_string()
        .into_bytes()
    }

    /// An index with its counters, fed `runs` writes (ids of both kinds).
    fn fed(runs: usize) -> (RunIndex, Stats, Vec<String>) {
        let index = RunIndex::default();
        let stats = Stats::new(now() - 3600.0);
        let t = now() - 60.0;
        let mut ids = Vec::new();
        for i in 0..runs {
            let id = if i.is_multiple_of(7) {
                format!("named-{i}")
            } else {
                crate::model::new_run_id()
            };
            let bytes = doc(i, t + i as f64 * 0.01);
            let seen = crate::gateway::observed::Observed::of_write(&id, Some(&bytes));
            index.apply_observed(&id, seen.as_ref());
            stats.observe_parsed(&id, seen.as_ref());
            ids.push(id);
        }
        (index, stats, ids)
    }

    fn checkpoint_of(index: &RunIndex, stats: &Stats) -> Vec<u8> {
        let inner = index.inner.read().unwrap();
        encode(&inner, Some(stats.save(now())), 42, 7).unwrap()
    }

    fn everything(index: &RunIndex) -> Vec<(f64, String)> {
        index
            .page(&Query {
                limit: usize::MAX,
                ..Default::default()
            })
            .items
    }

    #[test]
    fn a_loaded_checkpoint_lists_and_counts_like_the_index_it_was_taken_of() {
        let (index, stats, ids) = fed(2_000);
        let bytes = checkpoint_of(&index, &stats);
        let checkpoint = Checkpoint::decode(&bytes).unwrap();
        assert_eq!((checkpoint.stream_created_ns, checkpoint.revision), (42, 7));
        let restored = RunIndex::default();
        let copy = Stats::new(now() - 3600.0);
        let inner = Inner::restored(checkpoint.values, checkpoint.runs).unwrap();
        inner.restore_stats(&copy, checkpoint.stats.unwrap(), now());
        *restored.inner.write().unwrap() = inner;
        assert_eq!(everything(&restored), everything(&index));
        for filters in [
            vec![(Field::Status, "FAILED".to_string())],
            vec![
                (Field::Tenant, "acme".into()),
                (Field::Flow, "flow-0".into()),
            ],
        ] {
            let q = Query {
                filters,
                limit: 100,
                ..Default::default()
            };
            assert_eq!(restored.page(&q), index.page(&q));
        }
        let all = Filter::default();
        assert_eq!(copy.status_counts(&all), stats.status_counts(&all));
        assert_eq!(copy.failures(&all), stats.failures(&all));
        let (a, b) = (
            copy.window(&all, now(), 900),
            stats.window(&all, now(), 900),
        );
        assert_eq!((a.completed, a.failed), (b.completed, b.failed));
        assert!(a.completed > 0);
        // The counters go on from there: a deletion moves them as it would have.
        for id in &ids[..10] {
            restored.apply_observed(id, None);
            copy.observe_parsed(id, None);
            index.apply_observed(id, None);
            stats.observe_parsed(id, None);
        }
        assert_eq!(copy.status_counts(&all), stats.status_counts(&all));
        assert_eq!(copy.failures(&all), stats.failures(&all));
        assert_eq!(everything(&restored), everything(&index));
    }

    /// What a run costs in a checkpoint (the counters' part aside): a UUID run with three
    /// field values set, under 40 bytes.
    #[test]
    fn a_run_costs_under_40_bytes_in_a_checkpoint() {
        let index = RunIndex::default();
        for i in 0..10_000 {
            let bytes = doc(i, 1.7e9 + i as f64 * 0.01);
            index.apply(&crate::model::new_run_id(), Some(&bytes));
        }
        let bytes = encode(&index.inner.read().unwrap(), None, 0, 0).unwrap();
        assert!(
            bytes.len() / 10_000 < 40,
            "{} bytes per run",
            bytes.len() / 10_000
        );
    }

    /// A field written as `""` is a value of its own (not "absent"), before and after.
    #[test]
    fn a_field_written_empty_survives_a_checkpoint() {
        let index = RunIndex::default();
        index.apply(
            "a",
            Some(br#"{"updated_at": 1.0, "status": "COMPLETED", "tag": ""}"#),
        );
        index.apply("b", Some(br#"{"updated_at": 2.0, "status": "COMPLETED"}"#));
        let bytes = encode(&index.inner.read().unwrap(), None, 0, 0).unwrap();
        let c = Checkpoint::decode(&bytes).unwrap();
        let restored = RunIndex::default();
        *restored.inner.write().unwrap() = Inner::restored(c.values, c.runs).unwrap();
        let tagged_empty = Query {
            filters: vec![(Field::Tag, String::new())],
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            index.page(&tagged_empty).items,
            vec![(1.0, "a".to_string())]
        );
        assert_eq!(restored.page(&tagged_empty), index.page(&tagged_empty));
        assert_eq!(everything(&restored), everything(&index));
    }

    #[test]
    fn checkpoints_that_do_not_hold_together_are_refused() {
        let (index, stats, _) = fed(50);
        let bytes = checkpoint_of(&index, &stats);
        assert!(Checkpoint::decode(b"PYOCOIX\x02").is_err());
        assert!(Checkpoint::decode(&bytes[..bytes.len() - 3]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Checkpoint::decode(&longer).is_err());
        let good = || Checkpoint::decode(&bytes).unwrap();
        let mut c = good();
        c.runs[3].values[1] = c.values.len() as u32;
        assert!(Inner::restored(c.values, c.runs).is_err());
        let mut c = good();
        let twice = c.runs[5].clone();
        c.runs.push(twice);
        assert!(Inner::restored(c.values, c.runs).is_err());
        let mut c = good();
        c.values[0] = "x".into();
        assert!(Inner::restored(c.values, c.runs).is_err());
        let mut c = good();
        let again = c.values[1].clone();
        c.values.push(again);
        assert!(Inner::restored(c.values, c.runs).is_err());
        let c = good();
        assert!(Inner::restored(c.values, c.runs).is_ok());
    }
}
