//! State-of-the-World ADS: every response carries the whole set of its type.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse, Resource as Wrapper,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Ads, Client, Sink, State, rpc_error};
use crate::rejection::{Rejection, Rejections};
use crate::resource::{RESOURCE_WRAPPER_TYPE_URL, Resource, ResourceType};
use crate::snapshot::{Entry, ResourceSet};

pub(super) async fn stream<S: Sink>(
    client: &Client,
    ads: &mut Ads,
    state: &mut State,
    sink: &mut S,
) -> String {
    let (tx, rx) = mpsc::channel(client.options.types.len() + 1);
    for ty in &client.options.types {
        let subscribe = DiscoveryRequest {
            // The version held, so that a server may skip an unchanged set.
            version_info: state.versions.get(ty).cloned().unwrap_or_default(),
            node: Some(client.node.clone()),
            // Empty: every resource of the type (wildcard).
            resource_names: Vec::new(),
            type_url: ty.type_url().to_string(),
            ..Default::default()
        };
        if tx.try_send(subscribe).is_err() {
            return "cannot queue the subscriptions".to_string();
        }
    }
    let request = client.request(ReceiverStream::new(rx));
    let mut responses = match ads.stream_aggregated_resources(request).await {
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

async fn answer<S: Sink>(
    client: &Client,
    state: &mut State,
    sink: &mut S,
    response: DiscoveryResponse,
) -> DiscoveryRequest {
    let ty = client.subscribed(&response.type_url);
    let outcome = match ty {
        None => Err(Rejections::from(Rejection::new(
            response.type_url.as_str(),
            "",
            "unknown type URL: not subscribed",
        ))),
        Some(ty) => match read_set(ty, &response) {
            Err(rejections) => Err(rejections),
            Ok(set) => {
                client
                    .propose(state, sink, ty, set, &response.version_info)
                    .await
            }
        },
    };
    // A NACK repeats the version last accepted, an ACK names the new one.
    let version_info = match (&outcome, ty) {
        (Ok(()), _) => response.version_info.clone(),
        (Err(_), Some(ty)) => state.versions.get(&ty).cloned().unwrap_or_default(),
        (Err(_), None) => String::new(),
    };
    DiscoveryRequest {
        version_info,
        type_url: response.type_url,
        response_nonce: response.nonce,
        error_detail: outcome.err().map(|r| client.refuse(ty, &r)),
        ..Default::default()
    }
}

/// The whole set a response carries. Resources may come bare (named by their content, as
/// istiod names them) or wrapped in `envoy.service.discovery.v3.Resource` (named by it).
fn read_set(ty: ResourceType, response: &DiscoveryResponse) -> Result<ResourceSet, Rejections> {
    let mut set = ResourceSet::new();
    let mut rejections = Rejections::default();
    let mut seen = BTreeSet::new();
    for (i, any) in response.resources.iter().enumerate() {
        let position = format!("resources[{i}]");
        let (name, any): (Option<String>, Any) = if any.type_url == RESOURCE_WRAPPER_TYPE_URL {
            match Wrapper::decode(any.value.as_slice()) {
                Ok(Wrapper {
                    name,
                    resource: Some(inner),
                    ..
                }) => (Some(name).filter(|n| !n.is_empty()), inner),
                Ok(_) => {
                    rejections.push(Rejection::of(
                        ty,
                        position,
                        "a Resource wrapper without a resource",
                    ));
                    continue;
                }
                Err(e) => {
                    rejections.push(Rejection::of(
                        ty,
                        position,
                        format!("cannot decode the Resource wrapper: {e}"),
                    ));
                    continue;
                }
            }
        } else {
            (None, any.clone())
        };
        let resource = match Resource::decode(ty, &any) {
            Ok(r) => r,
            Err(reason) => {
                rejections.push(Rejection::of(ty, name.unwrap_or(position), reason));
                continue;
            }
        };
        let name = match name.map_or_else(|| resource.natural_name(), Ok) {
            Ok(n) => n,
            Err(reason) => {
                rejections.push(Rejection::of(ty, position, reason));
                continue;
            }
        };
        if !seen.insert(name.clone()) {
            rejections.push(Rejection::of(ty, name, "appears twice in one response"));
            continue;
        }
        set.insert(
            name,
            Entry {
                version: response.version_info.clone(),
                resource: Arc::new(resource),
            },
        );
    }
    if rejections.is_empty() {
        Ok(set)
    } else {
        Err(rejections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::authorization::Authorization;

    fn authorization(name: &str) -> Resource {
        Resource::Authorization(Authorization {
            name: name.into(),
            namespace: "ns".into(),
            ..Default::default()
        })
    }

    fn wrapped(name: &str, r: &Resource) -> Any {
        Any {
            type_url: RESOURCE_WRAPPER_TYPE_URL.into(),
            value: Wrapper {
                name: name.into(),
                resource: Some(r.to_any()),
                ..Default::default()
            }
            .encode_to_vec(),
        }
    }

    fn response(resources: Vec<Any>) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: "7".into(),
            type_url: ResourceType::Authorization.type_url().into(),
            resources,
            ..Default::default()
        }
    }

    #[test]
    fn names_come_from_the_wrapper_or_the_content() {
        let set = read_set(
            ResourceType::Authorization,
            &response(vec![
                authorization("a").to_any(),
                wrapped("custom-name", &authorization("b")),
            ]),
        )
        .unwrap();
        let names: Vec<(&str, &str)> = set
            .iter()
            .map(|(n, e)| (n.as_str(), e.version.as_str()))
            .collect();
        assert_eq!(names, vec![("custom-name", "7"), ("ns/a", "7")]);
    }

    #[test]
    fn refuses_duplicates_nameless_and_broken_wrappers() {
        let broken = Any {
            type_url: RESOURCE_WRAPPER_TYPE_URL.into(),
            value: vec![0x0f],
        };
        let r = response(vec![
            authorization("a").to_any(),
            authorization("a").to_any(),
            authorization("").to_any(),
            broken,
        ]);
        let text = read_set(ResourceType::Authorization, &r)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Authorization ns/a: appears twice in one response"
        );
        assert!(
            lines[1].starts_with("Authorization resources[2]: the Authorization has no name"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("Authorization resources[3]: cannot decode the Resource wrapper"),
            "{text}"
        );
    }
}
