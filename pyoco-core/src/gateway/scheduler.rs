//! The schedule dispatcher. Every gateway runs it; there is no leader.
//!
//! Every `PYOCO_SCHEDULE_POLL_INTERVAL_SEC` it reads the schedules and, for each due slot
//! ([`plan`]): claims the slot (KV create keyed by schedule and slot time; a claim older than
//! the lease may be taken over), submits the run under the id derived from the same key
//! ([`slot_run_id`]: snapshot create-if-absent, job `Nats-Msg-Id` = run id), then advances the
//! record with compare-and-set. Each step is idempotent, so whichever gateway finishes a slot
//! — the claimant, or one that took a stale claim over after a stall or crash — the slot
//! gets exactly one run, and a slot is never lost while one gateway is alive.

use std::time::Duration;

use super::GatewayState;
use crate::model::now;
use crate::model::schedule::{COMPLETED, Due, Schedule, plan, slot_run_id};
use crate::store::{Claim, NewRun, SlotClaim, Store, Versioned, YamlPayload};

/// At most this many slots of one schedule are handled per tick (a schedule far behind
/// catches up over several ticks instead of starving the others).
const MAX_SLOTS_PER_TICK: usize = 16;

/// Timing of the dispatcher, from the config.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub poll: Duration,
    /// How long a slot claim keeps other gateways off (seconds): `max(1, 2 * poll)`, far
    /// longer than a healthy claim → submit → advance takes.
    pub lease: f64,
    /// How late a slot may be and still fire on its own (seconds); later slots were missed
    /// and the misfire policy applies. The original's lease, `max(3, 3 * poll)`, plus our
    /// lease, so a slot taken over from a stalled gateway still fires on its own.
    pub grace: f64,
}

impl Timing {
    pub(super) fn new(poll: Duration) -> Timing {
        let poll = poll.max(Duration::from_millis(200));
        let secs = poll.as_secs_f64();
        let lease = (secs * 2.0).max(1.0);
        Timing {
            poll,
            lease,
            grace: (secs * 3.0).max(3.0) + lease,
        }
    }
}

/// Runs until the gateway stops (the caller spawns it on the state).
pub(super) async fn run(state: GatewayState, store: Store) {
    let timing = Timing::new(state.config.schedule_poll_interval);
    let holder = format!("gateway-{}", uuid::Uuid::new_v4().simple());
    let mut ticker = tokio::time::interval(timing.poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::debug!(%holder, poll = ?timing.poll, "schedule dispatcher started");
    loop {
        ticker.tick().await;
        if !store.is_connected() {
            continue;
        }
        tick(&store, &holder, timing).await;
    }
}

/// One pass over every schedule.
pub(super) async fn tick(store: &Store, holder: &str, timing: Timing) {
    let schedules = match store.schedules().list().await {
        Ok(list) => list,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list schedules this tick");
            return;
        }
    };
    for schedule in schedules {
        Box::pin(dispatch(store, schedule, holder, timing)).await;
    }
}

/// Handles the due slots of one schedule.
async fn dispatch(store: &Store, mut current: Versioned<Schedule>, holder: &str, timing: Timing) {
    let schedules = store.schedules();
    for _ in 0..MAX_SLOTS_PER_TICK {
        let at = now();
        // A Python gateway holds the original's lease: it is dispatching this schedule.
        if current.value.leased_by_original(at) {
            return;
        }
        let due = match plan(&current.value, at, timing.grace) {
            Ok(Some(due)) => due,
            Ok(None) => return,
            Err(e) => {
                note_error(store, &current, e.to_string()).await;
                return;
            }
        };
        let schedule_id = current.value.schedule_id.clone();
        let run_id = slot_run_id(&schedule_id, due.slot);
        if due.fire {
            let claim = SlotClaim {
                schedule_id: schedule_id.clone(),
                slot: due.slot,
                run_id: run_id.clone(),
                holder: holder.to_string(),
                claimed_at: at,
            };
            match schedules.claim_slot(&claim, timing.lease, at).await {
                Ok(Claim::Won) => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(%schedule_id, error = %e, "slot claim failed");
                    return;
                }
            }
            if let Err(e) = fire(store, &current.value, &run_id).await {
                tracing::warn!(%schedule_id, slot = due.slot, error = %e, "scheduled submit failed");
                schedules.release_slot(&schedule_id, due.slot).await;
                note_error(store, &current, e.to_string()).await;
                return;
            }
            tracing::info!(%schedule_id, slot = due.slot, %run_id, "schedule fired");
        } else {
            tracing::info!(%schedule_id, slot = due.slot, missed = due.missed, "missed slots skipped");
        }
        match advance(store, current, &due, &run_id).await {
            Some(next) => current = next,
            None => return,
        }
    }
}

/// Submits the slot's run: idempotent under its derived id (a second call finds the snapshot
/// and re-publishes under the same `Nats-Msg-Id` only while it is still PENDING).
async fn fire(store: &Store, s: &Schedule, run_id: &str) -> Result<(), crate::store::SubmitError> {
    let run = NewRun {
        flow_name: s.flow_name.clone(),
        params: s.params.clone(),
        tag: s.tag.clone().filter(|t| !t.is_empty()),
        tenant_id: s.tenant_id.clone(),
        api_key_id: s.api_key_id.clone(),
        yaml: Some(YamlPayload {
            text: s.workflow_yaml.clone(),
            sha256: s
                .workflow_yaml_sha256
                .clone()
                .unwrap_or_else(|| crate::flow::yaml::sha256_hex(s.workflow_yaml.as_bytes())),
            bytes: s
                .workflow_yaml_bytes
                .unwrap_or(s.workflow_yaml.len() as u64),
        }),
        run_id: Some(run_id.to_string()),
        schedule_id: Some(s.schedule_id.clone()),
        ..Default::default()
    };
    // Boxed: inlined, the submit's NATS futures overflow a debug-build test thread's stack.
    Box::pin(store.submit(run)).await.map(|_| ())
}

/// Moves the record past `due.slot` with compare-and-set, re-reading on a conflict. Returns
/// the new record, or `None` when it is gone or another gateway already moved it on.
async fn advance(
    store: &Store,
    mut current: Versioned<Schedule>,
    due: &Due,
    run_id: &str,
) -> Option<Versioned<Schedule>> {
    let schedules = store.schedules();
    for _ in 0..16 {
        if current.value.next_run_at != Some(due.slot) {
            return None;
        }
        let mut next = current.value.clone();
        let at = now();
        next.next_run_at = due.next;
        next.updated_at = at;
        next.lease_until = next.own_lease();
        next.last_error = None;
        next.missed_slots += due.missed;
        if due.fire {
            next.last_submitted_at = Some(at);
            next.last_run_id = Some(run_id.to_string());
            next.dispatch_count += 1;
        }
        if due.next.is_none() {
            next.status = COMPLETED.into();
        }
        match schedules.update(&next, current.revision).await {
            Ok(Some(revision)) => {
                return Some(Versioned {
                    value: next,
                    revision,
                });
            }
            Ok(None) => match schedules.get(&current.value.schedule_id).await {
                Ok(Some(fresh)) => current = fresh,
                _ => return None,
            },
            Err(e) => {
                tracing::debug!(error = %e, "advancing the schedule failed; the next tick retries");
                return None;
            }
        }
    }
    None
}

/// Records why a schedule could not fire (one attempt; a conflict means someone else wrote).
async fn note_error(store: &Store, current: &Versioned<Schedule>, message: String) {
    if current.value.last_error.as_deref() == Some(message.as_str()) {
        return;
    }
    let mut next = current.value.clone();
    next.last_error = Some(message);
    next.updated_at = now();
    if let Err(e) = store.schedules().update(&next, current.revision).await {
        tracing::debug!(error = %e, "recording the schedule error failed");
    }
}
