//! SNI tables: the EgressPolicy rules that name hosts by DNS name, as the kernel checks them
//! against a governed client's TLS server name (see `dataplane_common::sni_policy` and
//! `docs/policy-reference.md`, "TLS server names").

use std::collections::{BTreeMap, HashMap};

use dataplane_common::{
    RuleMatch,
    sni_policy::{OVERLONG_NAME_KEY, name_key},
};

use crate::model::{Action, EgressPolicy, EgressRule};
use crate::net::{HostMatch, PortMatch, Prefix};

use super::Resolutions;

/// One `SNI_RULES` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniRule {
    pub subject_id: u32,
    /// 0 = any port.
    pub port: u16,
    /// `sni_policy::name_key` of the name (`example.com`) or suffix (`.example.com`).
    pub name_key: u64,
    /// The name as written (`*.example.com`), or `(overlong name)`.
    pub pattern: String,
    pub rules: RuleMatch,
}

/// One `SNI_REQUIRED` entry: connections of `subject_id` to `addr`:`port` are admitted only
/// by the name ALLOW rule `rule_id` (0: exempt, an address rule admits them on this port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniRequired {
    pub subject_id: u32,
    pub port: u16,
    pub addr: [u8; 16],
    pub rule_id: u32,
}

/// Collects name rules and address rules per subject while the egress table is built.
#[derive(Default)]
pub(crate) struct SniBuilder {
    rules: BTreeMap<(u32, u16, u64), (String, RuleMatch)>,
    /// (subject, port, address) → first name ALLOW rule admitting it.
    name_allows: BTreeMap<(u32, u16, u128), u32>,
    /// Per subject: (port, prefix) of ALLOW rules that admit by address.
    address_allows: HashMap<u32, Vec<(u16, Prefix)>>,
}

fn ports_of(ports: &[crate::decode::Spanned<PortMatch>]) -> Vec<u16> {
    if ports.is_empty() {
        return vec![0];
    }
    ports
        .iter()
        .map(|p| match p.value {
            PortMatch::Any => 0,
            PortMatch::Port(n) => n,
        })
        .collect()
}

impl SniBuilder {
    /// Adds one policy's rules for one subject, in policy order (the first rule to claim a slot
    /// keeps it, as in the egress table).
    pub fn add(
        &mut self,
        policy: &EgressPolicy,
        subject_id: u32,
        rules: &[(&EgressRule, u32)],
        resolved: &Resolutions,
    ) {
        for &(rule, id) in rules {
            if rule.to.is_empty() && policy.action == Action::Allow {
                self.address_allows
                    .entry(subject_id)
                    .or_default()
                    .push((0, Prefix::ANY));
            }
            for target in &rule.to {
                let ports = ports_of(&target.ports);
                if target.hosts.is_empty() && policy.action == Action::Allow {
                    let allows = self.address_allows.entry(subject_id).or_default();
                    allows.extend(ports.iter().map(|&p| (p, Prefix::ANY)));
                }
                for host in &target.hosts {
                    let (key, pattern) = match &host.matches {
                        HostMatch::Exact(name) => (name_key(name.as_bytes()), name.clone()),
                        HostMatch::Suffix(s) => {
                            (name_key(format!(".{s}").as_bytes()), format!("*.{s}"))
                        }
                        HostMatch::Any | HostMatch::Prefix(_) => {
                            if policy.action == Action::Allow {
                                let p = match &host.matches {
                                    HostMatch::Prefix(p) => *p,
                                    _ => Prefix::ANY,
                                };
                                let allows = self.address_allows.entry(subject_id).or_default();
                                allows.extend(ports.iter().map(|&port| (port, p)));
                            }
                            continue;
                        }
                    };
                    for &port in &ports {
                        self.claim(subject_id, port, key, &pattern, policy.action, id);
                        if policy.action == Action::Deny {
                            self.claim(
                                subject_id,
                                port,
                                OVERLONG_NAME_KEY,
                                "(overlong name)",
                                Action::Deny,
                                id,
                            );
                        }
                    }
                    if let (HostMatch::Exact(name), Action::Allow) = (&host.matches, policy.action)
                    {
                        for ip in resolved.get(name.as_str()).into_iter().flatten() {
                            let addr = crate::net::to_bits(*ip);
                            for &port in &ports {
                                self.name_allows
                                    .entry((subject_id, port, addr))
                                    .or_insert(id);
                            }
                        }
                    }
                }
            }
        }
    }

    fn claim(&mut self, subject: u32, port: u16, key: u64, pattern: &str, a: Action, id: u32) {
        let (_, m) = self
            .rules
            .entry((subject, port, key))
            .or_insert_with(|| (pattern.to_string(), RuleMatch::default()));
        let slot = match a {
            Action::Deny => &mut m.deny,
            Action::Allow => &mut m.allow,
            Action::Audit => &mut m.audit,
        };
        if *slot == 0 {
            *slot = id;
        }
    }

    /// The two tables, sorted.
    pub fn finish(self) -> (Vec<SniRule>, Vec<SniRequired>) {
        let rules = self
            .rules
            .into_iter()
            .map(|((subject_id, port, name_key), (pattern, rules))| SniRule {
                subject_id,
                port,
                name_key,
                pattern,
                rules,
            })
            .collect();
        let mut required: BTreeMap<(u32, u16, u128), u32> = BTreeMap::new();
        let none = Vec::new();
        for (&(subject, port, addr), &rule_id) in &self.name_allows {
            let allows = self.address_allows.get(&subject).unwrap_or(&none);
            let admits = |p: u16| {
                allows
                    .iter()
                    .any(|&(q, prefix)| q == p && prefix.covers(&Prefix::new(addr, 128)))
            };
            if admits(port) || admits(0) {
                continue;
            }
            required.insert((subject, port, addr), rule_id);
            if port == 0 {
                // Ports where an address rule admits this address anyway: exempt (the kernel
                // looks at the connection's port before "any port").
                for &(q, prefix) in allows {
                    if q != 0 && prefix.covers(&Prefix::new(addr, 128)) {
                        required.entry((subject, q, addr)).or_insert(0);
                    }
                }
            }
        }
        let required = required
            .into_iter()
            .map(|((subject_id, port, addr), rule_id)| SniRequired {
                subject_id,
                port,
                addr: addr.to_be_bytes(),
                rule_id,
            })
            .collect();
        (rules, required)
    }
}
