//! The `Node` that introduces this agent to the control plane.

use envoy_types::pb::envoy::config::core::v3::{Node, node::UserAgentVersionType};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

use super::options::Options;

pub(crate) fn node(options: &Options) -> Node {
    let metadata = (!options.node_metadata.is_empty()).then(|| Struct {
        fields: options
            .node_metadata
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value {
                        kind: Some(Kind::StringValue(v.clone())),
                    },
                )
            })
            .collect(),
    });
    Node {
        id: options.node_id.clone(),
        cluster: options.node_cluster.clone(),
        metadata,
        user_agent_name: "meshward".to_string(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
            env!("CARGO_PKG_VERSION").to_string(),
        )),
        ..Default::default()
    }
}
