//! Istio's evaluation order over the rules that matched, shared by egress and inbound, and the
//! per-rule counters. `control::evaluate` / `control::evaluate_inbound` are the user-space twins.

use dataplane_common::{RuleCounters, RuleMatch, rule_ids};

use crate::maps::RULE_COUNTERS;

pub struct Verdict {
    pub allow: bool,
    pub rule_id: u32,
    pub audit_rule_id: u32,
}

/// The reserved rule ids a direction reports when no rule decided.
pub struct Defaults {
    pub allow: u32,
    pub deny: u32,
}

pub const EGRESS_DEFAULTS: Defaults = Defaults {
    allow: rule_ids::DEFAULT_ALLOW,
    deny: rule_ids::DEFAULT_DENY,
};
pub const INBOUND_DEFAULTS: Defaults = Defaults {
    allow: rule_ids::INBOUND_DEFAULT_ALLOW,
    deny: rule_ids::INBOUND_DEFAULT_DENY,
};

/// Any deny → deny; no ALLOW policy selects the workload → allow; an allow rule → allow; else
/// deny. Audit never changes the verdict. Counts the deciding rule (and the audit rule).
#[inline(always)]
pub fn istio_order(m: &RuleMatch, has_allow_policy: bool, defaults: &Defaults) -> Verdict {
    let (allow, rule_id) = if m.deny != 0 {
        (false, m.deny)
    } else if !has_allow_policy {
        (true, defaults.allow)
    } else if m.allow != 0 {
        (true, m.allow)
    } else {
        (false, defaults.deny)
    };
    count(rule_id, allow, false);
    if m.audit != 0 {
        count(m.audit, allow, true);
    }
    Verdict {
        allow,
        rule_id,
        audit_rule_id: m.audit,
    }
}

#[inline(always)]
pub fn count(rule_id: u32, allowed: bool, audit: bool) {
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
