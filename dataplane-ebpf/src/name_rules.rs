//! The EgressPolicy name rules (SNI_RULES) of a set of name keys: for a TLS server name at its
//! ClientHello (sni_verdict.rs), and for the names learned from DNS answers at connect
//! (dns_names.rs). `control::evaluate_sni` / `evaluate_with_names` are the user-space twins.

use dataplane_common::{RuleMatch, sni_policy::SniRuleKey};

use crate::maps::SNI_RULES;

/// Fills the actions `m` has no rule for from the first `n` keys: destination port before any
/// port, then the keys in order; the first rule found fills each action's slot.
#[inline(always)]
pub fn fill<const N: usize>(
    m: &mut RuleMatch,
    keys: &[u64; N],
    n: usize,
    subject_id: u32,
    slot: u32,
    port: u16,
) {
    for p in [port, 0] {
        for (i, &name) in keys.iter().enumerate() {
            if i >= n {
                break;
            }
            let k = SniRuleKey {
                subject_id,
                port: p,
                slot: slot as u8,
                _pad: 0,
                name,
            };
            // SAFETY: the value is copied out at once.
            if let Some(r) = unsafe { SNI_RULES.get(&k) } {
                fill_empty(&mut m.deny, r.deny);
                fill_empty(&mut m.allow, r.allow);
                fill_empty(&mut m.audit, r.audit);
            }
        }
    }
}

#[inline(always)]
fn fill_empty(into: &mut u32, from: u32) {
    if *into == 0 {
        *into = from;
    }
}
