//! meshward's xDS client: policy and workload inventory from a control plane.
//!
//! - [`proto`]: istiod's `istio.workload.Address` and `istio.security.Authorization`
//!   (wire-compatible with istio/ztunnel's protos) and meshward's
//!   `meshward.v1alpha1.EgressPolicy` (`xds/proto/meshward.proto`), as prost messages.
//! - [`to_config`]: a [`Snapshot`] of those resources → `control::Config`, with the meaning of
//!   the YAML forms; invalid resources become [`Rejections`] naming resource and reason.
//! - [`from_config`]: the reverse, a `control::Config` (YAML files) → resources, for a
//!   control plane or test that serves policies written as YAML.
//! - [`server::AdsServer`]: an ADS server (Delta and SotW) of a replaceable snapshot, that
//!   tells when every stream has ACKed a version (or why one NACKed it).
//! - [`Client`]: Delta or State-of-the-World ADS over tonic, with ACK/NACK, reconnects with
//!   backoff and jitter, HTTP/2 keepalive and TLS; it hands every response to a [`Sink`] and
//!   NACKs what the sink rejects, keeping the last accepted resources.
//! - [`StatusHandle`]: connection state, last ACKed version per type, NACKs, for `/healthz` and
//!   metrics.
//!
//! ```text
//! let client = Client::new(Options::new("https://istiod:15012", "node-1"))?;
//! let status = client.status();
//! client.run(sink_fn(|update: Update<'_>| {
//!     let config = xds::to_config(update.snapshot, &settings)?;   // Err → NACK
//!     apply(config).map_err(|diags| Rejections::from_diagnostics(&diags))
//! })).await;
//! ```

mod client;
mod convert;
mod encode;
pub mod proto;
mod rejection;
mod resource;
pub mod server;
mod snapshot;
mod status;

pub use client::{Backoff, Client, Mode, Options, Sink, SinkFn, TlsOptions, Update, sink_fn};
pub use convert::{selector_label, to_config};
pub use encode::{from_config, workload_uid};
pub use rejection::{Rejection, Rejections, location, parse_location};
pub use resource::{Resource, ResourceType};
pub use snapshot::{Entry, ResourceSet, Snapshot};
pub use status::{ConnectionState, Status, StatusHandle, TypeStatus};
