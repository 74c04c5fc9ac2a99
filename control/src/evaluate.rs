//! The kernel's egress and inbound lookups, done in user space over the same compiled entries
//! (for `meshward explain` and for tests).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use dataplane_common::{RuleMatch, identities, rule_ids, workload_flags};
use serde::Serialize;

use crate::compile::CompiledPolicy;
use crate::net::{mask, to_bits};

/// Allowed or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}

/// The outcome of one connection attempt: the verdict, the rule that decided it (possibly a
/// reserved id from [`dataplane_common::rule_ids`]), and the AUDIT rule that matched, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule_id: u32,
    pub audit_rule_id: Option<u32>,
}

/// Longest-prefix-match index over `CompiledPolicy::egress`.
#[derive(Clone, Debug, Default)]
pub(crate) struct EgressIndex {
    entries: HashMap<(u32, u16, u128, u8), RuleMatch>,
    /// Distinct prefix lengths per (workload, port), longest first.
    lengths: HashMap<(u32, u16), Vec<u8>>,
}

impl EgressIndex {
    fn build(policy: &CompiledPolicy) -> EgressIndex {
        let mut index = EgressIndex::default();
        for e in &policy.egress {
            let bits = u128::from_be_bytes(e.addr) & mask(e.prefix_len);
            index
                .entries
                .insert((e.workload_id, e.port, bits, e.prefix_len), e.rules);
            let lens = index.lengths.entry((e.workload_id, e.port)).or_default();
            if !lens.contains(&e.prefix_len) {
                lens.push(e.prefix_len);
            }
        }
        for v in index.lengths.values_mut() {
            v.sort_unstable_by(|a, b| b.cmp(a));
        }
        index
    }

    /// What the kernel's LPM trie returns for this key, or all-empty on a miss.
    fn longest_match(&self, workload_id: u32, port: u16, addr: u128) -> RuleMatch {
        let Some(lens) = self.lengths.get(&(workload_id, port)) else {
            return RuleMatch::default();
        };
        lens.iter()
            .find_map(|&len| {
                self.entries
                    .get(&(workload_id, port, addr & mask(len), len))
                    .copied()
            })
            .unwrap_or_default()
    }
}

/// Decides a connection from `workload_id` to `dst:port` exactly as the kernel does:
/// look up the exact port and the any-port key, take each action's slot from the exact port
/// first, then DENY > (no ALLOW policy → allow) > ALLOW > default deny; AUDIT is only reported.
/// An unknown workload has no entries and no flags, so it is allowed by default (the kernel does
/// not govern it).
pub fn evaluate(policy: &CompiledPolicy, workload_id: u32, dst: IpAddr, port: u16) -> Decision {
    evaluate_with_names(policy, workload_id, dst, port, &[])
}

/// [`evaluate`] for a destination that DNS answers associated with `learned` name keys
/// (`sni_policy::name_key`s, in the kernel's slot order; see `dataplane_common::dns_learning`):
/// as the kernel does, the actions the address rules leave empty are filled from the name rules
/// of each key, exact port first.
pub fn evaluate_with_names(
    policy: &CompiledPolicy,
    workload_id: u32,
    dst: IpAddr,
    port: u16,
    learned: &[u64],
) -> Decision {
    let index = policy.index.get_or_init(|| EgressIndex::build(policy));
    let addr = to_bits(dst);
    let m1 = index.longest_match(workload_id, port, addr);
    let m2 = index.longest_match(workload_id, 0, addr);
    let pick = |a: u32, b: u32| if a != 0 { a } else { b };
    let mut m = RuleMatch {
        deny: pick(m1.deny, m2.deny),
        allow: pick(m1.allow, m2.allow),
        audit: pick(m1.audit, m2.audit),
    };
    if policy.flags_of(workload_id) & workload_flags::HAS_NAME_RULES != 0 {
        for p in [port, 0] {
            for &key in learned {
                crate::evaluate_sni::fill_from_name_rule(policy, &mut m, workload_id, p, key);
            }
        }
    }
    let RuleMatch { deny, allow, audit } = m;
    let flags = policy.flags_of(workload_id);
    let (verdict, rule_id) = if deny != 0 {
        (Verdict::Deny, deny)
    } else if flags & workload_flags::HAS_ALLOW_POLICY == 0 {
        (Verdict::Allow, rule_ids::DEFAULT_ALLOW)
    } else if allow != 0 {
        (Verdict::Allow, allow)
    } else {
        (Verdict::Deny, rule_ids::DEFAULT_DENY)
    };
    Decision {
        verdict,
        rule_id,
        audit_rule_id: (audit != 0).then_some(audit),
    }
}

/// Longest-prefix-match index over `CompiledPolicy::inbound`, and the `IDENTITIES` map.
#[derive(Clone, Debug, Default)]
pub(crate) struct InboundIndex {
    entries: HashMap<(u32, u32, u16, u128, u8), RuleMatch>,
    /// Distinct prefix lengths per group (workload, identity, port), longest first.
    lengths: HashMap<(u32, u32, u16), Vec<u8>>,
    identities: HashMap<u128, u32>,
}

impl InboundIndex {
    fn build(policy: &CompiledPolicy) -> InboundIndex {
        let mut index = InboundIndex::default();
        for e in &policy.inbound {
            let bits = u128::from_be_bytes(e.addr) & mask(e.prefix_len);
            index.entries.insert(
                (e.workload_id, e.identity, e.port, bits, e.prefix_len),
                e.rules,
            );
            let lens = index
                .lengths
                .entry((e.workload_id, e.identity, e.port))
                .or_default();
            if !lens.contains(&e.prefix_len) {
                lens.push(e.prefix_len);
            }
        }
        for v in index.lengths.values_mut() {
            v.sort_unstable_by(|a, b| b.cmp(a));
        }
        index.identities = policy
            .identities
            .iter()
            .map(|(addr, id)| (u128::from_be_bytes(*addr), *id))
            .collect();
        index
    }

    /// What the kernel's LPM trie returns for this key, if anything.
    fn longest_match(&self, group: (u32, u32, u16), addr: u128) -> Option<RuleMatch> {
        let (w, identity, port) = group;
        self.lengths.get(&group)?.iter().find_map(|&len| {
            self.entries
                .get(&(w, identity, port, addr & mask(len), len))
                .copied()
        })
    }
}

fn inbound_index(policy: &CompiledPolicy) -> &InboundIndex {
    policy
        .inbound_index
        .get_or_init(|| InboundIndex::build(policy))
}

/// The source identity the kernel finds for `ip` in `IDENTITIES`: the id of the workload with
/// that address, else [`identities::UNKNOWN`]. IPv4 and IPv4-mapped IPv6 are the same address.
pub fn identity_of(policy: &CompiledPolicy, ip: IpAddr) -> u32 {
    inbound_index(policy)
        .identities
        .get(&to_bits(ip))
        .copied()
        .unwrap_or(identities::UNKNOWN)
}

/// Decides an inbound connection to workload `dst_workload_id` on `port` from `src` (whose
/// identity the kernel found to be `src_identity`, see [`identity_of`]) exactly as the kernel
/// does: the first of the groups (identity, port), (identity, 0), (ANY, port), (ANY, 0) with a
/// matching entry gives the slots (none: all empty); then DENY > (no ALLOW AuthorizationPolicy
/// selects the server → allow) > ALLOW > default deny; AUDIT is only reported.
pub fn evaluate_inbound(
    policy: &CompiledPolicy,
    dst_workload_id: u32,
    src: IpAddr,
    src_identity: u32,
    port: u16,
) -> Decision {
    let index = inbound_index(policy);
    let addr = to_bits(src);
    let w = dst_workload_id;
    let m = [
        (w, src_identity, port),
        (w, src_identity, 0),
        (w, identities::ANY, port),
        (w, identities::ANY, 0),
    ]
    .into_iter()
    .find_map(|group| index.longest_match(group, addr))
    .unwrap_or_default();
    let flags = policy.workload(dst_workload_id).map_or(0, |w| w.flags);
    let (verdict, rule_id) = if m.deny != 0 {
        (Verdict::Deny, m.deny)
    } else if flags & workload_flags::HAS_ALLOW_INBOUND == 0 {
        (Verdict::Allow, rule_ids::INBOUND_DEFAULT_ALLOW)
    } else if m.allow != 0 {
        (Verdict::Allow, m.allow)
    } else {
        (Verdict::Deny, rule_ids::INBOUND_DEFAULT_DENY)
    };
    Decision {
        verdict,
        rule_id,
        audit_rule_id: (m.audit != 0).then_some(m.audit),
    }
}
