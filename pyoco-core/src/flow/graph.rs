//! The graph language of `flow.graph`.
//!
//! The Python original `exec`s the graph string; we parse a small, safe
//! expression language with Python's operator precedence instead
//! (`>>` binds tighter than `&`, which binds tighter than `|`):
//!
//! ```text
//! program   := statement ((NEWLINE | ';') statement)*
//! statement := or_expr                      -- may start with `flow >>`
//! or_expr   := and_expr ('|' and_expr)*
//! and_expr  := seq_expr ('&' seq_expr)*
//! seq_expr  := atom ('>>' atom)*
//! atom      := IDENT | '(' or_expr ')'
//! ```
//!
//! Every expression evaluates to a fragment with *heads* (the nodes that start
//! it) and *tails* (a [`Cond`] that holds once it is done). `A >> B` makes every
//! head of `B` wait for the tails of `A`; `A & B` joins the tails with AND,
//! `A | B` with OR. See `spec/flow-yaml.md` for the user-facing contract.

use std::collections::{HashMap, HashSet};

/// Deeper nesting is rejected so that hostile input cannot exhaust the stack.
const MAX_NESTING: usize = 64;
/// Upper bound on task references stored in conditions: `(a & b & ...) >> (x & y & ...)`
/// copies the left side into every head, so the size is quadratic in the input.
const MAX_CONDITION_REFS: usize = 100_000;

/// A parsed graph: the nodes and what must hold before each may start.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Node (task) names in order of first appearance in the source.
    pub nodes: Vec<String>,
    /// `conditions[i]` must hold before node `i` may start; `None` marks a root.
    pub conditions: Vec<Option<Cond>>,
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
    let mut parser = Parser::new(src);
    parser.parse_program()?;
    let graph = parser.into_graph();
    if let Some(path) = find_cycle(&graph) {
        return Err(GraphError::Cycle {
            path: path.into_iter().map(|i| graph.nodes[i].clone()).collect(),
        });
    }
    Ok(graph)
}

fn syntax(line: usize, column: usize, message: impl Into<String>) -> GraphError {
    GraphError::Syntax {
        line,
        column,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Shr,
    Amp,
    Pipe,
    LParen,
    RParen,
    Semi,
    Newline,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("'{name}'"),
            Tok::Shr => "'>>'".into(),
            Tok::Amp => "'&'".into(),
            Tok::Pipe => "'|'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Semi => "';'".into(),
            Tok::Newline => "a line break".into(),
            Tok::Eof => "the end of the input".into(),
        }
    }

    fn is_operator(&self) -> bool {
        matches!(self, Tok::Shr | Tok::Amp | Tok::Pipe)
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

/// Lexes lazily so that errors are reported in source order.
#[derive(Debug)]
struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            chars: src.chars().peekable(),
            line: 1,
            column: 1,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn next_token(&mut self) -> Result<Token, GraphError> {
        loop {
            let (line, column) = (self.line, self.column);
            let Some(&c) = self.chars.peek() else {
                return Ok(Token {
                    tok: Tok::Eof,
                    line,
                    column,
                });
            };
            let tok = match c {
                ' ' | '\t' | '\r' | '\x0c' => {
                    self.bump();
                    continue;
                }
                '#' => {
                    while self.chars.peek().is_some_and(|&c| c != '\n') {
                        self.bump();
                    }
                    continue;
                }
                '\n' => Tok::Newline,
                '>' => {
                    self.bump();
                    if self.chars.peek() != Some(&'>') {
                        return Err(syntax(
                            line,
                            column,
                            "unexpected '>' (the operator is '>>')",
                        ));
                    }
                    Tok::Shr
                }
                '&' => Tok::Amp,
                '|' => Tok::Pipe,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ';' => Tok::Semi,
                c if c == '_' || c.is_ascii_alphabetic() => {
                    let mut name = String::new();
                    while let Some(&c) = self.chars.peek() {
                        if c == '_' || c.is_ascii_alphanumeric() {
                            name.push(c);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    return Ok(Token {
                        tok: Tok::Ident(name),
                        line,
                        column,
                    });
                }
                c => {
                    let hint = if c == '-' || c == '.' {
                        " (task names in the graph must be identifiers: letters, digits and '_')"
                    } else if c.is_ascii_digit() {
                        " (task names cannot start with a digit)"
                    } else {
                        ""
                    };
                    return Err(syntax(
                        line,
                        column,
                        format!("unexpected character '{}'{hint}", c.escape_debug()),
                    ));
                }
            };
            self.bump();
            return Ok(Token { tok, line, column });
        }
    }
}

#[derive(Debug)]
struct Fragment {
    heads: Vec<usize>,
    /// `None` only for `flow` before its first `flow >>` statement.
    tails: Option<Cond>,
}

#[derive(Debug)]
struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// The token consumed last, for error messages.
    last: Option<Token>,
    /// Open parentheses; line breaks inside them do not end a statement.
    depth: usize,
    nodes: Vec<String>,
    index: HashMap<String, usize>,
    /// Per node, the AND-ed parts of its condition; `seen` drops exact duplicates
    /// in constant time (a node may be the target of many statements).
    conditions: Vec<Vec<Cond>>,
    seen: Vec<HashSet<Cond>>,
    refs: usize,
    flow_tail: Option<Cond>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            lexer: Lexer::new(src),
            peeked: None,
            last: None,
            depth: 0,
            nodes: Vec::new(),
            index: HashMap::new(),
            conditions: Vec::new(),
            seen: Vec::new(),
            refs: 0,
            flow_tail: None,
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

    fn parse_program(&mut self) -> Result<(), GraphError> {
        let mut statements = 0usize;
        loop {
            match self.peek()?.tok {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi => {
                    self.advance()?;
                    continue;
                }
                _ => {}
            }
            self.parse_statement()?;
            statements += 1;
            let token = self.peek()?.clone();
            match token.tok {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi => {
                    self.advance()?;
                }
                Tok::RParen => {
                    return Err(syntax(token.line, token.column, "unmatched ')'"));
                }
                _ => return Err(self.missing_operator(&token)),
            }
        }
        if statements == 0 {
            return Err(GraphError::Empty);
        }
        Ok(())
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

    fn parse_statement(&mut self) -> Result<(), GraphError> {
        let first = self.peek()?.clone();
        if first.tok != Tok::Ident("flow".into()) {
            self.parse_or(None)?;
            return Ok(());
        }
        self.advance()?;
        if self.peek()?.tok != Tok::Shr {
            return Err(syntax(
                first.line,
                first.column,
                "`flow` must be followed by '>>'",
            ));
        }
        let flow = Fragment {
            heads: Vec::new(),
            tails: self.flow_tail.clone(),
        };
        let fragment = self.parse_or(Some(flow))?;
        // The running tail persists across statements, as in the original.
        self.flow_tail = fragment.tails;
        Ok(())
    }

    fn parse_or(&mut self, first: Option<Fragment>) -> Result<Fragment, GraphError> {
        let mut lhs = self.parse_and(first)?;
        while self.peek()?.tok == Tok::Pipe {
            self.advance()?;
            self.skip_newlines()?;
            let rhs = self.parse_and(None)?;
            lhs = join(lhs, rhs, Cond::Any, Cond::into_any_items);
        }
        Ok(lhs)
    }

    fn parse_and(&mut self, first: Option<Fragment>) -> Result<Fragment, GraphError> {
        let mut lhs = self.parse_seq(first)?;
        while self.peek()?.tok == Tok::Amp {
            self.advance()?;
            self.skip_newlines()?;
            let rhs = self.parse_seq(None)?;
            lhs = join(lhs, rhs, Cond::All, Cond::into_all_items);
        }
        Ok(lhs)
    }

    fn parse_seq(&mut self, first: Option<Fragment>) -> Result<Fragment, GraphError> {
        let mut lhs = match first {
            Some(fragment) => fragment,
            None => self.parse_atom()?,
        };
        while self.peek()?.tok == Tok::Shr {
            let op = self.advance()?;
            self.skip_newlines()?;
            let rhs = self.parse_atom()?;
            if let Some(tails) = &lhs.tails {
                for &head in &rhs.heads {
                    self.add_condition(head, tails.clone(), &op)?;
                }
            }
            lhs = Fragment {
                heads: lhs.heads,
                tails: rhs.tails,
            };
        }
        Ok(lhs)
    }

    fn parse_atom(&mut self) -> Result<Fragment, GraphError> {
        let token = self.peek()?.clone();
        match token.tok {
            Tok::Ident(ref name) if name == "flow" => Err(syntax(
                token.line,
                token.column,
                "`flow` may only start a statement",
            )),
            Tok::Ident(name) => {
                self.advance()?;
                let node = self.node(name);
                Ok(Fragment {
                    heads: vec![node],
                    tails: Some(Cond::Task(node)),
                })
            }
            Tok::LParen => {
                self.advance()?;
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(syntax(
                        token.line,
                        token.column,
                        format!("parentheses nested too deeply (more than {MAX_NESTING} levels)"),
                    ));
                }
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

    fn node(&mut self, name: String) -> usize {
        if let Some(&i) = self.index.get(&name) {
            return i;
        }
        let i = self.nodes.len();
        self.nodes.push(name.clone());
        self.conditions.push(Vec::new());
        self.seen.push(HashSet::new());
        self.index.insert(name, i);
        i
    }

    /// AND-s `cond` onto the node's condition, dropping exact duplicates.
    fn add_condition(&mut self, node: usize, cond: Cond, op: &Token) -> Result<(), GraphError> {
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
        let (Some(items), Some(seen)) = (self.conditions.get_mut(node), self.seen.get_mut(node))
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

    /// One condition per node: `None` for roots, a single item as is, else `All`.
    fn into_graph(self) -> Graph {
        let conditions = self
            .conditions
            .into_iter()
            .map(|mut items| match items.len() {
                0 => None,
                1 => items.pop(),
                _ => Some(Cond::All(items)),
            })
            .collect();
        Graph {
            nodes: self.nodes,
            conditions,
        }
    }
}

/// `&` and `|`: union of heads, tails joined and flattened.
fn join(
    lhs: Fragment,
    rhs: Fragment,
    make: fn(Vec<Cond>) -> Cond,
    items: fn(Cond) -> Vec<Cond>,
) -> Fragment {
    let mut heads = lhs.heads;
    // Duplicate heads are harmless (conditions are de-duplicated), so skip a quadratic check.
    heads.extend(rhs.heads);
    let tails = match (lhs.tails, rhs.tails) {
        (Some(l), Some(r)) => {
            let mut all = items(l);
            all.extend(items(r));
            Some(make(all))
        }
        (l, r) => l.or(r),
    };
    Fragment { heads, tails }
}

/// A cycle in flow direction (dependency before dependent), first node repeated at the end.
fn find_cycle(graph: &Graph) -> Option<Vec<usize>> {
    let n = graph.nodes.len();
    let mut successors = vec![Vec::new(); n];
    for node in 0..n {
        for dep in graph.dependencies(node) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn g(src: &str) -> Graph {
        match parse(src) {
            Ok(graph) => graph,
            Err(e) => panic!("{src:?} failed: {e}"),
        }
    }

    /// The condition of `name`, rendered with names for readable assertions.
    fn cond(graph: &Graph, name: &str) -> String {
        fn render(graph: &Graph, c: &Cond) -> String {
            match c {
                Cond::Task(i) => graph.nodes[*i].clone(),
                Cond::All(items) => format!(
                    "All({})",
                    items
                        .iter()
                        .map(|c| render(graph, c))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Cond::Any(items) => format!(
                    "Any({})",
                    items
                        .iter()
                        .map(|c| render(graph, c))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            }
        }
        let i = graph
            .index_of(name)
            .unwrap_or_else(|| panic!("no node {name}"));
        match &graph.conditions[i] {
            None => "root".into(),
            Some(c) => render(graph, c),
        }
    }

    fn err(src: &str) -> (usize, usize, String) {
        match parse(src) {
            Err(GraphError::Syntax {
                line,
                column,
                message,
            }) => (line, column, message),
            other => panic!("{src:?}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn single_task_and_chain() {
        let graph = g("a");
        assert_eq!(graph.nodes, vec!["a"]);
        assert_eq!(graph.conditions, vec![None]);
        let graph = g("a >> b >> c");
        assert_eq!(graph.nodes, vec!["a", "b", "c"]);
        assert_eq!(cond(&graph, "a"), "root");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "c"), "b");
        assert_eq!(graph.dependencies(2), vec![1]);
        assert_eq!(graph.dependencies(0), Vec::<usize>::new());
        assert_eq!(graph.dependencies(99), Vec::<usize>::new());
        assert_eq!(graph.index_of("zzz"), None);
    }

    #[test]
    fn fan_out_fan_in() {
        let graph = g("a >> (b & c) >> d");
        assert_eq!(graph.nodes, vec!["a", "b", "c", "d"]);
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "c"), "a");
        assert_eq!(cond(&graph, "d"), "All(b,c)");
        assert_eq!(graph.dependencies(3), vec![1, 2]);
    }

    #[test]
    fn or_join() {
        let graph = g("(a | b) >> c");
        assert_eq!(cond(&graph, "c"), "Any(a,b)");
        let graph = g("a >> (b | c) >> d");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "c"), "a");
        assert_eq!(cond(&graph, "d"), "Any(b,c)");
    }

    #[test]
    fn precedence() {
        // `a & b >> c` is `a & (b >> c)`: a stays unconnected.
        let graph = g("a & b >> c");
        assert_eq!(cond(&graph, "a"), "root");
        assert_eq!(cond(&graph, "c"), "b");
        // `&` binds tighter than `|`: (a & b) | c.
        let graph = g("(a & b | c) >> d");
        assert_eq!(cond(&graph, "d"), "Any(All(a,b),c)");
        let graph = g("(a | b & c) >> d");
        assert_eq!(cond(&graph, "d"), "Any(a,All(b,c))");
        // `a >> b | c >> d`: (a >> b) | (c >> d).
        let graph = g("(a >> b | c >> d) >> e");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "d"), "c");
        assert_eq!(cond(&graph, "e"), "Any(b,d)");
        // Heads of `A & B` get the left condition.
        let graph = g("x >> (a >> b & c)");
        assert_eq!(cond(&graph, "a"), "x");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "c"), "x");
    }

    #[test]
    fn flattening() {
        let graph = g("(a & b & c) >> d");
        assert_eq!(cond(&graph, "d"), "All(a,b,c)");
        let graph = g("(a | (b | c)) >> d");
        assert_eq!(cond(&graph, "d"), "Any(a,b,c)");
        let graph = g("((a >> b) & c) >> d");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "d"), "All(b,c)");
    }

    #[test]
    fn nested_parentheses() {
        let graph = g("((a)) >> ((b & (c | d)) >> (e))");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "c"), "a");
        assert_eq!(cond(&graph, "d"), "a");
        assert_eq!(cond(&graph, "e"), "All(b,Any(c,d))");
        let graph = g("(a >> (b >> (c >> d))) >> e");
        assert_eq!(cond(&graph, "d"), "c");
        assert_eq!(cond(&graph, "e"), "d");
    }

    #[test]
    fn multiple_statements_and_the_same_node() {
        let graph = g("a >> c\nb >> c; c >> d");
        assert_eq!(graph.nodes, vec!["a", "c", "b", "d"]);
        assert_eq!(cond(&graph, "c"), "All(a,b)");
        assert_eq!(cond(&graph, "d"), "c");
        // Repeated edges do not duplicate conditions.
        let graph = g("a >> b\na >> b");
        assert_eq!(cond(&graph, "b"), "a");
        let graph = g("(a & b) >> c\n(b & d) >> c");
        assert_eq!(cond(&graph, "c"), "All(a,b,d)");
        let graph = g("(a | b) >> c\nd >> c");
        assert_eq!(cond(&graph, "c"), "All(Any(a,b),d)");
        // A lone task in a later statement changes nothing.
        let graph = g("a >> b\nb");
        assert_eq!(cond(&graph, "b"), "a");
    }

    #[test]
    fn flow_tail() {
        let graph = g("flow >> a >> b");
        assert_eq!(cond(&graph, "a"), "root");
        assert_eq!(cond(&graph, "b"), "a");
        let graph = g("flow >> a\nflow >> b\nflow >> (c & d)\nflow >> e");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "c"), "b");
        assert_eq!(cond(&graph, "d"), "b");
        assert_eq!(cond(&graph, "e"), "All(c,d)");
        // Statements without `flow` do not move the tail.
        let graph = g("flow >> a; x >> y; flow >> b");
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "y"), "x");
        // `|` stays an OR-join in a flow chain.
        let graph = g("flow >> (a | b)\nflow >> c");
        assert_eq!(cond(&graph, "c"), "Any(a,b)");
        // `flow >> a & b` is `(flow >> a) & b`.
        let graph = g("flow >> x\nflow >> a & b\nflow >> c");
        assert_eq!(cond(&graph, "a"), "x");
        assert_eq!(cond(&graph, "b"), "root");
        assert_eq!(cond(&graph, "c"), "All(a,b)");
    }

    #[test]
    fn comments_blank_statements_and_continuations() {
        let src = "# header\n\n  a >> b   # trailing\n;;\n\n# only a comment\nb >>\n  # comment between\n  c &\n  d\n";
        let graph = g(src);
        assert_eq!(graph.nodes, vec!["a", "b", "c", "d"]);
        assert_eq!(cond(&graph, "b"), "a");
        assert_eq!(cond(&graph, "c"), "b");
        assert_eq!(cond(&graph, "d"), "root");
        // Line breaks inside parentheses do not end the statement.
        let graph = g("a >> (\n  b\n  & c\n) >> d\r\n");
        assert_eq!(cond(&graph, "d"), "All(b,c)");
        let graph = g("_x1 >> Y_2");
        assert_eq!(graph.nodes, vec!["_x1", "Y_2"]);
    }

    #[test]
    fn empty() {
        assert_eq!(parse(""), Err(GraphError::Empty));
        assert_eq!(parse("  \n# nothing\n ; ;\n"), Err(GraphError::Empty));
        assert_eq!(GraphError::Empty.to_string(), "empty graph");
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, usize, usize, &str)] = &[
            (
                "a >> >> b",
                1,
                6,
                "expected a task name or '(' but found '>>'",
            ),
            (
                "a >> b >> >> c",
                1,
                11,
                "expected a task name or '(' but found '>>'",
            ),
            ("a > b", 1, 3, "unexpected '>' (the operator is '>>')"),
            ("a >", 1, 3, "unexpected '>' (the operator is '>>')"),
            ("a >> b!", 1, 7, "unexpected character '!'"),
            (
                "a >> my-task",
                1,
                8,
                "unexpected character '-' (task names in the graph must be identifiers: letters, digits and '_')",
            ),
            (
                "1a",
                1,
                1,
                "unexpected character '1' (task names cannot start with a digit)",
            ),
            ("a >> é", 1, 6, "unexpected character 'é'"),
            (
                "a >>",
                1,
                3,
                "expected a task name or '(' after '>>' but reached the end of the input",
            ),
            (
                "a &\n\n",
                1,
                3,
                "expected a task name or '(' after '&' but reached the end of the input",
            ),
            (
                "x\na |",
                2,
                3,
                "expected a task name or '(' after '|' but reached the end of the input",
            ),
            (
                "a >> ; b",
                1,
                6,
                "expected a task name or '(' but found ';'",
            ),
            (">> a", 1, 1, "expected a task name or '(' but found '>>'"),
            ("& a", 1, 1, "expected a task name or '(' but found '&'"),
            (
                "a b",
                1,
                3,
                "missing operator between 'a' and 'b' (expected '>>', '&' or '|')",
            ),
            (
                "a\nb c",
                2,
                3,
                "missing operator between 'b' and 'c' (expected '>>', '&' or '|')",
            ),
            (
                "a (b)",
                1,
                3,
                "missing operator between 'a' and '(' (expected '>>', '&' or '|')",
            ),
            (
                "(a) b",
                1,
                5,
                "missing operator between ')' and 'b' (expected '>>', '&' or '|')",
            ),
            (
                "(a b)",
                1,
                4,
                "missing operator between 'a' and 'b' (expected '>>', '&' or '|')",
            ),
            ("(a >> b", 1, 1, "unclosed '(' (no matching ')')"),
            ("x >> (a >>\n b\n", 1, 6, "unclosed '(' (no matching ')')"),
            ("a >> b)", 1, 7, "unmatched ')'"),
            ("a >> )", 1, 6, "expected a task name or '(' but found ')'"),
            ("a >> ()", 1, 6, "empty parentheses '()'"),
            (
                "(a; b)",
                1,
                3,
                "expected ')' to close the '(' at line 1, column 1 but found ';'",
            ),
            ("a >> flow", 1, 6, "`flow` may only start a statement"),
            ("(flow >> a)", 1, 2, "`flow` may only start a statement"),
            ("flow", 1, 1, "`flow` must be followed by '>>'"),
            ("  flow & a", 1, 3, "`flow` must be followed by '>>'"),
            (
                "flow >>",
                1,
                6,
                "expected a task name or '(' after '>>' but reached the end of the input",
            ),
        ];
        for &(src, line, column, message) in cases {
            assert_eq!(
                err(src),
                (line, column, message.to_string()),
                "source {src:?}"
            );
        }
        let e = parse("a >> >> b").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("line 1, column 6: expected a task name or '(' but found '>>'")
        );
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert_eq!(g(&ok).nodes, vec!["a"]);
        let deep = format!(
            "{}a{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        let (line, column, message) = err(&deep);
        assert_eq!((line, column), (1, MAX_NESTING + 1));
        assert!(message.contains("nested too deeply"), "{message}");
    }

    #[test]
    fn size_limit() {
        let left: Vec<String> = (0..400).map(|i| format!("a{i}")).collect();
        let right: Vec<String> = (0..400).map(|i| format!("b{i}")).collect();
        let src = format!("({}) >> ({})", left.join(" & "), right.join(" & "));
        let (_, _, message) = err(&src);
        assert!(message.starts_with("graph too large"), "{message}");
    }

    #[test]
    fn cycles() {
        let cycle = |src: &str| match parse(src) {
            Err(GraphError::Cycle { path }) => path,
            other => panic!("{src:?}: expected a cycle, got {other:?}"),
        };
        assert_eq!(cycle("a >> a"), vec!["a", "a"]);
        assert_eq!(cycle("a >> b >> a"), vec!["a", "b", "a"]);
        assert_eq!(cycle("a >> b >> c\nc >> a"), vec!["a", "b", "c", "a"]);
        assert_eq!(cycle("x >> a >> b\nb >> a"), vec!["a", "b", "a"]);
        assert_eq!(cycle("(a | b) >> c >> (a & d)"), vec!["a", "c", "a"]);
        assert_eq!(cycle("flow >> a\nflow >> b\nb >> a"), vec!["a", "b", "a"]);
        assert_eq!(
            parse("a >> b >> a").map_err(|e| e.to_string()),
            Err("cycle detected: a -> b -> a".to_string())
        );
        // A diamond is not a cycle.
        g("a >> (b & c) >> d\na >> d");
    }

    #[test]
    fn eval_is_three_valued() {
        let states = [Some(true), Some(false), None];
        let state = |i: usize| states[i];
        let (ok, failed, pending) = (Cond::Task(0), Cond::Task(1), Cond::Task(2));
        assert_eq!(ok.eval(&state), Some(true));
        assert_eq!(failed.eval(&state), Some(false));
        assert_eq!(pending.eval(&state), None);

        let all = |v: &[&Cond]| Cond::All(v.iter().map(|c| (*c).clone()).collect());
        let any = |v: &[&Cond]| Cond::Any(v.iter().map(|c| (*c).clone()).collect());
        assert_eq!(all(&[&ok, &ok]).eval(&state), Some(true));
        assert_eq!(all(&[&ok, &pending]).eval(&state), None);
        assert_eq!(all(&[&pending, &failed]).eval(&state), Some(false));
        assert_eq!(any(&[&failed, &failed]).eval(&state), Some(false));
        assert_eq!(any(&[&failed, &pending]).eval(&state), None);
        assert_eq!(any(&[&pending, &ok]).eval(&state), Some(true));
        // Nested: Any(All(ok, pending), failed) is undecided; All(Any(ok, pending), ok) holds.
        assert_eq!(any(&[&all(&[&ok, &pending]), &failed]).eval(&state), None);
        assert_eq!(all(&[&any(&[&ok, &pending]), &ok]).eval(&state), Some(true));
        assert_eq!(
            all(&[&any(&[&failed, &failed]), &pending]).eval(&state),
            Some(false)
        );
        // Vacuous cases.
        assert_eq!(Cond::All(vec![]).eval(&state), Some(true));
        assert_eq!(Cond::Any(vec![]).eval(&state), Some(false));
    }

    #[test]
    fn tasks_are_unique_and_ordered() {
        let c = Cond::All(vec![
            Cond::Task(3),
            Cond::Any(vec![Cond::Task(1), Cond::Task(3)]),
            Cond::Task(0),
        ]);
        assert_eq!(c.tasks(), vec![3, 1, 0]);
    }
}
