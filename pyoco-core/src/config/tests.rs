//! Unit tests of the variable table: defaults, parsing, `.env`, the spec's reserved list.
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.insert("PYOCO_LOAD_DOTENV".into(), "0".into());
    m
}

#[test]
fn defaults_match_the_original() {
    let c = Config::from_sources(&env(&[])).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
    assert_eq!(c.consumer_max_deliver, 20);
    assert_eq!(c.max_run_snapshot_bytes, 262_144);
}

#[test]
fn invalid_value_names_the_variable() {
    let err = Config::from_sources(&env(&[("PYOCO_CONSUMER_MAX_DELIVER", "lots")])).unwrap_err();
    assert_eq!(err.name, "PYOCO_CONSUMER_MAX_DELIVER");
    assert!(err.to_string().contains("PYOCO_CONSUMER_MAX_DELIVER"));
    let err = Config::from_sources(&env(&[("PYOCO_DEFAULT_TAG", "a.b")])).unwrap_err();
    assert_eq!(err.name, "PYOCO_DEFAULT_TAG");
    let err = Config::from_sources(&env(&[("PYOCO_WHEEL_SYNC_ENABLED", "maybe")])).unwrap_err();
    assert_eq!(err.name, "PYOCO_WHEEL_SYNC_ENABLED");
    for (name, value) in [
        ("PYOCO_MAX_RUN_SNAPSHOT_BYTES", "-1"),
        ("PYOCO_CONSUMER_MAX_ACK_PENDING", "0"),
        ("PYOCO_LOG_LEVEL", "loud"),
        ("PYOCO_RUN_HEARTBEAT_INTERVAL_SEC", "-2"),
    ] {
        assert_eq!(
            Config::from_sources(&env(&[(name, value)]))
                .unwrap_err()
                .name,
            name
        );
    }
}

#[test]
fn empty_values_mean_default_and_env_beats_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("my.env");
    std::fs::write(
        &file,
        "# comment\nexport PYOCO_DEFAULT_TAG=gpu\nPYOCO_NATS_URL=\"nats://x:1\"\nPYOCO_DLQ_MAX_MSGS=5 # five\n",
    )
    .unwrap();
    let mut e = HashMap::new();
    e.insert("PYOCO_ENV_FILE".to_string(), file.display().to_string());
    e.insert("PYOCO_DLQ_MAX_MSGS".to_string(), "".to_string());
    e.insert("PYOCO_NATS_URL".to_string(), "nats://y:2".to_string());
    let c = Config::from_sources(&e).unwrap();
    assert_eq!(c.default_tag, "gpu");
    assert_eq!(c.nats_url, "nats://y:2");
    assert_eq!(c.dlq_max_msgs, 5);
}

#[test]
fn ack_progress_stays_below_ack_wait() {
    let c = Config::from_sources(&env(&[("PYOCO_CONSUMER_ACK_WAIT_SEC", "2")])).unwrap();
    assert_eq!(
        c.effective_ack_progress_interval(),
        Some(Duration::from_secs(1))
    );
    let c = Config::from_sources(&env(&[("PYOCO_ACK_PROGRESS_INTERVAL_SEC", "0")])).unwrap();
    assert_eq!(c.effective_ack_progress_interval(), None);
}

#[test]
fn reserved_variables_warn_only_when_set() {
    assert!(Config::default().unimplemented_in_use().is_empty());
    let c = Config::from_sources(&env(&[
        ("PYOCO_DASHBOARD_LANG", "ja"),
        ("PYOCO_SPAWN_POLL_INTERVAL_SEC", "3"),
        ("PYOCO_SPAWN_MAX_CHILD_RUNS", "3"),
        ("PYOCO_NATS_URL", "nats://elsewhere:4222"),
    ]))
    .unwrap();
    assert_eq!(
        c.unimplemented_in_use(),
        vec!["PYOCO_SPAWN_POLL_INTERVAL_SEC"]
    );
}

#[test]
fn process_only_variables_ignore_the_dotenv_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".env");
    std::fs::write(&file, "PYOCO_LOG_FORMAT=text\nPYOCO_PYTHON=py3\n").unwrap();
    let mut e = HashMap::new();
    e.insert("PYOCO_ENV_FILE".to_string(), file.display().to_string());
    let c = Config::from_sources(&e).unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.python, "py3");
}

#[test]
fn the_table_agrees_with_the_spec_on_reserved_variables() {
    let spec = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/config.md"));
    let mut reserved_in_spec: Vec<&str> = spec
        .lines()
        .filter(|l| l.starts_with("| `PYOCO_"))
        .filter(|l| {
            l.trim_end_matches('|')
                .rsplit('|')
                .next()
                .is_some_and(|used_by| used_by.trim().starts_with("reserved"))
        })
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    reserved_in_spec.sort_unstable();
    let mut reserved: Vec<&str> = VARS
        .iter()
        .filter(|v| v.status == Status::Reserved)
        .map(|v| v.name)
        .collect();
    reserved.sort_unstable();
    assert_eq!(reserved, reserved_in_spec);
    assert!(VARS.iter().all(|v| !v.doc.trim().is_empty()));
    assert_eq!(VARIABLES.len(), VARS.len() + SOURCE_VARIABLES.len());
}

#[test]
fn an_unknown_auth_mode_is_an_error_never_silently_off() {
    for bad in ["apikey", "api-key", "true", "basic"] {
        let err = Config::from_sources(&env(&[("PYOCO_HTTP_AUTH_MODE", bad)])).unwrap_err();
        assert_eq!(err.name, "PYOCO_HTTP_AUTH_MODE", "{bad}");
        assert!(
            err.to_string().contains("expected none or api_key"),
            "{err}"
        );
    }
    let c = Config::from_sources(&env(&[("PYOCO_HTTP_AUTH_MODE", " API_KEY ")])).unwrap();
    assert_eq!(c.http_auth_mode, AuthMode::ApiKey);
}
