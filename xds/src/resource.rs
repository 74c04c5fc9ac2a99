//! The resource types meshward subscribes to, and decoding them from `google.protobuf.Any`.

use std::fmt;

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use serde::Serialize;

use crate::proto::authorization::Authorization;
use crate::proto::egress::EgressPolicy;
use crate::proto::workload::{Address, address};

/// What the wrapper of SotW resources is called; its `name` field names the resource.
pub(crate) const RESOURCE_WRAPPER_TYPE_URL: &str =
    "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// A resource type meshward understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ResourceType {
    /// `istio.workload.Address`: workloads (identity by IP) and services.
    Address,
    /// `istio.security.Authorization`: inbound policy.
    Authorization,
    /// `meshward.v1alpha1.EgressPolicy`: outbound policy.
    EgressPolicy,
}

impl ResourceType {
    pub const ALL: [ResourceType; 3] = [
        ResourceType::Address,
        ResourceType::Authorization,
        ResourceType::EgressPolicy,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Address => "type.googleapis.com/istio.workload.Address",
            ResourceType::Authorization => "type.googleapis.com/istio.security.Authorization",
            ResourceType::EgressPolicy => "type.googleapis.com/meshward.v1alpha1.EgressPolicy",
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// The message name, used in messages and in diagnostics' locations.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Address => "Address",
            ResourceType::Authorization => "Authorization",
            ResourceType::EgressPolicy => "EgressPolicy",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Address(Address),
    Authorization(Authorization),
    EgressPolicy(EgressPolicy),
}

impl Resource {
    /// Decodes an `Any` that must hold a resource of type `expected`.
    pub fn decode(expected: ResourceType, any: &Any) -> Result<Resource, String> {
        if any.type_url != expected.type_url() {
            return Err(match ResourceType::from_type_url(&any.type_url) {
                Some(_) => format!(
                    "holds a `{}` in a response for `{}`",
                    any.type_url,
                    expected.type_url()
                ),
                None => format!("unknown type URL `{}`", any.type_url),
            });
        }
        Self::decode_bytes(expected, &any.value)
    }

    /// Decodes the serialized message of a resource of type `ty`.
    pub fn decode_bytes(ty: ResourceType, bytes: &[u8]) -> Result<Resource, String> {
        let fail = |e: prost::DecodeError| format!("cannot decode {}: {e}", ty.name());
        Ok(match ty {
            ResourceType::Address => Resource::Address(Address::decode(bytes).map_err(fail)?),
            ResourceType::Authorization => {
                Resource::Authorization(Authorization::decode(bytes).map_err(fail)?)
            }
            ResourceType::EgressPolicy => {
                Resource::EgressPolicy(EgressPolicy::decode(bytes).map_err(fail)?)
            }
        })
    }

    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resource::Address(_) => ResourceType::Address,
            Resource::Authorization(_) => ResourceType::Authorization,
            Resource::EgressPolicy(_) => ResourceType::EgressPolicy,
        }
    }

    /// The name istiod gives this resource, for SotW responses that carry no name: a workload's
    /// uid, `namespace/hostname` of a service, `namespace/name` of a policy.
    pub fn natural_name(&self) -> Result<String, String> {
        let name = match self {
            Resource::Address(a) => match &a.r#type {
                Some(address::Type::Workload(w)) => w.uid.clone(),
                Some(address::Type::Service(s)) => format!("{}/{}", s.namespace, s.hostname),
                None => String::new(),
            },
            Resource::Authorization(a) => format!("{}/{}", a.namespace, a.name),
            Resource::EgressPolicy(p) => format!("{}/{}", p.namespace, p.name),
        };
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') {
            return Err(format!(
                "the {} has no name (uid, or namespace and name), so it cannot be told apart from others",
                self.resource_type()
            ));
        }
        Ok(name)
    }

    /// The resource as an `Any`, e.g. for a test server.
    pub fn to_any(&self) -> Any {
        let (type_url, value) = match self {
            Resource::Address(m) => (Address::type_url(), m.encode_to_vec()),
            Resource::Authorization(m) => (Authorization::type_url(), m.encode_to_vec()),
            Resource::EgressPolicy(m) => (EgressPolicy::type_url(), m.encode_to_vec()),
        };
        Any { type_url, value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::workload::Workload;

    #[test]
    fn type_urls_round_trip_and_match_prost_names() {
        for t in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
        }
        assert_eq!(Address::type_url(), ResourceType::Address.type_url());
        assert_eq!(
            Authorization::type_url(),
            ResourceType::Authorization.type_url()
        );
        assert_eq!(
            EgressPolicy::type_url(),
            ResourceType::EgressPolicy.type_url()
        );
    }

    #[test]
    fn decode_checks_the_type_url() {
        let r = Resource::Address(Address {
            r#type: Some(address::Type::Workload(Workload {
                uid: "u1".into(),
                ..Default::default()
            })),
        });
        let any = r.to_any();
        assert_eq!(Resource::decode(ResourceType::Address, &any).unwrap(), r);
        let err = Resource::decode(ResourceType::Authorization, &any).unwrap_err();
        assert!(
            err.contains("holds a `type.googleapis.com/istio.workload.Address`"),
            "{err}"
        );
        let odd = Any {
            type_url: "type.googleapis.com/x.Y".into(),
            value: vec![],
        };
        let err = Resource::decode(ResourceType::Address, &odd).unwrap_err();
        assert_eq!(err, "unknown type URL `type.googleapis.com/x.Y`");
        let junk = Any {
            type_url: ResourceType::Authorization.type_url().into(),
            value: vec![0xff, 0xff, 0xff],
        };
        let err = Resource::decode(ResourceType::Authorization, &junk).unwrap_err();
        assert!(err.starts_with("cannot decode Authorization:"), "{err}");
    }
}
