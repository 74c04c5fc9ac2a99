//! Inbound authorization: Istio AuthorizationPolicy, L4 part, compiled into the groups of the
//! `INBOUND_RULES` trie.
//!
//! # What a group is
//! The kernel looks up (server W, source identity S, port P, source address A) in the groups
//! (W,S,P), (W,S,0), (W,ANY,P), (W,ANY,0), in this order, and the first group with a matching
//! entry decides. Every group this compiler emits holds a `::/0` entry, so "first group that
//! exists". A group therefore has to be *complete*: it alone answers for every flow that reaches
//! it.
//!
//! # How the groups are made
//! 1. Rules are reduced to their L4 part ([`L4Rule`]): identity clauses (principals, namespaces,
//!    `source.principal` / `source.namespace` conditions), port clauses (ports, notPorts,
//!    `destination.port`), address clauses (ipBlocks, notIpBlocks, `source.ip`), and
//!    `destination.ip`, which is decided per server workload from its own address.
//! 2. Identities: every source the kernel can name (UNKNOWN and every workload) gets a
//!    *signature*, the truth values of all identity clauses of W's rules. Identities with the
//!    same signature behave the same. The most common signature becomes the ANY group; every
//!    identity with another signature gets groups of its own.
//! 3. Ports: the ports W's rules mention get groups of their own; port 0 stands for every other
//!    port (the parser rejects port 0, so 0 is never mentioned).
//! 4. Within a group (signature, port) every rule is either inapplicable or a predicate over the
//!    source address built from prefixes. The group's entries are `::/0` plus every prefix those
//!    predicates mention; since every mentioned prefix is an entry, membership of an address in
//!    a mentioned prefix Y is, for every address whose longest match is X, just "Y covers X". So
//!    each entry's slots are the first rule of each action (policy order) whose predicate holds
//!    at X. Candidate rules are found through an index by the prefixes they include, probing
//!    only prefix lengths present, so 100k rules of distinct /32 blocks cost 100k lookups.
//! 5. Redundant parts are dropped where the answer provably stays the same: entries equal to
//!    their nearest covering entry, port groups equal to the group's port-0 table, identity
//!    groups equal to the ANY groups, and a workload whose every entry is empty.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use dataplane_common::{RuleMatch, identities};

use crate::diagnostics::{Diagnostics, Location};
use crate::model::{Action, AuthorizationAction, AuthorizationPolicy, AuthorizationRule};
use crate::net::{Prefix, mask, parse_cidr, to_bits};

/// A string match as istiod converts it for ztunnel: `*` = presence (any non-empty value),
/// `*x` = suffix, `x*` = prefix, anything else exact.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StrMatch {
    Presence,
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl StrMatch {
    pub fn parse(text: &str) -> StrMatch {
        if text == "*" {
            StrMatch::Presence
        } else if let Some(s) = text.strip_prefix('*') {
            StrMatch::Suffix(s.to_string())
        } else if let Some(p) = text.strip_suffix('*') {
            StrMatch::Prefix(p.to_string())
        } else {
            StrMatch::Exact(text.to_string())
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Presence => !value.is_empty(),
            StrMatch::Exact(e) => value == e,
            StrMatch::Prefix(p) => value.starts_with(p.as_str()),
            StrMatch::Suffix(s) => value.ends_with(s.as_str()),
        }
    }
}

/// Which attribute of the source an identity clause reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Attr {
    Principal,
    Namespace,
}

/// What the kernel can know about a source identity. UNKNOWN has neither attribute.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer<'a> {
    pub identity: u32,
    pub principal: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

/// `principals: [...]` (any value matches) or `notPrincipals: [...]` (`negated`: none matches).
/// A source without the attribute (UNKNOWN identity) has no value that could match, so it
/// matches every negated form and no plain one — as in ztunnel, where `DENY notPrincipals: ["*"]`
/// is how "require mTLS" is written and must deny plaintext peers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IdentityField {
    pub attr: Attr,
    pub values: Vec<StrMatch>,
    pub negated: bool,
}

impl IdentityField {
    fn matches(&self, peer: &Peer<'_>) -> bool {
        let value = match self.attr {
            Attr::Principal => peer.principal,
            Attr::Namespace => peer.namespace,
        };
        match value {
            Some(v) => self.values.iter().any(|m| m.matches(v)) != self.negated,
            None => self.negated,
        }
    }
}

/// An address clause: in one of `include` (if set) and in none of `exclude`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IpClause {
    pub include: Option<Vec<Prefix>>,
    pub exclude: Vec<Prefix>,
}

impl IpClause {
    /// The clause for every address whose longest match among the group's entries is `x`.
    fn holds_at(&self, x: &Prefix) -> bool {
        self.include
            .as_ref()
            .is_none_or(|inc| inc.iter().any(|p| p.covers(x)))
            && !self.exclude.iter().any(|p| p.covers(x))
    }

    /// The clause for an address in none of the mentioned prefixes.
    fn holds_nowhere(&self) -> bool {
        self.include.is_none()
    }

    fn prefixes(&self) -> impl Iterator<Item = &Prefix> {
        self.include.iter().flatten().chain(&self.exclude)
    }
}

/// A port clause: one of `include` (if set) and none of `exclude`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PortClause {
    pub include: Option<Vec<u16>>,
    pub exclude: Vec<u16>,
}

impl PortClause {
    fn holds(&self, port: u16) -> bool {
        self.include.as_ref().is_none_or(|inc| inc.contains(&port)) && !self.exclude.contains(&port)
    }

    fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.include.iter().flatten().chain(&self.exclude).copied()
    }
}

/// One `from[].source`, L4 fields only.
#[derive(Clone, Debug)]
pub(crate) struct L4Source {
    /// AND-ed; empty = any identity.
    pub identity: Vec<IdentityField>,
    /// `None` = any address.
    pub ip: Option<IpClause>,
}

/// The L4 part of one rule: `from` AND `to` AND every `when`.
#[derive(Clone, Debug)]
pub(crate) struct L4Rule {
    /// Index in `spec.rules` (names stay tied to the YAML even when rules are dropped).
    pub index: usize,
    pub line: usize,
    /// `None`: no `from` (any source). Otherwise any of these.
    pub from: Option<Vec<L4Source>>,
    /// `None`: no `to` (any port). Otherwise any of these.
    pub to: Option<Vec<PortClause>>,
    pub when_identity: Vec<IdentityField>,
    pub when_ip: Vec<IpClause>,
    pub when_port: Vec<PortClause>,
    /// `destination.ip` conditions, decided per server workload.
    pub when_destination: Vec<IpClause>,
}

/// An AuthorizationPolicy reduced to what meshward enforces.
#[derive(Clone, Debug)]
pub(crate) struct L4Policy<'a> {
    pub source: &'a AuthorizationPolicy,
    pub action: Action,
    pub rules: Vec<L4Rule>,
}

impl L4Policy<'_> {
    pub fn uses_destination_ip(&self) -> bool {
        self.rules.iter().any(|r| !r.when_destination.is_empty())
    }
}

/// Reduces a policy to L4, as istiod does for ztunnel, reporting what is dropped. `None` for
/// CUSTOM policies (not supported: ignored with a warning).
pub(crate) fn reduce<'a>(
    policy: &'a AuthorizationPolicy,
    diags: &mut Diagnostics,
) -> Option<L4Policy<'a>> {
    let id = format!("{}/{}", policy.namespace, policy.name);
    let action = match policy.action {
        AuthorizationAction::Allow => Action::Allow,
        AuthorizationAction::Deny => Action::Deny,
        AuthorizationAction::Audit => Action::Audit,
        AuthorizationAction::Custom => {
            diags.warning(
                policy.location.clone(),
                format!(
                    "AuthorizationPolicy {id}: action CUSTOM (provider `{}`) is not supported: istiod hands it to an external authorization provider, which meshward does not have; the policy is ignored",
                    policy.provider.as_deref().unwrap_or("")
                ),
            );
            return None;
        }
    };
    let mut rules = Vec::with_capacity(policy.rules.len());
    for (index, rule) in policy.rules.iter().enumerate() {
        let http = http_only_fields(rule);
        if let Some(&(_, first_line)) = http.first() {
            let fields = http
                .iter()
                .map(|(f, line)| format!("{f} (line {line})"))
                .collect::<Vec<_>>()
                .join(", ");
            let loc = Location::new(&policy.location.file, first_line);
            if action == Action::Allow {
                diags.warning(
                    loc,
                    format!(
                        "AuthorizationPolicy {id}: spec.rules[{index}] uses HTTP-only {fields}; meshward enforces L4 only, so this ALLOW rule is dropped (it allows nothing), as istiod does for ztunnel"
                    ),
                );
                continue;
            }
            diags.warning(
                loc,
                format!(
                    "AuthorizationPolicy {id}: spec.rules[{index}] uses HTTP-only {fields}; this {} rule is enforced more strictly, without them, as istiod does for ztunnel",
                    action.as_str()
                ),
            );
        }
        rules.push(reduce_rule(index, rule));
    }
    if action == Action::Allow && rules.is_empty() && !policy.rules.is_empty() {
        diags.warning(
            policy.location.clone(),
            format!(
                "AuthorizationPolicy {id}: every rule was dropped; the ALLOW policy still selects its workloads and so allows nothing to them (istiod's behaviour)"
            ),
        );
    }
    Some(L4Policy {
        source: policy,
        action,
        rules,
    })
}

/// Condition keys meshward enforces; every other key is HTTP-only.
const L4_KEYS: &[&str] = &[
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.port",
    "destination.ip",
];

/// HTTP-only fields a rule sets, each with the line of its first value, in document order.
fn http_only_fields(rule: &AuthorizationRule) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut field = |path: String, line: Option<usize>| {
        if let Some(line) = line {
            out.push((path, line));
        }
    };
    for (i, s) in rule.from.iter().enumerate() {
        let p = |f: &str| format!("`from[{i}].source.{f}`");
        field(
            p("requestPrincipals"),
            s.request_principals.first().map(|v| v.line),
        );
        field(
            p("notRequestPrincipals"),
            s.not_request_principals.first().map(|v| v.line),
        );
        field(
            p("remoteIpBlocks"),
            s.remote_ip_blocks.first().map(|v| v.line),
        );
        field(
            p("notRemoteIpBlocks"),
            s.not_remote_ip_blocks.first().map(|v| v.line),
        );
    }
    for (i, o) in rule.to.iter().enumerate() {
        let p = |f: &str| format!("`to[{i}].operation.{f}`");
        field(p("hosts"), o.hosts.first().map(|v| v.line));
        field(p("notHosts"), o.not_hosts.first().map(|v| v.line));
        field(p("methods"), o.methods.first().map(|v| v.line));
        field(p("notMethods"), o.not_methods.first().map(|v| v.line));
        field(p("paths"), o.paths.first().map(|v| v.line));
        field(p("notPaths"), o.not_paths.first().map(|v| v.line));
    }
    for (i, c) in rule.when.iter().enumerate() {
        if !L4_KEYS.contains(&c.key.as_str()) {
            field(format!("`when[{i}]` key `{}`", c.key), Some(c.line));
        }
    }
    out.sort_by_key(|(_, line)| *line);
    out
}

fn identity_field(attr: Attr, values: &[crate::Spanned<String>], negated: bool) -> IdentityField {
    IdentityField {
        attr,
        values: values
            .iter()
            .map(|v| StrMatch::parse(v.value.trim()))
            .collect(),
        negated,
    }
}

fn reduce_rule(index: usize, rule: &AuthorizationRule) -> L4Rule {
    let from = (!rule.from.is_empty()).then(|| {
        rule.from
            .iter()
            .map(|s| {
                let mut identity = Vec::new();
                for (attr, values, negated) in [
                    (Attr::Principal, &s.principals, false),
                    (Attr::Principal, &s.not_principals, true),
                    (Attr::Namespace, &s.namespaces, false),
                    (Attr::Namespace, &s.not_namespaces, true),
                ] {
                    if !values.is_empty() {
                        identity.push(identity_field(attr, values, negated));
                    }
                }
                let ip =
                    (!s.ip_blocks.is_empty() || !s.not_ip_blocks.is_empty()).then(|| IpClause {
                        include: (!s.ip_blocks.is_empty())
                            .then(|| s.ip_blocks.iter().map(|b| b.value).collect()),
                        exclude: s.not_ip_blocks.iter().map(|b| b.value).collect(),
                    });
                L4Source { identity, ip }
            })
            .collect()
    });
    let to = (!rule.to.is_empty()).then(|| {
        rule.to
            .iter()
            .map(|o| PortClause {
                include: (!o.ports.is_empty()).then(|| o.ports.iter().map(|p| p.value).collect()),
                exclude: o.not_ports.iter().map(|p| p.value).collect(),
            })
            .collect()
    });
    let mut out = L4Rule {
        index,
        line: rule.line,
        from,
        to,
        when_identity: Vec::new(),
        when_ip: Vec::new(),
        when_port: Vec::new(),
        when_destination: Vec::new(),
    };
    for c in &rule.when {
        // Values were validated by the parser; anything unparsable here is skipped.
        let prefixes = |values: &[crate::Spanned<String>]| -> Vec<Prefix> {
            values
                .iter()
                .filter_map(|v| parse_cidr(v.value.trim()).ok().map(|(p, _)| p))
                .collect()
        };
        let ports = |values: &[crate::Spanned<String>]| -> Vec<u16> {
            values
                .iter()
                .filter_map(|v| v.value.trim().parse::<u16>().ok())
                .collect()
        };
        match c.key.as_str() {
            "source.principal" | "source.namespace" => {
                let attr = if c.key == "source.principal" {
                    Attr::Principal
                } else {
                    Attr::Namespace
                };
                if !c.values.is_empty() {
                    out.when_identity
                        .push(identity_field(attr, &c.values, false));
                }
                if !c.not_values.is_empty() {
                    out.when_identity
                        .push(identity_field(attr, &c.not_values, true));
                }
            }
            "source.ip" | "destination.ip" => {
                let clause = IpClause {
                    include: (!c.values.is_empty()).then(|| prefixes(&c.values)),
                    exclude: prefixes(&c.not_values),
                };
                if c.key == "source.ip" {
                    out.when_ip.push(clause);
                } else {
                    out.when_destination.push(clause);
                }
            }
            "destination.port" => out.when_port.push(PortClause {
                include: (!c.values.is_empty()).then(|| ports(&c.values)),
                exclude: ports(&c.not_values),
            }),
            // HTTP-only: reported by `reduce`, dropped here.
            _ => {}
        }
    }
    out
}

/// A rule of the server's policies with its place in policy order and its id.
#[derive(Clone, Copy)]
pub(crate) struct OrderedRule<'r> {
    pub rule: &'r L4Rule,
    pub action: Action,
    pub id: u32,
}

/// One compiled entry of a server's groups: (identity, port, prefix, slots).
pub(crate) type GroupEntry = (u32, u16, Prefix, RuleMatch);

/// Compiles the groups for a server whose applicable rules are `rules` (policy order), whose
/// own address is `destination` (for `destination.ip`), against every identity the kernel can
/// report (`peers`: UNKNOWN and every workload).
pub(crate) fn compile_groups(
    rules: &[OrderedRule<'_>],
    destination: Option<IpAddr>,
    peers: &[Peer<'_>],
) -> Vec<GroupEntry> {
    // 1. destination.ip is fixed per server: keep the rules whose conditions hold.
    let rules: Vec<OrderedRule<'_>> = rules
        .iter()
        .filter(|r| {
            r.rule
                .when_destination
                .iter()
                .all(|c| destination.is_some_and(|ip| c.holds_at(&Prefix::host(ip))))
        })
        .copied()
        .collect();
    if rules.is_empty() {
        return Vec::new();
    }

    // 2. Identity units: each source's identity fields (AND-ed), each rule's identity
    //    conditions (AND-ed); deduplicated by content.
    let mut unit_ids: HashMap<&[IdentityField], u32> = HashMap::new();
    let mut units: Vec<&[IdentityField]> = Vec::new();
    // Per rule: unit of each source (None = no identity fields) and of the conditions.
    let mut source_units: Vec<Vec<Option<u32>>> = Vec::with_capacity(rules.len());
    let mut when_units: Vec<Option<u32>> = Vec::with_capacity(rules.len());
    for r in &rules {
        let mut su = Vec::new();
        for s in r.rule.from.iter().flatten() {
            su.push(intern_unit(&mut unit_ids, &mut units, &s.identity));
        }
        source_units.push(su);
        when_units.push(intern_unit(
            &mut unit_ids,
            &mut units,
            &r.rule.when_identity,
        ));
    }

    // Signatures: the sorted list of units true for each peer.
    let mut by_signature: HashMap<Vec<u32>, Vec<u32>> = HashMap::new();
    let mut first_seen: Vec<Vec<u32>> = Vec::new();
    for peer in peers {
        let sig: Vec<u32> = units
            .iter()
            .zip(0u32..)
            .filter(|(fields, _)| fields.iter().all(|f| f.matches(peer)))
            .map(|(_, u)| u)
            .collect();
        let members = by_signature.entry(sig.clone()).or_default();
        if members.is_empty() {
            first_seen.push(sig);
        }
        members.push(peer.identity);
    }
    // The ANY group takes the most common signature (ties: the one seen first).
    let any_sig = first_seen
        .iter()
        .enumerate()
        .max_by_key(|(i, s)| (by_signature[*s].len(), std::cmp::Reverse(*i)))
        .map(|(_, s)| s.clone())
        .unwrap_or_default();

    // 3. Port classes: every mentioned port, and 0 for the rest. A rule's port clauses decide
    //    alike at every port they do not mention, so at port P the candidates are the rules
    //    that hold at port 0 plus those that mention P (not every rule: 10k rules of distinct
    //    ports would otherwise cost 10k × 10k checks).
    let mut mentioning: HashMap<u16, Vec<usize>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        let mut mentioned: Vec<u16> = r
            .rule
            .to
            .iter()
            .flatten()
            .chain(&r.rule.when_port)
            .flat_map(|c| c.ports())
            .filter(|&p| p != 0)
            .collect();
        mentioned.sort_unstable();
        mentioned.dedup();
        for p in mentioned {
            mentioning.entry(p).or_default().push(i);
        }
    }
    let ports: Vec<u16> = std::iter::once(0)
        .chain(mentioning.keys().copied().collect::<BTreeSet<u16>>())
        .collect();
    let holds_at_port = |i: usize, port: u16| {
        let rule = rules[i].rule;
        rule.to
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| o.holds(port)))
            && rule.when_port.iter().all(|c| c.holds(port))
    };
    // Rules that hold at port 0 (every unmentioned port), in policy order.
    let at_port_0: Vec<usize> = (0..rules.len()).filter(|&i| holds_at_port(i, 0)).collect();

    // 4. Tables per (signature, port), port-0 first.
    let tables_for = |sig: &[u32]| -> Vec<Vec<(Prefix, RuleMatch)>> {
        let unit_true = |u: Option<u32>| u.is_none_or(|u| sig.binary_search(&u).is_ok());
        ports
            .iter()
            .map(|&port| {
                let mut candidates: Vec<usize> = at_port_0.clone();
                if let Some(m) = mentioning.get(&port) {
                    candidates.extend(m);
                    candidates.sort_unstable();
                    candidates.dedup();
                }
                let applicable: Vec<Applicable<'_>> = candidates
                    .into_iter()
                    .filter_map(|i| {
                        applicable(&rules[i], &source_units[i], when_units[i], port, &unit_true)
                    })
                    .collect();
                group_table(&applicable)
            })
            .collect()
    };
    let any_tables = tables_for(&any_sig);
    let mut out: Vec<GroupEntry> = Vec::new();
    emit(&mut out, identities::ANY, &ports, &any_tables);
    let mut specific: Vec<(&Vec<u32>, &Vec<u32>)> = by_signature
        .iter()
        .filter(|(sig, _)| **sig != any_sig)
        .collect();
    specific.sort_by_key(|(_, members)| members[0]);
    for (sig, members) in specific {
        let tables = tables_for(sig);
        // 5. Identities that answer like ANY on every port need no groups. (A port table
        //    dropped by `emit` equals port 0's, so comparing all tables is comparing answers.)
        if tables == any_tables {
            continue;
        }
        for &identity in members {
            emit(&mut out, identity, &ports, &tables);
        }
    }
    // A server whose every entry is empty answers like no entries at all.
    if out.iter().all(|e| e.3 == RuleMatch::default()) {
        return Vec::new();
    }
    out
}

fn intern_unit<'r>(
    ids: &mut HashMap<&'r [IdentityField], u32>,
    units: &mut Vec<&'r [IdentityField]>,
    fields: &'r [IdentityField],
) -> Option<u32> {
    if fields.is_empty() {
        return None;
    }
    Some(*ids.entry(fields).or_insert_with(|| {
        units.push(fields);
        units.len() as u32 - 1
    }))
}

/// Appends the groups of one identity: port 0 always, other ports only where they differ from
/// port 0 (the kernel falls back to port 0 for them).
fn emit(
    out: &mut Vec<GroupEntry>,
    identity: u32,
    ports: &[u16],
    tables: &[Vec<(Prefix, RuleMatch)>],
) {
    for (i, (&port, table)) in ports.iter().zip(tables).enumerate() {
        if i > 0 && *table == tables[0] {
            continue;
        }
        out.extend(table.iter().map(|&(prefix, m)| (identity, port, prefix, m)));
    }
}

/// A rule applicable in one group, as a predicate over the source address.
struct Applicable<'r> {
    action: Action,
    id: u32,
    /// `None`: any address. Otherwise the address must satisfy one of these.
    sources: Option<Vec<&'r IpClause>>,
    conds: &'r [IpClause],
}

impl Applicable<'_> {
    fn holds_at(&self, x: &Prefix) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|s| s.iter().any(|c| c.holds_at(x)))
            && self.conds.iter().all(|c| c.holds_at(x))
    }

    fn holds_nowhere(&self) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|s| s.iter().any(|c| c.holds_nowhere()))
            && self.conds.iter().all(|c| c.holds_nowhere())
    }

    fn includes(&self) -> impl Iterator<Item = &Prefix> {
        self.sources
            .iter()
            .flatten()
            .copied()
            .chain(self.conds)
            .flat_map(|c| c.include.iter().flatten())
    }

    fn prefixes(&self) -> impl Iterator<Item = &Prefix> {
        self.sources
            .iter()
            .flatten()
            .copied()
            .chain(self.conds)
            .flat_map(|c| c.prefixes())
    }
}

/// The rule reduced to an address predicate for identities whose units satisfy `unit_true`
/// and for `port`, or `None` if it cannot match there.
fn applicable<'r>(
    r: &OrderedRule<'r>,
    source_units: &[Option<u32>],
    when_unit: Option<u32>,
    port: u16,
    unit_true: &impl Fn(Option<u32>) -> bool,
) -> Option<Applicable<'r>> {
    let rule = r.rule;
    if !rule
        .to
        .as_ref()
        .is_none_or(|ops| ops.iter().any(|o| o.holds(port)))
        || !rule.when_port.iter().all(|c| c.holds(port))
        || !unit_true(when_unit)
    {
        return None;
    }
    let sources = match &rule.from {
        None => None,
        Some(from) => {
            let mut clauses = Vec::new();
            let mut any_address = false;
            let mut any_source = false;
            for (s, &u) in from.iter().zip(source_units) {
                if !unit_true(u) {
                    continue;
                }
                any_source = true;
                match &s.ip {
                    None => any_address = true,
                    Some(c) => clauses.push(c),
                }
            }
            if !any_source {
                return None;
            }
            (!any_address).then_some(clauses)
        }
    };
    Some(Applicable {
        action: r.action,
        id: r.id,
        sources,
        conds: &rule.when_ip,
    })
}

fn action_index(a: Action) -> usize {
    match a {
        Action::Deny => 0,
        Action::Allow => 1,
        Action::Audit => 2,
    }
}

/// The entries of one group: `::/0` and every mentioned prefix, each with the first rule of
/// each action that holds for its addresses; entries equal to their nearest cover dropped.
fn group_table(rules: &[Applicable<'_>]) -> Vec<(Prefix, RuleMatch)> {
    // Index: rules that hold nowhere-else can only hold under a prefix they include.
    let mut universal: [Vec<usize>; 3] = Default::default();
    let mut by_prefix: HashMap<Prefix, [Vec<usize>; 3]> = HashMap::new();
    let mut entries: BTreeSet<Prefix> = BTreeSet::from([Prefix::ANY]);
    for (i, r) in rules.iter().enumerate() {
        let a = action_index(r.action);
        entries.extend(r.prefixes().copied());
        if r.holds_nowhere() {
            universal[a].push(i);
        } else {
            let mut seen: BTreeSet<Prefix> = BTreeSet::new();
            for p in r.includes() {
                if seen.insert(*p) {
                    by_prefix.entry(*p).or_default()[a].push(i);
                }
            }
        }
    }
    let mut index_lengths: Vec<u8> = by_prefix.keys().map(|p| p.prefix_len()).collect();
    index_lengths.sort_unstable();
    index_lengths.dedup();

    let values: Vec<(Prefix, RuleMatch)> = entries
        .iter()
        .map(|x| {
            let mut best = [usize::MAX; 3];
            for &len in index_lengths.iter().take_while(|&&l| l <= x.prefix_len()) {
                let cover = Prefix::new(x.bits() & mask(len), len);
                let Some(lists) = by_prefix.get(&cover) else {
                    continue;
                };
                for (a, list) in lists.iter().enumerate() {
                    if let Some(&i) = list
                        .iter()
                        .take_while(|&&i| i < best[a])
                        .find(|&&i| rules[i].holds_at(x))
                    {
                        best[a] = i;
                    }
                }
            }
            for (a, list) in universal.iter().enumerate() {
                if let Some(&i) = list
                    .iter()
                    .take_while(|&&i| i < best[a])
                    .find(|&&i| rules[i].holds_at(x))
                {
                    best[a] = i;
                }
            }
            let id = |i: usize| rules.get(i).map_or(0, |r| r.id);
            (
                *x,
                RuleMatch {
                    deny: id(best[0]),
                    allow: id(best[1]),
                    audit: id(best[2]),
                },
            )
        })
        .collect();
    prune(values)
}

/// Drops entries equal to their nearest covering entry: the addresses they decide then fall
/// to an entry with the same slots.
fn prune(values: Vec<(Prefix, RuleMatch)>) -> Vec<(Prefix, RuleMatch)> {
    let map: HashMap<Prefix, RuleMatch> = values.iter().copied().collect();
    let mut lengths: Vec<u8> = values.iter().map(|(p, _)| p.prefix_len()).collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    lengths.dedup();
    values
        .into_iter()
        .filter(|(x, m)| {
            let cover = lengths
                .iter()
                .filter(|&&l| l < x.prefix_len())
                .find_map(|&l| map.get(&Prefix::new(x.bits() & mask(l), l)));
            cover != Some(m)
        })
        .collect()
}

/// A key for servers that get identical groups: the policies selecting them and, when one of
/// them has `destination.ip` conditions, the server's address.
pub(crate) type ClassKey = (Vec<usize>, Option<u128>);

pub(crate) fn class_key(
    selected: Vec<usize>,
    policies: &[L4Policy<'_>],
    address: Option<IpAddr>,
) -> ClassKey {
    let needs_address = selected.iter().any(|&i| policies[i].uses_destination_ip());
    (selected, address.filter(|_| needs_address).map(to_bits))
}
