//! The files in `deploy/`: the Grafana dashboard and the Prometheus alert rules parse, name
//! only metrics that spec/http-api.md documents, and cover what operators must be woken for;
//! `promtool check rules` and `promtool test rules` accept them (promtool from
//! `scripts/install-promtool.sh`; required under `CI=true`).
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `pyoco_*` metric an expression names, histogram series reduced to their family.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("pyoco_") {
        let start = i + pos;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if !preceded {
            let name = &expr[start..end];
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_string());
        }
        i = end;
    }
    out
}

fn assert_documented(names: &BTreeSet<String>, what: &str) {
    let spec = read("spec/http-api.md");
    for name in names {
        assert!(
            spec.contains(&format!("`{name}`")),
            "{what} uses {name}, which spec/http-api.md does not document"
        );
    }
}

#[test]
fn dashboard_panels_query_documented_metrics() {
    let dash: Value = serde_json::from_str(&read("deploy/grafana/pyoco-dashboard.json")).unwrap();
    assert_eq!(dash["uid"], "pyoco-overview");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert!(!p["title"].as_str().unwrap().is_empty());
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let found = metric_names(expr);
            assert!(!found.is_empty(), "{}: {expr}", p["title"]);
            names.extend(found);
        }
    }
    // The latency histograms of issue #15 are on the dashboard.
    for family in [
        "pyoco_run_duration_seconds",
        "pyoco_task_duration_seconds",
        "pyoco_queue_wait_seconds",
        "pyoco_tag_unserved",
        "pyoco_dlq_messages_total",
    ] {
        assert!(names.contains(family), "no panel shows {family}");
    }
    assert_documented(&names, "the dashboard");
}

#[test]
fn alert_rules_cover_the_operators_pages_and_name_documented_metrics() {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/pyoco-alerts.yml")).unwrap();
    let rules = doc["groups"][0]["rules"].as_sequence().unwrap();
    let mut alerts = BTreeSet::new();
    let mut names = BTreeSet::new();
    for r in rules {
        let alert = r["alert"].as_str().unwrap().to_string();
        let expr = r["expr"].as_str().unwrap();
        assert!(r["for"].as_str().is_some(), "{alert} fires on one sample");
        let severity = r["labels"]["severity"].as_str().unwrap();
        assert!(matches!(severity, "critical" | "warning"), "{alert}");
        assert!(r["annotations"]["summary"].as_str().is_some(), "{alert}");
        names.extend(metric_names(expr));
        alerts.insert(alert);
    }
    for wanted in [
        "PyocoTagUnserved",
        "PyocoDlqGrowing",
        "PyocoHighFailureRatio",
        "PyocoNoWorkers",
    ] {
        assert!(alerts.contains(wanted), "missing alert {wanted}");
    }
    assert_documented(&names, "the alert rules");
}

/// promtool's own checks: the rules load, and each alert fires on its unit test's series.
#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let promtool = std::env::var("PYOCO_PROMTOOL")
        .ok()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let local = repo().join(".tools/prometheus/usr/bin/promtool");
            local.exists().then_some(local)
        })
        .or_else(|| {
            std::process::Command::new("promtool")
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from("promtool"))
        });
    let Some(promtool) = promtool else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is required under CI=true (scripts/install-promtool.sh)"
        );
        eprintln!("skipped: no promtool (run scripts/install-promtool.sh)");
        return;
    };
    let dir = repo().join("deploy/prometheus");
    for args in [
        ["check", "rules", "pyoco-alerts.yml"],
        ["test", "rules", "pyoco-alerts.test.yml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn metric_names_are_read_from_expressions() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(pyoco_queue_wait_seconds_bucket[5m]))) / max(pyoco_dlq_messages_total) + xpyoco_no",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["pyoco_dlq_messages_total", "pyoco_queue_wait_seconds"]
    );
}

/// `[section] key=value` lines of a unit file (comments and blank lines skipped).
fn unit(rel: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(rel).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{rel}: {line}"));
        out.push((section.clone(), k.to_string(), v.to_string()));
    }
    out
}

const UNITS: [&str; 3] = [
    "deploy/systemd/nats-server.service",
    "deploy/systemd/pyoco-gateway.service",
    "deploy/systemd/pyoco-worker@.service",
];

#[test]
fn systemd_units_restart_limit_and_harden_and_pyoco_ones_are_supervised() {
    for rel in UNITS {
        let u = unit(rel);
        let has = |section: &str, key: &str, value: Option<&str>| {
            u.iter()
                .any(|(s, k, v)| s == section && k == key && value.is_none_or(|w| v == w))
        };
        for (section, key, value) in [
            ("Service", "Restart", Some("on-failure")),
            ("Unit", "StartLimitBurst", None),
            ("Unit", "StartLimitIntervalSec", None),
            ("Service", "NoNewPrivileges", Some("true")),
            ("Service", "ProtectSystem", Some("strict")),
            ("Service", "PrivateTmp", Some("true")),
            ("Service", "LimitNOFILE", None),
            ("Service", "MemoryMax", None),
            ("Service", "User", Some("pyoco")),
            ("Install", "WantedBy", Some("multi-user.target")),
        ] {
            assert!(
                has(section, key, value),
                "{rel}: no [{section}] {key}={value:?}"
            );
        }
        if rel.contains("pyoco-") {
            for (key, value) in [
                ("Type", Some("notify")),
                ("WatchdogSec", None),
                ("EnvironmentFile", Some("/etc/pyoco/pyoco.env")),
            ] {
                assert!(has("Service", key, value), "{rel}: no {key}={value:?}");
            }
        }
    }
    // Every variable the env file sets is one pyoco reads (or the worker units expand).
    let config = read("spec/config.md");
    for line in read("deploy/systemd/pyoco.env").lines() {
        let Some((name, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) else {
            continue;
        };
        assert!(
            name == "PYOCO_WORKER_ARGS" || config.contains(&format!("`{name}`")),
            "pyoco.env sets {name}, which spec/config.md does not document"
        );
    }
}

/// `systemd-analyze verify` (where installed) accepts the units without a warning; the
/// binaries are replaced by /bin/true, since they are not installed here.
#[test]
fn systemd_analyze_verifies_the_units() {
    let available = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("skipped: no systemd-analyze");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for rel in UNITS {
        let text = read(rel);
        let text: String = text
            .lines()
            .map(|l| match l.split_once("/usr/local/bin/") {
                Some((head, tail)) => {
                    let rest = tail.split_once(' ').map_or("", |(_, r)| r);
                    format!("{head}/bin/true {rest}\n")
                }
                None => format!("{l}\n"),
            })
            .collect();
        let path = dir.path().join(Path::new(rel).file_name().unwrap());
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(dir.path().to_str().unwrap()))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{text}");
}
