//! Where accepted-or-not responses go: the sink decides, the client ACKs or NACKs.

use std::future::Future;

use crate::rejection::Rejections;
use crate::resource::ResourceType;
use crate::snapshot::Snapshot;

/// One response, proposed.
#[derive(Clone, Copy, Debug)]
pub struct Update<'a> {
    /// Every type's resources as they would be if this response is accepted: the response's
    /// type changed, every other type as last accepted.
    pub snapshot: &'a Snapshot,
    /// The type of the response.
    pub changed: ResourceType,
    /// The response's version (`system_version_info` for delta).
    pub version: &'a str,
}

/// Receives every response. `Ok` accepts it (ACK; it becomes the state the next update builds
/// on); `Err` refuses it (NACK with the rejections as `error_detail`; the previous state stays).
pub trait Sink: Send {
    fn apply(&mut self, update: Update<'_>) -> impl Future<Output = Result<(), Rejections>> + Send;
}

/// A [`Sink`] from a synchronous closure.
pub struct SinkFn<F>(F);

pub fn sink_fn<F>(f: F) -> SinkFn<F>
where
    F: FnMut(Update<'_>) -> Result<(), Rejections> + Send,
{
    SinkFn(f)
}

impl<F> Sink for SinkFn<F>
where
    F: FnMut(Update<'_>) -> Result<(), Rejections> + Send,
{
    fn apply(&mut self, update: Update<'_>) -> impl Future<Output = Result<(), Rejections>> + Send {
        std::future::ready((self.0)(update))
    }
}
