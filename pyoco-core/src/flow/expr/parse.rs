//! Recursive-descent parser of expressions (Python's precedence).

use serde_json::Value;

use super::lex::{T, Tok};
use super::{Arith, Cmp, ExprError, KEYWORDS, MAX_DEPTH, Node, error};

#[derive(Debug)]
pub(super) struct Parser {
    pub(super) tokens: Vec<Tok>,
    pub(super) pos: usize,
    pub(super) depth: usize,
}

/// A node with its nesting depth, so that long operator chains cannot overflow the stack
/// when evaluated.
type Parsed = (Node, usize);

impl Parser {
    pub(super) fn peek(&self) -> Tok {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .cloned()
            .unwrap_or(Tok { tok: T::End, at: 0 })
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek().tok, T::Op(o) if o == op)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(&self.peek().tok, T::Name(n) if n == name)
    }

    fn enter(&mut self, at: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(at, "expression nested too deeply"));
        }
        Ok(())
    }

    fn combine(at: usize, node: Node, a: usize, b: usize) -> Result<Parsed, ExprError> {
        let depth = a.max(b) + 1;
        if depth > MAX_DEPTH {
            return Err(error(
                at,
                "expression too long (too many operators in a row)",
            ));
        }
        Ok((node, depth))
    }

    pub(super) fn expr(&mut self) -> Result<Parsed, ExprError> {
        let mut lhs = self.and()?;
        while self.is_name("or") {
            let at = self.bump().at;
            let rhs = self.and()?;
            lhs = Self::combine(at, Node::Or(Box::new(lhs.0), Box::new(rhs.0)), lhs.1, rhs.1)?;
        }
        Ok(lhs)
    }

    fn and(&mut self) -> Result<Parsed, ExprError> {
        let mut lhs = self.not()?;
        while self.is_name("and") {
            let at = self.bump().at;
            let rhs = self.not()?;
            lhs = Self::combine(
                at,
                Node::And(Box::new(lhs.0), Box::new(rhs.0)),
                lhs.1,
                rhs.1,
            )?;
        }
        Ok(lhs)
    }

    fn not(&mut self) -> Result<Parsed, ExprError> {
        if self.is_name("not") {
            let at = self.bump().at;
            self.enter(at)?;
            let inner = self.not()?;
            self.depth -= 1;
            return Self::combine(at, Node::Not(Box::new(inner.0)), inner.1, 0);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Parsed, ExprError> {
        let start = self.peek().at;
        let first = self.arith()?;
        let mut rest = Vec::new();
        let mut depth = first.1;
        loop {
            let t = self.peek();
            let op = match &t.tok {
                T::Op("==") => Cmp::Eq,
                T::Op("!=") => Cmp::Ne,
                T::Op("<") => Cmp::Lt,
                T::Op("<=") => Cmp::Le,
                T::Op(">") => Cmp::Gt,
                T::Op(">=") => Cmp::Ge,
                T::Name(n) if n == "in" => Cmp::In,
                T::Name(n) if n == "not" => {
                    self.bump();
                    if !self.is_name("in") {
                        return Err(error(t.at, "expected 'in' after 'not'"));
                    }
                    Cmp::NotIn
                }
                T::Name(n) if n == "is" => {
                    return Err(error(t.at, "'is' is not supported (use '==' or '!=')"));
                }
                _ => break,
            };
            self.bump();
            let rhs = self.arith()?;
            depth = depth.max(rhs.1);
            rest.push((op, rhs.0));
        }
        if rest.is_empty() {
            return Ok(first);
        }
        Self::combine(start, Node::Cmp(Box::new(first.0), rest), depth, 0)
    }

    fn arith(&mut self) -> Result<Parsed, ExprError> {
        self.left_assoc(&[("+", Arith::Add), ("-", Arith::Sub)], Self::term)
    }

    fn term(&mut self) -> Result<Parsed, ExprError> {
        self.left_assoc(
            &[("*", Arith::Mul), ("/", Arith::Div), ("%", Arith::Mod)],
            Self::unary,
        )
    }

    /// One precedence level of left-associative arithmetic: `operand (op operand)*` for the
    /// operators `ops` of that level.
    fn left_assoc(
        &mut self,
        ops: &[(&str, Arith)],
        operand: fn(&mut Self) -> Result<Parsed, ExprError>,
    ) -> Result<Parsed, ExprError> {
        let mut lhs = operand(self)?;
        while let Some(&(_, op)) = ops.iter().find(|(symbol, _)| self.is_op(symbol)) {
            let at = self.bump().at;
            let rhs = operand(self)?;
            lhs = Self::combine(
                at,
                Node::Arith(op, Box::new(lhs.0), Box::new(rhs.0)),
                lhs.1,
                rhs.1,
            )?;
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Parsed, ExprError> {
        if self.is_op("-") || self.is_op("+") {
            let t = self.bump();
            self.enter(t.at)?;
            let inner = self.unary()?;
            self.depth -= 1;
            let node = if t.tok == T::Op("-") {
                Node::Neg(Box::new(inner.0))
            } else {
                Node::Pos(Box::new(inner.0))
            };
            return Self::combine(t.at, node, inner.1, 0);
        }
        let base = self.primary()?;
        if self.is_op("**") {
            let at = self.bump().at;
            self.enter(at)?;
            let exp = self.unary()?;
            self.depth -= 1;
            return Self::combine(
                at,
                Node::Arith(Arith::Pow, Box::new(base.0), Box::new(exp.0)),
                base.1,
                exp.1,
            );
        }
        Ok(base)
    }

    /// `( . KEY )*` after a reference or name.
    fn path(&mut self, mut path: Vec<String>) -> Result<Vec<String>, ExprError> {
        while self.is_op(".") {
            self.bump();
            let t = self.bump();
            match t.tok {
                T::Name(key) => path.push(key),
                other => {
                    return Err(error(
                        t.at,
                        format!("expected a key after '.' but found {}", other.describe()),
                    ));
                }
            }
        }
        Ok(path)
    }

    fn primary(&mut self) -> Result<Parsed, ExprError> {
        let t = self.bump();
        let node = match t.tok {
            T::Num(v) => Node::Lit(v),
            T::Str(s) => Node::Lit(Value::String(s)),
            T::Name(n) => match n.as_str() {
                "true" | "True" => Node::Lit(Value::Bool(true)),
                "false" | "False" => Node::Lit(Value::Bool(false)),
                "None" | "null" => Node::Lit(Value::Null),
                "lambda" => return Err(error(t.at, "lambda is not allowed")),
                kw if KEYWORDS.contains(&kw) => {
                    return Err(error(t.at, format!("unexpected '{kw}'")));
                }
                _ => {
                    let path = self.path(vec![n])?;
                    self.no_call_or_subscript()?;
                    return Ok((Node::Bare(path, t.at), 1));
                }
            },
            T::Ref(r) => {
                let path = self.path(Vec::new())?;
                self.no_call_or_subscript()?;
                if path.is_empty() {
                    return Err(error(t.at, format!("expected ${r}.<name>")));
                }
                if r == "env" {
                    if path.len() != 1 {
                        return Err(error(t.at, "expected $env.<NAME>"));
                    }
                    return Ok((Node::Env(path[0].clone()), 1));
                }
                return Ok((Node::Ctx(path, t.at), 1));
            }
            T::Op("(") => {
                self.enter(t.at)?;
                let inner = self.expr()?;
                self.depth -= 1;
                let close = self.bump();
                if close.tok != T::Op(")") {
                    return Err(error(
                        close.at,
                        format!("expected ')' but found {}", close.tok.describe()),
                    ));
                }
                if self.is_op(".") {
                    return Err(error(
                        self.peek().at,
                        "attribute access is only allowed on $ctx/$env references",
                    ));
                }
                self.no_call_or_subscript()?;
                return Ok(inner);
            }
            T::Op("[") => return Err(error(t.at, "list literals are not allowed")),
            T::Op("{") => return Err(error(t.at, "dict and set literals are not allowed")),
            T::Op(op @ ("&&" | "&")) => {
                return Err(error(t.at, format!("unexpected '{op}' (use 'and')")));
            }
            T::Op(op @ ("||" | "|")) => {
                return Err(error(t.at, format!("unexpected '{op}' (use 'or')")));
            }
            T::Op("!") => return Err(error(t.at, "unexpected '!' (use 'not')")),
            other => {
                return Err(error(
                    t.at,
                    format!("expected a value but found {}", other.describe()),
                ));
            }
        };
        if self.is_op(".") {
            return Err(error(
                self.peek().at,
                "attribute access is only allowed on $ctx/$env references",
            ));
        }
        self.no_call_or_subscript()?;
        Ok((node, 1))
    }

    fn no_call_or_subscript(&self) -> Result<(), ExprError> {
        let t = self.peek();
        match t.tok {
            T::Op("(") => Err(error(t.at, "function calls are not allowed")),
            T::Op("[") => Err(error(
                t.at,
                "subscripts are not allowed (use a dotted path: $ctx.results.t.key)",
            )),
            T::Op("//") => Err(error(t.at, "'//' is not supported (use '/')")),
            T::Op("=") => Err(error(t.at, "unexpected '=' (use '==' to compare)")),
            T::Op("&&" | "&") => Err(error(t.at, "unexpected '&' (use 'and')")),
            T::Op("||" | "|") => Err(error(t.at, "unexpected '|' (use 'or')")),
            _ => Ok(()),
        }
    }
}
