//! The bench's own hosts and groups: a client and a server network namespace on a veth
//! (support::NetPair), one cgroup per role, CPU pinning, and CPU time per cgroup.
use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command},
};

use crate::support::{CgroupTree, NetPair, cgroup2_root, in_netns};

/// The load generator and the client-side proxy.
pub const CLIENT_CPU: usize = 0;
/// The echo server and the server-side proxy.
pub const SERVER_CPU: usize = 1;

/// The cgroups whose CPU time is counted, in the order of [`Topology::cpu_usec_by_role`].
pub const ROLES: [&str; 5] = ["client", "server", "agent", "client proxy", "server proxy"];

pub struct Topology {
    pub net: NetPair,
    pub client_cgroup: String,
    pub server_cgroup: String,
    pub agent_cgroup: String,
    pub client_proxy_cgroup: String,
    pub server_proxy_cgroup: String,
    _cgroups: CgroupTree,
}

impl Topology {
    pub fn new() -> Self {
        let net = NetPair::new("bench-sidecar");
        for ns in [&net.client_ns, &net.server_ns] {
            allow_fast_port_reuse(ns);
        }
        let cgroups = CgroupTree::new("bench-sidecar");
        Self {
            client_cgroup: cgroups.child("client"),
            server_cgroup: cgroups.child("server"),
            agent_cgroup: cgroups.child("agent"),
            client_proxy_cgroup: cgroups.child("client-proxy"),
            server_proxy_cgroup: cgroups.child("server-proxy"),
            net,
            _cgroups: cgroups,
        }
    }

    /// Spawns `cmd` in the client namespace and `cgroup`, pinned to `cpu`.
    pub fn spawn_client_side(&self, cmd: &mut Command, cgroup: &str, cpu: usize) -> Child {
        in_netns(pin_to_cpu(cmd, cpu), &self.net.client_ns, Some(cgroup))
    }

    /// Spawns `cmd` in the server namespace and `cgroup`, pinned to `cpu`.
    pub fn spawn_server_side(&self, cmd: &mut Command, cgroup: &str, cpu: usize) -> Child {
        in_netns(pin_to_cpu(cmd, cpu), &self.net.server_ns, Some(cgroup))
    }

    /// User + system CPU time, in µs, of every process that ever ran in each of the bench's
    /// cgroups, in the order of [`ROLES`]: cgroup v2 `cpu.stat`, kept by the kernel per cgroup.
    pub fn cpu_usec_by_role(&self) -> [u64; 5] {
        [
            &self.client_cgroup,
            &self.server_cgroup,
            &self.agent_cgroup,
            &self.client_proxy_cgroup,
            &self.server_proxy_cgroup,
        ]
        .map(|rel| cgroup_cpu_usec(&cgroup2_root().join(rel)))
    }

    /// Waits until the agent's cgroup uses under 1% of a CPU over half a second (at most 60 s):
    /// after a start on 200,000 rules the agent still clears the other generation slot and frees
    /// the compile's memory for a while, and that is not the steady state being measured.
    pub fn wait_agent_idle(&self) {
        let agent = cgroup2_root().join(&self.agent_cgroup);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut last = cgroup_cpu_usec(&agent);
        while std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let now = cgroup_cpu_usec(&agent);
            if now - last < 5_000 {
                return;
            }
            last = now;
        }
        eprintln!("the agent did not settle within 60 s");
    }

    /// Moves a running process (all its threads) into `cgroup`.
    pub fn adopt(&self, pid: u32, cgroup: &str) {
        let procs = cgroup2_root().join(cgroup).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).expect("write cgroup.procs");
    }
}

fn cgroup_cpu_usec(dir: &Path) -> u64 {
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).expect("read cpu.stat");
    stat.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == "user_usec" || *k == "system_usec")
        .map(|(_, v)| v.parse::<u64>().expect("cpu.stat value"))
        .sum()
}

/// Proxies close their upstream connections first, so connect-request-close leaves TIME_WAIT
/// sockets behind them; reusing those (and a wide ephemeral range) keeps the proxies from
/// running out of source ports. Per-namespace sysctls of the bench's own namespaces.
fn allow_fast_port_reuse(ns: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
        .args([
            "net.ipv4.tcp_tw_reuse=1",
            "net.ipv4.ip_local_port_range=1024 65000",
        ])
        .status()
        .expect("sysctl")
        .success();
    assert!(ok, "sysctl in {ns}");
}

/// sched_setaffinity(2) in the child before exec; threads it creates inherit the CPU.
fn pin_to_cpu(cmd: &mut Command, cpu: usize) -> &mut Command {
    // SAFETY: sched_setaffinity is a plain system call (async-signal-safe) on a set built on
    // the stack.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
