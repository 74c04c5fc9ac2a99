//! Design B, tuple-space search (Srinivasan, Suri, Varghese 1999): one exact-match table per
//! wildcard shape, probed in priority order; the first hit decides. The shapes are ordered by
//! group ((identity, port), (identity, any), (ANY, port), (ANY, any)), then longest prefix first,
//! which gives the same answer as design A's "first group, longest prefix". Cost grows with the
//! number of shapes in use, not with the number of rules.

use dataplane_common::{RuleMatch, identities};

use crate::{
    abi::{MAX_SHAPES, StudyQuery, TssKey},
    maps::{TSS_COUNT, TSS_RULES, TSS_SHAPES},
};

#[inline(always)]
pub fn lookup(q: &StudyQuery) -> RuleMatch {
    let count = match TSS_COUNT.get(0) {
        Some(c) => *c,
        None => return RuleMatch::default(),
    };
    let addr = words(&q.addr);
    let mut i = 0;
    while i < MAX_SHAPES && i < count {
        let Some(shape) = TSS_SHAPES.get(i) else {
            break;
        };
        let key = TssKey {
            workload_id: q.workload_id,
            identity: if shape.any_identity != 0 {
                identities::ANY
            } else {
                q.identity
            },
            port: if shape.any_port != 0 { 0 } else { q.port },
            shape: shape.id,
            addr: bytes([addr[0] & shape.mask[0], addr[1] & shape.mask[1]]),
        };
        // SAFETY: the value is copied out at once.
        if let Some(m) = unsafe { TSS_RULES.get(&key) } {
            return *m;
        }
        i += 1;
    }
    RuleMatch::default()
}

#[inline(always)]
fn words(a: &[u8; 16]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&a[..8]);
    hi.copy_from_slice(&a[8..]);
    [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
}

#[inline(always)]
fn bytes(w: [u64; 2]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&w[0].to_ne_bytes());
    a[8..].copy_from_slice(&w[1].to_ne_bytes());
    a
}
