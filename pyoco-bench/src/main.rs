//! `pyoco-bench`: measures pyoco against the physical limit of the machine it runs on.
//!
//! It starts a nats-server (or uses `--nats-url`), the real `pyoco-gateway` and
//! `pyoco-worker` binaries from its own target directory as separate processes, and
//! measures: the floor (the raw JetStream sequence of one run, driven with async-nats),
//! `POST /runs` throughput and latency, end-to-end runs/s and submit → COMPLETED latency
//! with 1 and 2 workers, the watch delay (KV write → SSE event), `GET /runs` latency with
//! many stored runs, and the gateway's and worker's memory. Results go to stdout as a table
//! and, with `--json`, to a file. `--quick` takes seconds and is what CI runs as a smoke test:
//! the exit code is 1 on a hard error (a process died, a run was lost or failed, a phase timed
//! out) and never depends on a speed. Regressions are tracked by hand in BENCHMARKS.md; for a
//! manual check, `--min-floor-fraction` makes it exit 2 when end-to-end throughput falls below
//! that fraction of the floor measured in the same run.

mod cluster;
mod compare;
mod docs;
mod faults;
mod floor;
mod list;
mod procs;
mod proctree;
mod report;
mod runs;
mod serve;
mod soak;
mod stats;
mod tracker;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use cluster::Cluster;
use report::{
    EndToEndSummary, FloorSummary, Machine, MemoryReport, Report, SubmitSummary, WatchSummary,
};
use stats::{Latency, median};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Floor,
    Submit,
    E2e,
    Watch,
    /// Open-loop submit latency, GET /runs/{id} and /health rates, SSE fan-out.
    Serve,
    List,
    Memory,
}

#[derive(Debug, Parser)]
#[command(
    name = "pyoco-bench",
    version,
    about = "Benchmark pyoco (gateway + workers on NATS JetStream) against the raw JetStream floor",
    after_help = "Examples:\n  pyoco-bench --quick                       # seconds; what CI runs\n  pyoco-bench --json bench.json             # the full benchmark (minutes)\n  pyoco-bench --skip list,memory --runs 20000\n  pyoco-bench --worker-concurrency 1 --skip list,memory"
)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// A few seconds: fewer runs, one repetition, no 2-worker/list-at-scale/100k-memory phases
    #[arg(long)]
    quick: bool,
    /// Runs per floor and end-to-end measurement [default: 5000; quick: 400]
    #[arg(long)]
    runs: Option<usize>,
    /// Requests in flight for the floor and end-to-end submits
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Repetitions; every reported figure is the median [default: 3; quick: 1]
    #[arg(long)]
    repeat: Option<usize>,
    /// Concurrencies of the submit benchmark
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    submit_concurrency: Vec<usize>,
    /// Requests per submit measurement [default: 2000; quick: 200]
    #[arg(long)]
    submit_requests: Option<usize>,
    /// Worker counts of the end-to-end benchmark [default: 1,2; quick: 1]
    #[arg(long, value_delimiter = ',')]
    workers: Option<Vec<usize>>,
    /// Runs timed one at a time (submit → COMPLETED, no queue) per end-to-end measurement
    /// [default: 200; quick: 20]
    #[arg(long)]
    latency_samples: Option<usize>,
    /// Write → event samples per watch repetition [default: 200; quick: 20]
    #[arg(long)]
    watch_samples: Option<usize>,
    /// Stored-run counts of the list benchmark [default: 10000,100000,1000000; quick: 1000]
    #[arg(long, value_delimiter = ',')]
    list_sizes: Option<Vec<u64>>,
    /// `GET /runs` calls per list repetition [default: 100; quick: 10]
    #[arg(long)]
    list_requests: Option<usize>,
    /// Runs before the "after" memory reading [default: 100000; quick: skipped]
    #[arg(long)]
    memory_runs: Option<usize>,
    /// Phases to leave out
    #[arg(long, value_delimiter = ',')]
    skip: Vec<Phase>,
    /// Also write the results as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Use this NATS server instead of starting one (the bench writes runs into its buckets)
    #[arg(long)]
    nats_url: Option<String>,
    /// Jobs each pyoco-worker processes at once (its --concurrency; 0 = do not pass the
    /// flag) [default: --concurrency]
    #[arg(long)]
    worker_concurrency: Option<usize>,
    /// An extra argument for every pyoco-worker (repeatable), e.g. --worker-arg=--poll-timeout=2
    #[arg(long = "worker-arg", allow_hyphen_values = true)]
    worker_args: Vec<String>,
    /// Exit 2 when end to end with one worker is below this fraction of the floor (off unless
    /// given: a timed assertion flakes on a noisy machine, so CI does not use it; a healthy
    /// debug build measures 12-18 %, a release build about 25 % on 2 cores)
    #[arg(long)]
    min_floor_fraction: Option<f64>,
    /// Keep the work directory (process logs, NATS store) here instead of a temporary one
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Instead of the benchmark: the same workload (--runs of a two-task Python flow,
    /// --concurrency in flight; default 10000 runs) against pyoco, the original pyoco-server
    /// and Celery with Redis, one table. scripts/bench-compare.sh installs what it needs and
    /// passes the three paths below
    #[arg(long, requires_all = ["redis_server", "celery_venv", "interop_venv"])]
    compare: bool,
    /// redis-server for --compare
    #[arg(long)]
    redis_server: Option<PathBuf>,
    /// A virtualenv with Celery and the Redis client, for --compare
    #[arg(long)]
    celery_venv: Option<PathBuf>,
    /// A virtualenv with pyoco-server 0.5.1 (scripts/install-interop.sh), for --compare
    #[arg(long)]
    interop_venv: Option<PathBuf>,
    /// The systems --compare runs (for a quick A/B of one of them)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pyoco,echo,original,celery"
    )]
    compare_systems: Vec<compare::System>,
}

/// Modes other than the benchmark.
#[derive(Debug, Subcommand)]
enum Mode {
    /// Every fault scenario (NATS restart, node loss, process kills, hangs, cancel races,
    /// slow NATS) and a table of lost / duplicated / stuck runs; exit 1 if there are any
    Faults(faults::FaultArgs),
    /// Many runs through one worker and one gateway with retention on, memory sampled after
    /// every batch; exit 1 if a run is lost or left unfinished
    Soak(soak::SoakArgs),
}

/// The effective settings after `--quick` defaults.
#[derive(Debug)]
struct Plan {
    runs: usize,
    repeat: usize,
    submit_requests: usize,
    workers: Vec<usize>,
    latency_samples: usize,
    watch_samples: usize,
    list_sizes: Vec<u64>,
    list_requests: usize,
    memory_runs: usize,
    serve: serve::ServePlan,
}

impl Plan {
    fn from(a: &Args) -> Plan {
        let q = a.quick;
        Plan {
            runs: a.runs.unwrap_or(if q { 400 } else { 5000 }),
            repeat: a.repeat.unwrap_or(if q { 1 } else { 3 }).max(1),
            submit_requests: a.submit_requests.unwrap_or(if q { 200 } else { 2000 }),
            workers: a
                .workers
                .clone()
                .unwrap_or(if q { vec![1] } else { vec![1, 2] }),
            latency_samples: a.latency_samples.unwrap_or(if q { 20 } else { 200 }),
            watch_samples: a.watch_samples.unwrap_or(if q { 20 } else { 200 }),
            list_sizes: a.list_sizes.clone().unwrap_or(if q {
                vec![1000]
            } else {
                vec![10_000, 100_000, 1_000_000]
            }),
            list_requests: a.list_requests.unwrap_or(if q { 10 } else { 100 }),
            memory_runs: a.memory_runs.unwrap_or(if q { 0 } else { 100_000 }),
            serve: if q {
                serve::ServePlan {
                    open_rate: 100.0,
                    open_seconds: 1.0,
                    reads: 200,
                    read_concurrency: 16,
                    watchers: 20,
                    fanout_writes: 3,
                }
            } else {
                serve::ServePlan {
                    open_rate: 1000.0,
                    open_seconds: 10.0,
                    reads: 20_000,
                    read_concurrency: 64,
                    watchers: 1000,
                    fanout_writes: 20,
                }
            },
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pyoco-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.compare {
        return match runtime.block_on(compare(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pyoco-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Mode::Faults(faults)) = args.mode {
        return match runtime.block_on(faults::run(faults)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!(
                    "pyoco-bench faults: runs were lost, duplicated or stuck (see the table)"
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("pyoco-bench faults: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Mode::Soak(soak)) = args.mode {
        return match runtime.block_on(soak::run(soak)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("pyoco-bench soak: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run(args)) {
        Ok(report) if report.gate_passed == Some(false) => {
            eprintln!(
                "pyoco-bench: REGRESSION: end to end with one worker is below {:.0} % of the floor",
                report.gate_min_floor_fraction.unwrap_or_default() * 100.0
            );
            ExitCode::from(2)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pyoco-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Says what is being measured (stderr, so stdout is just the table).
macro_rules! step {
    ($($t:tt)*) => { eprintln!("pyoco-bench: {}", format!($($t)*)) };
}

/// `--compare`: pyoco, pyoco-server and Celery side by side.
async fn compare(args: Args) -> anyhow::Result<()> {
    let (Some(redis_server), Some(celery_venv), Some(interop_venv)) =
        (args.redis_server, args.celery_venv, args.interop_venv)
    else {
        anyhow::bail!("--compare needs --redis-server, --celery-venv and --interop-venv");
    };
    let tools = compare::Tools {
        redis_server,
        celery_venv,
        interop_venv,
    };
    let temp = tempfile::Builder::new()
        .prefix("pyoco-compare-")
        .tempdir()?;
    let dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    step!("work dir {}", dir.display());
    let runs = args.runs.unwrap_or(10_000);
    let results = compare::run(
        &dir,
        &tools,
        runs,
        args.concurrency.max(1),
        &args.compare_systems,
    )
    .await?;
    compare::print_table(&results, args.concurrency.max(1));
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "machine": Machine::probe(),
            "runs": runs,
            "concurrency": args.concurrency,
            "results": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        step!("results written to {}", path.display());
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<Report> {
    let plan = Plan::from(&args);
    let min_floor_fraction = args.min_floor_fraction;
    let on = |p: Phase| !args.skip.contains(&p);
    let mut machine = Machine::probe();
    let temp;
    let dir = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("pyoco-bench-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    step!("work dir {}", dir.display());
    // 0 passes no --concurrency at all (for pyoco-worker builds that predate the flag).
    let worker_concurrency = args.worker_concurrency.unwrap_or(args.concurrency);
    let mut worker_args = Vec::new();
    if worker_concurrency > 0 {
        worker_args.extend(["--concurrency".to_string(), worker_concurrency.to_string()]);
    }
    worker_args.extend(args.worker_args.iter().cloned());
    let mut cluster = Cluster::start(&dir, args.nats_url.as_deref(), worker_args.clone())
        .await
        .context("start")?;
    let nats_server = cluster.nats.version.clone();
    let result = measure(&args, &plan, &mut cluster, &on).await;
    let serve = if result.is_ok() && on(Phase::Serve) {
        step!("serving: open-loop submits, reads, SSE fan-out");
        Some(serve::measure(&cluster, plan.serve).await)
    } else {
        None
    };
    cluster.shutdown().await;
    let (floor, submit, end_to_end, watch, memory) = result?;
    let serve = serve.transpose().context("serve")?;
    // The list needs a bucket holding exactly the sizes measured: a NATS server of its own.
    let list = if on(Phase::List) && !plan.list_sizes.is_empty() {
        let mut sizes = plan.list_sizes.clone();
        sizes.sort_unstable();
        step!("list at {sizes:?} stored runs");
        let list_dir = dir.join("list");
        std::fs::create_dir_all(&list_dir)?;
        let mut cluster = Cluster::start(&list_dir, args.nats_url.as_deref(), Vec::new())
            .await
            .context("start for the list benchmark")?;
        let result = list::measure(&mut cluster, &sizes, plan.list_requests, plan.repeat).await;
        cluster.shutdown().await;
        result?
    } else {
        Vec::new()
    };
    machine.load_after = report::load_average();
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        nats_server,
        machine,
        quick: args.quick,
        runs: plan.runs,
        concurrency: args.concurrency,
        repeat: plan.repeat,
        worker_args,
        floor,
        submit,
        end_to_end,
        watch,
        serve,
        list,
        memory,
        targets: Vec::new(),
        gate_min_floor_fraction: min_floor_fraction,
        gate_passed: None,
    };
    report.gate_passed = report
        .end_to_end
        .iter()
        .find(|e| e.workers == 1)
        .filter(|_| report.floor.is_some())
        .zip(min_floor_fraction)
        .map(|(e, min)| e.floor_fraction >= min);
    report.judge();
    report.print_table();
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        step!("results written to {}", path.display());
    }
    Ok(report)
}

type Measured = (
    Option<FloorSummary>,
    Vec<SubmitSummary>,
    Vec<EndToEndSummary>,
    Option<WatchSummary>,
    MemoryReport,
);

async fn measure(
    args: &Args,
    plan: &Plan,
    cluster: &mut Cluster,
    on: &dyn Fn(Phase) -> bool,
) -> anyhow::Result<Measured> {
    let c = args.concurrency.max(1);
    step!("starting gateway and worker");
    cluster.start_gateway(Duration::from_secs(60)).await?;
    cluster.set_workers(1).await?;
    runs::warm_up(cluster).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut memory = MemoryReport {
        gateway_idle: Some(cluster.gateway_memory()?),
        worker_idle: Some(cluster.worker_memory()?),
        ..Default::default()
    };
    let docs = docs::RunDocs::new()?;

    let mut floors = Vec::new();
    let mut submits: Vec<Vec<runs::Submit>> = vec![Vec::new(); args.submit_concurrency.len()];
    let mut e2es: Vec<Vec<runs::EndToEnd>> = vec![Vec::new(); plan.workers.len()];
    for rep in 0..plan.repeat {
        step!("repetition {} of {}", rep + 1, plan.repeat);
        let floor = if on(Phase::Floor) {
            let cpu = cluster.cpu();
            let mut f = floor::measure(&cluster.client, plan.runs, c, &docs, rep).await?;
            f.cpu = cpu.per_run(&cluster.cpu(), plan.runs);
            step!("  floor {:.0} seq/s", f.seq_per_s);
            floors.push(f);
            Some(f)
        } else {
            None
        };
        if on(Phase::Submit) {
            for (i, &sc) in args.submit_concurrency.iter().enumerate() {
                let s = runs::submit(cluster, sc, plan.submit_requests).await?;
                step!("  submit c={sc}: {:.0}/s", s.per_s);
                submits[i].push(s);
            }
        }
        if on(Phase::E2e) {
            for (i, &w) in plan.workers.iter().enumerate() {
                cluster.set_workers(w).await?;
                let mut e = runs::end_to_end(cluster, w, plan.runs, c).await?;
                e.floor_fraction = floor.map(|f| e.runs_per_s / f.seq_per_s);
                e.unloaded = runs::unloaded_latency(cluster, plan.latency_samples).await?;
                step!(
                    "  end to end, {w} worker(s): {:.0} runs/s, one at a time p50 {:.2} ms",
                    e.runs_per_s,
                    e.unloaded.p50_ms
                );
                e2es[i].push(e);
            }
            cluster.set_workers(1).await?;
        }
    }

    let watch = if on(Phase::Watch) {
        let mut reps = Vec::new();
        for _ in 0..plan.repeat {
            reps.push(watch::delay(cluster, plan.watch_samples).await?);
        }
        let latency = Latency::median_of(&reps);
        step!("watch delay p50 {:.2} ms", latency.p50_ms);
        Some(WatchSummary {
            latency,
            repetitions: reps,
        })
    } else {
        None
    };

    if on(Phase::Memory) && plan.memory_runs > 0 {
        step!("memory: {} runs through one worker", plan.memory_runs);
        runs::end_to_end(cluster, 1, plan.memory_runs, c).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        memory.gateway_after = Some(cluster.gateway_memory()?);
        memory.worker_after = Some(cluster.worker_memory()?);
    }
    memory.runs = cluster.tracker.completed();

    let floor = (!floors.is_empty()).then(|| FloorSummary::new(floors));
    let submit = args
        .submit_concurrency
        .iter()
        .zip(submits)
        .filter(|(_, reps)| !reps.is_empty())
        .map(|(&concurrency, reps)| SubmitSummary {
            concurrency,
            per_s: median(&reps.iter().map(|s| s.per_s).collect::<Vec<_>>()),
            latency: Latency::median_of(&reps.iter().map(|s| s.latency).collect::<Vec<_>>()),
            repetitions: reps,
        })
        .collect();
    let end_to_end = plan
        .workers
        .iter()
        .zip(e2es)
        .filter(|(_, reps)| !reps.is_empty())
        .map(|(&workers, reps)| EndToEndSummary {
            workers,
            runs_per_s: median(&reps.iter().map(|e| e.runs_per_s).collect::<Vec<_>>()),
            floor_fraction: median(
                &reps
                    .iter()
                    .filter_map(|e| e.floor_fraction)
                    .collect::<Vec<_>>(),
            ),
            latency: Latency::median_of(&reps.iter().map(|e| e.latency).collect::<Vec<_>>()),
            unloaded: Latency::median_of(&reps.iter().map(|e| e.unloaded).collect::<Vec<_>>()),
            cpu: cluster::CpuPerRun::median_of(&reps.iter().map(|e| e.cpu).collect::<Vec<_>>()),
            repetitions: reps,
        })
        .collect();
    Ok((floor, submit, end_to_end, watch, memory))
}
