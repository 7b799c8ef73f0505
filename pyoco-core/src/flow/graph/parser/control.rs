//! The control constructs of the graph language: `switch(...)[...]`, `F[n]`,
//! `F["<expr> as <alias>"]` and `F % "<cond>"`.

use serde_json::Value;

use super::super::lexer::{Tok, Token};
use super::super::{GraphError, MAX_NESTING, syntax};
use super::{Ast, ControlAst, ControlAstKind, Parser, SrcExpr};
use crate::flow::expr::{self, RESERVED_ALIASES};

impl Parser<'_> {
    /// `F % "cond"` and `F % ("cond", max_iter)`.
    pub(super) fn parse_until(&mut self) -> Result<Ast, GraphError> {
        let start = self.peek()?.clone();
        let mut body = self.parse_postfix()?;
        while self.peek()?.tok == Tok::Percent {
            let op = self.advance()?;
            self.skip_newlines()?;
            let token = self.advance()?;
            let (cond, max_iter) = match token.tok {
                Tok::Str(s, chars) => (self.expr(s, chars)?, 1000),
                Tok::LParen => {
                    self.open(&token, "parentheses")?;
                    let cond = match self.advance()? {
                        Token {
                            tok: Tok::Str(s, chars),
                            ..
                        } => self.expr(s, chars)?,
                        other => return Err(self.expected("a condition string", &other)),
                    };
                    let comma = self.advance()?;
                    if comma.tok != Tok::Comma {
                        return Err(self.expected("',' and the maximum iterations", &comma));
                    }
                    let max = self.advance()?;
                    let max_iter = match max.tok {
                        Tok::Int(n) if n >= 1 => n.unsigned_abs(),
                        _ => {
                            return Err(
                                self.expected("the maximum iterations (a whole number >= 1)", &max)
                            );
                        }
                    };
                    let close = self.advance()?;
                    if close.tok != Tok::RParen {
                        return Err(self.expected("')'", &close));
                    }
                    self.depth -= 1;
                    (cond, max_iter)
                }
                _ => {
                    return Err(syntax(
                        op.line,
                        op.column,
                        format!(
                            "'%' must be followed by a condition string or (\"<condition>\", <max_iter>), found {}",
                            token.tok.describe()
                        ),
                    ));
                }
            };
            body = self.control(
                &start,
                ControlAstKind::Until {
                    body,
                    cond,
                    max_iter,
                },
            )?;
        }
        Ok(body)
    }

    /// `F[n]` (repeat) and `F["<expr> as <alias>"]` (foreach).
    pub(super) fn parse_postfix(&mut self) -> Result<Ast, GraphError> {
        let start = self.peek()?.clone();
        let mut body = self.parse_atom()?;
        while self.peek()?.tok == Tok::LBracket {
            let open = self.advance()?;
            self.open(&open, "brackets")?;
            let arg = self.advance()?;
            let kind = match arg.tok {
                Tok::Int(n) if n >= 0 => ControlAstKind::Repeat {
                    body,
                    count: n.unsigned_abs(),
                },
                Tok::Str(s, chars) => {
                    let (over, alias) = self.foreach(s, chars)?;
                    ControlAstKind::Foreach { body, over, alias }
                }
                _ => {
                    return Err(self.expected(
                        "a repeat count (a whole number >= 0) or a foreach string \"<expr> as <name>\"",
                        &arg,
                    ));
                }
            };
            let close = self.advance()?;
            if close.tok != Tok::RBracket {
                return Err(self.expected("']'", &close));
            }
            self.depth -= 1;
            body = self.control(&start, kind)?;
        }
        Ok(body)
    }

    pub(super) fn control(
        &mut self,
        start: &Token,
        kind: ControlAstKind,
    ) -> Result<Ast, GraphError> {
        let body_depth = match &kind {
            ControlAstKind::Switch { cases, .. } => {
                cases.iter().map(|(_, a)| depth_of(a)).max().unwrap_or(0)
            }
            ControlAstKind::Repeat { body, .. }
            | ControlAstKind::Foreach { body, .. }
            | ControlAstKind::Until { body, .. } => depth_of(body),
        };
        if body_depth >= MAX_NESTING {
            return Err(syntax(
                start.line,
                start.column,
                format!("control constructs nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        let end = self.last.as_ref().map_or(start.end, |t| t.end);
        Ok(Ast::Control(Box::new(ControlAst {
            label: label(self.src.get(start.start..end).unwrap_or("?")),
            depth: body_depth + 1,
            kind,
        })))
    }

    pub(super) fn expected(&self, what: &str, found: &Token) -> GraphError {
        syntax(
            found.line,
            found.column,
            format!("expected {what} but found {}", found.tok.describe()),
        )
    }

    pub(super) fn expr(
        &self,
        src: String,
        chars: Vec<(usize, usize)>,
    ) -> Result<SrcExpr, GraphError> {
        match expr::parse(&src) {
            Ok(expr) => Ok(SrcExpr { expr, chars }),
            Err(e) => Err(locate(&chars, e)),
        }
    }

    /// Splits `"<expr> as <alias>"`; the alias is optional.
    pub(super) fn foreach(
        &self,
        s: String,
        chars: Vec<(usize, usize)>,
    ) -> Result<(SrcExpr, Option<String>), GraphError> {
        let text: Vec<char> = s.chars().collect();
        let end = text
            .iter()
            .rposition(|c| !c.is_whitespace())
            .map_or(0, |i| i + 1);
        let word_start = text[..end]
            .iter()
            .rposition(|c| c.is_whitespace())
            .map_or(0, |i| i + 1);
        let before: String = text[..word_start].iter().collect();
        let trimmed = before.trim_end();
        let has_as = word_start > 0
            && trimmed.ends_with("as")
            && trimmed[..trimmed.len() - 2]
                .chars()
                .last()
                .is_some_and(char::is_whitespace);
        if !has_as {
            return Ok((self.expr(s, chars)?, None));
        }
        let alias: String = text[word_start..end].iter().collect();
        let at = chars.get(word_start).copied().unwrap_or((1, 1));
        let valid = alias
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && alias.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !valid {
            return Err(syntax(
                at.0,
                at.1,
                format!("foreach alias '{alias}' is not an identifier"),
            ));
        }
        if RESERVED_ALIASES.contains(&alias.as_str())
            || expr::parse(&alias).is_err()
            || matches!(
                alias.as_str(),
                "true" | "false" | "True" | "False" | "None" | "null"
            )
        {
            return Err(syntax(
                at.0,
                at.1,
                format!("'{alias}' cannot be a foreach alias (reserved name)"),
            ));
        }
        let expr_len = trimmed[..trimmed.len() - 2].trim_end().chars().count();
        let source: String = text[..expr_len].iter().collect();
        let mut expr_chars = chars[..expr_len.min(chars.len())].to_vec();
        expr_chars.push(chars.get(expr_len).copied().unwrap_or(at));
        Ok((self.expr(source, expr_chars)?, Some(alias)))
    }

    /// `switch("<expr>")[<value> >> <fragment>, ..., "*" >> <fragment>]`, after `switch`.
    pub(super) fn parse_switch(&mut self, start: &Token) -> Result<Ast, GraphError> {
        let open = self.advance()?;
        self.open(&open, "parentheses")?;
        let arg = self.advance()?;
        let on = match arg.tok {
            Tok::Str(s, chars) => self.expr(s, chars)?,
            _ => return Err(self.expected("the switch expression as a string", &arg)),
        };
        let close = self.advance()?;
        if close.tok != Tok::RParen {
            return Err(self.expected("')'", &close));
        }
        self.depth -= 1;
        let open = self.advance()?;
        if open.tok != Tok::LBracket {
            return Err(self.expected("'[' and the switch cases", &open));
        }
        self.open(&open, "brackets")?;
        let mut cases: Vec<(Option<Value>, Ast)> = Vec::new();
        loop {
            let key = self.advance()?;
            let value = match &key.tok {
                Tok::RBracket if !cases.is_empty() => break,
                Tok::Str(s, _) if s == "*" => None,
                Tok::Str(s, _) => Some(Value::String(s.clone())),
                Tok::Int(i) => Some(Value::from(*i)),
                Tok::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
                Tok::Ident(b) if matches!(b.as_str(), "true" | "True") => Some(Value::Bool(true)),
                Tok::Ident(b) if matches!(b.as_str(), "false" | "False") => {
                    Some(Value::Bool(false))
                }
                _ => {
                    return Err(self.expected(
                        "a switch case: a value (string, number, true or false) or \"*\", then '>>' and a fragment",
                        &key,
                    ));
                }
            };
            let duplicate = cases.iter().any(|(k, _)| match (k, &value) {
                (None, None) => true,
                (Some(a), Some(b)) => expr::py_eq(a, b),
                _ => false,
            });
            if duplicate {
                let shown = value.as_ref().map_or("\"*\"".to_string(), expr::py_repr);
                return Err(syntax(
                    key.line,
                    key.column,
                    format!("duplicate switch case {shown}"),
                ));
            }
            let arrow = self.advance()?;
            if arrow.tok != Tok::Shr {
                return Err(self.expected("'>>' after the case value", &arrow));
            }
            let fragment = self.parse_or(None)?;
            cases.push((value, fragment));
            let next = self.advance()?;
            match next.tok {
                Tok::Comma => {}
                Tok::RBracket => break,
                _ => return Err(self.expected("',' or ']' after a switch case", &next)),
            }
        }
        self.depth -= 1;
        self.control(start, ControlAstKind::Switch { on, cases })
    }
}

pub(super) fn depth_of(ast: &Ast) -> usize {
    match ast {
        Ast::Flow | Ast::Task(_) => 0,
        Ast::Seq(items, _) | Ast::And(items) | Ast::Or(items) => {
            items.iter().map(depth_of).max().unwrap_or(0)
        }
        Ast::Control(c) => c.depth,
    }
}

/// The source position of an expression error.
pub(super) fn locate(chars: &[(usize, usize)], e: expr::ExprError) -> GraphError {
    let (line, column) = chars.get(e.at).or(chars.last()).copied().unwrap_or((1, 1));
    syntax(line, column, e.message)
}

/// The construct's source, on one line and shortened, for messages.
pub(super) fn label(src: &str) -> String {
    let flat = src.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 60 {
        format!("{}...", flat.chars().take(57).collect::<String>())
    } else {
        flat
    }
}
