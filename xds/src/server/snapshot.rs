//! What the server serves: per type, name → (version, bytes), and the version it was set at.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::Resource as Wrapper;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::resource::{RESOURCE_WRAPPER_TYPE_URL, Resource, ResourceType};

/// One resource as the server sends it.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    /// The type it is served as (its `Any` may claim another, to test a client).
    pub ty: ResourceType,
    pub name: String,
    pub any: Any,
}

impl Served {
    /// A resource under its [`Resource::natural_name`].
    pub fn of(resource: &Resource) -> Result<Served, String> {
        Ok(Served {
            ty: resource.resource_type(),
            name: resource.natural_name()?,
            any: resource.to_any(),
        })
    }
}

/// One resource of a set: its delta version (a hash of its bytes, so equal content keeps its
/// version across `set` calls and server restarts), its `Any`, and what SotW sends.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub version: String,
    pub any: Any,
    /// The bare `Any` when it is named by its content (as istiod sends it), else wrapped in an
    /// `envoy.service.discovery.v3.Resource` that carries the name.
    pub sotw: Any,
}

impl Item {
    fn new(r: Served) -> Item {
        let named_by_content = Resource::decode(r.ty, &r.any)
            .and_then(|d| d.natural_name())
            .is_ok_and(|n| n == r.name);
        let sotw = if named_by_content {
            r.any.clone()
        } else {
            Any {
                type_url: RESOURCE_WRAPPER_TYPE_URL.to_string(),
                value: Wrapper {
                    name: r.name,
                    resource: Some(r.any.clone()),
                    ..Default::default()
                }
                .encode_to_vec(),
            }
        };
        Item {
            version: content_version(&r.any),
            any: r.any,
            sotw,
        }
    }
}

/// The resources of one type.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TypeSet {
    /// The snapshot version at which this set last changed (0: never set).
    pub changed_at: u64,
    pub items: BTreeMap<String, Item>,
}

/// Every type's resources at one version. Replaced whole by each `set`.
#[derive(Debug, Default)]
pub(crate) struct ServedSnapshot {
    pub version: u64,
    sets: BTreeMap<ResourceType, Arc<TypeSet>>,
}

impl ServedSnapshot {
    /// The next snapshot: `resources` are the whole new content of every type; a type whose
    /// content is unchanged keeps its `changed_at`. Two resources of one type and name are an
    /// error.
    pub fn next(&self, resources: Vec<Served>) -> Result<ServedSnapshot, String> {
        let version = self.version + 1;
        let mut items: BTreeMap<ResourceType, BTreeMap<String, Item>> = BTreeMap::new();
        for r in resources {
            let (ty, name) = (r.ty, r.name.clone());
            if items
                .entry(ty)
                .or_default()
                .insert(name.clone(), Item::new(r))
                .is_some()
            {
                return Err(format!("two {ty} resources are named `{name}`"));
            }
        }
        let mut sets = BTreeMap::new();
        for ty in ResourceType::ALL {
            let items = items.remove(&ty).unwrap_or_default();
            let old = self.set(ty);
            let set = if old.items == items {
                old
            } else {
                Arc::new(TypeSet {
                    changed_at: version,
                    items,
                })
            };
            sets.insert(ty, set);
        }
        Ok(ServedSnapshot { version, sets })
    }

    pub fn set(&self, ty: ResourceType) -> Arc<TypeSet> {
        self.sets.get(&ty).cloned().unwrap_or_default()
    }
}

/// FNV-1a of the type URL and the bytes, in hex.
fn content_version(any: &Any) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in any
        .type_url
        .bytes()
        .chain([0])
        .chain(any.value.iter().copied())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(ty: ResourceType, name: &str, value: &[u8]) -> Served {
        Served {
            ty,
            name: name.into(),
            any: Any {
                type_url: ty.type_url().into(),
                value: value.to_vec(),
            },
        }
    }

    #[test]
    fn unchanged_types_keep_their_version() {
        let a = ResourceType::Authorization;
        let e = ResourceType::EgressPolicy;
        let s1 = ServedSnapshot::default()
            .next(vec![served(a, "ns/a", b"1"), served(e, "ns/e", b"1")])
            .unwrap();
        let s2 = s1
            .next(vec![served(a, "ns/a", b"2"), served(e, "ns/e", b"1")])
            .unwrap();
        assert_eq!(
            (s2.version, s2.set(a).changed_at, s2.set(e).changed_at),
            (2, 2, 1)
        );
        assert_ne!(
            s1.set(a).items["ns/a"].version,
            s2.set(a).items["ns/a"].version
        );
        assert_eq!(s2.set(ResourceType::Address).changed_at, 0);
        let err = s2
            .next(vec![served(a, "ns/a", b"1"), served(a, "ns/a", b"2")])
            .unwrap_err();
        assert_eq!(err, "two Authorization resources are named `ns/a`");
    }
}
