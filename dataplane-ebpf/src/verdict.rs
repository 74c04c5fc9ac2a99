//! The egress verdict: Istio's evaluation order over the compiled tables.
//! `control::evaluate` is the user-space twin of this function; keep them in step.

use aya_ebpf::maps::lpm_trie::Key;
use dataplane_common::{
    EGRESS_KEY_FULL_BITS, EgressKey, RuleCounters, RuleMatch, rule_ids, workload_flags,
};

use crate::maps::{EGRESS_RULES, RULE_COUNTERS};

pub struct Verdict {
    pub allow: bool,
    pub rule_id: u32,
    pub audit_rule_id: u32,
}

#[inline(always)]
pub fn decide(workload_id: u32, flags: u32, slot: u32, addr: [u8; 16], port: u16) -> Verdict {
    let exact = lookup(workload_id, port, slot, addr);
    let any_port = lookup(workload_id, 0, slot, addr);
    let pick = |f: fn(&RuleMatch) -> u32| {
        let a = exact.as_ref().map(f).unwrap_or(0);
        if a != 0 {
            a
        } else {
            any_port.as_ref().map(f).unwrap_or(0)
        }
    };
    let deny = pick(|m| m.deny);
    let audit_rule_id = pick(|m| m.audit);
    let (allow, rule_id) = if deny != 0 {
        (false, deny)
    } else if flags & workload_flags::HAS_ALLOW_POLICY == 0 {
        (true, rule_ids::DEFAULT_ALLOW)
    } else {
        let allow = pick(|m| m.allow);
        if allow != 0 {
            (true, allow)
        } else {
            (false, rule_ids::DEFAULT_DENY)
        }
    };
    count(rule_id, allow, false);
    if audit_rule_id != 0 {
        count(audit_rule_id, allow, true);
    }
    Verdict {
        allow,
        rule_id,
        audit_rule_id,
    }
}

#[inline(always)]
fn lookup(workload_id: u32, port: u16, slot: u32, addr: [u8; 16]) -> Option<RuleMatch> {
    let key = Key::new(
        EGRESS_KEY_FULL_BITS,
        EgressKey {
            workload_id,
            port,
            slot: slot as u8,
            _reserved: 0,
            addr,
        },
    );
    EGRESS_RULES.get(&key).copied()
}

#[inline(always)]
fn count(rule_id: u32, allowed: bool, audit: bool) {
    if let Some(c) = RULE_COUNTERS.get_ptr_mut(rule_id) {
        // SAFETY: per-CPU slot.
        let c: &mut RuleCounters = unsafe { &mut *c };
        if audit {
            c.audited += 1;
        } else if allowed {
            c.allowed += 1;
        } else {
            c.denied += 1;
        }
    }
}
