//! `meshward explain`: the verdict for a connection and the rule that decided it, computed from
//! the same compiled tables the kernel enforces (`control::evaluate` is the kernel's twin).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::{AdminArgs, PolicyArgs, client};

#[derive(Args)]
pub struct ExplainArgs {
    /// Source: `namespace/workload` or a workload's IP address.
    #[arg(long)]
    from: String,
    /// Destination `IP:PORT`.
    #[arg(long)]
    to: SocketAddr,
    /// DNS name the destination was reached by (treated as resolving to the --to address).
    #[arg(long)]
    host: Option<String>,
    /// Compile this config instead of asking the running agent.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    policy: PolicyArgs,
}

#[derive(Serialize, serde::Deserialize)]
pub struct Explanation {
    pub from: String,
    pub to: String,
    pub verdict: String,
    pub rule_id: u32,
    pub rule: String,
    pub audit_rule: Option<String>,
}

pub fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let explanation = match &args.config {
        Some(path) => {
            let config = control::load_config(path)
                .map_err(|d| anyhow::anyhow!("{d}"))
                .with_context(|| format!("invalid config {}", path.display()))?;
            let mut names = control::Resolutions::new();
            if let Some(host) = &args.host {
                names.insert(normalize_host(host), vec![args.to.ip()]);
            }
            let compiled = control::compile(
                &config,
                &args.policy.settings(),
                &names,
                &control::RuleIds::default(),
            )
            .map_err(|d| anyhow::anyhow!("{d}"))?;
            decide(&compiled, &args.from, args.to)?
        }
        None => {
            let mut query = format!(
                "/explain?from={}&to={}",
                encode(&args.from),
                encode(&args.to.to_string())
            );
            if let Some(host) = &args.host {
                query.push_str(&format!("&host={}", encode(host)));
            }
            let body = client::get(&args.admin, &query)?;
            serde_json::from_str(&body).with_context(|| format!("agent answered: {body}"))?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        println!(
            "{} {} -> {}: decided by {}",
            explanation.verdict.to_uppercase(),
            explanation.from,
            explanation.to,
            explanation.rule
        );
        if let Some(audit) = &explanation.audit_rule {
            println!("audited by {audit}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Evaluates a connection from `from` (`ns/workload` or workload IP) against compiled tables.
pub fn decide(
    compiled: &control::CompiledPolicy,
    from: &str,
    to: SocketAddr,
) -> Result<Explanation> {
    let workload = find_workload(compiled, from)?;
    let d = control::evaluate(compiled, workload.workload_id, to.ip(), to.port());
    Ok(Explanation {
        from: format!("{}/{}", workload.namespace, workload.name),
        to: to.to_string(),
        verdict: match d.verdict {
            control::Verdict::Allow => "allow".into(),
            control::Verdict::Deny => "deny".into(),
        },
        rule_id: d.rule_id,
        rule: compiled.rule_name(d.rule_id),
        audit_rule: d.audit_rule_id.map(|id| compiled.rule_name(id)),
    })
}

fn find_workload<'a>(
    compiled: &'a control::CompiledPolicy,
    from: &str,
) -> Result<&'a control::CompiledWorkload> {
    let found = match from.parse::<IpAddr>() {
        Ok(ip) => compiled.workloads.iter().find(|w| w.address == Some(ip)),
        Err(_) => {
            let Some((ns, name)) = from.split_once('/') else {
                bail!("--from must be namespace/workload or an IP address, got {from:?}");
            };
            compiled
                .workloads
                .iter()
                .find(|w| w.namespace == ns && w.name == name)
        }
    };
    found.with_context(|| format!("no workload {from} in the policy"))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
