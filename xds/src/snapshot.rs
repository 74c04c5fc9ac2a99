//! The resources the client holds: per type, name → (version, decoded resource).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::resource::{Resource, ResourceType};

/// One resource as the server sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The resource's version (delta) or the response's version (SotW).
    pub version: String,
    pub resource: Arc<Resource>,
}

/// The resources of one type, by name.
pub type ResourceSet = BTreeMap<String, Entry>;

/// Every type's current resources. Cheap to clone: sets are shared until changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    sets: BTreeMap<ResourceType, Arc<ResourceSet>>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// The resources of `ty` (empty if none were received).
    pub fn resources(&self, ty: ResourceType) -> &ResourceSet {
        static EMPTY: ResourceSet = BTreeMap::new();
        self.sets.get(&ty).map_or(&EMPTY, |s| s.as_ref())
    }

    /// Replaces the resources of `ty`.
    pub fn set(&mut self, ty: ResourceType, resources: ResourceSet) {
        self.sets.insert(ty, Arc::new(resources));
    }

    /// Every resource of `ty`, decoded.
    pub fn iter(&self, ty: ResourceType) -> impl Iterator<Item = (&str, &Resource)> {
        self.resources(ty)
            .iter()
            .map(|(name, e)| (name.as_str(), e.resource.as_ref()))
    }

    /// Number of resources over all types.
    pub fn len(&self) -> usize {
        self.sets.values().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
