//! Arbitrary bytes as an xDS resource: decode (the first byte picks the type), name, convert to
//! control's model, and compile what is accepted. Nothing may panic; whatever is refused must
//! be refused with a reason naming the resource.

#![no_main]

use std::sync::Arc;

use control::{Resolutions, RuleIds, Settings};
use libfuzzer_sys::fuzz_target;
use xds::{Entry, Resource, ResourceSet, ResourceType, Snapshot, to_config};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let ty = ResourceType::ALL[usize::from(selector) % ResourceType::ALL.len()];
    let Ok(resource) = Resource::decode_bytes(ty, bytes) else {
        return;
    };
    // Encoding what was decoded gives the same resource back.
    let again = Resource::decode(ty, &resource.to_any()).expect("re-decode");
    assert_eq!(again, resource);
    let name = resource
        .natural_name()
        .unwrap_or_else(|_| "unnamed".to_string());
    let mut snapshot = Snapshot::new();
    let set: ResourceSet = [(
        name.clone(),
        Entry {
            version: "1".into(),
            resource: Arc::new(resource),
        },
    )]
    .into();
    snapshot.set(ty, set);
    let settings = Settings::default();
    match to_config(&snapshot, &settings) {
        Ok(config) => {
            let _ = control::compile(&config, &settings, &Resolutions::new(), &RuleIds::new());
        }
        Err(rejections) => {
            assert!(!rejections.is_empty());
            assert!(
                rejections
                    .0
                    .iter()
                    .all(|r| r.name == name && !r.reason.is_empty())
            );
        }
    }
});
