//! The graph language of `flow.graph`.
//!
//! The Python original `exec`s the graph string; we parse a small, safe
//! expression language with Python's operator precedence instead
//! (postfix `[...]` binds tightest, then `%`, then `>>`, then `&`, then `|`):
//!
//! ```text
//! program   := statement ((NEWLINE | ';') statement)*
//! statement := or_expr                      -- may start with `flow >>`
//! or_expr   := and_expr ('|' and_expr)*
//! and_expr  := seq_expr ('&' seq_expr)*
//! seq_expr  := until ('>>' until)*
//! until     := postfix ('%' (STRING | '(' STRING ',' INT ')'))*     -- until
//! postfix   := atom ('[' (INT | STRING) ']')*                       -- repeat / foreach
//! atom      := IDENT | '(' or_expr ')' | switch
//! switch    := 'switch' '(' STRING ')' '[' case (',' case)* ','? ']'
//! case      := (STRING | NUMBER | true | false | True | False) '>>' or_expr
//! ```
//!
//! Every expression evaluates to a fragment with *heads* (the nodes that start
//! it) and *tails* (a [`Cond`] that holds once it is done). `A >> B` makes every
//! head of `B` wait for the tails of `A`; `A & B` joins the tails with AND,
//! `A | B` with OR.
//!
//! A control construct (switch, repeat, foreach, until) is one *composite step* of the
//! fragment around it; its body (each case of a switch) is a [`Block`] of its own, with the
//! same language inside. A graph without control constructs is a plain DAG
//! ([`Graph::control`] is `None`); see `spec/flow-yaml.md` for the user-facing contract.

mod compile;
mod drawing;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use serde_json::Value;

use super::expr::Expr;

/// Deeper nesting is rejected so that hostile input cannot exhaust the stack.
const MAX_NESTING: usize = 64;
/// Upper bound on task references stored in conditions: `(a & b & ...) >> (x & y & ...)`
/// copies the left side into every head, so the size is quadratic in the input.
const MAX_CONDITION_REFS: usize = 100_000;

/// A parsed graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Task names in order of first appearance in the source (in control-flow mode:
    /// anywhere, bodies of control constructs included).
    pub nodes: Vec<String>,
    /// `conditions[i]` must hold before node `i` may start; `None` marks a root. In
    /// control-flow mode every entry is `None`: the conditions live in [`Graph::control`].
    pub conditions: Vec<Option<Cond>>,
    /// `Some` when the graph uses a control construct: the flow as a block of steps, run
    /// by the control-flow executor.
    pub control: Option<Block>,
}

/// A scope of the control-flow form: steps and their start conditions (over step indices).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub steps: Vec<Step>,
    pub conditions: Vec<Option<Cond>>,
    /// What must hold for the block to count as succeeded (`None` for the flow itself).
    pub tails: Option<Cond>,
}

/// One step of a [`Block`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Task(String),
    Control(Box<Control>),
}

impl Step {
    /// The task name, or the construct as written (shortened).
    pub fn label(&self) -> &str {
        match self {
            Step::Task(name) => name,
            Step::Control(c) => &c.label,
        }
    }
}

/// A control construct.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// The construct as written, on one line, shortened.
    pub label: String,
    pub kind: ControlKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ControlKind {
    /// Runs the first case whose value equals (Python `==`) the expression's value, else
    /// `default`, else fails with `SwitchNoMatch`.
    Switch {
        on: Expr,
        cases: Vec<(Value, Block)>,
        default: Option<Block>,
    },
    /// `F[n]`.
    Repeat { count: u64, body: Block },
    /// `F["<expr> as <alias>"]`: once per item of the list.
    Foreach {
        over: Expr,
        alias: Option<String>,
        body: Block,
    },
    /// `F % "<cond>"`: the body, then the condition, until it holds (at most `max_iter`).
    Until {
        cond: Expr,
        max_iter: u64,
        body: Block,
    },
}

/// A start condition over node indices of a [`Graph`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cond {
    /// The node succeeded.
    Task(usize),
    /// Every sub-condition holds (AND-join).
    All(Vec<Cond>),
    /// At least one sub-condition holds (OR-join).
    Any(Vec<Cond>),
}

impl Cond {
    /// Every node referenced, without duplicates, in order of first reference.
    pub fn tasks(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        self.collect_tasks(&mut out, &mut seen);
        out
    }

    fn collect_tasks(&self, out: &mut Vec<usize>, seen: &mut HashSet<usize>) {
        match self {
            Cond::Task(i) => {
                if seen.insert(*i) {
                    out.push(*i);
                }
            }
            Cond::All(items) | Cond::Any(items) => {
                for item in items {
                    item.collect_tasks(out, seen);
                }
            }
        }
    }

    /// Three-valued evaluation.
    ///
    /// `state(i)` is `Some(true)` when node `i` succeeded, `Some(false)` when it
    /// failed, was cancelled or skipped, and `None` while it is pending or running.
    /// The result is `Some(true)` when the condition is satisfied, `Some(false)`
    /// when it can never be satisfied and `None` when it is not decided yet.
    pub fn eval(&self, state: &dyn Fn(usize) -> Option<bool>) -> Option<bool> {
        match self {
            Cond::Task(i) => state(*i),
            Cond::All(items) => {
                let mut undecided = false;
                for item in items {
                    match item.eval(state) {
                        Some(false) => return Some(false),
                        None => undecided = true,
                        Some(true) => {}
                    }
                }
                if undecided { None } else { Some(true) }
            }
            Cond::Any(items) => {
                let mut undecided = false;
                for item in items {
                    match item.eval(state) {
                        Some(true) => return Some(true),
                        None => undecided = true,
                        Some(false) => {}
                    }
                }
                if undecided { None } else { Some(false) }
            }
        }
    }

    fn ref_count(&self) -> usize {
        match self {
            Cond::Task(_) => 1,
            Cond::All(items) | Cond::Any(items) => items.iter().map(Cond::ref_count).sum(),
        }
    }

    fn into_all_items(self) -> Vec<Cond> {
        match self {
            Cond::All(items) => items,
            other => vec![other],
        }
    }

    fn into_any_items(self) -> Vec<Cond> {
        match self {
            Cond::Any(items) => items,
            other => vec![other],
        }
    }
}

impl Graph {
    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n == name)
    }

    /// True when the graph uses a control construct.
    pub fn is_control_flow(&self) -> bool {
        self.control.is_some()
    }

    /// The nodes that `node`'s condition refers to (empty for a root).
    pub fn dependencies(&self, node: usize) -> Vec<usize> {
        match self.conditions.get(node) {
            Some(Some(cond)) => cond.tasks(),
            _ => Vec::new(),
        }
    }
}

/// Why a graph was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The source is not in the language; `line` and `column` are 1-based
    /// (columns count characters) and point at the offending token.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The source contains no statement.
    #[error("empty graph")]
    Empty,
    /// A node transitively depends on itself; `path` follows the flow
    /// direction and ends where it started, e.g. `["a", "b", "a"]`.
    #[error("cycle detected: {}", path.join(" -> "))]
    Cycle { path: Vec<String> },
}

/// Parses a graph and rejects cycles.
pub fn parse(src: &str) -> Result<Graph, GraphError> {
    let statements = parser::Parser::new(src).parse_program()?;
    compile::compile(statements)
}

fn syntax(line: usize, column: usize, message: impl Into<String>) -> GraphError {
    GraphError::Syntax {
        line,
        column,
        message: message.into(),
    }
}

/// A cycle in flow direction (dependency before dependent), first node repeated at the end.
fn find_cycle(conditions: &[Option<Cond>]) -> Option<Vec<usize>> {
    let n = conditions.len();
    let mut successors = vec![Vec::new(); n];
    for (node, cond) in conditions.iter().enumerate() {
        for dep in cond.as_ref().map(Cond::tasks).unwrap_or_default() {
            if dep < n {
                successors[dep].push(node);
            }
        }
    }
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut color = vec![0u8; n];
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            if let Some(&succ) = successors[node].get(top.1) {
                top.1 += 1;
                match color[succ] {
                    0 => {
                        color[succ] = 1;
                        stack.push((succ, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(v, _)| v == succ).unwrap_or(0);
                        let mut path: Vec<usize> = stack[from..].iter().map(|&(v, _)| v).collect();
                        path.push(succ);
                        return Some(path);
                    }
                    _ => {}
                }
            } else {
                color[node] = 2;
                stack.pop();
            }
        }
    }
    None
}
