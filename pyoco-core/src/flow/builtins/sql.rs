//! `pyoco:sql`: one read-only query on a named PostgreSQL connection.
//!
//! The DSN is the worker's `PYOCO_SQL_<NAME>_URL` ([`crate::config::SqlUrls`]), never the
//! flow's; each connection has one pool (deadpool-postgres) per worker, created on first use.
//! The query passes [`super::sql_check`] and then runs inside `BEGIN READ ONLY` with
//! `SET LOCAL statement_timeout`, so what the parser cannot see (a volatile function that
//! writes) is still refused by PostgreSQL. `:name` parameters are bound as query parameters,
//! sent as text that PostgreSQL parses for the type it inferred (`'42'` for an `int4`).
//!
//! Rows are converted by PostgreSQL itself (`row_to_json` over the query as a subquery), so
//! every type maps as PostgreSQL's JSON functions map it: numbers stay numbers, timestamps
//! become ISO 8601 text, `json`/`jsonb` nest, arrays become lists, NULL becomes null. The
//! subquery gets `LIMIT <limit + 1>`: one row more than returned tells whether the result
//! was `truncated`, and a smaller `LIMIT` in the query itself wins naturally.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::TryStreamExt;
use serde_json::{Map, Value, json};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{NoTls, Statement};

use super::sql_check::{self, CheckedQuery};
use super::{Args, chain};
use crate::config::{SqlUrls, sql_url_variable};
use crate::flow::tasks::{TaskCall, TaskError};

pub(super) use sql_check::PARAMS;

/// Without `timeout_sec` (input or task option).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A larger result fails the task rather than filling the worker's memory and the run
/// snapshot (the same bound as `pyoco:http` bodies).
const MAX_RESULT_BYTES: usize = 10 * 1024 * 1024;
const POOL_SIZE: usize = 8;

/// The pools of one worker, by upper-case connection name.
#[derive(Debug, Default)]
pub struct SqlPools {
    urls: SqlUrls,
    pools: Mutex<HashMap<String, Pool>>,
}

impl SqlPools {
    pub fn new(urls: SqlUrls) -> Arc<SqlPools> {
        Arc::new(SqlPools {
            urls,
            pools: Mutex::default(),
        })
    }

    /// The pool of `name`, created on first use. The error never shows the DSN (it may hold
    /// a password).
    fn pool(&self, name: &str) -> Result<Pool, String> {
        let key = name.to_ascii_uppercase();
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| "the pool table lock is poisoned".to_string())?;
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let variable = sql_url_variable(name);
        let url = self.urls.get(name).ok_or_else(|| {
            format!("no connection '{name}': set {variable} in the worker's environment")
        })?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("{variable} is not a valid PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("pyoco:sql");
        let manager = Manager::from_config(
            config,
            NoTls,
            // A checked-out connection is tested first: after a server restart the pool
            // replaces dead connections instead of failing a query on each.
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(15)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("cannot create the pool of '{name}': {e}"))?;
        pools.insert(key, pool.clone());
        Ok(pool)
    }
}

pub(super) async fn run(pools: Arc<SqlPools>, call: TaskCall) -> Result<Value, TaskError> {
    let args = Args::new(&call, "pyoco:sql");
    let connection = sql_check::check_connection(args.get("connection").ok_or_else(|| {
        args.error("connection is required (the name of a PYOCO_SQL_<NAME>_URL)")
    })?)
    .map_err(|e| args.error(e))?
    .to_string();
    let sql = args
        .str("sql")?
        .ok_or_else(|| args.error("sql is required"))?;
    let query = sql_check::check_query(sql).map_err(|e| args.error(e))?;
    let limit = match args.get("limit") {
        None => sql_check::DEFAULT_LIMIT,
        Some(v) => sql_check::check_limit(v).map_err(|e| args.error(e))?,
    };
    let timeout = args
        .seconds("timeout_sec", None, sql_check::MAX_TIMEOUT_SEC)?
        .or(call.timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    // `{{...}}` in the params were rendered by the engine, like every task's inputs.
    let params = args.map("params")?.cloned().unwrap_or_default();
    sql_check::check_param_names(&query, params.keys()).map_err(|e| args.error(e))?;

    let pool = pools.pool(&connection).map_err(|e| args.error(e))?;
    let work = async {
        let client = pool.get().await.map_err(|e| {
            QueryError::Result(format!("cannot connect to '{connection}': {}", chain(&e)))
        })?;
        let mut guard = CancelOnDrop(Some(client.cancel_token()));
        let result = execute(client, &query, &params, limit, timeout).await;
        guard.0 = None;
        result
    };
    tokio::select! {
        result = work => result.map_err(|e| args.error(describe(e, &connection, timeout))),
        // Dropping `work` cancels the query on the server (see CancelOnDrop).
        _ = call.cancel.cancelled() => Err(TaskError::new("cancelled")),
    }
}

/// Asks PostgreSQL to cancel the running query when dropped armed: the engine drops a task's
/// future on a run cancel or a task timeout, and without this the query would run on until
/// its statement timeout.
struct CancelOnDrop(Option<tokio_postgres::CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = token.cancel_query(NoTls).await {
                    tracing::debug!(error = %e, "pyoco:sql: cancel request not delivered");
                }
            });
        }
    }
}

/// Why a query failed, before it is worded for the task's error.
#[derive(Debug)]
enum QueryError {
    Postgres(tokio_postgres::Error),
    Result(String),
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        QueryError::Postgres(e)
    }
}

fn describe(e: QueryError, connection: &str, timeout: Duration) -> String {
    let e = match e {
        QueryError::Result(message) => return message,
        QueryError::Postgres(e) => e,
    };
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::QUERY_CANCELED => format!(
            "query timed out after {}s (statement_timeout)",
            timeout.as_secs_f64()
        ),
        Some(db) => format!(
            "query failed: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ),
        None if e.is_closed() => format!("connection to '{connection}' lost: {}", chain(&e)),
        None => format!("query on '{connection}' failed: {}", chain(&e)),
    }
}

async fn execute(
    mut client: deadpool_postgres::Object,
    query: &CheckedQuery,
    params: &Map<String, Value>,
    limit: u64,
    timeout: Duration,
) -> Result<Value, QueryError> {
    let tx = client.build_transaction().read_only(true).start().await?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .await?;
    // Prepared alone for its column names and the parameter types PostgreSQL inferred.
    let inner = tx.prepare(&query.text).await?;
    let columns = columns(&inner)?;
    let values = bind(query, &inner, params);
    let wrapped = format!(
        "SELECT row_to_json(pyoco_q)::text FROM (\n{}\n) AS pyoco_q LIMIT {}",
        query.text,
        limit + 1
    );
    let statement = tx.prepare_typed(&wrapped, inner.params()).await?;
    let stream = tx.query_raw(&statement, values.iter()).await?;
    futures::pin_mut!(stream);
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut truncated = false;
    while let Some(row) = stream.try_next().await? {
        if rows.len() as u64 == limit {
            truncated = true;
            break;
        }
        let text: String = row.try_get(0)?;
        bytes += text.len();
        if bytes > MAX_RESULT_BYTES {
            return Err(QueryError::Result(format!(
                "the result is larger than {} MiB: select fewer rows or columns",
                MAX_RESULT_BYTES >> 20
            )));
        }
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| QueryError::Result(format!("unreadable row from PostgreSQL: {e}")))?;
        rows.push(value);
    }
    tx.rollback().await?;
    Ok(json!({
        "rows": rows,
        "row_count": rows.len(),
        "truncated": truncated,
        "columns": columns,
    }))
}

/// `[{name, type}]`; duplicate names are refused, since rows are mappings by name.
fn columns(statement: &Statement) -> Result<Vec<Value>, QueryError> {
    let mut out = Vec::new();
    for (i, column) in statement.columns().iter().enumerate() {
        if statement.columns()[..i]
            .iter()
            .any(|c| c.name() == column.name())
        {
            return Err(QueryError::Result(format!(
                "two result columns are named '{}': give each a distinct name (AS ...)",
                column.name()
            )));
        }
        out.push(json!({"name": column.name(), "type": column.type_().name()}));
    }
    Ok(out)
}

/// The parameter values in placeholder order (names were checked against `params`).
fn bind(
    query: &CheckedQuery,
    statement: &Statement,
    params: &Map<String, Value>,
) -> Vec<TextParam> {
    query
        .names
        .iter()
        .zip(statement.params())
        .map(|(name, ty)| TextParam::of(params.get(name).unwrap_or(&Value::Null), ty))
        .collect()
}

/// A parameter sent in PostgreSQL's text format, so the server parses it for whatever type
/// it inferred, as it would a literal: no client-side conversion table to keep up.
#[derive(Debug)]
struct TextParam(Option<String>);

impl TextParam {
    fn of(value: &Value, ty: &Type) -> TextParam {
        TextParam(match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Array(items) if matches!(ty.kind(), Kind::Array(_)) => {
                Some(array_literal(items))
            }
            other => Some(other.to_string()),
        })
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// A JSON list as a PostgreSQL array literal: `["a", null, 1]` → `{"a",NULL,"1"}`.
fn array_literal(items: &[Value]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => "NULL".to_string(),
            Value::Array(inner) => array_literal(inner),
            Value::String(s) => quote_element(s),
            other => quote_element(&other.to_string()),
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn quote_element(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_become_array_literals_for_array_parameters_only() {
        let list = json!(["a\"b", null, 1, ["x\\y"]]);
        let TextParam(text) = TextParam::of(&list, &Type::TEXT_ARRAY);
        assert_eq!(text.as_deref(), Some(r#"{"a\"b",NULL,"1",{"x\\y"}}"#));
        let TextParam(text) = TextParam::of(&list, &Type::JSONB);
        assert_eq!(text.as_deref(), Some(r#"["a\"b",null,1,["x\\y"]]"#));
        let TextParam(text) = TextParam::of(&json!({"k": true}), &Type::JSON);
        assert_eq!(text.as_deref(), Some(r#"{"k":true}"#));
        assert_eq!(
            TextParam::of(&json!(42), &Type::INT4).0.as_deref(),
            Some("42")
        );
        assert_eq!(TextParam::of(&Value::Null, &Type::INT4).0, None);
    }
}
