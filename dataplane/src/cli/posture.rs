//! `meshward posture`: per-workload TLS posture from a running agent, with the seed talk's three
//! views — weak versions (< TLS 1.2), weak ciphers, suspicious SNI.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::{AdminArgs, client};

#[derive(Args)]
pub struct PostureArgs {
    /// Which rows to show.
    #[arg(long, value_enum, default_value_t = View::All)]
    view: View,
    /// A suspicious SNI: exact name or `*.suffix` (repeatable).
    #[arg(long = "suspicious-sni")]
    suspicious: Vec<String>,
    /// A file of suspicious SNI names/patterns, one per line (`#` comments).
    #[arg(long)]
    suspicious_sni_file: Option<PathBuf>,
    /// Print JSON (the /posture records).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum View {
    All,
    WeakVersions,
    WeakCiphers,
    SuspiciousSni,
    Plaintext,
}

pub fn posture(args: PostureArgs) -> Result<ExitCode> {
    let body = client::get(&args.admin, "/posture")?;
    let doc: serde_json::Value = serde_json::from_str(&body).context("decode /posture")?;
    let mut patterns = args.suspicious.clone();
    if let Some(f) = &args.suspicious_sni_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    let rows: Vec<&serde_json::Value> = doc["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| match args.view {
            View::All => true,
            View::WeakVersions => r["weak_version"] == true,
            View::WeakCiphers => r["weak_cipher"].as_array().is_some_and(|c| !c.is_empty()),
            View::SuspiciousSni => r["sni"].as_str().is_some_and(|s| suspicious(s, &patterns)),
            View::Plaintext => r["tls_version"] == "none",
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:<16} {:<6} {:<8} {:<40} {:<24} {:<7} {:<22} {:>6}  LAST SEEN",
        "NAMESPACE", "WORKLOAD", "ROLE", "VERSION", "CIPHER", "SNI", "MTLS", "PEER", "COUNT"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        let mut cipher = s("cipher");
        if let Some(weak) = r["weak_cipher"].as_array().filter(|w| !w.is_empty()) {
            let classes: Vec<&str> = weak.iter().filter_map(|w| w.as_str()).collect();
            cipher = format!("{cipher} [{}]", classes.join(","));
        }
        println!(
            "{:<12} {:<16} {:<6} {:<8} {:<40} {:<24} {:<7} {:<22} {:>6}  {}",
            s("namespace"),
            s("workload"),
            s("role"),
            s("tls_version"),
            cipher,
            s("sni"),
            r["mtls"].to_string().trim_matches('"'),
            format!("{}:{}", s("peer"), r["server_port"]),
            r["count"],
            s("last_seen"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Exact (case-insensitive) or `*.suffix` match.
fn suspicious(sni: &str, patterns: &[String]) -> bool {
    let sni = sni.trim_end_matches('.').to_ascii_lowercase();
    patterns.iter().any(|p| {
        let p = p.trim_end_matches('.').to_ascii_lowercase();
        match p.strip_prefix("*.") {
            Some(suffix) => sni.ends_with(&format!(".{suffix}")),
            None => sni == p,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::suspicious;

    #[test]
    fn sni_patterns() {
        let p = vec!["evil.example".to_string(), "*.bad.test".to_string()];
        assert!(suspicious("EVIL.example.", &p));
        assert!(suspicious("a.b.bad.test", &p));
        assert!(!suspicious("bad.test", &p));
        assert!(!suspicious("notevil.example", &p));
    }
}
