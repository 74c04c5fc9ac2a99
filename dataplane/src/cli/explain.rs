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
    /// DNS name the destination was reached by (treated as resolving to the --to address); also
    /// the TLS server name (SNI) checked at the ClientHello unless --sni says otherwise.
    #[arg(long)]
    host: Option<String>,
    /// TLS server name (SNI) the client sends, checked against the EgressPolicy name rules.
    #[arg(long)]
    sni: Option<String>,
    /// Executable of the connecting process, for EgressPolicies scoped to spec.binaries.
    #[arg(long)]
    binary: Option<PathBuf>,
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

/// The verdict for a connection: both directions meshward enforces on it, and the step that
/// decided. `egress` is present when the source is a known workload; `inbound` when the
/// destination address belongs to a workload.
#[derive(Serialize, serde::Deserialize)]
pub struct Explanation {
    pub from: String,
    pub to: String,
    pub verdict: String,
    pub rule_id: u32,
    pub rule: String,
    pub audit_rule: Option<String>,
    pub egress: Option<Step>,
    /// The ClientHello's server name checked (TLS connections; with --host or --sni).
    #[serde(default)]
    pub tls_sni: Option<Step>,
    pub inbound: Option<Step>,
}

#[derive(Clone, Serialize, serde::Deserialize)]
pub struct Step {
    pub verdict: String,
    pub rule_id: u32,
    pub rule: String,
    pub audit_rule: Option<String>,
    /// Inbound: the server workload; egress: the source workload.
    pub workload: String,
    /// Inbound: the identity the kernel gives the source (workload or "unknown").
    pub source_identity: Option<String>,
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
            let patterns: Vec<String> = config
                .egress_policies
                .iter()
                .flat_map(|p| &p.binaries)
                .map(|b| control::pattern_text(&b.value))
                .collect();
            let compiled = control::compile_with_binaries(
                &config,
                &args.policy.settings(),
                &names,
                &crate::agent::binaries::resolve(&patterns),
                &control::RuleIds::default(),
            )
            .map_err(|d| anyhow::anyhow!("{d}"))?;
            let file = args
                .binary
                .as_deref()
                .and_then(crate::agent::binaries::file_id);
            let sni = args.sni.as_deref().or(args.host.as_deref());
            let host = args.host.clone();
            decide(&compiled, &args.from, args.to, file, sni, &move |_| {
                host.as_deref().map(host_keys).unwrap_or_default()
            })?
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
            if let Some(sni) = &args.sni {
                query.push_str(&format!("&sni={}", encode(sni)));
            }
            if let Some(binary) = &args.binary {
                query.push_str(&format!("&binary={}", encode(&binary.to_string_lossy())));
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
        for (direction, step) in [
            ("egress", &explanation.egress),
            ("tls sni", &explanation.tls_sni),
            ("inbound", &explanation.inbound),
        ] {
            if let Some(s) = step {
                let source = s
                    .source_identity
                    .as_ref()
                    .map(|i| format!(", source identity {i}"))
                    .unwrap_or_default();
                println!(
                    "  {direction:<7} ({}{source}): {} by {}",
                    s.workload, s.verdict, s.rule
                );
                if let Some(audit) = &s.audit_rule {
                    println!("          audited by {audit}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The name keys of `host` (the whole name, then its `.suffix`es): what the kernel holds for an
/// address learned from an answer for `host`.
pub fn host_keys(host: &str) -> Vec<u64> {
    let mut keys = [0u64; dataplane_common::sni_policy::MAX_SUFFIXES + 1];
    let n = dataplane_common::sni_policy::server_name_keys(host.as_bytes(), &mut keys);
    keys[..n].to_vec()
}

pub fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Evaluates a connection from `from` (`ns/workload` or an IP) to `to` against compiled tables,
/// egress (if the source is a workload) then inbound (if the destination is a workload).
/// `learned(workload_id)`: the name keys DNS answers associated with `to`'s address for that
/// workload, in the kernel's order (see `control::evaluate_with_names`).
pub fn decide(
    compiled: &control::CompiledPolicy,
    from: &str,
    to: SocketAddr,
    binary: Option<control::FileId>,
    sni: Option<&str>,
    learned: &dyn Fn(u32) -> Vec<u64>,
) -> Result<Explanation> {
    let (source, source_ip) = find_source(compiled, from)?;
    let mut tls_sni = None;
    let egress = source.map(|w| {
        let subject = compiled.subject_of(w.workload_id, binary);
        let keys = learned(w.workload_id);
        let d = control::evaluate_with_names(compiled, subject, to.ip(), to.port(), &keys);
        if let (Some(name), control::Verdict::Allow) = (sni, d.verdict) {
            let s = control::evaluate_sni(compiled, subject, to.ip(), to.port(), Some(name));
            tls_sni = Some(step(compiled, s, w, None));
        }
        step(compiled, d, w, None)
    });
    let server = control::identity_of(compiled, to.ip());
    let inbound = compiled.workload(server).map(|w| {
        let identity = source_ip
            .map(|ip| control::identity_of(compiled, ip))
            .unwrap_or(UNKNOWN);
        let ip = source_ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let d = control::evaluate_inbound(compiled, w.workload_id, ip, identity, to.port());
        let who = compiled
            .workload(identity)
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .unwrap_or_else(|| "unknown".into());
        step(compiled, d, w, Some(who))
    });
    let deciding = [&egress, &tls_sni, &inbound]
        .into_iter()
        .flatten()
        .find(|s| s.verdict == "deny")
        .or(inbound.as_ref())
        .or(egress.as_ref())
        .cloned()
        .with_context(|| format!("neither {from} nor {to} is a workload in the policy"))?;
    Ok(Explanation {
        from: source
            .map(|w| format!("{}/{}", w.namespace, w.name))
            .unwrap_or_else(|| from.to_string()),
        to: to.to_string(),
        verdict: deciding.verdict,
        rule_id: deciding.rule_id,
        rule: deciding.rule,
        audit_rule: deciding.audit_rule,
        egress,
        tls_sni,
        inbound,
    })
}

const UNKNOWN: u32 = dataplane_common::identities::UNKNOWN;

fn step(
    compiled: &control::CompiledPolicy,
    d: control::Decision,
    w: &control::CompiledWorkload,
    source_identity: Option<String>,
) -> Step {
    Step {
        verdict: match d.verdict {
            control::Verdict::Allow => "allow".into(),
            control::Verdict::Deny => "deny".into(),
        },
        rule_id: d.rule_id,
        rule: compiled.rule_name(d.rule_id),
        audit_rule: d.audit_rule_id.map(|id| compiled.rule_name(id)),
        workload: format!("{}/{}", w.namespace, w.name),
        source_identity,
    }
}

/// The source workload (if `from` names one, or is its address) and the source address.
fn find_source<'a>(
    compiled: &'a control::CompiledPolicy,
    from: &str,
) -> Result<(Option<&'a control::CompiledWorkload>, Option<IpAddr>)> {
    if let Ok(ip) = from.parse::<IpAddr>() {
        return Ok((compiled.workload_by_address(ip), Some(ip)));
    }
    let Some((ns, name)) = from.split_once('/') else {
        bail!("--from must be namespace/workload or an IP address, got {from:?}");
    };
    let w = compiled
        .workload_by_name(ns, name)
        .with_context(|| format!("no workload {from} in the policy"))?;
    Ok((Some(w), w.address))
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
