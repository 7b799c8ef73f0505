//! The fault scenarios. Each starts its own NATS (a testkit [`NatsServer`] or
//! [`NatsCluster`]), gateway and workers, submits runs at a steady pace, breaks something a
//! third of the way in, repairs it, and counts the runs with [`Rig::settle`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use pyoco::testkit::{NatsCluster, NatsServer};
use tokio::sync::watch;
use tokio::time::sleep;

use super::rig::{Accepted, Rig, WORKER_CONCURRENCY};
use super::{Outcome, Size};

type Run = fn(PathBuf, Size) -> Pin<Box<dyn Future<Output = anyhow::Result<Outcome>> + Send>>;

/// Every scenario, in the order of the table.
pub const ALL: [(&str, Run); 8] = [
    ("nats-restart", |d, s| Box::pin(nats_restart(d, s))),
    ("cluster-node-loss", |d, s| Box::pin(node_loss(d, s))),
    ("worker-sigkill", |d, s| Box::pin(worker_sigkill(d, s))),
    ("gateway-sigkill", |d, s| Box::pin(gateway_sigkill(d, s))),
    ("cancel-race", |d, s| Box::pin(cancel_race(d, s))),
    ("worker-hang", |d, s| Box::pin(worker_hang(d, s))),
    ("disk-full", |d, s| Box::pin(disk_full(d, s))),
    ("slow-nats", |d, s| Box::pin(slow_nats(d, s))),
];

/// How long the submits of a scenario last, and so when its fault comes (a third in).
fn load_time(size: Size) -> Duration {
    if size.runs <= 100 {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(20)
    }
}

/// Submits `size.runs` runs (task sleeping `sleep_s`) to gateway `g` at a steady pace over
/// [`load_time`] while `fault` runs; the accepted runs and what `fault` returned (the
/// moment it repaired what it broke).
async fn under_load<F>(
    rig: &Rig,
    g: usize,
    size: Size,
    sleep_s: f64,
    fault: F,
) -> (Vec<Accepted>, Instant)
where
    F: Future<Output = Instant>,
{
    let (_stop_tx, stop) = watch::channel(false);
    let interval = load_time(size) * size.clients as u32 / size.runs.max(1) as u32;
    // Submits that keep failing give up after three times the planned load time.
    let deadline = Instant::now() + load_time(size) * 3;
    tokio::join!(
        rig.submit_paced(
            g,
            size.clients,
            size.runs,
            sleep_s,
            interval,
            &stop,
            deadline
        ),
        fault
    )
}

async fn single(dir: &std::path::Path, server: &NatsServer, workers: usize) -> anyhow::Result<Rig> {
    let mut rig = Rig::new(dir, &server.url(), 1).await?;
    rig.start_gateway(None, &[]).await?;
    for _ in 0..workers {
        rig.start_worker(None).await?;
    }
    Ok(rig)
}

/// nats-server SIGKILLed under load and started again 2 s later on the same store.
async fn nats_restart(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let mut server = NatsServer::start();
    let rig = single(&dir, &server, 1).await?;
    let (accepted, repaired) = under_load(&rig, 0, size, 0.1, async {
        sleep(load_time(size) / 3).await;
        server.kill();
        sleep(Duration::from_secs(2)).await;
        tokio::task::block_in_place(|| server.restart());
        Instant::now()
    })
    .await;
    let mut outcome = rig
        .settle("nats-restart", &accepted, repaired, size.settle)
        .await?;
    outcome.note = "SIGKILL, back after 2 s on the same store; time from the restart".into();
    rig.shutdown().await;
    Ok(outcome)
}

/// A three-node cluster with replicas 3: the node the gateway is connected to is SIGKILLed
/// under load and restarted 3 s later.
async fn node_loss(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let mut cluster = NatsCluster::start(3);
    let mut rig = Rig::new(&dir, &cluster.urls_from(0), 3).await?;
    rig.start_gateway(None, &[]).await?;
    rig.start_worker(Some(&cluster.urls_from(1))).await?;
    let (accepted, repaired) = under_load(&rig, 0, size, 0.1, async {
        sleep(load_time(size) / 3).await;
        cluster.kill(0);
        sleep(Duration::from_secs(3)).await;
        tokio::task::block_in_place(|| cluster.restart(0));
        Instant::now()
    })
    .await;
    let mut outcome = rig
        .settle("cluster-node-loss", &accepted, repaired, size.settle)
        .await?;
    outcome.note = "3 nodes, replicas 3; the gateway's node killed, back after 3 s; time from \
                    its restart"
        .into();
    rig.shutdown().await;
    Ok(outcome)
}

/// One of two workers SIGKILLed while it runs jobs: the other finishes them (after the
/// ack wait, 3 s here).
async fn worker_sigkill(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let server = NatsServer::start();
    let rig = single(&dir, &server, 2).await?;
    let (accepted, killed) = under_load(&rig, 0, size, 0.5, async {
        sleep(load_time(size) / 3).await;
        rig.workers[0].signal("KILL");
        Instant::now()
    })
    .await;
    let mut outcome = rig
        .settle("worker-sigkill", &accepted, killed, size.settle)
        .await?;
    outcome.allowed_duplicates = WORKER_CONCURRENCY;
    outcome.note = "time from the kill; the killed worker's task processes run on (own process \
                    groups), so its runs may execute twice"
        .into();
    rig.shutdown().await;
    Ok(outcome)
}

/// A gateway SIGKILLed during a burst of submits; a second gateway's orphan sweep publishes
/// (or fails) whatever it left PENDING without a job.
async fn gateway_sigkill(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let server = NatsServer::start();
    let mut rig = Rig::new(&dir, &server.url(), 1).await?;
    // The victim does not sweep (so the survivor is what recovers its runs).
    rig.start_gateway(None, &[("PYOCO_ORPHAN_AFTER_SEC", "0")])
        .await?;
    rig.start_gateway(None, &[]).await?;
    rig.start_worker(None).await?;
    let (stop_tx, stop) = watch::channel(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (accepted, killed) = tokio::join!(
        // A burst: as fast as the clients can, twice as many of them, until the kill.
        rig.submit_paced(
            0,
            size.clients * 2,
            usize::MAX,
            0.05,
            Duration::ZERO,
            &stop,
            deadline
        ),
        async {
            sleep(Duration::from_millis(800)).await;
            rig.gateways[0].proc.signal("KILL");
            stop_tx.send_replace(true);
            Instant::now()
        }
    );
    let mut outcome = rig
        .settle("gateway-sigkill", &accepted, killed, size.settle)
        .await?;
    outcome.note = format!(
        "{} stored (the killed gateway's unanswered writes included); time from the kill",
        outcome.stored
    );
    rig.shutdown().await;
    Ok(outcome)
}

/// Each run cancelled 0–400 ms after its submit, while its only task (200 ms) runs or
/// ends: every run must end COMPLETED or CANCELLED, once.
async fn cancel_race(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let server = NatsServer::start();
    let rig = single(&dir, &server, 1).await?;
    let per_client = size.runs.div_ceil(size.clients);
    let all = futures::future::join_all((0..size.clients).map(|c| {
        let rig = &rig;
        async move {
            let mut accepted = Vec::new();
            for i in 0..per_client {
                if let Some(a) = rig.submit(0, 0.2).await {
                    let delay = ((c * 131 + i * 37) % 400) as u64;
                    sleep(Duration::from_millis(delay)).await;
                    rig.cancel(0, &a.run_id).await;
                    accepted.push(a);
                }
            }
            accepted
        }
    }))
    .await;
    let accepted: Vec<Accepted> = all.into_iter().flatten().collect();
    let mut outcome = rig
        .settle("cancel-race", &accepted, Instant::now(), size.settle)
        .await?;
    outcome.note = "time from the last cancel".into();
    rig.shutdown().await;
    Ok(outcome)
}

/// One of two workers paused (SIGSTOP: no heartbeats, no acks, its messages held) for the
/// ack wait and 3 s more, then resumed.
async fn worker_hang(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let server = NatsServer::start();
    let rig = single(&dir, &server, 2).await?;
    let (accepted, hung) = under_load(&rig, 0, size, 0.3, async {
        sleep(load_time(size) / 3).await;
        rig.workers[0].signal("STOP");
        let hung = Instant::now();
        sleep(Duration::from_secs(6)).await;
        rig.workers[0].signal("CONT");
        hung
    })
    .await;
    let mut outcome = rig
        .settle("worker-hang", &accepted, hung, size.settle)
        .await?;
    outcome.allowed_duplicates = WORKER_CONCURRENCY;
    outcome.note = "paused 6 s (ack wait 3 s); time from the pause; its task processes ran on, \
                    so the runs it held may execute twice"
        .into();
    rig.shutdown().await;
    Ok(outcome)
}

/// The NATS store on a small tmpfs (root only) that a filler file fills up under load; then
/// the filler is removed and nats-server restarted (an operator's repair).
async fn disk_full(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let store = dir.join("store");
    std::fs::create_dir_all(&store)?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&store)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        return Ok(Outcome::skipped(
            "disk-full",
            "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)",
        ));
    }
    let result = disk_full_on(&dir, &store, size).await;
    std::process::Command::new("umount")
        .arg("-l")
        .arg(&store)
        .status()
        .ok();
    result
}

async fn disk_full_on(
    dir: &std::path::Path,
    store: &std::path::Path,
    size: Size,
) -> anyhow::Result<Outcome> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], crate::procs::free_port()?));
    let mut nats = pyoco::devnats::LocalNats::start(addr, store)?;
    let mut rig = Rig::new(dir, &nats.url(), 1).await?;
    rig.start_gateway(None, &[]).await?;
    rig.start_worker(None).await?;
    let filler = store.join("filler");
    let (accepted, repaired) = under_load(&rig, 0, size, 0.1, async {
        sleep(load_time(size) / 3).await;
        tokio::task::block_in_place(|| fill(&filler));
        sleep(Duration::from_secs(3)).await;
        std::fs::remove_file(&filler).ok();
        nats.stop();
        match tokio::task::block_in_place(|| pyoco::devnats::LocalNats::start(addr, store)) {
            Ok(again) => nats = again,
            Err(e) => eprintln!("pyoco-bench faults: nats-server did not start again: {e}"),
        }
        Instant::now()
    })
    .await;
    let mut outcome = rig
        .settle("disk-full", &accepted, repaired, size.settle)
        .await?;
    outcome.note = "64 MiB tmpfs store filled for 3 s, then freed and nats-server restarted; \
                    time from the restart"
        .into();
    rig.shutdown().await;
    drop(nats);
    Ok(outcome)
}

/// Writes `path` until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let Ok(mut file) = std::fs::File::create(path) else {
        return;
    };
    let chunk = vec![0u8; 1 << 20];
    while file.write_all(&chunk).is_ok() {}
    file.sync_all().ok();
}

/// The cluster node the gateway is connected to paused (SIGSTOP) for 5 s under load: NATS
/// slow rather than gone.
async fn slow_nats(dir: PathBuf, size: Size) -> anyhow::Result<Outcome> {
    let cluster = NatsCluster::start(3);
    let mut rig = Rig::new(&dir, &cluster.urls_from(0), 3).await?;
    rig.start_gateway(None, &[]).await?;
    rig.start_worker(Some(&cluster.urls_from(1))).await?;
    let pid = cluster.pid(0).unwrap_or(0);
    let (accepted, resumed) = under_load(&rig, 0, size, 0.1, async {
        sleep(load_time(size) / 3).await;
        crate::procs::send_signal(pid, "STOP");
        sleep(Duration::from_secs(5)).await;
        crate::procs::send_signal(pid, "CONT");
        Instant::now()
    })
    .await;
    let mut outcome = rig
        .settle("slow-nats", &accepted, resumed, size.settle)
        .await?;
    outcome.note = "the gateway's node paused 5 s; time from the resume".into();
    rig.shutdown().await;
    drop(cluster);
    Ok(outcome)
}
