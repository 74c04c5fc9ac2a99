//! Checking one connectivity row against the real dataplane: run the probe as the client
//! workload, read the verdict from what connect()/sendto() returned, and the deciding rule
//! from the agent's deny events and per-rule counters.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::agent::Agent;
use crate::case::{Case, Connection, Verdict};
use crate::spawn::spawn_in;
use crate::topology::{DNS_ADDRESS, DNS_ADDRESS6, Topology};

pub struct Env<'a> {
    pub exe: &'a Path,
    pub bin_dir: &'a Path,
    pub topology: &'a Topology,
    pub case: &'a Case,
}

/// `Ok(description)` when the row holds, `Err(what differed)` otherwise.
pub fn connection(env: &Env<'_>, agent: &Agent, c: &Connection) -> Result<String, String> {
    let observe = agent.is_running() && (c.rule.is_some() || c.audit.is_some());
    let before = observe
        .then(|| Observation::take(agent))
        .transpose()
        .map_err(|e| e.to_string())?;
    let word = run_probe(env, c).map_err(|e| format!("probe could not run: {e:#}"))?;
    let seen = match word.as_str() {
        "ok" => Verdict::Allow,
        "EPERM" | "ECONNREFUSED" => Verdict::Deny,
        other => {
            return Err(format!(
                "{}: the probe got {other}, neither a verdict nor a connection",
                row(c)
            ));
        }
    };
    if seen != c.verdict {
        return Err(format!(
            "{}: expected {:?}, got {:?} ({word})",
            row(c),
            c.verdict,
            seen
        ));
    }
    if let Some(before) = before {
        let rules = before.deciding(agent, seen).map_err(|e| e.to_string())?;
        if let Some(want) = &c.rule
            && !rules.decided.iter().any(|r| r.contains(want.as_str()))
        {
            return Err(format!(
                "{}: {:?} ({word}) as expected, but decided by {:?}, not a rule naming {want:?}",
                row(c),
                seen,
                rules.decided
            ));
        }
        if let Some(want) = &c.audit
            && !rules.audited.iter().any(|r| r.contains(want.as_str()))
        {
            return Err(format!(
                "{}: no AUDIT rule naming {want:?} counted it (audited: {:?})",
                row(c),
                rules.audited
            ));
        }
    }
    Ok(format!("{} → {word}", row(c)))
}

pub fn row(c: &Connection) -> String {
    let to = c.host.clone().unwrap_or_else(|| c.to.clone());
    let bin = c
        .binary
        .as_deref()
        .map(|b| format!(" as {b}"))
        .unwrap_or_default();
    format!("{} -> {to}:{}/{}{bin}", c.from, c.port, c.protocol.as_str())
}

fn run_probe(env: &Env<'_>, c: &Connection) -> Result<String> {
    let from = env.case.workload(&c.from).context("client workload")?;
    let to = env.case.workload(&c.to).context("server workload")?;
    let program = match &c.binary {
        Some(b) => env.bin_dir.join(b),
        None => env.exe.to_path_buf(),
    };
    let mut cmd = Command::new(program);
    cmd.args(["conformance", "probe", "--src", &from.address.to_string()])
        .args([
            "--port",
            &c.port.to_string(),
            "--proto",
            c.protocol.as_str(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &c.host {
        Some(name) => {
            let dns = if from.address.is_ipv6() {
                DNS_ADDRESS6
            } else {
                DNS_ADDRESS
            };
            cmd.args(["--resolve", name, "--dns", dns])
        }
        None => cmd.args(["--dst", &to.address.to_string()]),
    };
    let procs = env.topology.cgroup_procs(&from.name);
    let child = spawn_in(&mut cmd, &env.topology.netns_path(), procs.as_deref())?;
    let out = child.wait_with_output().context("wait for the probe")?;
    let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if word.is_empty() {
        anyhow::bail!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(word)
}

/// The agent's event sequence and per-rule counters before a probe.
struct Observation {
    last_event: u64,
    rules: Vec<(String, u64, u64, u64)>,
}

struct Deciding {
    decided: Vec<String>,
    audited: Vec<String>,
}

impl Observation {
    fn take(agent: &Agent) -> Result<Self> {
        Ok(Self {
            last_event: last_seq(&agent.json("/events")?),
            rules: rule_counters(&agent.json("/policy")?),
        })
    }

    /// The rules that decided (deny: named by the new deny event; allow: the ALLOW rules whose
    /// counters moved, or the default) and the AUDIT rules that counted the probe.
    fn deciding(&self, agent: &Agent, verdict: Verdict) -> Result<Deciding> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let decided = if verdict == Verdict::Deny {
            loop {
                let events = agent.json("/events")?;
                let denies: Vec<String> = events["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["seq"].as_u64().unwrap_or(0) > self.last_event)
                    .filter(|e| e["verdict"] == "deny")
                    .filter_map(|e| e["rule"].as_str().map(str::to_string))
                    .collect();
                if !denies.is_empty() || Instant::now() > deadline {
                    break denies;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            let moved = self.moved(agent, |(_, a, _, _)| *a)?;
            if moved.is_empty() {
                vec!["(default allow)".to_string()]
            } else {
                moved
            }
        };
        let audited = self.moved(agent, |(_, _, _, u)| *u)?;
        Ok(Deciding { decided, audited })
    }

    fn moved(
        &self,
        agent: &Agent,
        count: impl Fn(&(String, u64, u64, u64)) -> u64,
    ) -> Result<Vec<String>> {
        let after = rule_counters(&agent.json("/policy")?);
        Ok(after
            .iter()
            .filter(|r| {
                let old = self
                    .rules
                    .iter()
                    .find(|o| o.0 == r.0)
                    .map(&count)
                    .unwrap_or(0);
                count(r) > old
            })
            .map(|r| r.0.clone())
            .collect())
    }
}

fn last_seq(events: &Value) -> u64 {
    events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

fn rule_counters(policy: &Value) -> Vec<(String, u64, u64, u64)> {
    policy["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap_or(0);
            (
                r["name"].as_str().unwrap_or("").to_string(),
                n("allowed"),
                n("denied"),
                n("audited"),
            )
        })
        .collect()
}
