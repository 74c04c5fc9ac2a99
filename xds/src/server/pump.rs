//! The loop every ADS stream runs, whatever its protocol: answer each request, and push what
//! changed whenever the snapshot moves on.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

use super::snapshot::ServedSnapshot;

/// One stream's protocol state (Delta or SotW).
pub(super) trait Protocol {
    type Request;
    type Response;
    /// The responses a request calls for.
    fn request(&mut self, r: Self::Request, snapshot: &ServedSnapshot) -> Vec<Self::Response>;
    /// The responses a new snapshot calls for, over every subscribed type.
    fn changed(&mut self, snapshot: &ServedSnapshot) -> Vec<Self::Response>;
}

/// Runs a stream until the client or the server goes away.
pub(super) async fn pump<P: Protocol>(
    mut state: P,
    mut requests: tonic::Streaming<P::Request>,
    mut snapshot: watch::Receiver<Arc<ServedSnapshot>>,
    tx: mpsc::Sender<Result<P::Response, tonic::Status>>,
) {
    loop {
        let out = tokio::select! {
            request = requests.next() => match request {
                Some(Ok(r)) => {
                    let current = snapshot.borrow().clone();
                    state.request(r, &current)
                }
                _ => return,
            },
            changed = snapshot.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = snapshot.borrow_and_update().clone();
                state.changed(&current)
            }
        };
        for response in out {
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
}
