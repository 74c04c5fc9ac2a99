//! The kernel's SNI verdict (`dataplane-ebpf/src/sni_verdict.rs`) done in user space over the
//! same compiled tables, for `meshward explain --host` and for tests.

use std::net::IpAddr;

use dataplane_common::{
    RuleMatch, rule_ids,
    sni_policy::{MAX_SUFFIXES, server_name_keys},
};

use crate::compile::CompiledPolicy;
use crate::evaluate::{Decision, Verdict};
use crate::net::to_bits;

/// The verdict at a TLS ClientHello sent by `subject_id` to `dst`:`port` naming `server_name`
/// (`None`: no SNI). Only reached by connections that were allowed at connect. An allowed hello
/// carries rule id `NONE` (nothing to report) or, with an AUDIT name rule, that rule as audit.
pub fn evaluate_sni(
    policy: &CompiledPolicy,
    subject_id: u32,
    dst: IpAddr,
    port: u16,
    server_name: Option<&str>,
) -> Decision {
    let m = name_rules(policy, subject_id, port, server_name.unwrap_or(""));
    let (verdict, rule_id) = if m.deny != 0 {
        (Verdict::Deny, m.deny)
    } else if m.allow == 0 && admitted_by_name_only(policy, subject_id, port, dst) {
        (Verdict::Deny, rule_ids::SNI_DEFAULT_DENY)
    } else {
        (Verdict::Allow, rule_ids::NONE)
    };
    Decision {
        verdict,
        rule_id,
        audit_rule_id: (verdict == Verdict::Allow && m.audit != 0).then_some(m.audit),
    }
}

fn name_rules(policy: &CompiledPolicy, subject_id: u32, port: u16, name: &str) -> RuleMatch {
    let mut keys = [0u64; MAX_SUFFIXES + 1];
    let n = server_name_keys(name.as_bytes(), &mut keys);
    let mut m = RuleMatch::default();
    for p in [port, 0] {
        for &key in &keys[..n] {
            fill_from_name_rule(policy, &mut m, subject_id, p, key);
        }
    }
    m
}

/// Fills the actions `m` has no rule for from the `SNI_RULES` entry (subject, port, key).
pub(crate) fn fill_from_name_rule(
    policy: &CompiledPolicy,
    m: &mut RuleMatch,
    subject_id: u32,
    port: u16,
    key: u64,
) {
    let found = policy
        .sni_rules
        .binary_search_by_key(&(subject_id, port, key), |r| {
            (r.subject_id, r.port, r.name_key)
        });
    if let Ok(i) = found {
        let r = &policy.sni_rules[i].rules;
        for (into, from) in [
            (&mut m.deny, r.deny),
            (&mut m.allow, r.allow),
            (&mut m.audit, r.audit),
        ] {
            if *into == 0 {
                *into = from;
            }
        }
    }
}

fn admitted_by_name_only(policy: &CompiledPolicy, subject_id: u32, port: u16, dst: IpAddr) -> bool {
    let addr = to_bits(dst).to_be_bytes();
    for p in [port, 0] {
        let found = policy
            .sni_required
            .binary_search_by_key(&(subject_id, p, addr), |r| (r.subject_id, r.port, r.addr));
        if let Ok(i) = found {
            return policy.sni_required[i].rule_id != 0;
        }
    }
    false
}
