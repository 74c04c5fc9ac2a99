//! What every open stream has ACKed or NACKed, per type, and waiting on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::snapshot::ServedSnapshot;
use crate::resource::ResourceType;

#[derive(Debug, Default)]
struct TypeProgress {
    /// Snapshot version of the last ACKed response.
    acked: Option<u64>,
    /// Snapshot version and `error_detail` message of a NACK not followed by a later ACK.
    nack: Option<(u64, String)>,
}

#[derive(Debug)]
struct StreamProgress {
    mode: &'static str,
    types: BTreeMap<ResourceType, TypeProgress>,
}

/// Shared by the server handle and its streams.
pub(crate) struct Progress {
    streams: Mutex<BTreeMap<u64, StreamProgress>>,
    next_id: AtomicU64,
    /// Bumped on every change, for waiters.
    changes: watch::Sender<u64>,
}

/// Whether every open stream is up to date with a version.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Done,
    /// What is still missing.
    Pending(String),
    /// A NACK of what the version needs: its stream, type and message.
    Nacked(String),
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            streams: Mutex::default(),
            next_id: AtomicU64::new(1),
            changes: watch::Sender::new(0),
        })
    }

    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut StreamProgress)) {
        if let Some(s) = self.lock().get_mut(&id) {
            f(s);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, StreamProgress>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream; it is forgotten when the guard drops.
    pub fn open(self: &Arc<Self>, mode: &'static str) -> StreamGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            StreamProgress {
                mode,
                types: BTreeMap::new(),
            },
        );
        self.changes.send_modify(|n| *n += 1);
        StreamGuard {
            progress: self.clone(),
            id,
        }
    }

    pub fn open_streams(&self) -> usize {
        self.lock().len()
    }

    /// Whether at least one stream is open and every open stream has ACKed, for each of
    /// meshward's types it subscribed to (and it subscribed to one), a response with that
    /// type's content as of `version`.
    pub fn check(&self, version: u64, snapshot: &ServedSnapshot) -> Check {
        let streams = self.lock();
        let mut pending = Vec::new();
        for (id, s) in streams.iter() {
            // Its subscriptions are on the way (a client subscribes as it opens a stream).
            if s.types.is_empty() {
                pending.push(format!("stream {id} ({}) has not subscribed yet", s.mode));
            }
            for (ty, p) in &s.types {
                // Content as of `version` is in any response built at or after the type's last
                // change up to it (never earlier than `version` if it changed since).
                let needed = version.min(snapshot.set(*ty).changed_at);
                if let Some((v, message)) = &p.nack
                    && *v >= needed
                {
                    return Check::Nacked(format!(
                        "stream {id} ({}) NACKed {ty} version {v}: {message}",
                        s.mode
                    ));
                }
                if p.acked.is_none_or(|a| a < needed) {
                    pending.push(format!(
                        "stream {id} ({}) has ACKed {ty} version {} of {needed}",
                        s.mode,
                        p.acked.map_or("none".to_string(), |a| a.to_string())
                    ));
                }
            }
        }
        if streams.is_empty() {
            return Check::Pending("no stream is open".to_string());
        }
        if pending.is_empty() {
            Check::Done
        } else {
            Check::Pending(pending.join("; "))
        }
    }
}

/// One stream's handle on the progress record.
pub(crate) struct StreamGuard {
    progress: Arc<Progress>,
    pub id: u64,
}

impl StreamGuard {
    pub fn subscribed(&self, ty: ResourceType) {
        self.progress.update(self.id, |s| {
            s.types.entry(ty).or_default();
        });
    }

    pub fn acked(&self, ty: ResourceType, version: u64) {
        self.progress.update(self.id, |s| {
            let p = s.types.entry(ty).or_default();
            p.acked = Some(p.acked.map_or(version, |a| a.max(version)));
            if p.nack.as_ref().is_some_and(|(v, _)| *v <= version) {
                p.nack = None;
            }
        });
    }

    pub fn nacked(&self, ty: ResourceType, version: u64, message: &str) {
        self.progress.update(self.id, |s| {
            s.types.entry(ty).or_default().nack = Some((version, message.to_string()));
        });
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.progress.lock().remove(&self.id);
        self.progress.changes.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::snapshot::Served;
    use envoy_types::pb::google::protobuf::Any;

    fn snapshot(versions: &[&[u8]]) -> ServedSnapshot {
        let mut s = ServedSnapshot::default();
        for v in versions {
            let ty = ResourceType::Authorization;
            let any = Any {
                type_url: ty.type_url().into(),
                value: v.to_vec(),
            };
            s = s
                .next(vec![Served {
                    ty,
                    name: "ns/a".into(),
                    any,
                }])
                .unwrap();
        }
        s
    }

    #[test]
    fn every_subscribed_type_of_every_stream_must_ack() {
        let p = Progress::new();
        let s = snapshot(&[b"1", b"2", b"2"]); // version 3; Authorization changed at 2
        assert!(matches!(p.check(3, &s), Check::Pending(m) if m == "no stream is open"));
        let a = p.open("delta");
        let b = p.open("sotw");
        assert!(
            matches!(p.check(0, &s), Check::Pending(m) if m.contains("stream 1 (delta) has not subscribed yet"))
        );
        a.subscribed(ResourceType::Authorization);
        a.subscribed(ResourceType::Address);
        b.subscribed(ResourceType::Authorization);
        a.acked(ResourceType::Authorization, 2);
        a.acked(ResourceType::Address, 1);
        assert!(matches!(p.check(3, &s), Check::Pending(m) if m.contains("stream 2 (sotw)")));
        b.acked(ResourceType::Authorization, 1);
        assert!(matches!(p.check(3, &s), Check::Pending(_)));
        assert_eq!(p.check(1, &s), Check::Done);
        b.nacked(ResourceType::Authorization, 3, "bad");
        assert_eq!(
            p.check(3, &s),
            Check::Nacked("stream 2 (sotw) NACKed Authorization version 3: bad".into())
        );
        b.acked(ResourceType::Authorization, 3);
        assert_eq!(p.check(3, &s), Check::Done);
        drop(b);
        assert_eq!(p.open_streams(), 1);
    }
}
