//! CPU and memory of process trees (a process and everything below it), from `/proc`: what
//! `--compare` charges each system, whose workers start children (Python runners, Celery's
//! prefork pool).

use std::collections::BTreeMap;

/// A process and its descendants: CPU from a starting point, memory now.
pub struct Tree {
    name: String,
    pid: u32,
    /// The bench itself: its children are the systems measured, not its own work.
    alone: bool,
    cpu_before: f64,
}

impl Tree {
    pub fn new(name: &str, pid: u32) -> Tree {
        Tree {
            name: name.to_string(),
            pid,
            alone: pid == std::process::id(),
            cpu_before: 0.0,
        }
        .started()
    }

    fn started(mut self) -> Tree {
        self.cpu_before = self.cpu_seconds();
        self
    }

    fn cpu_seconds(&self) -> f64 {
        if self.alone {
            crate::procs::cpu_seconds(self.pid).unwrap_or_default()
        } else {
            tree_cpu_seconds(self.pid)
        }
    }
}

/// CPU ms per run of every tree (plus "total") and each tree's RSS in MiB.
pub fn finish_trees(
    trees: &mut [Tree],
    runs: usize,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut cpu = BTreeMap::new();
    let mut rss = BTreeMap::new();
    let mut total = 0.0;
    if runs == 0 {
        return (cpu, rss);
    }
    for t in trees.iter() {
        let ms = (t.cpu_seconds() - t.cpu_before) * 1000.0 / runs as f64;
        total += ms;
        cpu.insert(t.name.clone(), ms);
        if !t.alone {
            rss.insert(t.name.clone(), tree_rss_mib(t.pid));
        }
    }
    cpu.insert("total".into(), total);
    (cpu, rss)
}

/// `pid` and every process below it, from `/proc/*/stat`'s parent pids.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse().ok())) {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// User + system seconds of a tree, including its reaped children (`cutime`/`cstime`: a
/// Celery child that exited still counts).
fn tree_cpu_seconds(pid: u32) -> f64 {
    descendants(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            (11..=14)
                .filter_map(|i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
                .sum::<f64>()
                / 100.0
        })
        .sum()
}

fn tree_rss_mib(pid: u32) -> f64 {
    descendants(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|text| {
            let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1024.0
}
