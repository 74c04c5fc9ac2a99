//! The servers a case needs, started in its namespace before anything is probed: an echo
//! server per destination workload (every port and protocol its rows name), and dnsmasq when
//! the case has DNS names. Servers run outside the governed cgroups: inbound verdicts are taken
//! by address, and a governed server's UDP replies would be egress of its own.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::case::{Case, Protocol};
use crate::spawn::spawn_in;
use crate::topology::{DNS_ADDRESS, DNS_ADDRESS6, Topology};

pub struct Services {
    children: Vec<Child>,
}

impl Drop for Services {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Services {
    pub fn start(exe: &Path, case: &Case, topo: &Topology) -> Result<Self> {
        let mut services = Self {
            children: Vec::new(),
        };
        let mut listen: BTreeMap<String, Vec<(Protocol, SocketAddr)>> = BTreeMap::new();
        for c in case.steps.iter().flat_map(|s| s.connections.iter()) {
            let to = case.workload(&c.to).context("server workload")?;
            let entry = (c.protocol, SocketAddr::new(to.address, c.port));
            let v = listen.entry(c.to.clone()).or_default();
            if !v.contains(&entry) {
                v.push(entry);
            }
        }
        for addrs in listen.values() {
            let mut cmd = Command::new(exe);
            cmd.args(["conformance", "serve"]);
            for (proto, addr) in addrs {
                cmd.arg(if *proto == Protocol::Tcp {
                    "--tcp"
                } else {
                    "--udp"
                })
                .arg(addr.to_string());
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = spawn_in(&mut cmd, &topo.netns_path(), None)?;
            let mut line = String::new();
            let stdout = child.stdout.take().context("serve stdout")?;
            BufReader::new(stdout).read_line(&mut line)?;
            if line.trim() != "ready" {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "echo server did not start: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            services.children.push(child);
        }
        if !case.dns.is_empty() {
            services.children.push(dnsmasq(case, topo)?);
        }
        Ok(services)
    }
}

fn dnsmasq(case: &Case, topo: &Topology) -> Result<Child> {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--user=root",
        "--port=53",
        "--local-ttl=60",
    ])
    .arg(format!("--listen-address={DNS_ADDRESS},{DNS_ADDRESS6}"))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (name, target) in &case.dns {
        let w = case.workload(target).context("dns target")?;
        // host-record answers the name itself only, so a wildcard rule is tested against
        // exactly the names the case lists.
        cmd.arg(format!("--host-record={name},{}", w.address));
    }
    spawn_in(&mut cmd, &topo.netns_path(), None).context("start dnsmasq (is it installed?)")
}
