//! An ADS server (Delta and SotW) serving a snapshot of resources that can be replaced at any
//! time, and telling when every open stream has ACKed it — the control plane of tests and of
//! `meshward conformance run --via xds`.
//!
//! ```text
//! let server = AdsServer::bind("127.0.0.1:0").await?;
//! let version = server.set(xds::from_config(&config, &settings)?)?;
//! // meshward run --xds-address http://{server.address()} ...
//! server.wait_acked(version, Duration::from_secs(10)).await?;   // Err: a NACK's message
//! ```
//!
//! - Every stream gets, per subscribed type, a first response, then one whenever that type's
//!   set changes: Delta sends the changed and removed names (resource versions are hashes of
//!   the bytes, so a client resuming with `initial_resource_versions` gets only what differs);
//!   SotW sends the whole set, bare `Any`s named by their content as istiod sends them (a
//!   resource served under another name goes wrapped in `envoy.service.discovery.v3.Resource`).
//! - Every response has a fresh nonce and the snapshot version (`version_info`,
//!   `system_version_info`). One response per type and stream is in flight: a change made
//!   meanwhile is sent when the client has answered.
//! - Wildcard and named subscriptions; type URLs other than meshward's three get nothing.

mod delta;
mod interest;
mod progress;
mod pump;
mod snapshot;
mod sotw;

pub use snapshot::Served;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

use crate::resource::Resource;
use progress::{Check, Progress};
use snapshot::ServedSnapshot;

/// Largest message either way, as the client's default.
const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// A running ADS server. Dropping it closes every stream and stops serving.
pub struct AdsServer {
    address: SocketAddr,
    snapshot: watch::Sender<Arc<ServedSnapshot>>,
    progress: Arc<Progress>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl AdsServer {
    /// Listens on `address` (port 0: any free port) and serves an empty snapshot (version 0)
    /// until [`AdsServer::set`].
    pub async fn bind(address: impl ToSocketAddrs) -> std::io::Result<AdsServer> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (snapshot, receiver) = watch::channel(Arc::new(ServedSnapshot::default()));
        let progress = Progress::new();
        let service = Service {
            snapshot: receiver,
            progress: progress.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let ads = AggregatedDiscoveryServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ads)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Ok(AdsServer {
            address,
            snapshot,
            progress,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://ADDRESS`, for `Options::new` or `meshward run --xds-address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Replaces every type's resources with `resources` (each under its
    /// [`Resource::natural_name`]) and pushes what changed to every open stream. Returns the
    /// new version, for [`AdsServer::wait_acked`]. A resource without a name, or two of one
    /// type with the same name, is an error and nothing changes.
    pub fn set(&self, resources: Vec<Resource>) -> Result<u64, String> {
        let served = resources
            .iter()
            .map(Served::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.set_served(served)
    }

    /// [`AdsServer::set`] with names and bytes as given: to serve what no [`Resource`]
    /// encodes (an undecodable value, a wrong type URL) or names other than the natural ones.
    pub fn set_served(&self, resources: Vec<Served>) -> Result<u64, String> {
        let mut result = Ok(0);
        self.snapshot
            .send_if_modified(|current| match current.next(resources) {
                Ok(next) => {
                    result = Ok(next.version);
                    *current = Arc::new(next);
                    true
                }
                Err(e) => {
                    result = Err(e);
                    false
                }
            });
        result
    }

    /// The version of the current snapshot (0 before the first `set`).
    pub fn version(&self) -> u64 {
        self.snapshot.borrow().version
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.progress.open_streams()
    }

    /// Waits until at least one stream is open and every open stream has ACKed, for every
    /// type it subscribed to, that type's resources as of `version` (a type the `set` of
    /// `version` left unchanged counts as ACKed by the earlier ACK). A stream that has not
    /// subscribed to any of meshward's types yet is waited for. `Err` with the NACK's stream,
    /// type, version and `error_detail` message as soon as a stream refuses them, or what is
    /// missing at the timeout.
    ///
    /// Only streams open now count: with several clients, wait until they are connected
    /// ([`AdsServer::open_streams`]) first.
    pub async fn wait_acked(&self, version: u64, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.progress.changes();
        loop {
            changes.borrow_and_update();
            let snapshot = self.snapshot.borrow().clone();
            let missing = match self.progress.check(version, &snapshot) {
                Check::Done => return Ok(()),
                Check::Nacked(reason) => return Err(reason),
                Check::Pending(missing) => missing,
            };
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("the server stopped".to_string()),
                Err(_) => {
                    return Err(format!(
                        "version {version} not ACKed after {timeout:?}: {missing}"
                    ));
                }
            }
        }
    }

    /// Stops serving and waits until every stream is closed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Streams end when the snapshot sender is gone.
        let (replacement, _) = watch::channel(Arc::new(ServedSnapshot::default()));
        drop(std::mem::replace(&mut self.snapshot, replacement));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for AdsServer {
    fn drop(&mut self) {
        // The snapshot sender drops with `self`, which ends every stream; then tonic's
        // graceful shutdown completes.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Service {
    snapshot: watch::Receiver<Arc<ServedSnapshot>>,
    progress: Arc<Progress>,
}

type Responses<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Service {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        let (tx, rx) = mpsc::channel(8);
        let guard = self.progress.open("sotw");
        tokio::spawn(pump::pump(
            sotw::stream(guard),
            request.into_inner(),
            self.snapshot.clone(),
            tx,
        ));
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        let (tx, rx) = mpsc::channel(8);
        let guard = self.progress.open("delta");
        tokio::spawn(pump::pump(
            delta::stream(guard),
            request.into_inner(),
            self.snapshot.clone(),
            tx,
        ));
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
