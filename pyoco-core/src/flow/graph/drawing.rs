//! The graph as the dashboard draws it (stored in the run snapshot as `flow_graph`): every
//! task once, and an edge from each task to the tasks that may start after it.

use serde_json::{Value, json};

use super::{Block, ControlKind, Graph, Step};

impl Graph {
    /// `{"nodes": [task, ...], "edges": [[from, to], ...]}`. A plain DAG has an edge from every
    /// task a node's start condition names. A control-flow graph takes its edges from the
    /// blocks: from the last tasks of a step to the first tasks of each step waiting for it,
    /// into and out of every body (the cases of a switch side by side; loops without a back
    /// edge).
    pub fn drawing(&self) -> Value {
        let mut edges: Vec<[&str; 2]> = Vec::new();
        match &self.control {
            None => {
                for to in 0..self.nodes.len() {
                    for from in self.dependencies(to) {
                        if let (Some(a), Some(b)) = (self.nodes.get(from), self.nodes.get(to)) {
                            edges.push([a, b]);
                        }
                    }
                }
            }
            Some(block) => block_edges(block, &mut edges),
        }
        let mut seen = std::collections::HashSet::new();
        edges.retain(|e| seen.insert(*e));
        json!({"nodes": self.nodes, "edges": edges})
    }
}

fn bodies(step: &Step) -> Vec<&Block> {
    let Step::Control(control) = step else {
        return Vec::new();
    };
    match &control.kind {
        ControlKind::Switch { cases, default, .. } => cases
            .iter()
            .map(|(_, body)| body)
            .chain(default.as_ref())
            .collect(),
        ControlKind::Repeat { body, .. }
        | ControlKind::Foreach { body, .. }
        | ControlKind::Until { body, .. } => vec![body],
    }
}

/// The tasks a step starts with.
fn entries(step: &Step) -> Vec<&str> {
    match step {
        Step::Task(name) => vec![name.as_str()],
        Step::Control(_) => bodies(step)
            .into_iter()
            .flat_map(|body| {
                body.steps
                    .iter()
                    .zip(&body.conditions)
                    .filter(|(_, cond)| cond.is_none())
                    .flat_map(|(s, _)| entries(s))
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

/// The tasks a step ends with: in each body, the steps no other step waits for.
fn exits(step: &Step) -> Vec<&str> {
    match step {
        Step::Task(name) => vec![name.as_str()],
        Step::Control(_) => bodies(step)
            .into_iter()
            .flat_map(|body| {
                let waited_for: Vec<usize> = body
                    .conditions
                    .iter()
                    .flatten()
                    .flat_map(|c| c.tasks())
                    .collect();
                body.steps
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !waited_for.contains(i))
                    .flat_map(|(_, s)| exits(s))
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

fn block_edges<'g>(block: &'g Block, edges: &mut Vec<[&'g str; 2]>) {
    for (to, cond) in block.steps.iter().zip(&block.conditions) {
        let Some(cond) = cond else { continue };
        for from in cond.tasks().into_iter().filter_map(|i| block.steps.get(i)) {
            for a in exits(from) {
                for b in entries(to) {
                    edges.push([a, b]);
                }
            }
        }
    }
    for step in &block.steps {
        for body in bodies(step) {
            block_edges(body, edges);
        }
    }
}
