//! The ADS client: one stream at a time, reopened with backoff, for either ADS variant.

mod backoff;
mod channel;
mod delta;
mod node;
mod options;
mod sink;
mod sotw;

pub use options::{Backoff, Mode, Options, TlsOptions};
pub use sink::{Sink, SinkFn, Update, sink_fn};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::error::Error as _;
use std::path::PathBuf;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

use crate::rejection::Rejections;
use crate::resource::ResourceType;
use crate::snapshot::{ResourceSet, Snapshot};
use crate::status::{StatusHandle, StatusWriter};
use backoff::Delays;

/// Why a client cannot be built from its [`Options`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("xDS address `{address}`: {reason}")]
    Address { address: String, reason: String },
    #[error("xDS TLS: cannot read {}: {source}", path.display())]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("xDS TLS configuration: {0}")]
    Tls(tonic::transport::Error),
    #[error("xDS options: {0}")]
    Options(String),
}

/// An xDS client; [`Client::run`] drives it.
pub struct Client {
    options: Options,
    endpoint: Endpoint,
    headers: MetadataMap,
    node: Node,
    status: StatusWriter,
}

/// What the client keeps across streams.
#[derive(Default)]
struct State {
    /// Resources of the last accepted response of each type.
    accepted: Snapshot,
    /// Version of the last accepted response of each type.
    versions: BTreeMap<ResourceType, String>,
    /// Whether the current stream has delivered a response (then backoff starts over).
    responded: bool,
}

type Ads = AggregatedDiscoveryServiceClient<Channel>;

impl Client {
    pub fn new(options: Options) -> Result<Client, Error> {
        if options.node_id.is_empty() {
            return Err(Error::Options("the node id must not be empty".into()));
        }
        if options.types.is_empty() {
            return Err(Error::Options("subscribe to at least one type".into()));
        }
        let endpoint = channel::endpoint(&options)?;
        let headers = channel::headers(&options)?;
        let status = StatusWriter::new(&options.address, options.mode, &options.types);
        Ok(Client {
            node: node::node(&options),
            options,
            endpoint,
            headers,
            status,
        })
    }

    pub fn status(&self) -> StatusHandle {
        self.status.handle()
    }

    /// Connects, subscribes and hands every response to `sink`, for ever: a broken stream is
    /// reopened after a backoff, resuming from the accepted resources. Drop the future to stop.
    pub async fn run<S: Sink>(self, mut sink: S) -> Infallible {
        let mut state = State::default();
        let mut delays = Delays::new(self.options.backoff);
        loop {
            self.status.connecting(None);
            state.responded = false;
            let ended = match self.endpoint.connect().await {
                Err(e) => format!("cannot connect: {}", chain(&e)),
                Ok(channel) => {
                    let mut ads = AggregatedDiscoveryServiceClient::new(channel)
                        .max_decoding_message_size(self.options.max_message_size)
                        .max_encoding_message_size(self.options.max_message_size);
                    match self.options.mode {
                        Mode::Delta => delta::stream(&self, &mut ads, &mut state, &mut sink).await,
                        Mode::Sotw => sotw::stream(&self, &mut ads, &mut state, &mut sink).await,
                    }
                }
            };
            if state.responded {
                delays.reset();
            }
            let delay = delays.next_delay();
            tracing::warn!(address = %self.options.address, reason = %ended, retry_in = ?delay, "xDS stream ended");
            self.status.connecting(Some(ended));
            tokio::time::sleep(delay).await;
        }
    }

    fn subscribed(&self, type_url: &str) -> Option<ResourceType> {
        ResourceType::from_type_url(type_url).filter(|t| self.options.types.contains(t))
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.headers.clone();
        request
    }

    /// Offers `set` as the new resources of `ty`; on acceptance it becomes the state.
    async fn propose<S: Sink>(
        &self,
        state: &mut State,
        sink: &mut S,
        ty: ResourceType,
        set: ResourceSet,
        version: &str,
    ) -> Result<(), Rejections> {
        let mut proposed = state.accepted.clone();
        proposed.set(ty, set);
        sink.apply(Update {
            snapshot: &proposed,
            changed: ty,
            version,
        })
        .await?;
        let count = proposed.resources(ty).len();
        state.accepted = proposed;
        state.versions.insert(ty, version.to_string());
        self.status.acked(ty, version, count);
        tracing::info!(r#type = %ty, version, resources = count, "xDS response accepted");
        Ok(())
    }

    /// Records a refusal; returns the NACK's `error_detail`.
    fn refuse(
        &self,
        ty: Option<ResourceType>,
        rejections: &Rejections,
    ) -> envoy_types::pb::google::rpc::Status {
        let text = rejections.to_string();
        tracing::warn!(r#type = ?ty, reason = %text, "xDS response rejected");
        self.status.nacked(ty, &text);
        rejections.to_status()
    }
}

/// An error and its causes on one line (transport errors hide the useful part in `source`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Some errors repeat their source in their own text.
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Why an RPC ended, for status and logs.
fn rpc_error(status: &tonic::Status) -> String {
    match status.source() {
        Some(source) => format!("{status}: {}", chain(source)),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(options: Options) -> String {
        match Client::new(options) {
            Ok(_) => panic!("options accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn options_are_checked_when_the_client_is_made() {
        let ok = || Options::new("http://127.0.0.1:15010", "node-1");
        assert!(Client::new(ok()).is_ok());
        assert!(Client::new(Options::new("https://istiod.istio-system.svc:15012", "n")).is_ok());
        assert_eq!(
            error(Options::new("ftp://127.0.0.1:1", "n")),
            "xDS address `ftp://127.0.0.1:1`: the scheme must be http:// or https://"
        );
        assert!(error(Options::new("not a url", "n")).starts_with("xDS address `not a url`:"));
        assert_eq!(
            error(Options::new("http://127.0.0.1:1", "")),
            "xDS options: the node id must not be empty"
        );
        let mut o = ok();
        o.types.clear();
        assert_eq!(error(o), "xDS options: subscribe to at least one type");
        let mut o = ok();
        o.headers.push(("bad header".into(), "x".into()));
        assert_eq!(
            error(o),
            "xDS options: header name `bad header` is not valid gRPC metadata"
        );
        let mut o = Options::new("https://127.0.0.1:1", "n");
        o.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(
            error(o).starts_with("xDS TLS: cannot read /nonexistent/ca.pem:"),
            "missing CA file"
        );
    }

    #[test]
    fn the_node_carries_id_cluster_and_metadata() {
        let mut o = Options::new("http://127.0.0.1:1", "node-1");
        o.node_cluster = "meshward".into();
        o.node_metadata.insert("NAMESPACE".into(), "ns".into());
        let n = node::node(&o);
        assert_eq!((n.id.as_str(), n.cluster.as_str()), ("node-1", "meshward"));
        assert_eq!(n.user_agent_name, "meshward");
        let fields = n.metadata.unwrap().fields;
        assert!(matches!(
            &fields["NAMESPACE"].kind,
            Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(v)) if v == "ns"
        ));
    }
}
