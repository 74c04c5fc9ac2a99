//! TLS posture checks: a real `openssl s_server` at the server workload's address, a real
//! `openssl s_client` in the client workload's cgroup, and the record the agent reports for
//! that handshake (`/posture`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::agent::Agent;
use crate::case::{Case, TlsCheck, TlsSide};
use crate::spawn::{in_netns, spawn_in};
use crate::topology::Topology;

/// The server name on the test certificate.
pub const SERVER_NAME: &str = "server.test";

/// A CA, a server certificate for [`SERVER_NAME`] and a client certificate (made once a run).
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let sh = |cmd: &str| -> Result<()> {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(dir)
                .output()
                .context("sh")?;
            if !out.status.success() {
                bail!("{cmd}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=meshward-conformance-ca -days 2",
        )?;
        for (name, cn) in [("server", SERVER_NAME), ("client", "client.test")] {
            sh(&format!(
                "openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={cn} && \
                 printf 'subjectAltName=DNS:{cn}\\n' > {name}.ext && \
                 openssl x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days 2 -extfile {name}.ext"
            ))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn check(
    pki: &Pki,
    topo: &Topology,
    case: &Case,
    agent: &Agent,
    t: &TlsCheck,
) -> Result<String, String> {
    let run = || -> Result<Result<String, String>> {
        let from = case.workload(&t.from).context("client")?;
        let to = case.workload(&t.to).context("server")?;
        let addr = std::net::SocketAddr::new(to.address, t.port);
        let mut server = Command::new("openssl");
        server
            .args(["s_server", "-accept", &addr.to_string(), "-cert"])
            .arg(pki.path("server.crt"))
            .arg("-key")
            .arg(pki.path("server.key"))
            .arg("-quiet")
            .args(side_args(&t.server, true, pki, &t.client))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut server = Server(spawn_in(&mut server, &topo.netns_path(), None)?);
        if let Err(e) = wait_listening(&topo.netns_path(), addr) {
            let _ = server.0.kill();
            let mut err = String::new();
            if let Some(mut stderr) = server.0.stderr.take() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut err);
            }
            bail!("{e}: {}", err.trim());
        }
        let before = records(agent, &t.from, t.port)?;
        let mut client = Command::new("openssl");
        client
            .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
            .arg(pki.path("ca.crt"))
            // From the client workload's own address: its identity for the server's policy.
            .args([
                "-bind",
                &std::net::SocketAddr::new(from.address, 0).to_string(),
            ])
            .args(side_args(&t.client, false, pki, &t.server))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let procs = topo.cgroup_procs(&from.name);
        let out = spawn_in(&mut client, &topo.netns_path(), procs.as_deref())?
            .wait_with_output()
            .context("s_client")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("Cipher is (NONE)") || !text.contains("Cipher is") {
            return Ok(Err(format!(
                "{}: no handshake: {}",
                label(t),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let after = records(agent, &t.from, t.port)?;
            if let Some(row) = after.iter().find(|r| {
                count(r)
                    > before
                        .iter()
                        .find(|b| same_row(b, r))
                        .map(count)
                        .unwrap_or(0)
            }) {
                return Ok(compare(t, row));
            }
            if Instant::now() > deadline {
                return Ok(Err(format!(
                    "{}: the agent reported no new handshake for {} (records: {after:?})",
                    label(t),
                    t.from
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    run().unwrap_or_else(|e| Err(format!("{}: could not run: {e:#}", label(t))))
}

fn label(t: &TlsCheck) -> String {
    format!("tls {} -> {}:{}", t.from, t.to, t.port)
}

fn compare(t: &TlsCheck, row: &Value) -> Result<String, String> {
    for (field, want) in &t.expect {
        if &row[field] != want {
            return Err(format!(
                "{}: {field} is {}, expected {want} (record: {row})",
                label(t),
                row[field]
            ));
        }
    }
    Ok(format!(
        "{}: {}",
        label(t),
        t.expect
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

fn count(r: &Value) -> u64 {
    r["count"].as_u64().unwrap_or(0)
}

/// Two records are the same aggregate when every field but the counters and times agree.
fn same_row(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for k in ["count", "first_seen", "last_seen"] {
                o.remove(k);
            }
        }
        v
    };
    strip(a) == strip(b)
}

fn records(agent: &Agent, workload: &str, port: u16) -> Result<Vec<Value>> {
    let p = agent.json("/posture")?;
    Ok(p["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["workload"] == workload && r["server_port"] == port)
        .cloned()
        .collect())
}

fn wait_listening(netns: &Path, addr: std::net::SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    // Read the namespace's socket table rather than connect: a probe connection would be a
    // client of its own under the case's inbound policy.
    while !in_netns(netns, move || listening(addr.port()))? {
        if Instant::now() > deadline {
            bail!("s_server did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether a TCP socket of this thread's network namespace listens on `port`.
fn listening(port: u16) -> bool {
    ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .any(|table| {
            table.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let local_port = f.get(1).and_then(|a| a.rsplit(':').next());
                local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                    && f.get(3) == Some(&"0A")
            })
        })
}

/// OpenSSL options for one side. Weak protocol versions and ciphers need security level 0.
fn side_args(s: &TlsSide, server: bool, pki: &Pki, peer: &TlsSide) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let weak = |side: &TlsSide| matches!(side.version.as_deref(), Some("1" | "1.0" | "1.1"));
    // Either end at a legacy version needs both at security level 0 to meet.
    let weak_version = weak(s) || weak(peer);
    if let Some(v) = &s.version {
        a.push(
            match v.as_str() {
                "1" | "1.0" => "-tls1",
                "1.1" => "-tls1_1",
                "1.2" => "-tls1_2",
                _ => "-tls1_3",
            }
            .into(),
        );
    }
    match &s.ciphers {
        Some(c) => {
            a.extend(["-cipher".into(), format!("{c}@SECLEVEL=0")]);
            if server && c.contains("DHE") && !c.contains("ECDHE") {
                a.extend(["-dhparam".into(), "ffdhe2048".into()]);
            }
        }
        None if weak_version => a.extend(["-cipher".into(), "DEFAULT@SECLEVEL=0".into()]),
        None => {}
    }
    if let Some(suites) = &s.suites {
        a.extend(["-ciphersuites".into(), suites.clone()]);
    }
    if let Some(alpn) = &s.alpn {
        a.extend(["-alpn".into(), alpn.clone()]);
    }
    if server && s.client_cert {
        a.extend([
            "-CAfile".into(),
            pki.path("ca.crt"),
            "-Verify".into(),
            "1".into(),
            "-verify_return_error".into(),
        ]);
    }
    if !server {
        if s.client_cert {
            a.extend([
                "-cert".into(),
                pki.path("client.crt"),
                "-key".into(),
                pki.path("client.key"),
            ]);
        }
        a.extend([
            "-servername".into(),
            s.sni.clone().unwrap_or_else(|| SERVER_NAME.into()),
        ]);
    }
    a
}
