//! A throwaway Redis Cluster: three masters and three replicas, each a
//! [`RedisServer`] started with `--cluster-enabled yes` on free loopback
//! ports, joined by `redis-cli --cluster create ... --cluster-replicas 1`.
//!
//! The node timeout is short ([`NODE_TIMEOUT`]), so a killed master's
//! replica is promoted within a couple of seconds. The nodes' cluster
//! configuration files live in a private directory, removed on drop, so a
//! killed node can be [restarted](RedisCluster::restart) and rejoin (as a
//! replica of its promoted replica).
//!
//! Needs `redis-server` and `redis-cli` 7.0 or newer on `PATH`; see
//! [`crate::redis_server::installed`].

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, free_port};

/// `cluster-node-timeout` of every node: how long a master may be silent
/// before its replica takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// A running six-node cluster.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes and creates the cluster (three masters, one replica
    /// each); returns once every node reports `cluster_state:ok`. Panics,
    /// saying why, if it cannot.
    pub fn start() -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mcp-resume-redis-cluster-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let node_timeout = NODE_TIMEOUT.as_millis().to_string();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with_args(None, |port| {
                    vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        // The bus port explicitly (Redis 7): the default,
                        // port + 10000, may be taken or out of range.
                        "--cluster-port".into(),
                        free_port().to_string(),
                        "--cluster-config-file".into(),
                        format!("nodes-{port}.conf"),
                        "--cluster-node-timeout".into(),
                        node_timeout.clone(),
                        "--dir".into(),
                        dir.display().to_string(),
                    ]
                })
            })
            .collect();
        let cluster = Self { nodes, dir };
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create (is redis-cli on PATH?)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster.wait_until_replicated(Duration::from_secs(30));
        cluster
    }

    /// `redis+cluster://127.0.0.1:<port>,...` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The nodes' ports, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The index (in [`ports`](Self::ports)) of the node that serves `key`
    /// as master now, asked of any live node.
    pub fn master_of(&self, key: &str) -> usize {
        let slot = self.slot_of(key);
        let nodes = self.cli_any(&["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&slot))
            });
            if serves {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|port| port.parse().ok())
                    .expect("a node address in CLUSTER NODES");
                return self
                    .ports()
                    .iter()
                    .position(|&p| p == port)
                    .expect("a master that is one of the cluster's nodes");
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// The indexes of the replicas of node `master`, asked of any live node.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let nodes = self.cli_any(&["cluster", "nodes"]);
        let port = format!(":{}@", self.nodes[master].port());
        let Some(master_id) = nodes
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.len() > 1 && fields[1].contains(&port))
            .map(|fields| fields[0].to_owned())
        else {
            panic!("node {master} is not in CLUSTER NODES:\n{nodes}");
        };
        nodes
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|fields| fields.len() > 3 && fields[3] == master_id)
            .filter_map(|fields| {
                let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
                self.ports().iter().position(|&p| p == port)
            })
            .collect()
    }

    /// The hash slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        self.cli_any(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT")
    }

    /// Moves `slot` from master `from` to master `to` with its keys, the
    /// way `redis-cli --cluster reshard` does (`SETSLOT IMPORTING` and
    /// `MIGRATING`, `MIGRATE` of its keys a few at a time, `SETSLOT NODE`),
    /// pausing `pause` at each step so that clients meet the slot while it
    /// moves: `ASK` for keys already moved, `TRYAGAIN` for a script whose
    /// keys are split, then `MOVED`.
    pub fn migrate_slot(&self, slot: u16, from: usize, to: usize, pause: Duration) {
        let (from_port, to_port) = (self.nodes[from].port(), self.nodes[to].port());
        let id = |port: u16| {
            cli(port, &["cluster", "myid"])
                .map(|id| id.trim().to_owned())
                .expect("CLUSTER MYID")
        };
        let (from_id, to_id) = (id(from_port), id(to_port));
        let slot = slot.to_string();
        let run = |port: u16, args: &[&str]| {
            let out = cli(port, args).unwrap_or_else(|| panic!("{args:?} on port {port} failed"));
            assert!(
                !out.starts_with("ERR") && !out.contains("(error)"),
                "{args:?} on port {port}: {out}"
            );
            out
        };
        run(
            to_port,
            &["cluster", "setslot", &slot, "importing", &from_id],
        );
        run(
            from_port,
            &["cluster", "setslot", &slot, "migrating", &to_id],
        );
        std::thread::sleep(pause);
        loop {
            let keys = run(from_port, &["cluster", "getkeysinslot", &slot, "2"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to_port.to_string();
            let mut args = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000", "keys"];
            args.extend(keys);
            run(from_port, &args);
            std::thread::sleep(pause);
        }
        // The destination first, then the source, then the other masters
        // (replicas refuse SETSLOT), as redis-cli does.
        let others: Vec<u16> = self
            .live_ports()
            .into_iter()
            .filter(|&port| {
                port != to_port
                    && port != from_port
                    && cli(port, &["info", "replication"])
                        .is_some_and(|info| info.contains("role:master"))
            })
            .collect();
        let masters = [to_port, from_port].into_iter().chain(others);
        for port in masters {
            run(port, &["cluster", "setslot", &slot, "node", &to_id]);
        }
    }

    /// Kills node `index` at once (`SIGKILL`).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again on its port, with its cluster
    /// configuration: it rejoins the cluster.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].restart();
    }

    /// Waits until node `index` (killed) serves no slot in the view of every
    /// live node and the cluster is ok again: its replica took over. (Right
    /// after a kill the cluster still reports ok, for `cluster-node-timeout`,
    /// with the dead master serving its slots.)
    pub fn wait_for_failover(&self, index: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let victim = format!(":{}@", self.nodes[index].port());
        loop {
            let moved = self.live_ports().iter().all(|&port| {
                cli(port, &["cluster", "nodes"]).is_some_and(|nodes| {
                    nodes.lines().all(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        fields.len() < 2 || !fields[1].contains(&victim) || fields.len() <= 8
                    })
                })
            });
            if moved {
                self.wait_until_ok(deadline.saturating_duration_since(Instant::now()));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no replica took over from node {index} of the Redis Cluster on ports {:?} within {timeout:?}",
                self.ports()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every live node reports `cluster_state:ok` and no master
    /// that serves slots is flagged as failed.
    pub fn wait_until_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = self.live_ports().iter().all(|&port| {
                cli(port, &["cluster", "info"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
                    && cli(port, &["cluster", "nodes"]).is_some_and(|nodes| {
                        !nodes.lines().any(|line| {
                            let fields: Vec<&str> = line.split_whitespace().collect();
                            fields.len() > 8
                                && fields[2].contains("master")
                                && fields[2].contains("fail")
                        })
                    })
            });
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster on ports {:?} did not become healthy within {timeout:?}",
                self.ports()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every live master has a connected replica and every live
    /// replica's link to its master is up (a cluster reports itself ok
    /// before its replicas have synchronised; after a failover, the promoted
    /// master has none until the old one is back as its replica).
    pub fn wait_until_replicated(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let replicated = self.live_ports().iter().all(|&port| {
                cli(port, &["info", "replication"]).is_some_and(|info| {
                    if info.contains("role:master") {
                        info.lines()
                            .find_map(|line| line.trim().strip_prefix("connected_slaves:"))
                            .and_then(|n| n.parse::<u32>().ok())
                            .is_some_and(|n| n >= 1)
                    } else {
                        info.contains("master_link_status:up")
                    }
                })
            });
            if replicated {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas of the Redis Cluster on ports {:?} did not all connect within {timeout:?}",
                self.ports()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.is_running())
            .map(RedisServer::port)
            .collect()
    }

    /// A `redis-cli` command's output from the first live node that answers.
    fn cli_any(&self, args: &[&str]) -> String {
        self.live_ports()
            .into_iter()
            .find_map(|port| cli(port, args))
            .unwrap_or_else(|| panic!("no node of the cluster answers {args:?}"))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p <port> <args>`'s output, `None` if it failed.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        .filter(|out| !out.starts_with("Could not connect") && !out.starts_with("ERR"))
}

/// One cluster for the whole process, for tests that only need a cluster
/// (each uses its own key prefix). Never killed from: tests that kill nodes
/// start their own.
pub fn shared() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}
