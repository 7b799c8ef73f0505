//! A real 3-node (or n-node) nats-server cluster on loopback: routes between the nodes,
//! JetStream on each with its own store directory, fixed ports so a killed node comes back
//! where it was. Tests of replicas, node loss and leader failover use it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::nats::nats_server_binary;
use super::process::free_port;
use crate::config::Config;

/// One node of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    name: String,
    client_port: u16,
    cluster_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

/// A nats-server cluster owned by one test; every node is killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until each accepts clients and the cluster has formed
    /// (JetStream has a meta leader).
    pub fn start(size: usize) -> NatsCluster {
        let bin = nats_server_binary().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("n{i}"),
                client_port: free_port(),
                cluster_port: free_port(),
                store: dir.path().join(format!("n{i}")),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster {
            nodes,
            bin,
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_accepting(i);
        }
        cluster
    }

    fn routes(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let routes = self.routes();
        let node = &mut self.nodes[i];
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &node.client_port.to_string()])
            .args(["-n", &node.name, "--cluster_name", "pyoco-test"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
            ])
            .args(["--routes", &routes, "-js", "-sd"])
            .arg(&node.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.bin.display()));
        node.child = Some(child);
    }

    fn wait_accepting(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = self.nodes[i].client_port;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cluster node {i} did not listen in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Every node's URL, node `first` first (a client prefers it and fails over along the
    /// rest): a `PYOCO_NATS_URL` value.
    pub fn urls_from(&self, first: usize) -> String {
        let n = self.nodes.len();
        (0..n)
            .map(|k| self.url((first + k) % n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server name of node `i` (`n<i>`), as stream info reports leaders.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// A config whose clients prefer node `first`, with `replicas` for every resource.
    pub fn config(&self, first: usize, replicas: usize) -> Config {
        Config {
            nats_url: self.urls_from(first),
            js_replicas: replicas,
            ..Config::default()
        }
    }

    /// Node `i`'s process id while it runs (to pause it with SIGSTOP, say).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Kills node `i` (SIGKILL), keeping its store.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts node `i` again on its ports and store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_accepting(i);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
