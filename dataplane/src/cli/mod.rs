//! Command-line interface. Contracts in design.md ("Interface contracts").

mod check;
mod client;
pub mod explain;
mod posture;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::agent;

pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:15020";

#[derive(Parser)]
#[command(
    name = "meshward",
    version,
    about = "Sidecar-free service-mesh node dataplane (eBPF)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent: load the kernel programs and enforce the policy.
    Run(agent::RunArgs),
    /// Validate a config; print problems with file:line; exit non-zero on error.
    Check {
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Verdict and deciding rule for a connection, from the compiled tables the kernel uses.
    Explain(explain::ExplainArgs),
    /// Per-workload TLS posture (versions, ciphers, SNI, mTLS) from a running agent.
    Posture(posture::PostureArgs),
    /// Deny and audit events from a running agent.
    Events {
        #[command(flatten)]
        admin: AdminArgs,
        /// Keep printing new events.
        #[arg(long, short)]
        follow: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// The conformance suite: declarative cases run against the real dataplane on this node.
    Conformance {
        #[command(subcommand)]
        command: conformance::Command,
    },
    /// Remove every pinned program, link and map (stops enforcement on this node).
    Uninstall {
        #[arg(long, default_value = dataplane::kernel::bpffs::DEFAULT_PIN_PATH)]
        pin_path: PathBuf,
    },
}

/// Where a running agent's admin endpoint is.
#[derive(Args, Clone)]
pub struct AdminArgs {
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
}

/// Settings that change what a policy means.
#[derive(Args, Clone)]
pub struct PolicyArgs {
    /// Trust domain of principals (`<td>/ns/<ns>/sa/<sa>`).
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Policies in this namespace apply to every namespace.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
}

impl PolicyArgs {
    pub fn settings(&self) -> control::Settings {
        control::Settings {
            trust_domain: self.trust_domain.clone(),
            root_namespace: self.root_namespace.clone(),
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => agent::run(args).map(|()| ExitCode::SUCCESS),
        Command::Check { config, policy } => Ok(check::check(&config, &policy.settings())),
        Command::Explain(args) => explain::explain(args),
        Command::Posture(args) => posture::posture(args),
        Command::Events {
            admin,
            follow,
            json,
        } => client::events(&admin, follow, json),
        Command::Conformance { command } => conformance::dispatch(command),
        Command::Uninstall { pin_path } => {
            dataplane::kernel::bpffs::remove_all(&pin_path)?;
            println!("removed {}", pin_path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
