//! The node agent: load the kernel side, keep the compiled policy applied, serve the admin API.

mod admin;
pub mod binaries;
mod control_plane;
mod dns;
mod events;
mod exe_names;
mod learned;
mod merge;
mod metrics;
pub mod posture;
mod reconcile;
mod revoke;
mod source;
mod state;
mod xds_sync;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::Args;
use dataplane::kernel::{bpffs::DEFAULT_PIN_PATH, cgroup, loader, tables::DEFAULT_EVENTS_PER_SEC};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{DEFAULT_ADMIN_ADDR, PolicyArgs};

#[derive(Args, Clone)]
pub struct RunArgs {
    /// YAML file or directory of YAML files. Without it, the bundled example policy is enforced
    /// (with --xds-address: no local files, everything comes from the control plane).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
    /// Where programs, links and maps are pinned (on bpffs).
    #[arg(long, default_value = DEFAULT_PIN_PATH)]
    pub pin_path: PathBuf,
    /// cgroup2 mount that `meshward.io/cgroup` annotations are relative to (default: detected).
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// DNS server for resolving exact host names (default: the system resolver configuration).
    #[arg(long)]
    pub dns_server: Option<SocketAddr>,
    /// Lowest TTL honoured for resolved names and for names learned from DNS answers, in
    /// seconds.
    #[arg(long, default_value_t = 5)]
    pub dns_min_ttl: u64,
    /// Highest TTL honoured for names learned from DNS answers, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub dns_max_ttl: u64,
    /// Resolver port whose answers governed workloads receive are learned from (repeat for
    /// several; default 53).
    #[arg(long = "dns-port", value_name = "PORT", default_values_t = [53u16])]
    pub dns_ports: Vec<u16>,
    /// Deny/audit events per second per CPU before they are counted as rate-limited.
    #[arg(long, default_value_t = DEFAULT_EVENTS_PER_SEC)]
    pub events_per_sec: u32,
    /// Read TLS handshakes of governed workloads in the kernel (sock_ops + sockhash + sk_msg /
    /// sk_skb); see docs/posture.md.
    #[arg(long)]
    pub tls_posture: bool,
    /// Same-node fast path: an authorized connection between two local governed sockets
    /// carries its bytes socket to socket (sockhash + sk_msg redirect) instead of through the
    /// TCP/IP stack; see docs/fast-path.md. Off by default: on this kernel a *blocking* reader
    /// of a socket in a sockhash can see a spurious EAGAIN (docs/fast-path.md, "Known limits").
    #[arg(long)]
    pub fast_path: bool,
    /// Sockets the sockhash holds (TLS posture's sk_msg readers and the fast path share it).
    /// A socket that finds it full keeps the TCP/IP stack and is counted
    /// (`meshward_fast_path_total{event="sockhash_full"}`). Applies when the maps are created;
    /// maps adopted from a running agent keep their size.
    #[arg(long, default_value_t = dataplane_common::posture::MAX_SOCKS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sockhash_capacity: u32,
    /// Keep established TCP connections that a policy change denies (by default they are
    /// reset, as ztunnel does; a verdict is otherwise taken only at connect). See
    /// docs/policy-reference.md, "Established connections".
    #[arg(long)]
    pub keep_established: bool,
    /// Do not learn the addresses of DNS-name hosts from the DNS answers governed workloads
    /// receive (by default the kernel does, before the application reads them; docs/dns.md).
    #[arg(long)]
    pub no_dns_learning: bool,
    /// How often config files are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub watch_interval_ms: u64,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub xds: control_plane::XdsArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> Result<()> {
    let cgroup_root = match &args.cgroup_root {
        Some(p) => p.clone(),
        None => cgroup::cgroup2_mount()?,
    };
    let loaded = loader::load(
        &args.pin_path,
        loader::Features {
            tls_posture: args.tls_posture,
            dns_learning: !args.no_dns_learning,
            fast_path: args.fast_path,
            sockhash_capacity: args.sockhash_capacity,
        },
    )?;
    tracing::info!(
        pin_path = %args.pin_path.display(),
        adopted = loaded.kernel.adopted,
        generation = loaded.tables.generation(),
        "kernel programs loaded"
    );
    let settings = args.policy.settings();
    let xds_options = args.xds.options()?;
    let (xds_status, mut xds_proposals, xds_reconcile) = match xds_options {
        Some(options) => {
            let reconcile = xds_sync::XdsOptions {
                address: options.address.clone(),
                types: options.types.clone(),
                sync_timeout: args.xds.sync_timeout(),
            };
            let (status, rx) = control_plane::spawn(options, settings.clone())?;
            (Some(status), Some(rx), Some(reconcile))
        }
        None => (None, None, None),
    };
    let mut dns = loaded.dns;
    dns.set_ports(&args.dns_ports)?;
    dns.set_ttl_bounds(
        u32::try_from(args.dns_min_ttl).unwrap_or(u32::MAX),
        u32::try_from(args.dns_max_ttl).unwrap_or(u32::MAX),
    )?;
    let shared = Arc::new(state::Shared::new(
        loaded.counters,
        loaded.posture,
        loaded.fast_path,
        dns,
        xds_status,
    ));
    let source = if xds_reconcile.is_some() {
        source::ConfigSource::or_empty(args.config.clone())
    } else {
        source::ConfigSource::new(args.config.clone())
    };
    let resolver = dns::Resolver::new(args.dns_server, Duration::from_secs(args.dns_min_ttl))?;

    let listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("bind admin endpoint {}", args.admin_addr))?;
    tracing::info!(addr = %args.admin_addr, "admin endpoint: /healthz /metrics /policy /events /explain");
    tokio::spawn(admin::serve(listener, shared.clone()));
    tokio::spawn(events::pump(loaded.events, shared.clone()));

    let mut reconciler = reconcile::Reconciler::new(
        loaded.kernel,
        loaded.tables,
        shared.clone(),
        source,
        resolver,
        reconcile::Options {
            cgroup_root,
            settings,
            events_per_sec: args.events_per_sec,
            close_revoked: !args.keep_established,
            xds: xds_reconcile,
        },
    );
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.watch_interval_ms.max(50)));
    reconciler.reload("start").await;
    loop {
        tokio::select! {
            _ = hangup.recv() => reconciler.reload("SIGHUP").await,
            _ = tick.tick() => reconciler.on_tick().await,
            Some(proposal) = next_proposal(&mut xds_proposals) => reconciler.on_xds(proposal).await,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    // Pins stay: the node keeps enforcing the last policy until an agent adopts it again or
    // `meshward uninstall` removes it.
    tracing::info!("agent stopping; pinned programs keep enforcing the last policy");
    Ok(())
}

/// The next xDS response for the reconciler; never, without a control plane.
async fn next_proposal(
    rx: &mut Option<tokio::sync::mpsc::Receiver<control_plane::Proposal>>,
) -> Option<control_plane::Proposal> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
