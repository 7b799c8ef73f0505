//! The results: one JSON document (every repetition and the medians) and a table on stdout,
//! with each target of the performance issue marked as holding or not.

use serde::Serialize;

use crate::cluster::CpuPerRun;
use crate::floor::Floor;
use crate::list::List;
use crate::procs::Memory;
use crate::runs::{EndToEnd, Submit};
use crate::stats::{Latency, median};

/// Where and how the numbers were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` (1, 5, 15 min) when the bench started and when it ended.
    pub load_before: [f64; 3],
    pub load_after: [f64; 3],
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_gib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            load_before: load_average(),
            load_after: [0.0; 3],
        }
    }
}

pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// Submit results at one concurrency: every repetition and the medians.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitSummary {
    pub concurrency: usize,
    pub per_s: f64,
    pub latency: Latency,
    pub repetitions: Vec<Submit>,
}

/// End-to-end results for one worker count.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndSummary {
    pub workers: usize,
    pub runs_per_s: f64,
    pub floor_fraction: f64,
    /// Submit → COMPLETED of every run of the throughput measurement (queueing included).
    pub latency: Latency,
    /// Submit → COMPLETED one run at a time.
    pub unloaded: Latency,
    pub cpu: CpuPerRun,
    pub repetitions: Vec<EndToEnd>,
}

/// Resident memory of the gateway and the first worker.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    pub gateway_idle: Option<Memory>,
    pub worker_idle: Option<Memory>,
    /// Runs completed by the system before the `after` reading (the worker ran all of them).
    pub runs: usize,
    pub gateway_after: Option<Memory>,
    pub worker_after: Option<Memory>,
}

/// One target of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// `None` when not measured.
    pub holds: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub build: &'static str,
    pub nats_server: String,
    pub machine: Machine,
    pub quick: bool,
    pub runs: usize,
    pub concurrency: usize,
    pub repeat: usize,
    pub worker_args: Vec<String>,
    pub floor: Option<FloorSummary>,
    pub submit: Vec<SubmitSummary>,
    pub end_to_end: Vec<EndToEndSummary>,
    pub watch: Option<WatchSummary>,
    pub serve: Option<crate::serve::ServeSummary>,
    pub list: Vec<List>,
    pub memory: MemoryReport,
    pub targets: Vec<Target>,
    /// The optional regression gate (`--min-floor-fraction`): end to end with one worker as a
    /// fraction of the floor. `None` when not asked for; CI does not ask.
    pub gate_min_floor_fraction: Option<f64>,
    pub gate_passed: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FloorSummary {
    pub seq_per_s: f64,
    pub cpu: CpuPerRun,
    pub repetitions: Vec<Floor>,
}

impl FloorSummary {
    pub fn new(repetitions: Vec<Floor>) -> FloorSummary {
        FloorSummary {
            seq_per_s: median(&repetitions.iter().map(|f| f.seq_per_s).collect::<Vec<_>>()),
            cpu: CpuPerRun::median_of(&repetitions.iter().map(|f| f.cpu).collect::<Vec<_>>()),
            repetitions,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchSummary {
    pub latency: Latency,
    pub repetitions: Vec<Latency>,
}

impl Report {
    /// Fills in `targets` from the measurements.
    pub fn judge(&mut self) {
        let mut t = Vec::new();
        let one = self.end_to_end.iter().find(|e| e.workers == 1);
        t.push(Target {
            name: "end-to-end throughput, 1 worker".into(),
            target: ">= 50 % of the floor".into(),
            measured: one
                .map(|e| format!("{:.0} % of the floor", e.floor_fraction * 100.0))
                .unwrap_or_default(),
            holds: one.map(|e| e.floor_fraction >= 0.5),
        });
        t.push(Target {
            name: "submit -> COMPLETED p50, 1 worker".into(),
            target: "<= 5 ms (one at a time)".into(),
            measured: one
                .map(|e| format!("{:.2} ms", e.unloaded.p50_ms))
                .unwrap_or_default(),
            holds: one.map(|e| e.unloaded.p50_ms <= 5.0),
        });
        t.push(Target {
            name: "watch delay p50".into(),
            target: "<= 10 ms".into(),
            measured: self
                .watch
                .as_ref()
                .map(|w| {
                    format!(
                        "{:.2} ms (p99 {:.2} ms)",
                        w.latency.p50_ms, w.latency.p99_ms
                    )
                })
                .unwrap_or_default(),
            holds: self.watch.as_ref().map(|w| w.latency.p50_ms <= 10.0),
        });
        let largest = self.list.iter().max_by_key(|l| l.stored_runs);
        t.push(Target {
            name: "list page p50 at 1M runs".into(),
            target: "<= 50 ms".into(),
            measured: largest
                .map(|l| format!("{:.2} ms at {} runs", l.latency.p50_ms, l.stored_runs))
                .unwrap_or_default(),
            holds: largest
                .filter(|l| l.stored_runs >= 1_000_000)
                .map(|l| l.latency.p50_ms <= 50.0),
        });
        let m = &self.memory;
        for (name, idle, after, limit) in [
            ("gateway", m.gateway_idle, m.gateway_after, 30.0),
            ("worker", m.worker_idle, m.worker_after, 20.0),
        ] {
            t.push(Target {
                name: format!("{name} RSS idle"),
                target: format!("<= {limit} MB"),
                measured: idle
                    .map(|m| format!("{:.1} MiB", m.rss_mib))
                    .unwrap_or_default(),
                holds: idle.map(|m| m.rss_mib <= limit),
            });
            t.push(Target {
                name: format!("{name} RSS after {} runs", m.runs),
                target: format!("<= {limit} MB (flat)"),
                measured: after
                    .map(|m| format!("{:.1} MiB (peak {:.1} MiB)", m.rss_mib, m.peak_mib))
                    .unwrap_or_default(),
                holds: after
                    .filter(|_| m.runs >= 100_000)
                    .map(|m| m.rss_mib <= limit),
            });
        }
        self.targets = t;
    }

    /// The table on stdout.
    pub fn print_table(&self) {
        let m = &self.machine;
        println!();
        println!(
            "pyoco-bench ({} build, {}, {} cores {}, load {:.2} -> {:.2})",
            self.build, self.nats_server, m.cores, m.cpu, m.load_before[0], m.load_after[0]
        );
        println!(
            "median of {} repetition(s); {} runs per end-to-end/floor measurement at concurrency {}",
            self.repeat, self.runs, self.concurrency
        );
        println!();
        println!(
            "{:<44} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "measurement", "rate", "% floor", "p50 ms", "p95 ms", "p99 ms"
        );
        let row = |name: &str, rate: Option<f64>, frac: Option<f64>, l: Option<&Latency>| {
            let rate = rate.map(|r| format!("{r:.0}/s")).unwrap_or_default();
            let frac = frac
                .map(|f| format!("{:.1}", f * 100.0))
                .unwrap_or_default();
            let (p50, p95, p99) = l
                .map(|l| {
                    (
                        format!("{:.2}", l.p50_ms),
                        format!("{:.2}", l.p95_ms),
                        format!("{:.2}", l.p99_ms),
                    )
                })
                .unwrap_or_default();
            println!("{name:<44} {rate:>12} {frac:>9} {p50:>9} {p95:>9} {p99:>9}");
        };
        if let Some(f) = &self.floor {
            row(
                "floor: raw JetStream sequence",
                Some(f.seq_per_s),
                Some(1.0),
                None,
            );
        }
        let floor = self.floor.as_ref().map(|f| f.seq_per_s);
        for s in &self.submit {
            row(
                &format!("submit POST /runs, concurrency {}", s.concurrency),
                Some(s.per_s),
                floor.map(|f| s.per_s / f),
                Some(&s.latency),
            );
        }
        for e in &self.end_to_end {
            row(
                &format!(
                    "end to end, {} worker(s), {} in flight",
                    e.workers, self.concurrency
                ),
                Some(e.runs_per_s),
                Some(e.floor_fraction),
                Some(&e.latency),
            );
            row(
                &format!("end to end, {} worker(s), one at a time", e.workers),
                None,
                None,
                Some(&e.unloaded),
            );
        }
        if let Some(w) = &self.watch {
            row("watch: KV write -> SSE event", None, None, Some(&w.latency));
        }
        if let Some(s) = &self.serve {
            let o = &s.open_loop;
            row(
                &format!("submit, open loop at {:.0}/s", o.rate_per_s),
                Some(o.achieved_per_s),
                None,
                Some(&o.latency),
            );
            row(
                "  the same, from when each was due",
                None,
                None,
                Some(&o.from_due),
            );
            for (what, r) in [("GET /runs/{id}", &s.get_run), ("GET /health", &s.health)] {
                row(
                    &format!("{what}, concurrency {}", r.concurrency),
                    Some(r.per_s),
                    None,
                    Some(&r.latency),
                );
            }
            row(
                &format!("SSE fan-out: {} watchers of one run", s.fanout.watchers),
                None,
                None,
                Some(&s.fanout.latency),
            );
        }
        for l in &self.list {
            row(
                &format!("list GET /runs?limit=50, {} runs", l.stored_runs),
                None,
                None,
                Some(&l.latency),
            );
        }
        if !self.list.is_empty() {
            println!();
            for l in &self.list {
                let from_checkpoint = match (
                    l.index_load_checkpoint_s,
                    l.checkpoint_bytes,
                    l.checkpoint_write_s,
                ) {
                    (Some(load), Some(bytes), Some(write)) => format!(
                        "{load:.2} s (checkpoint {:.1} MiB, stored {write:.2} s after the replay)",
                        bytes as f64 / 1_048_576.0
                    ),
                    _ => "no checkpoint".to_string(),
                };
                println!(
                    "list with {} runs: index loaded in {:.2} s by replay (bare replay of the bucket {:.2} s), from its checkpoint {from_checkpoint}, gateway RSS {:.1} MiB (peak {:.1} MiB)",
                    l.stored_runs,
                    l.index_load_s,
                    l.replay_floor_s,
                    l.gateway.rss_mib,
                    l.gateway.peak_mib
                );
            }
        }
        let cpu_rows: Vec<(String, CpuPerRun)> = self
            .floor
            .iter()
            .map(|f| ("floor".to_string(), f.cpu))
            .chain(
                self.end_to_end
                    .iter()
                    .map(|e| (format!("end to end, {} worker(s)", e.workers), e.cpu)),
            )
            .collect();
        if !cpu_rows.is_empty() {
            println!();
            println!(
                "{:<44} {:>10} {:>10} {:>10} {:>10}",
                "CPU ms per run (median)", "nats", "gateway", "workers", "bench"
            );
            let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
            for (name, c) in cpu_rows {
                println!(
                    "{name:<44} {:>10} {:>10} {:>10} {:>10}",
                    f(c.nats_ms),
                    f(c.gateway_ms),
                    f(c.workers_ms),
                    f(c.bench_ms)
                );
            }
        }
        let mem = &self.memory;
        let show = |m: Option<Memory>| {
            m.map(|m| format!("{:.1} MiB (peak {:.1})", m.rss_mib, m.peak_mib))
                .unwrap_or_else(|| "-".into())
        };
        println!();
        println!(
            "memory: gateway idle {}, worker idle {}",
            show(mem.gateway_idle),
            show(mem.worker_idle)
        );
        if mem.gateway_after.is_some() || mem.worker_after.is_some() {
            println!(
                "memory after {} runs: gateway {}, worker {}",
                mem.runs,
                show(mem.gateway_after),
                show(mem.worker_after)
            );
        }
        println!();
        println!("{:<36} {:<22} {:<36} result", "target", "goal", "measured");
        for t in &self.targets {
            let result = match t.holds {
                Some(true) => "holds",
                Some(false) => "MISSED",
                None => "not measured",
            };
            println!(
                "{:<36} {:<22} {:<36} {result}",
                t.name, t.target, t.measured
            );
        }
        if let (Some(passed), Some(e)) = (
            self.gate_passed,
            self.end_to_end.iter().find(|e| e.workers == 1),
        ) {
            println!();
            println!(
                "regression gate: end to end with 1 worker at {:.1} % of the floor, minimum {:.0} %: {}",
                e.floor_fraction * 100.0,
                self.gate_min_floor_fraction.unwrap_or_default() * 100.0,
                if passed { "passed" } else { "FAILED" }
            );
        }
    }
}
