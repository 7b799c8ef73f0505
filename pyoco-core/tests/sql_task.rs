//! The built-in `pyoco:sql` end to end: a real PostgreSQL per test (testkit `Postgres`), a
//! real nats-server, gateway and worker (`Stack`). Flows are JSON, which is valid YAML.
//! Without PostgreSQL these tests skip with a message, except under `CI=true`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::time::Duration;

use pyoco::testkit::{Postgres, Stack, submit_yaml, wait_for};
use serde_json::{Value, json};

const SETUP: &str = r#"
CREATE TABLE orders (id int PRIMARY KEY, tenant text, amount numeric(10, 2),
    placed timestamptz, meta jsonb, tags text[], note text);
INSERT INTO orders
SELECT g, CASE WHEN g % 2 = 0 THEN 't1' ELSE 't2' END, g * 1.5,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour',
       jsonb_build_object('n', g), ARRAY['a', 'b' || g],
       CASE WHEN g = 2 THEN NULL ELSE 'x' END
FROM generate_series(1, 50) AS g;
CREATE TABLE audit (msg text);
CREATE FUNCTION log_and_return(m text) RETURNS int VOLATILE LANGUAGE plpgsql
    AS $$ BEGIN INSERT INTO audit VALUES (m); RETURN 1; END $$;
"#;

/// PostgreSQL with the test tables, and a stack whose worker knows it as connection `main`.
async fn start() -> Option<(Postgres, Stack)> {
    let pg = Postgres::start()?;
    let client = connect(&pg).await;
    client.batch_execute(SETUP).await.unwrap();
    let url = pg.url();
    let stack = Stack::start_with(move |c| {
        c.sql_urls.insert("main", url);
        c.sql_urls.insert("broken", "not a url at all");
    })
    .await;
    Some((pg, stack))
}

async fn connect(pg: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn count(pg: &Postgres, table: &str) -> i64 {
    let client = connect(pg).await;
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// A flow of one `pyoco:sql` task `q` with `inputs` (connection `main` unless given).
fn flow(inputs: Value, defaults: Value) -> Value {
    let mut inputs = inputs;
    if inputs.get("connection").is_none() {
        inputs["connection"] = json!("main");
    }
    json!({"flow": {"graph": "q", "defaults": defaults},
           "tasks": {"q": {"callable": "pyoco:sql", "inputs": inputs}}})
}

async fn run(stack: &Stack, flow: &Value) -> Value {
    let run_id = submit_yaml(&stack.client, &flow.to_string(), "sql", None).await;
    stack.wait_terminal(&run_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_select_binds_params_maps_types_and_limits_rows() {
    let Some((_pg, stack)) = start().await else {
        return;
    };
    let select = flow(
        json!({
            "sql": "SELECT id, tenant, amount, placed, meta, tags, note\nFROM orders WHERE tenant = :tenant ORDER BY id -- newest last",
            "params": {"tenant": "{{params.tenant}}"},
            "limit": 3
        }),
        json!({"tenant": "t1"}),
    );
    let done = run(&stack, &select).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let out = &done["task_records"]["q"]["output"];
    assert_eq!(out["row_count"], 3);
    assert_eq!(out["truncated"], true, "25 rows match, 3 returned");
    assert_eq!(
        out["rows"][0],
        json!({"id": 2, "tenant": "t1", "amount": 3.0, "placed": "2026-01-01T02:00:00+00:00",
               "meta": {"n": 2}, "tags": ["a", "b2"], "note": null})
    );
    assert_eq!(out["rows"][2]["id"], 6);
    let types: Vec<&str> = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "int4",
            "text",
            "numeric",
            "timestamptz",
            "jsonb",
            "_text",
            "text"
        ]
    );

    // A smaller LIMIT in the query wins and is no truncation; a list binds to an array;
    // an integer parameter is parsed by PostgreSQL for the int4 column.
    let own_limit = flow(
        json!({"sql": "SELECT id FROM orders WHERE id = ANY(:ids) AND id > :min ORDER BY id LIMIT 2;",
               "params": {"ids": [1, 2, 3, 4], "min": 1}}),
        json!({}),
    );
    let done = run(&stack, &own_limit).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let out = &done["task_records"]["q"]["output"];
    assert_eq!(out["rows"], json!([{"id": 2}, {"id": 3}]));
    assert_eq!(out["truncated"], false);

    // The default limit is 1000 rows.
    let many = flow(
        json!({"sql": "SELECT g FROM generate_series(1, 1500) AS g"}),
        json!({}),
    );
    let done = run(&stack, &many).await;
    let out = &done["task_records"]["q"]["output"];
    assert_eq!(out["row_count"], 1000, "{done}");
    assert_eq!(out["truncated"], true);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_writes_are_refused_at_submit_and_by_the_read_only_transaction() {
    let Some((pg, stack)) = start().await else {
        return;
    };
    for (sql, expected) in [
        ("DELETE FROM orders", "got DELETE"),
        (
            "WITH d AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM d",
            "contains DELETE",
        ),
        (
            "SELECT 1; DELETE FROM orders",
            "exactly one statement, got 2",
        ),
    ] {
        let err = stack
            .client
            .submit_yaml(
                flow(json!({"sql": sql}), json!({})).to_string().as_bytes(),
                "sql",
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(422), "{sql}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("invalid_builtin_inputs: q: pyoco:sql: ") && text.contains(expected),
            "{sql}: {text}"
        );
    }

    // The same check runs in the worker for a query that arrives as a run param.
    let mut from_param = flow(
        json!({}),
        json!({"sql": "WITH d AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM d"}),
    );
    from_param["tasks"]["q"]["retries"] = json!(0);
    let failed = run(&stack, &from_param).await;
    assert_eq!(failed["status"], "FAILED");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .starts_with("pyoco:sql: only SELECT or WITH ... SELECT queries are allowed"),
        "{failed}"
    );

    // What no parser can see: a volatile function that writes. READ ONLY stops it.
    let failed = run(
        &stack,
        &flow(
            json!({"sql": "SELECT log_and_return('written') AS r"}),
            json!({}),
        ),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        failed["error"],
        "pyoco:sql: query failed: cannot execute INSERT in a read-only transaction (SQLSTATE 25006)"
    );
    assert_eq!(count(&pg, "audit").await, 0);
    assert_eq!(count(&pg, "orders").await, 50);

    // statement_timeout ends a slow query on the server.
    let failed = run(
        &stack,
        &flow(
            json!({"sql": "SELECT pg_sleep(30)", "timeout_sec": 0.3}),
            json!({}),
        ),
    )
    .await;
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(
        failed["error"],
        "pyoco:sql: query timed out after 0.3s (statement_timeout)"
    );

    // Unknown and broken connections name the variable; the DSN itself is never shown.
    let failed = run(
        &stack,
        &flow(json!({"sql": "SELECT 1", "connection": "nope"}), json!({})),
    )
    .await;
    assert_eq!(
        failed["error"],
        "pyoco:sql: no connection 'nope': set PYOCO_SQL_NOPE_URL in the worker's environment"
    );
    let failed = run(
        &stack,
        &flow(
            json!({"sql": "SELECT 1", "connection": "broken"}),
            json!({}),
        ),
    )
    .await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("pyoco:sql: PYOCO_SQL_BROKEN_URL is not a valid PostgreSQL URL"),
        "{error}"
    );
    assert!(!error.contains("not a url at all"), "{error}");

    // A parameter the query uses but params lacks.
    let failed = run(
        &stack,
        &flow(json!({"sql": "SELECT :x::int AS x"}), json!({})),
    )
    .await;
    assert_eq!(
        failed["error"],
        "pyoco:sql: the query uses :x but params has no 'x'"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_task_retries_through_a_postgres_restart() {
    let Some((mut pg, stack)) = start().await else {
        return;
    };
    let query = flow(
        json!({"sql": "SELECT count(*) AS n FROM orders WHERE tenant = :t", "params": {"t": "t2"}}),
        json!({}),
    );
    let mut retried = query.clone();
    retried["tasks"]["q"]["retries"] = json!(100);
    retried["tasks"]["q"]["retry_backoff_ms"] = json!(50);
    retried["tasks"]["q"]["retry_backoff_max_ms"] = json!(250);

    // Warm the pool: its connection dies with the server.
    let done = run(&stack, &query).await;
    assert_eq!(
        done["task_records"]["q"]["output"]["rows"],
        json!([{"n": 25}]),
        "{done}"
    );

    pg.stop();
    let run_id = submit_yaml(&stack.client, &retried.to_string(), "sql", None).await;
    // The task fails against the stopped server and keeps retrying...
    wait_for("a failed attempt", Duration::from_secs(30), || async {
        let run = stack.client.get_run(&run_id, true).await.ok()?;
        let record = &run["task_records"]["q"];
        (record["attempts"].as_u64().unwrap_or(0) >= 2).then_some(())
    })
    .await;
    // ...until the server is back.
    pg.start_again();
    let done = stack.wait_terminal(&run_id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let record = &done["task_records"]["q"];
    assert_eq!(record["output"]["rows"], json!([{"n": 25}]));
    assert!(record["attempts"].as_u64().unwrap() > 2, "{record}");
    stack.stop().await;
}

/// Queries of the pyoco:sql pools that PostgreSQL is running now (`pg_sleep` ones).
async fn running_sleeps(pg: &Postgres) -> i64 {
    let client = connect(pg).await;
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pyoco:sql' AND state = 'active' AND query LIKE '%pg_sleep%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_or_a_task_timeout_cancels_its_query_on_the_server() {
    let Some((pg, stack)) = start().await else {
        return;
    };
    let slow = flow(
        json!({"sql": "SELECT pg_sleep(60) AS s", "timeout_sec": 120}),
        json!({}),
    );
    let run_id = submit_yaml(&stack.client, &slow.to_string(), "sql", None).await;
    wait_for("the query to run", Duration::from_secs(30), || async {
        (running_sleeps(&pg).await == 1).then_some(())
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/runs/{run_id}/cancel", stack.gateway.url()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let done = stack.wait_terminal(&run_id).await;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    // Not left running until its 120 s statement timeout.
    wait_for("the query to stop", Duration::from_secs(15), || async {
        (running_sleeps(&pg).await == 0).then_some(())
    })
    .await;

    // The same when the task's own timeout option drops it first.
    let mut limited = slow;
    limited["tasks"]["q"]["timeout_sec"] = json!(1);
    let failed = stack.run_to_end(&limited.to_string(), "sql").await;
    assert_eq!(
        failed["error"], "Task 'q' exceeded timeout of 1s",
        "{failed}"
    );
    wait_for(
        "the timed-out query to stop",
        Duration::from_secs(15),
        || async { (running_sleeps(&pg).await == 0).then_some(()) },
    )
    .await;
    stack.stop().await;
}
