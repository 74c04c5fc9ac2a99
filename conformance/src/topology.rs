//! A case's node: one network namespace holding every workload's address (on a veth device inside it,
//! so traffic between them stays inside the namespace), and a cgroup per local workload.
//! Everything is removed on drop, also when a case fails half-way.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::case::{Case, Placement};

/// Where the case's DNS server listens (inside the case's namespace), for IPv4 and IPv6
/// clients.
pub const DNS_ADDRESS: &str = "10.88.255.53";
pub const DNS_ADDRESS6: &str = "fd00:88::53";

pub struct Topology {
    pub netns: String,
    /// The cgroup tree of this case, under the run's directory.
    cgroup_dir: PathBuf,
    /// (workload, cgroup path relative to the cgroup2 mount).
    pub cgroups: Vec<(String, String)>,
}

impl Topology {
    pub fn create(case: &Case, run_id: &str, index: usize) -> Result<Self> {
        let netns = format!("mwconf-{run_id}-{index}");
        let rel_dir = format!("meshward-conformance-{run_id}/{index}");
        let cgroup_dir = cgroup2_root()?.join(&rel_dir);
        let mut topo = Self {
            netns: netns.clone(),
            cgroup_dir: cgroup_dir.clone(),
            cgroups: Vec::new(),
        };
        run("ip", &["netns", "add", &netns])?;
        let mut batch = String::from(
            "link set lo up\nlink add mw0 type veth peer name mw1\nlink set mw0 up\nlink set mw1 up\n",
        );
        let mut addresses: Vec<IpAddr> = case.workloads.iter().map(|w| w.address).collect();
        if !case.dns.is_empty() {
            addresses.push(DNS_ADDRESS.parse().expect("constant"));
            addresses.push(DNS_ADDRESS6.parse().expect("constant"));
        }
        addresses.sort();
        addresses.dedup();
        for a in addresses {
            match a {
                IpAddr::V4(v4) => batch.push_str(&format!("addr add {v4}/32 dev mw0\n")),
                IpAddr::V6(v6) => batch.push_str(&format!("addr add {v6}/128 dev mw0 nodad\n")),
            }
        }
        run_batch(&netns, &batch)?;
        for w in case
            .workloads
            .iter()
            .filter(|w| w.placement == Placement::Local)
        {
            let dir = cgroup_dir.join(&w.name);
            fs::create_dir_all(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
            topo.cgroups
                .push((w.name.clone(), format!("{rel_dir}/{}", w.name)));
        }
        Ok(topo)
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.netns)
    }

    /// The cgroup.procs file of a local workload.
    pub fn cgroup_procs(&self, workload: &str) -> Option<PathBuf> {
        self.cgroups
            .iter()
            .any(|(w, _)| w == workload)
            .then(|| self.cgroup_dir.join(workload).join("cgroup.procs"))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (w, _) in &self.cgroups {
            remove_cgroup(&self.cgroup_dir.join(w));
        }
        let _ = fs::remove_dir(&self.cgroup_dir);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Removes the run's cgroup directory (after every case's own is gone).
pub fn remove_run_cgroups(run_id: &str) {
    if let Ok(root) = cgroup2_root() {
        let _ = fs::remove_dir(root.join(format!("meshward-conformance-{run_id}")));
    }
}

fn remove_cgroup(dir: &Path) {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for _ in 0..100 {
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn cgroup2_root() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .context("cgroup2 is not mounted")
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program} (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn run_batch(netns: &str, batch: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-n", netns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run ip -batch")?;
    child
        .stdin
        .take()
        .context("ip stdin")?
        .write_all(batch.as_bytes())
        .context("write ip batch")?;
    let out = child.wait_with_output().context("wait for ip")?;
    if !out.status.success() {
        bail!(
            "ip -n {netns} -batch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
