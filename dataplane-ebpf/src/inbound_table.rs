//! Inbound lookup: groups (identity, port), (identity, any port), (ANY, port), (ANY, any port);
//! the first group with a match decides (the compiler makes groups complete).

use aya_ebpf::maps::lpm_trie::Key;
use dataplane_common::{INBOUND_KEY_FULL_BITS, InboundKey, RuleMatch, identities};

use crate::maps::INBOUND_RULES;

#[inline(always)]
pub fn lookup(workload_id: u32, identity: u32, slot: u32, addr: [u8; 16], port: u16) -> RuleMatch {
    let groups = [
        (identity, port),
        (identity, 0),
        (identities::ANY, port),
        (identities::ANY, 0),
    ];
    let mut i = 0;
    while i < groups.len() {
        let (identity, port) = groups[i];
        let key = Key::new(
            INBOUND_KEY_FULL_BITS,
            InboundKey {
                workload_id,
                identity,
                port,
                slot: slot as u8,
                _reserved: 0,
                addr,
            },
        );
        if let Some(m) = INBOUND_RULES.get(&key) {
            return *m;
        }
        i += 1;
    }
    RuleMatch::default()
}
