//! The expression language of control constructs: switch values, foreach sources and until
//! conditions. Like the graph, expressions are **parsed, never executed**: a small evaluator
//! over JSON values with Python's operators and semantics.
//!
//! ```text
//! expr       := or
//! or         := and ('or' and)*
//! and        := not ('and' not)*
//! not        := 'not' not | comparison
//! comparison := arith (('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not' 'in') arith)*
//! arith      := term (('+' | '-') term)*
//! term       := unary (('*' | '/' | '%') unary)*
//! unary      := ('-' | '+') unary | power
//! power      := primary ('**' unary)?
//! primary    := NUMBER | STRING | true | false | True | False | None | null
//!             | '$ctx' ('.' KEY)+ | '$env' '.' NAME | NAME ('.' KEY)* | '(' expr ')'
//! ```
//!
//! `$ctx.<root>...` reads `params`, `results` (task outputs by task name), `loop` (the
//! innermost loop frame), `loops` (all frames, outermost first) or a foreach alias. Bare
//! paths whose head is one of those (`params.x`, `results.t.k`, `item`) mean the same;
//! `ctx.x` is `$ctx.x` and `env.X` is `$env.X`. An expression that is a single other name
//! is normalised like pyoco's text DSL: `$ctx.params.<name>` for switch and foreach,
//! `$ctx.<name>` for until. Comparisons chain as in Python (`0 < x < 3`).

mod lex;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde_json::{Map, Value};

pub use value::{py_eq, py_repr, py_repr_str, truthy};

/// Roots of `$ctx` besides foreach aliases.
const ROOTS: &[&str] = &["params", "results", "loop", "loops"];
/// Names the original reserves; they cannot be foreach aliases.
pub const RESERVED_ALIASES: &[&str] = &[
    "params",
    "results",
    "scratch",
    "loop",
    "loops",
    "env",
    "artifacts",
    "ctx",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "is", "if", "else", "for", "lambda", "True", "False", "true",
    "false", "None", "null",
];
/// Deeper nesting is rejected so that hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// How a lone name is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// `name` is `$ctx.params.name` (switch values, foreach sources).
    Params,
    /// `name` is `$ctx.name` (until conditions).
    Ctx,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    node: Node,
}

/// Why an expression was rejected; `at` is the index (in characters) of the offending spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub at: usize,
    pub message: String,
}

fn error(at: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        at,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    /// `$ctx.<path>`, checked by [`Expr::bind`].
    Ctx(Vec<String>, usize),
    Env(String),
    /// A bare name or dotted path, resolved by [`Expr::bind`].
    Bare(Vec<String>, usize),
    Not(Box<Node>),
    Neg(Box<Node>),
    Pos(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Box<Node>, Vec<(Cmp, Node)>),
}

/// What expressions can read.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub params: &'a Map<String, Value>,
    pub results: &'a HashMap<String, Value>,
    /// Loop frames, outermost first; foreach frames carry `alias` and `item`.
    pub frames: &'a [Value],
}

/// Parses `src`; references are checked later by [`Expr::bind`].
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let tokens = lex::lex(src)?;
    let mut p = parse::Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let node = p.expr()?;
    let next = p.peek();
    if next.tok != lex::T::End {
        return Err(error(
            next.at,
            format!("unexpected {} after the expression", next.tok.describe()),
        ));
    }
    Ok(Expr {
        source: src.to_string(),
        node: node.0,
    })
}

impl Expr {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Resolves bare names and checks every `$ctx` root against the foreach `aliases` in
    /// scope; `in_loop` allows `loop`/`loops`.
    pub fn bind(&mut self, aliases: &[String], in_loop: bool, bare: Bare) -> Result<(), ExprError> {
        if let Node::Bare(path, at) = &self.node
            && path.len() == 1
            && !is_root(&path[0], aliases)
            && !matches!(path[0].as_str(), "ctx" | "env")
        {
            self.node = match bare {
                Bare::Params => Node::Ctx(vec!["params".into(), path[0].clone()], *at),
                Bare::Ctx => Node::Ctx(path.clone(), *at),
            };
        }
        bind_node(&mut self.node, aliases, in_loop)
    }

    /// Evaluates; the error says what went wrong (a missing key, a type error).
    pub fn eval(&self, vars: &Vars<'_>) -> Result<Value, String> {
        eval(&self.node, vars)
    }
}

fn is_root(name: &str, aliases: &[String]) -> bool {
    ROOTS.contains(&name) || aliases.iter().any(|a| a == name)
}

fn bind_node(node: &mut Node, aliases: &[String], in_loop: bool) -> Result<(), ExprError> {
    match node {
        Node::Bare(path, at) => {
            let at = *at;
            let head = path[0].as_str();
            *node = match head {
                "ctx" if path.len() > 1 => Node::Ctx(path[1..].to_vec(), at),
                "env" if path.len() == 2 => Node::Env(path[1].clone()),
                "ctx" | "env" => {
                    return Err(error(at, format!("expected {head}.<name>")));
                }
                _ if is_root(head, aliases) || path.len() > 1 => Node::Ctx(path.clone(), at),
                _ => {
                    return Err(error(
                        at,
                        format!(
                            "unknown name '{head}' (use $ctx.params.{head}, $ctx.results.<task> or a foreach alias)"
                        ),
                    ));
                }
            };
            bind_node(node, aliases, in_loop)
        }
        Node::Ctx(path, at) => {
            let head = path[0].as_str();
            if matches!(head, "scratch" | "artifacts") {
                return Err(error(*at, format!("$ctx.{head} is not supported")));
            }
            if !is_root(head, aliases) {
                return Err(error(
                    *at,
                    format!(
                        "unknown context '$ctx.{head}' (expected params, results, loop, loops or a foreach alias in scope)"
                    ),
                ));
            }
            if matches!(head, "loop" | "loops") && !in_loop {
                return Err(error(
                    *at,
                    format!("$ctx.{head} is only available inside repeat, foreach and until"),
                ));
            }
            Ok(())
        }
        Node::Lit(_) | Node::Env(_) => Ok(()),
        Node::Not(a) | Node::Neg(a) | Node::Pos(a) => bind_node(a, aliases, in_loop),
        Node::And(a, b) | Node::Or(a, b) | Node::Arith(_, a, b) => {
            bind_node(a, aliases, in_loop)?;
            bind_node(b, aliases, in_loop)
        }
        Node::Cmp(first, rest) => {
            bind_node(first, aliases, in_loop)?;
            rest.iter_mut()
                .try_for_each(|(_, n)| bind_node(n, aliases, in_loop))
        }
    }
}

fn eval(node: &Node, vars: &Vars<'_>) -> Result<Value, String> {
    match node {
        Node::Lit(v) => Ok(v.clone()),
        Node::Ctx(path, _) => lookup(path, vars),
        Node::Env(name) => std::env::var(name)
            .map(Value::String)
            .map_err(|_| format!("environment variable '{name}' is not set")),
        Node::Bare(path, _) => Err(format!("unresolved name '{}'", path.join("."))),
        Node::Not(a) => Ok(Value::Bool(!truthy(&eval(a, vars)?))),
        Node::Neg(a) => value::neg(&eval(a, vars)?),
        Node::Pos(a) => value::pos(&eval(a, vars)?),
        Node::And(a, b) => {
            let l = eval(a, vars)?;
            if truthy(&l) { eval(b, vars) } else { Ok(l) }
        }
        Node::Or(a, b) => {
            let l = eval(a, vars)?;
            if truthy(&l) { Ok(l) } else { eval(b, vars) }
        }
        Node::Arith(op, a, b) => {
            let (l, r) = (eval(a, vars)?, eval(b, vars)?);
            match op {
                Arith::Add => value::add(&l, &r),
                Arith::Sub => value::sub(&l, &r),
                Arith::Mul => value::mul(&l, &r),
                Arith::Div => value::div(&l, &r),
                Arith::Mod => value::modulo(&l, &r),
                Arith::Pow => value::pow(&l, &r),
            }
        }
        Node::Cmp(first, rest) => {
            let mut left = eval(first, vars)?;
            for (op, node) in rest {
                let right = eval(node, vars)?;
                let holds = match op {
                    Cmp::Eq => py_eq(&left, &right),
                    Cmp::Ne => !py_eq(&left, &right),
                    Cmp::Lt => value::compare(&left, &right, "<")?.is_lt(),
                    Cmp::Le => value::compare(&left, &right, "<=")?.is_le(),
                    Cmp::Gt => value::compare(&left, &right, ">")?.is_gt(),
                    Cmp::Ge => value::compare(&left, &right, ">=")?.is_ge(),
                    Cmp::In => value::contains(&right, &left)?,
                    Cmp::NotIn => !value::contains(&right, &left)?,
                };
                if !holds {
                    return Ok(Value::Bool(false));
                }
                left = right;
            }
            Ok(Value::Bool(true))
        }
    }
}

fn lookup(path: &[String], vars: &Vars<'_>) -> Result<Value, String> {
    let head = path[0].as_str();
    let rest = &path[1..];
    let (root, rest): (Value, &[String]) = match head {
        "params" | "results" if rest.is_empty() => {
            return Ok(match head {
                "params" => Value::Object(vars.params.clone()),
                _ => Value::Object(
                    vars.results
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            });
        }
        "params" => (
            vars.params
                .get(&rest[0])
                .cloned()
                .ok_or_else(|| format!("'{}' is not a run param ($ctx.params)", rest[0]))?,
            &rest[1..],
        ),
        "results" => (
            vars.results
                .get(&rest[0])
                .cloned()
                .ok_or_else(|| format!("task '{}' has no result yet ($ctx.results)", rest[0]))?,
            &rest[1..],
        ),
        "loop" => (
            vars.frames
                .last()
                .cloned()
                .ok_or("$ctx.loop is not set outside a loop")?,
            rest,
        ),
        "loops" => (Value::Array(vars.frames.to_vec()), rest),
        alias => (
            vars.frames
                .iter()
                .rev()
                .find(|f| f.get("alias").and_then(Value::as_str) == Some(alias))
                .and_then(|f| f.get("item"))
                .cloned()
                .ok_or_else(|| format!("foreach alias '{alias}' is not set"))?,
            rest,
        ),
    };
    let mut current = &root;
    for (i, key) in rest.iter().enumerate() {
        let next = match current {
            Value::Object(m) => m.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|k| items.get(k)),
            _ => None,
        };
        current = next.ok_or_else(|| {
            let within = path[..path.len() - rest.len() + i].join(".");
            format!("'{key}' not found in $ctx.{within}")
        })?;
    }
    Ok(current.clone())
}
