//! The read-only check of `pyoco:sql` queries, pure so the gateway can run it at submit time
//! and the worker again before every call.
//!
//! The query is tokenized and parsed by `sqlparser` (PostgreSQL dialect), never matched by
//! keywords: it must be exactly one `SELECT` (optionally `WITH ... SELECT`, `UNION`, `VALUES`)
//! with no data-modifying statement anywhere inside (a `WITH d AS (DELETE ...)` CTE), no
//! `SELECT ... INTO` and no row locks (`FOR UPDATE`). `:name` parameters become `$n`
//! placeholders so their values are bound, never written into the text. The worker still
//! runs the query in a `READ ONLY` transaction: a volatile function that writes is stopped
//! there, which no parser can see.

use std::ops::ControlFlow;

use serde_json::{Map, Value};
use sqlparser::ast::{Query, Select, Statement, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// The inputs of `pyoco:sql`.
pub const PARAMS: &[&str] = &["connection", "sql", "params", "limit", "timeout_sec"];
/// Rows returned when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 1000;
pub const MAX_LIMIT: u64 = 100_000;
/// The longest `timeout_sec` input.
pub const MAX_TIMEOUT_SEC: f64 = 3600.0;

/// `limit`: a whole number from 1 to [`MAX_LIMIT`].
pub fn check_limit(value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {value}"))
}

/// `connection`: a name such that `PYOCO_SQL_<NAME>_URL` is a variable.
pub fn check_connection(value: &Value) -> Result<&str, String> {
    match value.as_str() {
        Some(name) if crate::config::is_connection_name(name) => Ok(name),
        _ => Err(format!(
            "connection must be a name of letters, digits and '_' (the worker's PYOCO_SQL_<NAME>_URL), got {value}"
        )),
    }
}

/// The named parameters of `query` against the given `params` keys: every one used must be
/// given, and every one given must be used (a typo would otherwise go unnoticed).
pub fn check_param_names<'a>(
    query: &CheckedQuery,
    given: impl Iterator<Item = &'a String> + Clone,
) -> Result<(), String> {
    if let Some(missing) = query.names.iter().find(|n| !given.clone().any(|g| g == *n)) {
        return Err(format!(
            "the query uses :{missing} but params has no '{missing}'"
        ));
    }
    if let Some(unused) = given.clone().find(|g| !query.names.contains(g)) {
        return Err(format!(
            "params.{unused} is not used by the query (no :{unused})"
        ));
    }
    Ok(())
}

/// The submit-time check of a `pyoco:sql` task's inputs as written in the flow: values that
/// are references (`$node...`) or absent (taken from run params) are checked when the task
/// runs.
pub fn check_literal_inputs(inputs: &Map<String, Value>) -> Result<(), String> {
    let literal = |key: &str| {
        inputs
            .get(key)
            .filter(|v| !v.is_null() && !v.as_str().is_some_and(|s| s.starts_with('$')))
    };
    if let Some(v) = literal("connection") {
        check_connection(v)?;
    }
    if let Some(v) = literal("limit") {
        check_limit(v)?;
    }
    if let Some(v) = literal("timeout_sec") {
        v.as_f64()
            .filter(|s| *s > 0.0 && *s <= MAX_TIMEOUT_SEC)
            .ok_or_else(|| {
                format!(
                    "timeout_sec must be a number of seconds > 0 and <= {MAX_TIMEOUT_SEC}, got {v}"
                )
            })?;
    }
    let params = match literal("params") {
        None => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => return Err(format!("params must be a mapping, got {other}")),
    };
    if let Some(v) = literal("sql") {
        let text = v
            .as_str()
            .ok_or_else(|| format!("sql must be a string, got {v}"))?;
        let query = check_query(text)?;
        if let Some(params) = params {
            check_param_names(&query, params.keys())?;
        }
    }
    Ok(())
}

/// A query that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedQuery {
    /// The query with `:name` replaced by `$1`, `$2`, … and without trailing `;` and
    /// comments (so it can be wrapped in a subquery).
    pub text: String,
    /// The parameter names in placeholder order (`names[0]` is `$1`).
    pub names: Vec<String>,
}

/// Checks `sql` and rewrites its named parameters. The error says what is refused.
pub fn check_query(sql: &str) -> Result<CheckedQuery, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| format!("cannot parse the query: {e}"))?;
    let offsets = Offsets::new(sql);
    let mut text = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut copied = 0;
    // Up to the last token that is neither blank, a comment nor `;`.
    let end = tokens
        .iter()
        .rposition(|t| {
            !matches!(
                t.token,
                Token::Whitespace(_) | Token::SemiColon | Token::EOF
            )
        })
        .ok_or("the query is empty")?;
    let mut i = 0;
    while i <= end {
        let token = &tokens[i];
        match &token.token {
            Token::Placeholder(p) => {
                return Err(format!(
                    "use named parameters (:name) given in params, not '{p}'"
                ));
            }
            Token::Colon => {
                if let Some((name, word_end)) = named_parameter(&tokens, i, &offsets) {
                    let start = offsets.of(token.span.start);
                    text.push_str(&sql[copied..start]);
                    let n = match names.iter().position(|existing| *existing == name) {
                        Some(k) => k + 1,
                        None => {
                            names.push(name);
                            names.len()
                        }
                    };
                    text.push_str(&format!("${n}"));
                    copied = word_end;
                    i += 2;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    // The last kept token ends where the next one (blank, comment or `;`) starts.
    let last_end = tokens
        .get(end + 1)
        .map_or(sql.len(), |next| offsets.of(next.span.start));
    text.push_str(&sql[copied..last_end.max(copied)]);

    let statements =
        Parser::parse_sql(&dialect, &text).map_err(|e| format!("cannot parse the query: {e}"))?;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return Err("the query is empty".into()),
        _ => {
            return Err(format!(
                "give exactly one statement, got {} (separated by ';')",
                statements.len()
            ));
        }
    };
    let Statement::Query(_) = statement else {
        return Err(format!(
            "only SELECT or WITH ... SELECT queries are allowed, got {}",
            statement_kind(statement)
        ));
    };
    let mut guard = ReadOnlyGuard::default();
    if let ControlFlow::Break(reason) = statement.visit(&mut guard) {
        return Err(reason);
    }
    Ok(CheckedQuery { text, names })
}

/// At `tokens[i]` (a `:`): `name` and the byte offset after it when a bare word follows with
/// no space (`:tenant_id`); `::` casts are one token and never get here.
fn named_parameter(
    tokens: &[TokenWithSpan],
    i: usize,
    offsets: &Offsets,
) -> Option<(String, usize)> {
    let next = tokens.get(i + 1)?;
    let Token::Word(word) = &next.token else {
        return None;
    };
    let colon = offsets.of(tokens[i].span.start);
    let start = offsets.of(next.span.start);
    if word.quote_style.is_some() || start != colon + 1 {
        return None;
    }
    Some((word.value.clone(), start + word.value.len()))
}

/// Converts sqlparser's (line, column) locations, counted in characters from 1, to byte
/// offsets.
struct Offsets<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(sql: &'a str) -> Offsets<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Offsets { sql, line_starts }
    }

    fn of(&self, at: Location) -> usize {
        let line = usize::try_from(at.line)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        let Some(&start) = self.line_starts.get(line) else {
            return self.sql.len();
        };
        let column = usize::try_from(at.column)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        self.sql[start..]
            .char_indices()
            .nth(column)
            .map_or(self.sql.len(), |(i, _)| start + i)
    }
}

/// Stops at anything inside the query that could write or lock.
#[derive(Debug, Default)]
struct ReadOnlyGuard {
    statements: usize,
}

impl Visitor for ReadOnlyGuard {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        self.statements += 1;
        if self.statements > 1 {
            return ControlFlow::Break(format!(
                "only SELECT or WITH ... SELECT queries are allowed: the query contains {} (a data-modifying WITH)",
                statement_kind(statement)
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if !query.locks.is_empty() {
            return ControlFlow::Break("row locks (FOR UPDATE / FOR SHARE) are not allowed".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return ControlFlow::Break(
                "SELECT ... INTO (which creates a table) is not allowed".into(),
            );
        }
        ControlFlow::Continue(())
    }
}

/// The statement's leading keywords (`DELETE`, `CREATE TABLE`), for messages.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take(2)
        .filter(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    match words.as_slice() {
        [first, second, ..] if matches!(*first, "CREATE" | "DROP" | "ALTER") => {
            format!("{first} {second}")
        }
        [first, ..] => first.to_string(),
        [] => "another statement".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        check_query(sql).unwrap_err()
    }

    #[test]
    fn selects_pass_and_named_parameters_become_placeholders() {
        let q = check_query(
            "SELECT id, name::text FROM users\nWHERE tenant_id = :tenant_id AND (kind = :kind OR owner = :tenant_id) AND note <> ':not_a_param' -- :neither\n;  ",
        )
        .unwrap();
        assert_eq!(
            q.text,
            "SELECT id, name::text FROM users\nWHERE tenant_id = $1 AND (kind = $2 OR owner = $1) AND note <> ':not_a_param'",
            "trailing comments and ';' are dropped"
        );
        assert_eq!(q.names, ["tenant_id", "kind"]);
        for ok in [
            "select 1",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "SELECT a FROM x UNION ALL SELECT b FROM y ORDER BY 1 LIMIT 5",
            "VALUES (1, 'a'), (2, 'b')",
            "SELECT arr[1 : 2] FROM t",
            "SELECT $$ :x $$ AS dollar, 'é' || :é_name AS accent",
        ] {
            check_query(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert_eq!(
            check_query("SELECT 'é', :p").unwrap().text,
            "SELECT 'é', $1"
        );
    }

    #[test]
    fn writes_are_refused() {
        assert!(
            refused("DELETE FROM users").contains("got DELETE"),
            "{}",
            refused("DELETE FROM users")
        );
        assert!(refused("update users set a = 1").contains("got UPDATE"));
        assert!(refused("INSERT INTO t VALUES (1)").contains("got INSERT"));
        assert!(refused("DROP TABLE users").contains("got DROP TABLE"));
        assert!(refused("CREATE TABLE t (a int)").contains("got CREATE TABLE"));
        assert!(refused("SET statement_timeout = 0").contains("only SELECT"));
        let cte = refused("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d");
        assert!(cte.contains("contains DELETE"), "{cte}");
        let nested =
            refused("WITH u AS (UPDATE users SET a = 1 RETURNING id) SELECT count(*) FROM u");
        assert!(nested.contains("contains UPDATE"), "{nested}");
        assert!(refused("SELECT * INTO copy FROM users").contains("INTO"));
        assert!(refused("SELECT * FROM users FOR UPDATE").contains("row locks"));
    }

    #[test]
    fn literal_inputs_are_checked_and_references_left_for_later() {
        let check = |v: serde_json::Value| check_literal_inputs(v.as_object().unwrap());
        check(serde_json::json!({"connection": "main", "sql": "SELECT :a", "params": {"a": "{{params.x}}"}, "limit": 10, "timeout_sec": 2})).unwrap();
        check(serde_json::json!({"sql": "$node.build.output", "connection": "$node.pick.output"}))
            .unwrap();
        check(serde_json::json!({})).unwrap();
        let err = |v: serde_json::Value| check(v).unwrap_err();
        assert!(
            err(serde_json::json!({"connection": "no-dash"})).starts_with("connection must be")
        );
        assert!(err(serde_json::json!({"limit": 0})).starts_with("limit must be"));
        assert!(err(serde_json::json!({"limit": 100_001})).starts_with("limit must be"));
        assert!(err(serde_json::json!({"timeout_sec": 0})).starts_with("timeout_sec must be"));
        assert!(err(serde_json::json!({"params": [1]})).starts_with("params must be a mapping"));
        assert!(err(serde_json::json!({"sql": 1})).starts_with("sql must be a string"));
        assert!(err(serde_json::json!({"sql": "DELETE FROM t"})).contains("got DELETE"));
        assert_eq!(
            err(serde_json::json!({"sql": "SELECT :a, :b", "params": {"a": 1}})),
            "the query uses :b but params has no 'b'"
        );
        assert_eq!(
            err(serde_json::json!({"sql": "SELECT :a", "params": {"a": 1, "tennant": 2}})),
            "params.tennant is not used by the query (no :tennant)"
        );
    }

    #[test]
    fn several_statements_and_junk_are_refused() {
        let multi = refused("SELECT 1; DELETE FROM users");
        assert!(multi.contains("exactly one statement, got 2"), "{multi}");
        assert!(refused("SELECT 1; SELECT 2;").contains("got 2"));
        assert_eq!(refused("  ; -- nothing\n"), "the query is empty");
        assert!(refused("SELEC 1").starts_with("cannot parse the query"));
        assert!(refused("SELECT 'unclosed").starts_with("cannot parse the query"));
        assert!(refused("SELECT * FROM t WHERE a = $1").contains("not '$1'"));
    }
}
