//! Proactive resolution of the exact DNS names that policies use, honouring answer TTLs.
//! (Answers learned in the kernel from the workloads' own queries come with a later issue.)

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result};
use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
};
use serde::Serialize;
use tokio::time::Instant;

pub struct Resolver {
    resolver: TokioResolver,
    min_ttl: Duration,
    entries: BTreeMap<String, Resolved>,
}

#[derive(Clone, Debug)]
struct Resolved {
    ips: Vec<IpAddr>,
    refresh_at: Instant,
    error: Option<String>,
}

/// What `/policy` shows for a name.
#[derive(Clone, Debug, Serialize)]
pub struct NameStatus {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub refresh_in_secs: u64,
    pub error: Option<String>,
}

impl Resolver {
    pub fn new(server: Option<SocketAddr>, min_ttl: Duration) -> Result<Self> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    provider,
                )
            }
            None => TokioResolver::builder(provider)
                .context("read the system resolver configuration")?,
        };
        // Names in policies are absolute; never append search domains.
        builder.options_mut().ndots = 0;
        let resolver = builder.build().context("build DNS resolver")?;
        Ok(Self {
            resolver,
            min_ttl,
            entries: BTreeMap::new(),
        })
    }

    /// Resolves the names that are new or due; drops names no longer wanted.
    /// Returns true when the set of addresses changed.
    pub async fn refresh<'a>(&mut self, wanted: impl IntoIterator<Item = &'a String>) -> bool {
        let wanted: Vec<&String> = wanted.into_iter().collect();
        let before = self.resolutions();
        self.entries.retain(|name, _| wanted.contains(&name));
        let now = Instant::now();
        for name in wanted {
            if self.entries.get(name).is_some_and(|e| e.refresh_at > now) {
                continue;
            }
            let fqdn = format!("{name}.");
            let resolved = match tokio::time::timeout(
                Duration::from_secs(5),
                self.resolver.lookup_ip(fqdn.as_str()),
            )
            .await
            {
                Ok(Ok(lookup)) => {
                    let ttl = lookup
                        .valid_until()
                        .saturating_duration_since(std::time::Instant::now());
                    let mut ips: Vec<IpAddr> = lookup.iter().collect();
                    ips.sort();
                    ips.dedup();
                    Resolved {
                        ips,
                        refresh_at: now + ttl.max(self.min_ttl),
                        error: None,
                    }
                }
                Ok(Err(e)) => self.failed(name, e.to_string()),
                Err(_) => self.failed(name, "timed out".into()),
            };
            // Warn when a failure starts or changes, not at every retry.
            let previous = self.entries.get(name).and_then(|e| e.error.as_ref());
            if let Some(e) = resolved.error.as_ref().filter(|e| Some(*e) != previous) {
                tracing::warn!(name = %name, error = %e, "cannot resolve policy host name");
            }
            self.entries.insert(name.clone(), resolved);
        }
        self.resolutions() != before
    }

    /// Keeps the last good addresses on failure (a DNS outage must not flip verdicts) and retries
    /// after the minimum TTL.
    fn failed(&self, name: &str, error: String) -> Resolved {
        let ips = self
            .entries
            .get(name)
            .map(|e| e.ips.clone())
            .unwrap_or_default();
        Resolved {
            ips,
            refresh_at: Instant::now() + self.min_ttl,
            error: Some(error),
        }
    }

    pub fn next_refresh(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.refresh_at).min()
    }

    pub fn resolutions(&self) -> control::Resolutions {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.ips.clone()))
            .collect()
    }

    pub fn status(&self) -> Vec<NameStatus> {
        let now = Instant::now();
        self.entries
            .iter()
            .map(|(name, e)| NameStatus {
                name: name.clone(),
                ips: e.ips.clone(),
                refresh_in_secs: e.refresh_at.saturating_duration_since(now).as_secs(),
                error: e.error.clone(),
            })
            .collect()
    }
}
