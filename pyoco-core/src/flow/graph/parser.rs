//! Source to syntax tree. Everything that can be checked without knowing the scopes is
//! checked here, in source order; [`super::compile`] turns the tree into a graph.

mod control;

use serde_json::Value;

use super::lexer::{Lexer, Tok, Token};
use super::{GraphError, MAX_NESTING, syntax};
use crate::flow::expr;

/// The operator's position, for errors raised while compiling.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pos {
    pub(super) line: usize,
    pub(super) column: usize,
}

#[derive(Debug)]
pub(super) enum Ast {
    /// `flow`, only as the first operand of a statement.
    Flow,
    Task(String),
    /// `items[0] >> items[1] >> ...`; `ops[i]` is the `>>` before `items[i + 1]`.
    Seq(Vec<Ast>, Vec<Pos>),
    And(Vec<Ast>),
    Or(Vec<Ast>),
    Control(Box<ControlAst>),
}

/// An expression with the source positions of its characters.
#[derive(Debug)]
pub(super) struct SrcExpr {
    pub(super) expr: expr::Expr,
    pub(super) chars: Vec<(usize, usize)>,
}

impl SrcExpr {
    pub(super) fn error(&self, e: expr::ExprError) -> GraphError {
        control::locate(&self.chars, e)
    }
}

#[derive(Debug)]
pub(super) struct ControlAst {
    pub(super) label: String,
    /// Levels of control constructs, this one included.
    pub(super) depth: usize,
    pub(super) kind: ControlAstKind,
}

#[derive(Debug)]
pub(super) enum ControlAstKind {
    /// `None` as the case value is the default `"*"`.
    Switch {
        on: SrcExpr,
        cases: Vec<(Option<Value>, Ast)>,
    },
    Repeat {
        body: Ast,
        count: u64,
    },
    Foreach {
        body: Ast,
        over: SrcExpr,
        alias: Option<String>,
    },
    Until {
        body: Ast,
        cond: SrcExpr,
        max_iter: u64,
    },
}

#[derive(Debug)]
pub(super) struct Statement {
    pub(super) ast: Ast,
    pub(super) flow: bool,
}

#[derive(Debug)]
pub(super) struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// The token consumed last, for error messages.
    last: Option<Token>,
    /// Open brackets; line breaks inside them do not end a statement.
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Parser {
            src,
            lexer: Lexer::new(src),
            peeked: None,
            last: None,
            depth: 0,
        }
    }

    fn peek(&mut self) -> Result<&Token, GraphError> {
        loop {
            let token = match self.peeked.take() {
                Some(token) => token,
                None => self.lexer.next_token()?,
            };
            if self.depth > 0 && token.tok == Tok::Newline {
                continue;
            }
            return Ok(self.peeked.insert(token));
        }
    }

    fn advance(&mut self) -> Result<Token, GraphError> {
        self.peek()?;
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        self.last = Some(token.clone());
        Ok(token)
    }

    /// Lets an operator continue on the next line; keeps `last` pointing at the operator.
    fn skip_newlines(&mut self) -> Result<(), GraphError> {
        while self.peek()?.tok == Tok::Newline {
            self.peeked = None;
        }
        Ok(())
    }

    fn open(&mut self, token: &Token, what: &str) -> Result<(), GraphError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(syntax(
                token.line,
                token.column,
                format!("{what} nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        Ok(())
    }

    pub(super) fn parse_program(&mut self) -> Result<Vec<Statement>, GraphError> {
        let mut statements = Vec::new();
        loop {
            match self.peek()?.tok {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi => {
                    self.advance()?;
                    continue;
                }
                _ => {}
            }
            statements.push(self.parse_statement()?);
            let token = self.peek()?.clone();
            match token.tok {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi => {
                    self.advance()?;
                }
                Tok::RParen => {
                    return Err(syntax(token.line, token.column, "unmatched ')'"));
                }
                Tok::RBracket => {
                    return Err(syntax(token.line, token.column, "unmatched ']'"));
                }
                _ => return Err(self.missing_operator(&token)),
            }
        }
        if statements.is_empty() {
            return Err(GraphError::Empty);
        }
        Ok(statements)
    }

    fn missing_operator(&self, token: &Token) -> GraphError {
        let before = self
            .last
            .as_ref()
            .map_or_else(|| "the start".to_string(), |t| t.tok.describe());
        syntax(
            token.line,
            token.column,
            format!(
                "missing operator between {before} and {} (expected '>>', '&' or '|')",
                token.tok.describe()
            ),
        )
    }

    fn parse_statement(&mut self) -> Result<Statement, GraphError> {
        let first = self.peek()?.clone();
        if first.tok != Tok::Ident("flow".into()) {
            let ast = self.parse_or(None)?;
            return Ok(Statement { ast, flow: false });
        }
        self.advance()?;
        if self.peek()?.tok != Tok::Shr {
            return Err(syntax(
                first.line,
                first.column,
                "`flow` must be followed by '>>'",
            ));
        }
        let ast = self.parse_or(Some(Ast::Flow))?;
        Ok(Statement { ast, flow: true })
    }

    fn parse_or(&mut self, first: Option<Ast>) -> Result<Ast, GraphError> {
        self.parse_joined(first, Tok::Pipe, Self::parse_and, Ast::Or)
    }

    fn parse_and(&mut self, first: Option<Ast>) -> Result<Ast, GraphError> {
        self.parse_joined(first, Tok::Amp, Self::parse_seq, Ast::And)
    }

    /// One join level: `operand (sep operand)*`, a single operand as itself, several wrapped
    /// by `join` (`|` → [`Ast::Or`], `&` → [`Ast::And`]). `first` is an operand already read.
    fn parse_joined(
        &mut self,
        first: Option<Ast>,
        sep: Tok,
        operand: fn(&mut Self, Option<Ast>) -> Result<Ast, GraphError>,
        join: fn(Vec<Ast>) -> Ast,
    ) -> Result<Ast, GraphError> {
        let mut items = vec![operand(self, first)?];
        while self.peek()?.tok == sep {
            self.advance()?;
            self.skip_newlines()?;
            items.push(operand(self, None)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            join(items)
        })
    }

    fn parse_seq(&mut self, first: Option<Ast>) -> Result<Ast, GraphError> {
        let mut items = vec![match first {
            Some(ast) => ast,
            None => self.parse_until()?,
        }];
        let mut ops = Vec::new();
        while self.peek()?.tok == Tok::Shr {
            let op = self.advance()?;
            self.skip_newlines()?;
            items.push(self.parse_until()?);
            ops.push(Pos {
                line: op.line,
                column: op.column,
            });
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::Seq(items, ops)
        })
    }

    fn parse_atom(&mut self) -> Result<Ast, GraphError> {
        let token = self.peek()?.clone();
        match token.tok {
            Tok::Ident(ref name) if name == "flow" => Err(syntax(
                token.line,
                token.column,
                "`flow` may only start a statement",
            )),
            Tok::Ident(ref name) if name == "switch" => {
                self.advance()?;
                if self.peek()?.tok == Tok::LParen {
                    self.parse_switch(&token)
                } else {
                    Ok(Ast::Task(name.clone()))
                }
            }
            Tok::Ident(name) => {
                self.advance()?;
                Ok(Ast::Task(name))
            }
            Tok::LParen => {
                self.advance()?;
                self.open(&token, "parentheses")?;
                if self.peek()?.tok == Tok::RParen {
                    return Err(syntax(token.line, token.column, "empty parentheses '()'"));
                }
                let inner = self.parse_or(None)?;
                let close = self.peek()?.clone();
                match close.tok {
                    Tok::RParen => {
                        self.advance()?;
                        self.depth -= 1;
                        Ok(inner)
                    }
                    Tok::Eof => Err(syntax(
                        token.line,
                        token.column,
                        "unclosed '(' (no matching ')')",
                    )),
                    Tok::Ident(_) | Tok::LParen => Err(self.missing_operator(&close)),
                    other => Err(syntax(
                        close.line,
                        close.column,
                        format!(
                            "expected ')' to close the '(' at line {}, column {} but found {}",
                            token.line,
                            token.column,
                            other.describe()
                        ),
                    )),
                }
            }
            Tok::Eof => match &self.last {
                Some(last) if last.tok.is_operator() => Err(syntax(
                    last.line,
                    last.column,
                    format!(
                        "expected a task name or '(' after {} but reached the end of the input",
                        last.tok.describe()
                    ),
                )),
                _ => Err(syntax(
                    token.line,
                    token.column,
                    "expected a task name or '(' but reached the end of the input",
                )),
            },
            other => Err(syntax(
                token.line,
                token.column,
                format!("expected a task name or '(' but found {}", other.describe()),
            )),
        }
    }
}
