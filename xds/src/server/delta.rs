//! DeltaAggregatedResources: per type, what the client holds; each response carries what
//! changed and what was removed since. One response per type is in flight at a time, so a NACK
//! restores exactly what the client kept (the next change is sent against that).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as Wrapper,
};

use super::interest::Interest;
use super::progress::StreamGuard;
use super::pump::Protocol;
use super::snapshot::ServedSnapshot;
use crate::resource::ResourceType;

/// name → resource version.
type Held = BTreeMap<String, String>;

struct Sub {
    interest: Interest,
    /// What the client holds if the response in flight is accepted.
    held: Held,
    in_flight: Option<InFlight>,
    /// The snapshot version last sent or found unchanged; `None`: a response is owed.
    seen: Option<u64>,
}

struct InFlight {
    nonce: String,
    version: u64,
    /// What the client holds if it refuses the response.
    before: Held,
}

pub(super) struct Stream {
    guard: StreamGuard,
    subs: BTreeMap<ResourceType, Sub>,
    nonces: u64,
}

/// A new stream's state.
pub(super) fn stream(guard: StreamGuard) -> Stream {
    Stream {
        guard,
        subs: BTreeMap::new(),
        nonces: 0,
    }
}

impl Protocol for Stream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn request(
        &mut self,
        r: DeltaDiscoveryRequest,
        snapshot: &ServedSnapshot,
    ) -> Vec<DeltaDiscoveryResponse> {
        Stream::request(self, r, snapshot)
    }

    fn changed(&mut self, snapshot: &ServedSnapshot) -> Vec<DeltaDiscoveryResponse> {
        let types: Vec<ResourceType> = self.subs.keys().copied().collect();
        types
            .into_iter()
            .filter_map(|t| self.flush(t, snapshot))
            .collect()
    }
}

impl Stream {
    fn request(
        &mut self,
        r: DeltaDiscoveryRequest,
        snapshot: &ServedSnapshot,
    ) -> Vec<DeltaDiscoveryResponse> {
        // Types this server does not know get nothing.
        let Some(ty) = ResourceType::from_type_url(&r.type_url) else {
            return Vec::new();
        };
        let (subscribe, unsubscribe) = (&r.resource_names_subscribe, &r.resource_names_unsubscribe);
        match self.subs.get_mut(&ty) {
            None if r.response_nonce.is_empty() => {
                self.subs.insert(
                    ty,
                    Sub {
                        interest: Interest::from_names(subscribe),
                        held: r.initial_resource_versions.into_iter().collect(),
                        in_flight: None,
                        seen: None,
                    },
                );
                self.guard.subscribed(ty);
            }
            // A reply for a type never subscribed on this stream.
            None => return Vec::new(),
            Some(sub) => {
                sub.interest.change(subscribe, unsubscribe);
                for name in unsubscribe {
                    sub.held.remove(name);
                }
                if !subscribe.is_empty() || !unsubscribe.is_empty() {
                    sub.seen = None;
                }
                if !r.response_nonce.is_empty()
                    && sub
                        .in_flight
                        .as_ref()
                        .is_some_and(|f| f.nonce == r.response_nonce)
                {
                    let f = sub.in_flight.take().unwrap_or_else(|| unreachable!());
                    match &r.error_detail {
                        Some(status) => {
                            sub.held = f.before;
                            self.guard.nacked(ty, f.version, &status.message);
                        }
                        None => self.guard.acked(ty, f.version),
                    }
                }
            }
        }
        self.flush(ty, snapshot).into_iter().collect()
    }

    /// The response `ty` needs now, if any: on subscription, and when its set changed.
    fn flush(
        &mut self,
        ty: ResourceType,
        snapshot: &ServedSnapshot,
    ) -> Option<DeltaDiscoveryResponse> {
        let sub = self.subs.get_mut(&ty)?;
        if sub.in_flight.is_some() || sub.seen == Some(snapshot.version) {
            return None;
        }
        let set = snapshot.set(ty);
        let previous = sub.seen.replace(snapshot.version);
        if previous.is_some_and(|seen| set.changed_at <= seen) {
            return None;
        }
        let mut now = Held::new();
        let mut resources = Vec::new();
        for (name, item) in &set.items {
            if !sub.interest.wants(name) {
                continue;
            }
            now.insert(name.clone(), item.version.clone());
            if sub.held.get(name) != Some(&item.version) {
                resources.push(Wrapper {
                    name: name.clone(),
                    version: item.version.clone(),
                    resource: Some(item.any.clone()),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = sub
            .held
            .keys()
            .filter(|n| sub.interest.wants(n) && !set.items.contains_key(*n))
            .cloned()
            .collect();
        if previous.is_some() && resources.is_empty() && removed.is_empty() {
            // The client already holds exactly this content (e.g. the set went back to what it
            // kept after a NACK): up to date without a response.
            self.guard.acked(ty, snapshot.version);
            return None;
        }
        self.nonces += 1;
        let nonce = format!("{}-{}", self.guard.id, self.nonces);
        let before = std::mem::replace(&mut sub.held, now);
        sub.in_flight = Some(InFlight {
            nonce: nonce.clone(),
            version: snapshot.version,
            before,
        });
        Some(DeltaDiscoveryResponse {
            system_version_info: snapshot.version.to_string(),
            type_url: ty.type_url().to_string(),
            resources,
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}
