//! What the client is doing, shared with `/healthz` and metrics.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::watch;

use crate::client::Mode;
use crate::resource::ResourceType;

/// The stream to the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Dialling, or waiting out the backoff before the next attempt.
    Connecting,
    /// The stream is open.
    Connected,
}

/// One resource type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// Version of the last accepted response: `system_version_info` (delta) or `version_info`
    /// (SotW).
    pub last_acked_version: Option<String>,
    pub acks: u64,
    pub nacks: u64,
    pub last_nack_reason: Option<String>,
    /// Resources accepted and in force.
    pub resources: usize,
}

/// The client as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub address: String,
    pub mode: Mode,
    pub state: ConnectionState,
    /// Streams opened so far; more than one means reconnects.
    pub connections: u64,
    /// Why the last stream ended or could not be opened.
    pub last_error: Option<String>,
    pub types: BTreeMap<ResourceType, TypeStatus>,
    pub nacks: u64,
    pub last_nack_reason: Option<String>,
}

/// A read-only view of the client's [`Status`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct StatusHandle(watch::Receiver<Status>);

impl StatusHandle {
    pub fn get(&self) -> Status {
        self.0.borrow().clone()
    }

    /// Waits until `ready` holds (checked now and on every change). Errors only if the client
    /// is gone.
    pub async fn wait_for(&self, mut ready: impl FnMut(&Status) -> bool) -> Option<Status> {
        let mut rx = self.0.clone();
        rx.wait_for(|s| ready(s)).await.ok().map(|s| s.clone())
    }
}

/// The writing side, owned by the client.
pub(crate) struct StatusWriter(watch::Sender<Status>);

impl StatusWriter {
    pub fn new(address: &str, mode: Mode, types: &[ResourceType]) -> Self {
        let status = Status {
            address: address.to_string(),
            mode,
            state: ConnectionState::Connecting,
            connections: 0,
            last_error: None,
            types: types.iter().map(|t| (*t, TypeStatus::default())).collect(),
            nacks: 0,
            last_nack_reason: None,
        };
        StatusWriter(watch::channel(status).0)
    }

    pub fn handle(&self) -> StatusHandle {
        StatusHandle(self.0.subscribe())
    }

    pub fn connecting(&self, error: Option<String>) {
        self.0.send_modify(|s| {
            s.state = ConnectionState::Connecting;
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    pub fn connected(&self) {
        self.0.send_modify(|s| {
            s.state = ConnectionState::Connected;
            s.connections += 1;
        });
    }

    pub fn acked(&self, ty: ResourceType, version: &str, resources: usize) {
        self.0.send_modify(|s| {
            let t = s.types.entry(ty).or_default();
            t.last_acked_version = Some(version.to_string());
            t.acks += 1;
            t.resources = resources;
        });
    }

    /// `ty` is `None` for a response of a type the client does not know.
    pub fn nacked(&self, ty: Option<ResourceType>, reason: &str) {
        self.0.send_modify(|s| {
            if let Some(ty) = ty {
                let t = s.types.entry(ty).or_default();
                t.nacks += 1;
                t.last_nack_reason = Some(reason.to_string());
            }
            s.nacks += 1;
            s.last_nack_reason = Some(reason.to_string());
        });
    }
}
