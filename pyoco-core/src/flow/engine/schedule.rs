//! The DAG scheduler's bookkeeping, pure: which node may start, what a task's end does to the
//! run (fail policies), and how the run ends. [`super::run_flow`] drives it with tasks on
//! tokio; everything here is unit-tested without spawning anything.

use super::Outcome;
use crate::flow::graph::Cond;
use crate::flow::policy::FailPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Pending,
    Running,
    Done { ok: bool },
}

/// A pending node whose start condition is now decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ready {
    /// Its condition holds: start it ([`Schedule::start`] or [`Schedule::not_started`]).
    Start(usize),
    /// A task it needs failed (fail policy isolate): it fails without running and is already
    /// marked done.
    UpstreamFailed(usize),
}

/// What a failed task did to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterFailure {
    /// Fail policy `stop`: the run fails; running tasks must be stopped.
    StopRun,
    /// Fail policy `isolate`: downstream tasks that need it fail.
    Isolated,
    /// Fail policy `continue`: downstream tasks run with a `null` result for it.
    Continued,
}

/// The state of every node of one flow run, and how the run ends.
#[derive(Debug)]
pub(super) struct Schedule {
    nodes: Vec<Node>,
    /// Set once: the first failure (policy `stop`) or cancel decides the run.
    outcome: Option<Outcome>,
    /// The first error of an isolated or continued task (the run's `error` if it completes).
    tolerated: Option<String>,
}

impl Schedule {
    pub(super) fn new(nodes: usize) -> Schedule {
        Schedule {
            nodes: vec![Node::Pending; nodes],
            outcome: None,
            tolerated: None,
        }
    }

    /// True once the run's end is decided (a failure or a cancel); nothing new starts then.
    pub(super) fn is_stopped(&self) -> bool {
        self.outcome.is_some()
    }

    /// Decides the run's end unless it already is; true when this call decided it.
    pub(super) fn stop(&mut self, outcome: Outcome) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        self.outcome = Some(outcome);
        true
    }

    /// The first pending node at or after `from` (graph order) whose condition is decided.
    /// A node whose condition can never hold is marked failed before it is returned, so the
    /// nodes after it see that in the same pass.
    pub(super) fn next_ready(&mut self, from: usize, conditions: &[Option<Cond>]) -> Option<Ready> {
        for i in from..self.nodes.len() {
            if self.nodes[i] != Node::Pending {
                continue;
            }
            let decided = match conditions.get(i).and_then(Option::as_ref) {
                None => Some(true),
                Some(cond) => cond.eval(&|j| match self.nodes.get(j) {
                    Some(Node::Done { ok }) => Some(*ok),
                    _ => None,
                }),
            };
            match decided {
                Some(true) => return Some(Ready::Start(i)),
                Some(false) => {
                    self.nodes[i] = Node::Done { ok: false };
                    return Some(Ready::UpstreamFailed(i));
                }
                None => {}
            }
        }
        None
    }

    /// Node `i` was spawned.
    pub(super) fn start(&mut self, i: usize) {
        self.nodes[i] = Node::Running;
    }

    /// Node `i` could not even be prepared (unknown callable, bad input): the run fails.
    pub(super) fn not_started(&mut self, i: usize, message: String) {
        self.nodes[i] = Node::Done { ok: false };
        self.stop(Outcome::Failed(message));
    }

    pub(super) fn succeeded(&mut self, i: usize) {
        self.nodes[i] = Node::Done { ok: true };
    }

    /// Node `i` was cancelled (or ended while the run was stopping).
    pub(super) fn cancelled(&mut self, i: usize) {
        self.nodes[i] = Node::Done { ok: false };
    }

    /// Node `i` failed with `message` under `policy`.
    pub(super) fn failed(&mut self, i: usize, policy: FailPolicy, message: String) -> AfterFailure {
        match policy {
            FailPolicy::Stop => {
                self.nodes[i] = Node::Done { ok: false };
                self.stop(Outcome::Failed(message));
                AfterFailure::StopRun
            }
            FailPolicy::Isolate => {
                self.nodes[i] = Node::Done { ok: false };
                self.tolerated.get_or_insert(message);
                AfterFailure::Isolated
            }
            FailPolicy::Continue => {
                self.nodes[i] = Node::Done { ok: true };
                self.tolerated.get_or_insert(message);
                AfterFailure::Continued
            }
        }
    }

    /// How the run ended once nothing runs any more (`cancelled`: the run's cancel fired),
    /// and the nodes that never started.
    pub(super) fn finish(self, cancelled: bool) -> (Outcome, Vec<usize>) {
        let never_started = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == Node::Pending)
            .map(|(i, _)| i)
            .collect();
        let outcome = match self.outcome {
            Some(o) => o,
            None if cancelled => Outcome::Cancelled,
            None if self.nodes.iter().all(|n| matches!(n, Node::Done { .. })) => {
                Outcome::Completed(self.tolerated)
            }
            // Cycles are rejected at parse time; this is the original's message for a stuck
            // graph.
            None => Outcome::Failed("Deadlock or cycle detected in workflow".to_string()),
        };
        (outcome, never_started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::yaml::parse_flow_yaml;

    fn conditions(graph: &str, tasks: &[&str]) -> (Vec<String>, Vec<Option<Cond>>) {
        let tasks: Vec<String> = tasks
            .iter()
            .map(|t| format!("{t}: {{callable: 'pyoco:echo'}}"))
            .collect();
        let yaml = format!(
            "flow: {{graph: '{graph}'}}\ntasks: {{{}}}\n",
            tasks.join(", ")
        );
        let spec = parse_flow_yaml(yaml.as_bytes()).expect("valid flow");
        (spec.graph.nodes.clone(), spec.graph.conditions.clone())
    }

    fn index(nodes: &[String], name: &str) -> usize {
        nodes.iter().position(|n| n == name).expect("node exists")
    }

    #[test]
    fn roots_start_first_and_a_sequence_waits_for_its_upstream() {
        let (nodes, conds) = conditions("a >> b", &["a", "b"]);
        let (a, b) = (index(&nodes, "a"), index(&nodes, "b"));
        let mut s = Schedule::new(nodes.len());
        assert_eq!(s.next_ready(0, &conds), Some(Ready::Start(a)));
        s.start(a);
        assert_eq!(s.next_ready(0, &conds), None, "b waits while a runs");
        s.succeeded(a);
        assert_eq!(s.next_ready(0, &conds), Some(Ready::Start(b)));
        s.start(b);
        s.succeeded(b);
        assert_eq!(s.finish(false), (Outcome::Completed(None), vec![]));
    }

    #[test]
    fn stop_policy_fails_the_run_and_leaves_the_rest_pending() {
        let (nodes, _) = conditions("a >> b", &["a", "b"]);
        let (a, b) = (index(&nodes, "a"), index(&nodes, "b"));
        let mut s = Schedule::new(nodes.len());
        s.start(a);
        assert_eq!(
            s.failed(a, FailPolicy::Stop, "boom".into()),
            AfterFailure::StopRun
        );
        assert!(s.is_stopped());
        assert!(!s.stop(Outcome::Cancelled), "the first decision wins");
        assert_eq!(s.finish(false), (Outcome::Failed("boom".into()), vec![b]));
    }

    #[test]
    fn isolate_fails_downstream_without_running_it_and_continue_runs_it() {
        let (nodes, conds) = conditions("a >> b", &["a", "b"]);
        let (a, b) = (index(&nodes, "a"), index(&nodes, "b"));
        let mut s = Schedule::new(nodes.len());
        s.start(a);
        assert_eq!(
            s.failed(a, FailPolicy::Isolate, "first".into()),
            AfterFailure::Isolated
        );
        assert_eq!(s.next_ready(0, &conds), Some(Ready::UpstreamFailed(b)));
        assert_eq!(s.next_ready(0, &conds), None);
        assert_eq!(
            s.finish(false),
            (Outcome::Completed(Some("first".into())), vec![])
        );

        let mut s = Schedule::new(nodes.len());
        s.start(a);
        assert_eq!(
            s.failed(a, FailPolicy::Continue, "soft".into()),
            AfterFailure::Continued
        );
        assert_eq!(s.next_ready(0, &conds), Some(Ready::Start(b)));
    }

    #[test]
    fn an_or_join_starts_on_the_first_success() {
        let (nodes, conds) = conditions("(a | b) >> c", &["a", "b", "c"]);
        let (a, b, c) = (index(&nodes, "a"), index(&nodes, "b"), index(&nodes, "c"));
        let mut s = Schedule::new(nodes.len());
        s.start(a);
        s.start(b);
        assert_eq!(s.next_ready(0, &conds), None);
        s.succeeded(b);
        assert_eq!(s.next_ready(0, &conds), Some(Ready::Start(c)));
    }

    #[test]
    fn a_cancel_ends_the_run_cancelled_with_unstarted_nodes_listed() {
        let (nodes, _) = conditions("a >> b", &["a", "b"]);
        let (a, b) = (index(&nodes, "a"), index(&nodes, "b"));
        let mut s = Schedule::new(nodes.len());
        s.start(a);
        s.cancelled(a);
        assert_eq!(s.finish(true), (Outcome::Cancelled, vec![b]));
    }

    #[test]
    fn a_preparation_error_fails_the_run() {
        let mut s = Schedule::new(1);
        s.not_started(0, "unknown callable".into());
        assert_eq!(
            s.finish(false).0,
            Outcome::Failed("unknown callable".into())
        );
    }
}
