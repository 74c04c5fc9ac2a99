//! The xDS side of the agent: flags, the client's task, and the sink that hands every response
//! to the reconciler (the one writer of kernel tables) and waits for its verdict.
//!
//! ```text
//! xds::Client ──Update──▶ ReconcilerSink ──Proposal{config, reply}──▶ reconciler loop
//!      ▲                      (to_config)                                  │ merge, compile,
//!      └──────── ACK / NACK ◀──────────── Ok / Err(Rejections) ◀───────────┘ apply one generation
//! ```

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tokio::sync::{mpsc, oneshot};
use xds::{Rejection, Rejections, ResourceType, Sink, Update};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdsMode {
    /// Delta ADS (what istiod serves ztunnel).
    Delta,
    /// State-of-the-World ADS.
    Sotw,
}

#[derive(Args, Clone, Debug)]
pub struct XdsArgs {
    /// xDS control plane (Delta or SotW ADS with istiod's ambient types): `http://host:port`
    /// (plaintext, loopback/testing) or `https://host:port`. Workloads and policies from it are
    /// merged with the local files (docs/xds.md); without --config the local part is empty.
    #[arg(long, value_name = "URL")]
    pub xds_address: Option<String>,
    /// Node id sent to the control plane (default: the host name).
    #[arg(long, requires = "xds_address")]
    pub node_id: Option<String>,
    #[arg(long, value_enum, default_value = "delta", requires = "xds_address")]
    pub xds_mode: XdsMode,
    /// PEM CA certificates to trust for the control plane's TLS certificate (besides the
    /// system's).
    #[arg(long, value_name = "FILE", requires = "xds_address")]
    pub xds_ca: Option<PathBuf>,
    /// How long the first policy waits for the control plane's initial answer of every type,
    /// in seconds. After that, what is known is applied (except that a policy adopted from a
    /// previous agent stays until the control plane answers).
    #[arg(long, default_value_t = 15, requires = "xds_address")]
    pub xds_sync_timeout_secs: u64,
    /// PEM certificate chain and key (`CERT,KEY`) for mutual TLS to the control plane.
    #[arg(
        long,
        value_name = "CERT,KEY",
        value_delimiter = ',',
        num_args = 2,
        requires = "xds_address"
    )]
    pub xds_client_cert: Option<Vec<PathBuf>>,
    /// File holding a bearer token sent as `authorization: Bearer <token>` on the stream (how
    /// istiod authenticates ztunnel; e.g. a projected service-account token). Read at start.
    #[arg(long, value_name = "FILE", requires = "xds_address")]
    pub xds_token_file: Option<PathBuf>,
}

impl XdsArgs {
    /// The client's options, or `None` without --xds-address.
    pub fn options(&self) -> Result<Option<xds::Options>> {
        let Some(address) = &self.xds_address else {
            return Ok(None);
        };
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => hostname().context("--node-id not given and the host name is unknown")?,
        };
        let mut options = xds::Options::new(address.clone(), node_id);
        options.mode = match self.xds_mode {
            XdsMode::Delta => xds::Mode::Delta,
            XdsMode::Sotw => xds::Mode::Sotw,
        };
        options.tls.ca_file = self.xds_ca.clone();
        if let Some([cert, key]) = self.xds_client_cert.as_deref() {
            options.tls.client_cert = Some((cert.clone(), key.clone()));
        }
        if let Some(path) = &self.xds_token_file {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("--xds-token-file {}", path.display()))?;
            let token = token.trim();
            anyhow::ensure!(
                !token.is_empty(),
                "--xds-token-file {} is empty",
                path.display()
            );
            options
                .headers
                .push(("authorization".into(), format!("Bearer {token}")));
        }
        options.node_cluster = "meshward".into();
        Ok(Some(options))
    }

    pub fn sync_timeout(&self) -> Duration {
        Duration::from_secs(self.xds_sync_timeout_secs)
    }
}

fn hostname() -> Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("gethostname");
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    anyhow::ensure!(!name.is_empty(), "the host name is empty");
    Ok(name)
}

/// One xDS response, proposed to the reconciler.
pub struct Proposal {
    /// The xDS side of the config if the response is accepted; `None` when the response leaves
    /// the resources exactly as last accepted (a resync after a reconnect).
    pub config: Option<control::Config>,
    pub changed: ResourceType,
    pub version: String,
    /// `Ok`: applied (or nothing to apply) → ACK. `Err` → NACK; enforcement unchanged.
    pub reply: oneshot::Sender<Result<(), Rejections>>,
}

/// Converts every response with [`xds::to_config`] (invalid resources are NACKed here) and
/// asks the reconciler to apply it.
pub struct ReconcilerSink {
    tx: mpsc::Sender<Proposal>,
    settings: control::Settings,
    /// The resources of the last response the reconciler accepted.
    accepted: Option<xds::Snapshot>,
}

impl ReconcilerSink {
    pub fn new(tx: mpsc::Sender<Proposal>, settings: control::Settings) -> Self {
        Self {
            tx,
            settings,
            accepted: None,
        }
    }
}

impl Sink for ReconcilerSink {
    async fn apply(&mut self, update: Update<'_>) -> Result<(), Rejections> {
        let started = std::time::Instant::now();
        let unchanged = self.accepted.as_ref() == Some(update.snapshot);
        let config = if unchanged {
            None
        } else {
            Some(xds::to_config(update.snapshot, &self.settings)?)
        };
        let converted = started.elapsed();
        let (reply, answer) = oneshot::channel();
        let stopping =
            || Rejections::from(Rejection::of(update.changed, "", "the agent is stopping"));
        self.tx
            .send(Proposal {
                config,
                changed: update.changed,
                version: update.version.to_string(),
                reply,
            })
            .await
            .map_err(|_| stopping())?;
        let outcome = answer.await.map_err(|_| stopping())?;
        tracing::info!(
            r#type = %update.changed,
            version = update.version,
            resources = update.snapshot.len(),
            convert_ms = converted.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            accepted = outcome.is_ok(),
            "xDS response handled"
        );
        outcome?;
        if !unchanged {
            self.accepted = Some(update.snapshot.clone());
        }
        Ok(())
    }
}

/// Starts the client in its own task; proposals arrive on the returned receiver.
pub fn spawn(
    options: xds::Options,
    settings: control::Settings,
) -> Result<(xds::StatusHandle, mpsc::Receiver<Proposal>)> {
    let address = options.address.clone();
    let client = xds::Client::new(options).context("xDS client")?;
    let status = client.status();
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        client.run(ReconcilerSink::new(tx, settings)).await;
    });
    tracing::info!(%address, "xDS client started");
    Ok((status, rx))
}
