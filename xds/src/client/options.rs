//! How to reach the control plane and what to ask it for.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::resource::ResourceType;

/// Which ADS variant to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `DeltaAggregatedResources` (what istiod serves ztunnel).
    Delta,
    /// `StreamAggregatedResources`, State of the World.
    Sotw,
}

/// TLS to the control plane, used when the address is `https://`.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM roots to trust besides the system's (istiod's own CA, for example).
    pub ca_file: Option<PathBuf>,
    /// Name to verify in the server certificate, if not the address's host.
    pub server_name: Option<String>,
    /// PEM certificate chain and key for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Exponential backoff between connection attempts; each wait is drawn from
/// `[delay/2, delay]` so that many nodes do not reconnect in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// `http://host:port` (plaintext) or `https://host:port` (TLS).
    pub address: String,
    pub node_id: String,
    pub node_cluster: String,
    /// String values of the node's `metadata` struct.
    pub node_metadata: BTreeMap<String, String>,
    pub mode: Mode,
    /// Subscribed wildcard, in this order.
    pub types: Vec<ResourceType>,
    pub tls: TlsOptions,
    /// gRPC metadata sent with the stream, e.g. `authorization: Bearer ...`.
    pub headers: Vec<(String, String)>,
    pub backoff: Backoff,
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval and how long to wait for its answer before dropping the connection.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Largest response accepted (10,000 resources are a few MiB).
    pub max_message_size: usize,
}

impl Options {
    /// Delta ADS for every type meshward understands, default timings.
    pub fn new(address: impl Into<String>, node_id: impl Into<String>) -> Self {
        Options {
            address: address.into(),
            node_id: node_id.into(),
            node_cluster: String::new(),
            node_metadata: BTreeMap::new(),
            mode: Mode::Delta,
            types: ResourceType::ALL.to_vec(),
            tls: TlsOptions::default(),
            headers: Vec::new(),
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_message_size: 64 << 20,
        }
    }
}
