//! StreamAggregatedResources: each response carries the whole set of its type. One response
//! per type is in flight at a time; a changed set is sent once the previous one is answered.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::interest::Interest;
use super::progress::StreamGuard;
use super::pump::Protocol;
use super::snapshot::ServedSnapshot;
use crate::resource::ResourceType;

struct Sub {
    interest: Interest,
    /// Nonce and snapshot version of the response not answered yet.
    in_flight: Option<(String, u64)>,
    /// The snapshot version last sent or found unchanged; `None`: a response is owed.
    seen: Option<u64>,
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
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn request(
        &mut self,
        r: DiscoveryRequest,
        snapshot: &ServedSnapshot,
    ) -> Vec<DiscoveryResponse> {
        Stream::request(self, r, snapshot)
    }

    fn changed(&mut self, snapshot: &ServedSnapshot) -> Vec<DiscoveryResponse> {
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
        r: DiscoveryRequest,
        snapshot: &ServedSnapshot,
    ) -> Vec<DiscoveryResponse> {
        // Types this server does not know get nothing.
        let Some(ty) = ResourceType::from_type_url(&r.type_url) else {
            return Vec::new();
        };
        let interest = Interest::from_names(&r.resource_names);
        if r.response_nonce.is_empty() {
            // A (re)subscription: owed a response whatever was sent before.
            if !self.subs.contains_key(&ty) {
                self.guard.subscribed(ty);
            }
            self.subs.insert(
                ty,
                Sub {
                    interest,
                    in_flight: None,
                    seen: None,
                },
            );
        } else {
            let Some(sub) = self.subs.get_mut(&ty) else {
                return Vec::new();
            };
            if let Some((nonce, version)) = &sub.in_flight
                && *nonce == r.response_nonce
            {
                match &r.error_detail {
                    Some(status) => self.guard.nacked(ty, *version, &status.message),
                    None => self.guard.acked(ty, *version),
                }
                sub.in_flight = None;
            }
            if sub.interest != interest {
                sub.interest = interest;
                sub.seen = None;
            }
        }
        self.flush(ty, snapshot).into_iter().collect()
    }

    /// The response `ty` needs now, if any: on subscription, and when its set changed.
    fn flush(&mut self, ty: ResourceType, snapshot: &ServedSnapshot) -> Option<DiscoveryResponse> {
        let sub = self.subs.get_mut(&ty)?;
        if sub.in_flight.is_some() || sub.seen == Some(snapshot.version) {
            return None;
        }
        let set = snapshot.set(ty);
        let previous = sub.seen.replace(snapshot.version);
        if previous.is_some_and(|seen| set.changed_at <= seen) {
            return None;
        }
        self.nonces += 1;
        let nonce = format!("{}-{}", self.guard.id, self.nonces);
        sub.in_flight = Some((nonce.clone(), snapshot.version));
        Some(DiscoveryResponse {
            version_info: snapshot.version.to_string(),
            resources: set
                .items
                .iter()
                .filter(|(name, _)| sub.interest.wants(name))
                .map(|(_, item)| item.sotw.clone())
                .collect(),
            type_url: ty.type_url().to_string(),
            nonce,
            ..Default::default()
        })
    }
}
