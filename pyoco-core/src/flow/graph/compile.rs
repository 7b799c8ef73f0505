//! Syntax tree to [`Graph`]: every scope (the flow, each control construct's body) becomes a
//! [`Block`] of steps with start conditions, built like the plain graph language.

use std::collections::{HashMap, HashSet};

use super::parser::{Ast, ControlAst, ControlAstKind, Pos, Statement};
use super::{
    Block, Cond, Control, ControlKind, Graph, GraphError, MAX_CONDITION_REFS, Step, find_cycle,
    syntax,
};
use crate::flow::expr::Bare;

#[derive(Debug)]
struct Fragment {
    heads: Vec<usize>,
    /// `None` only for `flow` before its first `flow >>` statement.
    tails: Option<Cond>,
}

#[derive(Debug, Default)]
struct Scope {
    steps: Vec<Step>,
    index: HashMap<String, usize>,
    /// Per step, the AND-ed parts of its condition; `seen` drops exact duplicates in
    /// constant time (a step may be the target of many statements).
    conditions: Vec<Vec<Cond>>,
    seen: Vec<HashSet<Cond>>,
}

impl Scope {
    fn push(&mut self, step: Step) -> usize {
        self.steps.push(step);
        self.conditions.push(Vec::new());
        self.seen.push(HashSet::new());
        self.steps.len() - 1
    }
}

#[derive(Debug, Default)]
struct Compiler {
    refs: usize,
    /// Every task name, in order of first appearance in any scope.
    tasks: Vec<String>,
    known: HashSet<String>,
    /// Foreach aliases in scope, outermost first.
    aliases: Vec<String>,
    /// Enclosing loops.
    loops: usize,
    control: bool,
}

pub(super) fn compile(statements: Vec<Statement>) -> Result<Graph, GraphError> {
    let mut c = Compiler::default();
    let mut scope = Scope::default();
    let mut flow_tail: Option<Cond> = None;
    for statement in statements {
        let fragment = c.fragment(&mut scope, statement.ast, &flow_tail)?;
        // The running tail persists across statements, as in the original.
        if statement.flow {
            flow_tail = fragment.tails;
        }
    }
    let block = finish(scope, None)?;
    if c.control {
        let n = c.tasks.len();
        return Ok(Graph {
            nodes: c.tasks,
            conditions: vec![None; n],
            control: Some(block),
        });
    }
    Ok(Graph {
        nodes: block.steps.iter().map(|s| s.label().to_string()).collect(),
        conditions: block.conditions,
        control: None,
    })
}

/// One condition per step (`None` for roots, a single item as is, else `All`), cycles
/// rejected.
fn finish(scope: Scope, tails: Option<Cond>) -> Result<Block, GraphError> {
    let conditions: Vec<Option<Cond>> = scope
        .conditions
        .into_iter()
        .map(|mut items| match items.len() {
            0 => None,
            1 => items.pop(),
            _ => Some(Cond::All(items)),
        })
        .collect();
    if let Some(path) = find_cycle(&conditions) {
        return Err(GraphError::Cycle {
            path: path
                .into_iter()
                .map(|i| scope.steps[i].label().to_string())
                .collect(),
        });
    }
    Ok(Block {
        steps: scope.steps,
        conditions,
        tails,
    })
}

impl Compiler {
    fn fragment(
        &mut self,
        scope: &mut Scope,
        ast: Ast,
        flow_tail: &Option<Cond>,
    ) -> Result<Fragment, GraphError> {
        Ok(match ast {
            Ast::Flow => Fragment {
                heads: Vec::new(),
                tails: flow_tail.clone(),
            },
            Ast::Task(name) => {
                if self.known.insert(name.clone()) {
                    self.tasks.push(name.clone());
                }
                let i = match scope.index.get(&name) {
                    Some(&i) => i,
                    None => {
                        let i = scope.push(Step::Task(name.clone()));
                        scope.index.insert(name, i);
                        i
                    }
                };
                Fragment {
                    heads: vec![i],
                    tails: Some(Cond::Task(i)),
                }
            }
            Ast::Seq(items, ops) => {
                let mut items = items.into_iter();
                let mut lhs = match items.next() {
                    Some(first) => self.fragment(scope, first, flow_tail)?,
                    None => return Err(GraphError::Empty),
                };
                for (item, op) in items.zip(ops) {
                    let rhs = self.fragment(scope, item, flow_tail)?;
                    if let Some(tails) = &lhs.tails {
                        for &head in &rhs.heads {
                            self.add_condition(scope, head, tails.clone(), op)?;
                        }
                    }
                    lhs = Fragment {
                        heads: lhs.heads,
                        tails: rhs.tails,
                    };
                }
                lhs
            }
            Ast::And(items) => {
                self.join(scope, items, flow_tail, Cond::All, Cond::into_all_items)?
            }
            Ast::Or(items) => {
                self.join(scope, items, flow_tail, Cond::Any, Cond::into_any_items)?
            }
            Ast::Control(control) => {
                self.control = true;
                let control = self.control(*control)?;
                let i = scope.push(Step::Control(Box::new(control)));
                Fragment {
                    heads: vec![i],
                    tails: Some(Cond::Task(i)),
                }
            }
        })
    }

    /// `&` and `|`: union of heads, tails joined and flattened.
    fn join(
        &mut self,
        scope: &mut Scope,
        items: Vec<Ast>,
        flow_tail: &Option<Cond>,
        make: fn(Vec<Cond>) -> Cond,
        flatten: fn(Cond) -> Vec<Cond>,
    ) -> Result<Fragment, GraphError> {
        let mut heads = Vec::new();
        let mut tails: Option<Cond> = None;
        for item in items {
            let fragment = self.fragment(scope, item, flow_tail)?;
            // Duplicate heads are harmless (conditions are de-duplicated).
            heads.extend(fragment.heads);
            tails = match (tails, fragment.tails) {
                (Some(l), Some(r)) => {
                    let mut all = flatten(l);
                    all.extend(flatten(r));
                    Some(make(all))
                }
                (l, r) => l.or(r),
            };
        }
        Ok(Fragment { heads, tails })
    }

    fn control(&mut self, ast: ControlAst) -> Result<Control, GraphError> {
        let in_loop = self.loops > 0;
        let kind = match ast.kind {
            ControlAstKind::Switch { mut on, cases } => {
                on.expr
                    .bind(&self.aliases, in_loop, Bare::Params)
                    .map_err(|e| on.error(e))?;
                let mut blocks = Vec::new();
                let mut default = None;
                for (value, fragment) in cases {
                    let block = self.body(fragment)?;
                    match value {
                        Some(value) => blocks.push((value, block)),
                        None => default = Some(block),
                    }
                }
                ControlKind::Switch {
                    on: on.expr,
                    cases: blocks,
                    default,
                }
            }
            ControlAstKind::Repeat { body, count } => {
                self.loops += 1;
                let body = self.body(body);
                self.loops -= 1;
                ControlKind::Repeat { count, body: body? }
            }
            ControlAstKind::Foreach {
                body,
                mut over,
                alias,
            } => {
                self.loops += 1;
                self.aliases.extend(alias.clone());
                let body = self.body(body);
                if alias.is_some() {
                    self.aliases.pop();
                }
                self.loops -= 1;
                let body = body?;
                over.expr
                    .bind(&self.aliases, in_loop, Bare::Params)
                    .map_err(|e| over.error(e))?;
                ControlKind::Foreach {
                    over: over.expr,
                    alias,
                    body,
                }
            }
            ControlAstKind::Until {
                body,
                mut cond,
                max_iter,
            } => {
                self.loops += 1;
                let body = self.body(body);
                let bound = cond.expr.bind(&self.aliases, true, Bare::Ctx);
                self.loops -= 1;
                let body = body?;
                bound.map_err(|e| cond.error(e))?;
                ControlKind::Until {
                    cond: cond.expr,
                    max_iter,
                    body,
                }
            }
        };
        Ok(Control {
            label: ast.label,
            kind,
        })
    }

    /// A control construct's body: a scope of its own.
    fn body(&mut self, ast: Ast) -> Result<Block, GraphError> {
        let mut scope = Scope::default();
        let fragment = self.fragment(&mut scope, ast, &None)?;
        finish(scope, fragment.tails)
    }

    /// AND-s `cond` onto the step's condition, dropping exact duplicates.
    fn add_condition(
        &mut self,
        scope: &mut Scope,
        step: usize,
        cond: Cond,
        op: Pos,
    ) -> Result<(), GraphError> {
        self.refs += cond.ref_count();
        if self.refs > MAX_CONDITION_REFS {
            return Err(syntax(
                op.line,
                op.column,
                format!(
                    "graph too large (more than {MAX_CONDITION_REFS} task references in conditions)"
                ),
            ));
        }
        let (Some(items), Some(seen)) = (scope.conditions.get_mut(step), scope.seen.get_mut(step))
        else {
            return Ok(());
        };
        for item in cond.into_all_items() {
            if seen.insert(item.clone()) {
                items.push(item);
            }
        }
        Ok(())
    }
}
