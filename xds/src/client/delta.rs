//! Delta ADS: the server sends what changed; the client resumes with the versions it holds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Ads, Client, Sink, State, rpc_error};
use crate::rejection::{Rejection, Rejections};
use crate::resource::{Resource, ResourceType};
use crate::snapshot::{Entry, ResourceSet};

/// One stream, until it ends; returns why it ended.
pub(super) async fn stream<S: Sink>(
    client: &Client,
    ads: &mut Ads,
    state: &mut State,
    sink: &mut S,
) -> String {
    let (tx, rx) = mpsc::channel(client.options.types.len() + 1);
    for ty in &client.options.types {
        // The versions held let the server send only what changed while we were away.
        let initial_resource_versions: HashMap<String, String> = state
            .accepted
            .resources(*ty)
            .iter()
            .map(|(name, e)| (name.clone(), e.version.clone()))
            .collect();
        let subscribe = DeltaDiscoveryRequest {
            node: Some(client.node.clone()),
            type_url: ty.type_url().to_string(),
            // Empty: every resource of the type (wildcard).
            resource_names_subscribe: Vec::new(),
            initial_resource_versions,
            ..Default::default()
        };
        if tx.try_send(subscribe).is_err() {
            return "cannot queue the subscriptions".to_string();
        }
    }
    let request = client.request(ReceiverStream::new(rx));
    let mut responses = match ads.delta_aggregated_resources(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return rpc_error(&status),
    };
    client.status.connected();
    loop {
        let response = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "the server closed the stream".to_string(),
            Err(status) => return rpc_error(&status),
        };
        state.responded = true;
        let reply = answer(client, state, sink, response).await;
        if tx.send(reply).await.is_err() {
            return "the request stream closed".to_string();
        }
    }
}

/// The ACK or NACK for one response.
async fn answer<S: Sink>(
    client: &Client,
    state: &mut State,
    sink: &mut S,
    response: DeltaDiscoveryResponse,
) -> DeltaDiscoveryRequest {
    let ty = client.subscribed(&response.type_url);
    let outcome = match ty {
        None => Err(Rejections::from(Rejection::new(
            response.type_url.as_str(),
            "",
            "unknown type URL: not subscribed",
        ))),
        Some(ty) => match apply_changes(ty, state.accepted.resources(ty), &response) {
            Err(rejections) => Err(rejections),
            Ok(set) => {
                client
                    .propose(state, sink, ty, set, &response.system_version_info)
                    .await
            }
        },
    };
    DeltaDiscoveryRequest {
        type_url: response.type_url,
        response_nonce: response.nonce,
        error_detail: outcome.err().map(|r| client.refuse(ty, &r)),
        ..Default::default()
    }
}

/// The resources of `ty` after this response: `held`, plus what it adds or updates, minus what
/// it removes. Every resource that cannot be read is a rejection.
fn apply_changes(
    ty: ResourceType,
    held: &ResourceSet,
    response: &DeltaDiscoveryResponse,
) -> Result<ResourceSet, Rejections> {
    let mut set = held.clone();
    let mut rejections = Rejections::default();
    let mut seen = BTreeSet::new();
    for (i, r) in response.resources.iter().enumerate() {
        let name = r.name.as_str();
        if name.is_empty() {
            rejections.push(Rejection::of(ty, format!("resources[{i}]"), "has no name"));
            continue;
        }
        if !seen.insert(name) {
            rejections.push(Rejection::of(ty, name, "appears twice in one response"));
            continue;
        }
        let Some(any) = &r.resource else {
            rejections.push(Rejection::of(ty, name, "carries no resource"));
            continue;
        };
        match Resource::decode(ty, any) {
            Ok(resource) => {
                set.insert(
                    name.to_string(),
                    Entry {
                        version: r.version.clone(),
                        resource: Arc::new(resource),
                    },
                );
            }
            Err(reason) => rejections.push(Rejection::of(ty, name, reason)),
        }
    }
    let removed = response
        .removed_resources
        .iter()
        .chain(response.removed_resource_names.iter().map(|n| &n.name));
    for name in removed {
        if seen.contains(name.as_str()) {
            rejections.push(Rejection::of(ty, name, "is both updated and removed"));
        }
        set.remove(name);
    }
    if rejections.is_empty() {
        Ok(set)
    } else {
        Err(rejections)
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::Resource as Wrapper;

    use super::*;
    use crate::proto::authorization::Authorization;

    fn resource(name: &str, version: &str) -> Wrapper {
        let a = Resource::Authorization(Authorization {
            name: name.into(),
            namespace: "ns".into(),
            ..Default::default()
        });
        Wrapper {
            name: format!("ns/{name}"),
            version: version.into(),
            resource: Some(a.to_any()),
            ..Default::default()
        }
    }

    fn response(resources: Vec<Wrapper>, removed: &[&str]) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            type_url: ResourceType::Authorization.type_url().into(),
            resources,
            removed_resources: removed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn adds_updates_and_removes() {
        let ty = ResourceType::Authorization;
        let held = apply_changes(
            ty,
            &ResourceSet::new(),
            &response(vec![resource("a", "1"), resource("b", "1")], &[]),
        )
        .unwrap();
        let next = apply_changes(
            ty,
            &held,
            &response(vec![resource("a", "2")], &["ns/b", "ns/unknown"]),
        )
        .unwrap();
        let versions: Vec<(&str, &str)> = next
            .iter()
            .map(|(n, e)| (n.as_str(), e.version.as_str()))
            .collect();
        assert_eq!(versions, vec![("ns/a", "2")]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let ty = ResourceType::Authorization;
        let mut nameless = resource("a", "1");
        nameless.name.clear();
        let mut empty = resource("c", "1");
        empty.resource = None;
        let r = response(
            vec![nameless, resource("b", "1"), resource("b", "2"), empty],
            &["ns/b"],
        );
        let text = apply_changes(ty, &ResourceSet::new(), &r)
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            "Authorization resources[0]: has no name\nAuthorization ns/b: appears twice in one response\nAuthorization ns/c: carries no resource\nAuthorization ns/b: is both updated and removed"
        );
    }
}
