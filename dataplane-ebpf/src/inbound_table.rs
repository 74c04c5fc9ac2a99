//! Inbound lookup: groups (identity, port), (identity, any port), (ANY, port), (ANY, any port);
//! the first group with a match decides (the compiler makes groups complete). Within a group the
//! exact-match hash of full-length sources is probed first — a hit is the longest possible match,
//! so it is the group's answer — and the trie of the shorter prefixes only on a miss.

use aya_ebpf::maps::{HashMap, LpmTrie, lpm_trie::Key};
use dataplane_common::{INBOUND_KEY_FULL_BITS, InboundKey, RuleMatch, identities};

use crate::maps::{INBOUND_EXACT, INBOUND_RULES};

#[inline(always)]
pub fn lookup(workload_id: u32, identity: u32, slot: u32, addr: [u8; 16], port: u16) -> RuleMatch {
    lookup_in(
        Some(&INBOUND_EXACT),
        &INBOUND_RULES,
        workload_id,
        identity,
        slot,
        addr,
        port,
    )
}

/// [`lookup`] over the given maps. `exact: None` means every entry, full-length ones included, is
/// in `trie` (the classifier study's design A, which compiles this file).
#[inline(always)]
pub fn lookup_in(
    exact: Option<&HashMap<InboundKey, RuleMatch>>,
    trie: &LpmTrie<InboundKey, RuleMatch>,
    workload_id: u32,
    identity: u32,
    slot: u32,
    addr: [u8; 16],
    port: u16,
) -> RuleMatch {
    let groups = [
        (identity, port),
        (identity, 0),
        (identities::ANY, port),
        (identities::ANY, 0),
    ];
    let mut i = 0;
    while i < groups.len() {
        let (identity, port) = groups[i];
        let data = InboundKey {
            workload_id,
            identity,
            port,
            slot: slot as u8,
            _reserved: 0,
            addr,
        };
        if let Some(exact) = exact {
            // SAFETY: the value is copied out at once.
            if let Some(m) = unsafe { exact.get(&data) } {
                return *m;
            }
        }
        if let Some(m) = trie.get(&Key::new(INBOUND_KEY_FULL_BITS, data)) {
            return *m;
        }
        i += 1;
    }
    RuleMatch::default()
}
