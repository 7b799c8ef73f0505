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
