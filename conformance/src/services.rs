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
            let mut resolver = dnsmasq(case, topo)?;
            let ready = wait_listening_udp(&mut resolver, 53);
            services.children.push(resolver);
            ready?;
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

/// Waits until `child` has a UDP socket bound to `port` (its namespace's `/proc/<pid>/net/udp`
/// and `udp6`), so that a case's first lookup never races the resolver's start; an exit or
/// 10 s without it fails the case loudly.
fn wait_listening_udp(child: &mut Child, port: u16) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let wanted = format!(":{port:04X} ");
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("dnsmasq exited at start ({status})");
        }
        let bound = ["udp", "udp6"].iter().any(|table| {
            std::fs::read_to_string(format!("/proc/{}/net/{table}", child.id())).is_ok_and(|t| {
                t.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| format!("{a} ").ends_with(&wanted))
                })
            })
        });
        if bound {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("dnsmasq did not listen on port {port} within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
