//! The compiler: a validated [`Config`] to the tables the kernel reads. Pure: no I/O, no clock.

mod binaries;
mod dns_watch;
mod inbound;
mod sni;
mod table;

pub use binaries::{BinaryResolutions, CompiledSubject, FileId, pattern_text};
pub use dns_watch::DnsWatch;
pub use sni::{SniRequired, SniRule};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use dataplane_common::{
    FIRST_RULE_ID, InboundEntry, MAX_BINARIES_PER_SLOT, MAX_EGRESS_ENTRIES_PER_SLOT,
    MAX_IDENTITIES_PER_SLOT, MAX_INBOUND_ENTRIES_PER_SLOT, MAX_RULES, MAX_SUBJECTS_PER_SLOT,
    MAX_WORKLOADS, RULE_NAME_LEN, RuleMatch, identities, rule_ids, sni_policy, workload_flags,
};
use serde::Serialize;

use crate::diagnostics::{Diagnostics, Location};
use crate::evaluate::{EgressIndex, InboundIndex};
use crate::model::{Action, AuthorizationPolicy, Config, EgressPolicy, Workload, labels_match};
use crate::net::{HostMatch, PortMatch, Prefix, to_bits};
use crate::rule_ids::RuleIds;
use table::{EntryKey, TableBuilder};

/// Node-wide settings that shape compilation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Trust domain of principals: `<trust_domain>/ns/<ns>/sa/<sa>`.
    pub trust_domain: String,
    /// Policies in this namespace apply to workloads of every namespace.
    pub root_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trust_domain: "cluster.local".to_string(),
            root_namespace: "istio-system".to_string(),
        }
    }
}

/// Addresses of exact DNS names: lowercase name without trailing dot → addresses.
pub type Resolutions = BTreeMap<String, Vec<IpAddr>>;

/// A workload as the kernel knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompiledWorkload {
    /// 1.. in (namespace, name) order.
    pub workload_id: u32,
    pub namespace: String,
    pub name: String,
    /// Relative to the cgroup2 mount; `None` if the WorkloadEntry names no cgroup.
    pub cgroup: Option<PathBuf>,
    /// Network namespace where inbound connections are decided (`meshward.io/netns`).
    pub netns: Option<PathBuf>,
    /// [`dataplane_common::workload_flags`].
    pub flags: u32,
    pub principal: String,
    pub labels: BTreeMap<String, String>,
    pub address: Option<IpAddr>,
}

pub use dataplane_common::EgressEntry;

/// Which table a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// An EgressPolicy rule (connect-time verdict of a local workload).
    Egress,
    /// An AuthorizationPolicy rule (server-side verdict).
    Inbound,
}

impl RuleKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleKind::Egress => "egress",
            RuleKind::Inbound => "inbound",
        }
    }
}

/// Name of rule `index` of AuthorizationPolicy `namespace/name`. EgressPolicy rules are named
/// `namespace/name#index`; the `authz:` prefix keeps the two kinds apart when a namespace holds
/// policies of both kinds with the same name.
pub fn inbound_rule_name(namespace: &str, name: &str, index: usize) -> String {
    format!("authz:{namespace}/{name}#{index}")
}

/// What a rule id stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub id: u32,
    /// `namespace/policy#index` (EgressPolicy) or `authz:namespace/policy#index`
    /// (AuthorizationPolicy).
    pub name: String,
    pub kind: RuleKind,
    pub policy_namespace: String,
    pub policy_name: String,
    pub rule_index: usize,
    pub action: Action,
    pub location: Location,
}

/// The output of [`compile`]: everything `dataplane` writes into the kernel for one generation.
/// Treat it as read-only: [`evaluate`](crate::evaluate) and
/// [`evaluate_inbound`](crate::evaluate_inbound) index `egress` / `inbound` on first use.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// Sorted by `workload_id`.
    pub workloads: Vec<CompiledWorkload>,
    /// Folded entries, sorted by (workload, port, prefix).
    pub egress: Vec<EgressEntry>,
    /// `INBOUND_RULES` entries (AuthorizationPolicy), sorted by (workload, identity, port,
    /// prefix). See `compile/inbound.rs` for how the groups are made complete.
    pub inbound: Vec<InboundEntry>,
    /// `IDENTITIES`: every workload address (IPv4-mapped) → its workload id, sorted by address.
    pub identities: Vec<([u8; 16], u32)>,
    /// Sorted by id.
    pub rules: Vec<RuleInfo>,
    /// Feed back as `previous_rule_ids` to the next compile.
    pub rule_ids: RuleIds,
    /// Exact DNS names used in hosts, for the agent to resolve.
    pub dns_names: BTreeSet<String>,
    /// `spec.binaries` patterns, for the agent to resolve to executable files.
    pub binary_patterns: BTreeSet<String>,
    /// Executable file → binary id (`BINARIES`).
    pub binaries: Vec<(FileId, u32)>,
    /// Workload × binary subjects (`SUBJECTS`); their ids key egress entries.
    pub subjects: Vec<CompiledSubject>,
    /// `SNI_RULES`: name hosts checked against TLS server names, sorted.
    pub sni_rules: Vec<SniRule>,
    /// `SNI_REQUIRED`: addresses admitted only by name ALLOW rules, sorted.
    pub sni_required: Vec<SniRequired>,
    /// `DNS_WATCH`: the names learned from DNS answers, per workload, sorted.
    pub dns_watch: Vec<DnsWatch>,
    /// The configuration's warnings followed by the compiler's.
    pub warnings: Diagnostics,
    pub(crate) index: OnceLock<EgressIndex>,
    pub(crate) inbound_index: OnceLock<InboundIndex>,
}

/// Counts that describe a compiled policy (no generation numbers, so equal configs give equal
/// summaries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicySummary {
    pub workloads: usize,
    pub workloads_with_cgroup: usize,
    pub workloads_with_allow_policy: usize,
    pub workloads_with_allow_inbound: usize,
    pub rules: usize,
    pub egress_entries: usize,
    pub inbound_entries: usize,
    pub identities: usize,
    pub dns_names: usize,
    pub warnings: usize,
}

impl CompiledPolicy {
    /// The rule with this id, if it is a real rule.
    pub fn rule(&self, id: u32) -> Option<&RuleInfo> {
        self.rules
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .map(|i| &self.rules[i])
    }

    /// The flags the kernel sees for a table id: a workload's, or a subject's.
    pub fn flags_of(&self, id: u32) -> u32 {
        match self.workload(id) {
            Some(w) => w.flags,
            None => self
                .subjects
                .iter()
                .find(|s| s.subject_id == id)
                .map_or(0, |s| s.flags),
        }
    }

    /// The table id the kernel uses for a process of `workload_id` running the executable
    /// `file`: the workload × binary subject if there is one, else the workload.
    pub fn subject_of(&self, workload_id: u32, file: Option<FileId>) -> u32 {
        let binary = file.and_then(|f| {
            self.binaries
                .iter()
                .find(|(b, _)| *b == f)
                .map(|(_, id)| *id)
        });
        binary
            .and_then(|b| {
                self.subjects
                    .iter()
                    .find(|s| s.workload_id == workload_id && s.binary_id == b)
            })
            .map_or(workload_id, |s| s.subject_id)
    }

    /// A readable name for any rule id, reserved ones included.
    pub fn rule_name(&self, id: u32) -> String {
        match id {
            rule_ids::DEFAULT_DENY => "(default deny: no ALLOW rule matched)".to_string(),
            rule_ids::DEFAULT_ALLOW => {
                "(default allow: no ALLOW policy selects the workload)".to_string()
            }
            rule_ids::INBOUND_DEFAULT_DENY => {
                "(inbound default deny: no ALLOW AuthorizationPolicy rule matched)".to_string()
            }
            rule_ids::INBOUND_DEFAULT_ALLOW => {
                "(inbound default allow: no ALLOW AuthorizationPolicy selects the workload)"
                    .to_string()
            }
            rule_ids::SNI_DEFAULT_DENY => {
                "(sni deny: admitted only by DNS-name ALLOW rules, and none names this TLS server name)"
                    .to_string()
            }
            rule_ids::NONE => "(none)".to_string(),
            _ => match self.rule(id) {
                Some(r) => r.name.clone(),
                None => format!("(unknown rule {id})"),
            },
        }
    }

    pub fn workload(&self, workload_id: u32) -> Option<&CompiledWorkload> {
        self.workloads
            .binary_search_by_key(&workload_id, |w| w.workload_id)
            .ok()
            .map(|i| &self.workloads[i])
    }

    pub fn workload_by_name(&self, namespace: &str, name: &str) -> Option<&CompiledWorkload> {
        self.workloads
            .iter()
            .find(|w| w.namespace == namespace && w.name == name)
    }

    pub fn workload_by_address(&self, ip: IpAddr) -> Option<&CompiledWorkload> {
        self.workloads.iter().find(|w| w.address == Some(ip))
    }

    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            workloads: self.workloads.len(),
            workloads_with_cgroup: self.workloads.iter().filter(|w| w.cgroup.is_some()).count(),
            workloads_with_allow_policy: self
                .workloads
                .iter()
                .filter(|w| w.flags & workload_flags::HAS_ALLOW_POLICY != 0)
                .count(),
            workloads_with_allow_inbound: self
                .workloads
                .iter()
                .filter(|w| w.flags & workload_flags::HAS_ALLOW_INBOUND != 0)
                .count(),
            rules: self.rules.len(),
            egress_entries: self.egress.len(),
            inbound_entries: self.inbound.len(),
            identities: self.identities.len(),
            dns_names: self.dns_names.len(),
            warnings: self.warnings.len(),
        }
    }
}

/// Compiles `config` into kernel tables. `resolved` gives addresses for exact DNS names (names
/// without an entry match nothing yet); `previous_rule_ids` keeps rule ids stable. Policies
/// scoped to binaries name no executable (see [`compile_with_binaries`]).
pub fn compile(
    config: &Config,
    settings: &Settings,
    resolved: &Resolutions,
    previous_rule_ids: &RuleIds,
) -> Result<CompiledPolicy, Diagnostics> {
    compile_with_binaries(
        config,
        settings,
        resolved,
        &BinaryResolutions::new(),
        previous_rule_ids,
    )
}

/// Every `spec.binaries` pattern `config` uses: what the agent resolves to files before it
/// compiles (`CompiledPolicy::binary_patterns` holds the same set).
pub fn binary_patterns(config: &Config) -> BTreeSet<String> {
    binaries::patterns(&config.egress_policies)
}

/// As [`compile`], with the executable files that each `spec.binaries` pattern names now.
pub fn compile_with_binaries(
    config: &Config,
    settings: &Settings,
    resolved: &Resolutions,
    binaries: &BinaryResolutions,
    previous_rule_ids: &RuleIds,
) -> Result<CompiledPolicy, Diagnostics> {
    let mut diags = config.warnings.clone();

    let mut workloads = compile_workloads(&config.workloads, settings, &mut diags);
    let identities = compile_identities(&config.workloads, &workloads, &mut diags);

    let mut policies: Vec<&EgressPolicy> = config.egress_policies.iter().collect();
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for p in &policies {
        warn_unresolved_binaries(p, binaries, &mut diags);
    }

    // Rule names, in processing order, and per-policy selection.
    let mut rule_names: Vec<String> = Vec::new();
    let mut dns_names = BTreeSet::new();
    let mut selections: Vec<Vec<usize>> = Vec::with_capacity(policies.len());
    let rule_capacity = (MAX_RULES - FIRST_RULE_ID) as usize;
    for p in &policies {
        let selected: Vec<usize> = (0..workloads.len())
            .filter(|&i| selects(p, &workloads[i], settings))
            .collect();
        // A policy scoped to binaries selects only their processes: its ALLOW sets the flag
        // on the workload × binary subjects, not on the workload.
        if p.action == Action::Allow && p.binaries.is_empty() {
            for &i in &selected {
                workloads[i].flags |= workload_flags::HAS_ALLOW_POLICY;
            }
        }
        selections.push(selected);
        for (index, rule) in p.rules.iter().enumerate() {
            let name = format!("{}/{}#{index}", p.namespace, p.name);
            check_rule_name(
                &name,
                Location::new(&p.location.file, rule.line),
                &mut diags,
            );
            rule_names.push(name);
        }
        if rule_names.len() > rule_capacity {
            too_many_rules(
                rule_names.len(),
                "EgressPolicy",
                &p.namespace,
                &p.name,
                &p.location,
                &mut diags,
            );
            return Err(sorted(diags));
        }
        warn_unenforced_hosts(p, &mut diags);
        for host in p.rules.iter().flat_map(|r| &r.to).flat_map(|t| &t.hosts) {
            if let HostMatch::Exact(name) = &host.matches {
                dns_names.insert(name.clone());
            }
        }
    }

    // AuthorizationPolicies: reduced to L4 (CUSTOM dropped), in (namespace, name) order.
    let mut authz: Vec<&AuthorizationPolicy> = config.authorization_policies.iter().collect();
    authz.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let authz: Vec<inbound::L4Policy<'_>> = authz
        .into_iter()
        .filter_map(|p| inbound::reduce(p, &mut diags))
        .collect();
    // Per workload index: the AuthorizationPolicies (indexes into `authz`) that select it.
    let mut authz_selections: Vec<Vec<usize>> = vec![Vec::new(); workloads.len()];
    for (pi, p) in authz.iter().enumerate() {
        let src = p.source;
        let mut any = false;
        for (wi, w) in workloads.iter_mut().enumerate() {
            if in_scope(&src.namespace, &src.match_labels, w, settings) {
                any = true;
                authz_selections[wi].push(pi);
                if p.action == Action::Allow {
                    w.flags |= workload_flags::HAS_ALLOW_INBOUND;
                }
            }
        }
        if !any {
            diags.warning(
                src.location.clone(),
                format!(
                    "AuthorizationPolicy {}/{} selects no workload; it has no effect",
                    src.namespace, src.name
                ),
            );
        }
        for rule in &p.rules {
            let name = inbound_rule_name(&src.namespace, &src.name, rule.index);
            check_rule_name(
                &name,
                Location::new(&src.location.file, rule.line),
                &mut diags,
            );
            rule_names.push(name);
        }
        if rule_names.len() > rule_capacity {
            too_many_rules(
                rule_names.len(),
                "AuthorizationPolicy",
                &src.namespace,
                &src.name,
                &src.location,
                &mut diags,
            );
            return Err(sorted(diags));
        }
    }
    if diags.is_error() {
        return Err(sorted(diags));
    }

    let unresolved = dns_names
        .iter()
        .filter(|n| !resolved.contains_key(*n))
        .count();
    if unresolved > 0 {
        tracing::debug!(
            unresolved,
            "exact DNS names without addresses match nothing yet"
        );
    }

    let (binary_files, mut subjects) =
        compile_subjects(&policies, &selections, binaries, &mut workloads);
    if binary_files.len() > MAX_BINARIES_PER_SLOT as usize
        || subjects.len() > MAX_SUBJECTS_PER_SLOT as usize
    {
        let at = policies
            .iter()
            .find(|p| !p.binaries.is_empty())
            .map(|p| p.location.clone());
        diags.error(
            at.unwrap_or_else(|| Location::new("<config>", 0)),
            format!(
                "binary-scoped policies name {} executables and {} workload × binary subjects; the kernel holds at most {MAX_BINARIES_PER_SLOT} and {MAX_SUBJECTS_PER_SLOT}",
                binary_files.len(),
                subjects.len()
            ),
        );
        return Err(sorted(diags));
    }
    let rule_ids = RuleIds::assign(previous_rule_ids, rule_names.iter().map(String::as_str));
    let mut rules = Vec::with_capacity(rule_names.len());
    let mut table = TableBuilder::default();
    let mut sni = sni::SniBuilder::default();
    let mut names = rule_names.iter();
    for (pi, (p, selected)) in policies.iter().zip(&selections).enumerate() {
        let mut ids = Vec::with_capacity(p.rules.len());
        for (index, rule) in p.rules.iter().enumerate() {
            // Every name was just assigned an id; the guard only keeps this path panic-free.
            let Some((name, id)) = names.next().and_then(|n| Some((n, rule_ids.id(n)?))) else {
                continue;
            };
            ids.push(id);
            rules.push(RuleInfo {
                id,
                name: name.clone(),
                kind: RuleKind::Egress,
                policy_namespace: p.namespace.clone(),
                policy_name: p.name.clone(),
                rule_index: index,
                action: p.action,
                location: Location::new(&p.location.file, rule.line),
            });
        }
        let keys_per_rule: Vec<Vec<(u16, Prefix)>> =
            p.rules.iter().map(|r| rule_keys(r, resolved)).collect();
        let rules_with_ids: Vec<_> = p.rules.iter().zip(ids.iter().copied()).collect();
        for (w, workload_id) in targets(pi, p, selected, &workloads, &subjects) {
            sni.add(p, workload_id, &rules_with_ids, resolved);
            for (keys, &id) in keys_per_rule.iter().zip(&ids) {
                for &(port, prefix) in keys {
                    table.insert(
                        EntryKey {
                            workload_id,
                            port,
                            prefix,
                        },
                        p.action,
                        id,
                    );
                }
            }
            if table.len() > MAX_EGRESS_ENTRIES_PER_SLOT as usize {
                diags.error(
                    p.location.clone(),
                    format!(
                        "too many egress table entries: more than {MAX_EGRESS_ENTRIES_PER_SLOT} at EgressPolicy {}/{} (workload {}/{}); reduce the rules or the workloads they select",
                        p.namespace, p.name, workloads[w].namespace, workloads[w].name
                    ),
                );
                return Err(sorted(diags));
            }
        }
    }
    table.fold();
    let (sni_rules, sni_required) = sni.finish();

    // Inbound: rule ids per AuthorizationPolicy, in rule order.
    let mut authz_ids: Vec<Vec<u32>> = Vec::with_capacity(authz.len());
    for p in &authz {
        let src = p.source;
        let mut ids = Vec::with_capacity(p.rules.len());
        for rule in &p.rules {
            let Some((name, id)) = names.next().and_then(|n| Some((n, rule_ids.id(n)?))) else {
                continue;
            };
            ids.push(id);
            rules.push(RuleInfo {
                id,
                name: name.clone(),
                kind: RuleKind::Inbound,
                policy_namespace: src.namespace.clone(),
                policy_name: src.name.clone(),
                rule_index: rule.index,
                action: p.action,
                location: Location::new(&src.location.file, rule.line),
            });
        }
        authz_ids.push(ids);
    }
    let Ok(inbound) = compile_inbound(
        &authz,
        &authz_ids,
        &authz_selections,
        &workloads,
        &mut diags,
    ) else {
        return Err(sorted(diags));
    };

    let mut egress: Vec<(EntryKey, RuleMatch)> = table.keys.into_iter().zip(table.values).collect();
    egress.sort_unstable_by_key(|(k, _)| *k);
    let egress = egress
        .into_iter()
        .map(|(k, rules)| EgressEntry {
            workload_id: k.workload_id,
            port: k.port,
            addr: k.prefix.addr_bytes(),
            prefix_len: k.prefix.prefix_len(),
            rules,
        })
        .collect::<Vec<_>>();
    rules.sort_by_key(|r| r.id);
    tracing::debug!(
        workloads = workloads.len(),
        rules = rules.len(),
        entries = egress.len(),
        "egress policy compiled"
    );
    let dns_watch = dns_watch::build(&mut workloads, &mut subjects, &sni_rules);
    Ok(CompiledPolicy {
        workloads,
        egress,
        inbound,
        identities,
        rules,
        rule_ids,
        dns_names,
        binary_patterns: binary_patterns(config),
        binaries: binary_files,
        subjects,
        sni_rules,
        sni_required,
        dns_watch,
        warnings: diags,
        index: OnceLock::new(),
        inbound_index: OnceLock::new(),
    })
}

/// `IDENTITIES`: workload addresses → ids. Two workloads with one address are an error (the
/// kernel could not tell them apart), reported at the second with the first named.
fn compile_identities(
    config: &[Workload],
    compiled: &[CompiledWorkload],
    diags: &mut Diagnostics,
) -> Vec<([u8; 16], u32)> {
    let ids: HashMap<(&str, &str), u32> = compiled
        .iter()
        .map(|w| ((w.namespace.as_str(), w.name.as_str()), w.workload_id))
        .collect();
    let mut seen: HashMap<u128, &Workload> = HashMap::new();
    let mut out = Vec::new();
    for w in config {
        let Some(ip) = w.address else { continue };
        let bits = to_bits(ip);
        if let Some(first) = seen.get(&bits) {
            diags.error(
                w.location.clone(),
                format!(
                    "WorkloadEntry {}/{}: address {ip} is already the address of WorkloadEntry {}/{} (at {}); a source address must name one workload",
                    w.namespace, w.name, first.namespace, first.name, first.location
                ),
            );
            continue;
        }
        seen.insert(bits, w);
        let Some(&id) = ids.get(&(w.namespace.as_str(), w.name.as_str())) else {
            continue;
        };
        if out.len() == MAX_IDENTITIES_PER_SLOT as usize {
            diags.error(
                w.location.clone(),
                format!(
                    "too many workload addresses: WorkloadEntry {}/{} exceeds the kernel's limit of {MAX_IDENTITIES_PER_SLOT}",
                    w.namespace, w.name
                ),
            );
            break;
        }
        out.push((bits.to_be_bytes(), id));
    }
    out.sort_unstable();
    out
}

/// The `INBOUND_RULES` entries of every workload selected by an AuthorizationPolicy. Workloads
/// selected by the same policies share one compiled set of groups.
fn compile_inbound(
    policies: &[inbound::L4Policy<'_>],
    ids: &[Vec<u32>],
    selections: &[Vec<usize>],
    workloads: &[CompiledWorkload],
    diags: &mut Diagnostics,
) -> Result<Vec<InboundEntry>, ()> {
    let peers: Vec<inbound::Peer<'_>> = std::iter::once(inbound::Peer {
        identity: identities::UNKNOWN,
        principal: None,
        namespace: None,
    })
    .chain(workloads.iter().map(|w| inbound::Peer {
        identity: w.workload_id,
        principal: Some(w.principal.as_str()),
        namespace: Some(w.namespace.as_str()),
    }))
    .collect();
    let mut classes: HashMap<inbound::ClassKey, Vec<inbound::GroupEntry>> = HashMap::new();
    let mut out: Vec<InboundEntry> = Vec::new();
    for (w, selected) in workloads.iter().zip(selections) {
        if selected.is_empty() {
            continue;
        }
        let key = inbound::class_key(selected.clone(), policies, w.address);
        let groups = classes.entry(key).or_insert_with(|| {
            let rules: Vec<inbound::OrderedRule<'_>> = selected
                .iter()
                .flat_map(|&pi| {
                    let p = &policies[pi];
                    p.rules
                        .iter()
                        .zip(&ids[pi])
                        .map(|(rule, &id)| inbound::OrderedRule {
                            rule,
                            action: p.action,
                            id,
                        })
                })
                .collect();
            inbound::compile_groups(&rules, w.address, &peers)
        });
        out.extend(
            groups
                .iter()
                .map(|&(identity, port, prefix, rules)| InboundEntry {
                    workload_id: w.workload_id,
                    identity,
                    port,
                    addr: prefix.addr_bytes(),
                    prefix_len: prefix.prefix_len(),
                    rules,
                }),
        );
        if out.len() > MAX_INBOUND_ENTRIES_PER_SLOT as usize {
            let first = policies[selected[0]].source;
            let names: Vec<String> = selected
                .iter()
                .map(|&pi| {
                    format!(
                        "{}/{}",
                        policies[pi].source.namespace, policies[pi].source.name
                    )
                })
                .collect();
            diags.error(
                first.location.clone(),
                format!(
                    "too many inbound table entries: more than {MAX_INBOUND_ENTRIES_PER_SLOT} at workload {}/{} (selected by AuthorizationPolicy {}); reduce the rules, the identities and ports they distinguish, or the workloads they select",
                    w.namespace,
                    w.name,
                    names.join(", ")
                ),
            );
            return Err(());
        }
    }
    out.sort_unstable_by_key(|e| (e.workload_id, e.identity, e.port, e.addr, e.prefix_len));
    tracing::debug!(entries = out.len(), "inbound policy compiled");
    Ok(out)
}

fn sorted(mut diags: Diagnostics) -> Diagnostics {
    diags.sort();
    diags
}

/// Workloads in (namespace, name) order with ids 1.., flags still empty.
fn compile_workloads(
    workloads: &[Workload],
    settings: &Settings,
    diags: &mut Diagnostics,
) -> Vec<CompiledWorkload> {
    let mut sorted: Vec<&Workload> = workloads.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    if let Some(w) = sorted.get(MAX_WORKLOADS as usize) {
        diags.error(
            w.location.clone(),
            format!(
                "too many workloads: WorkloadEntry {}/{} exceeds the kernel's limit of {MAX_WORKLOADS}",
                w.namespace, w.name
            ),
        );
    }
    sorted
        .into_iter()
        .zip(1u32..)
        .map(|(w, workload_id)| CompiledWorkload {
            workload_id,
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            cgroup: w.cgroup.clone(),
            netns: w.netns.clone(),
            flags: 0,
            principal: format!(
                "{}/ns/{}/sa/{}",
                settings.trust_domain, w.namespace, w.service_account
            ),
            labels: w.labels.clone(),
            address: w.address,
        })
        .collect()
}

/// True if `policy` applies to `workload`: same namespace (or the root namespace) and every
/// selector label present.
pub(crate) fn selects(
    policy: &EgressPolicy,
    workload: &CompiledWorkload,
    settings: &Settings,
) -> bool {
    in_scope(&policy.namespace, &policy.match_labels, workload, settings)
}

fn in_scope(
    namespace: &str,
    match_labels: &BTreeMap<String, String>,
    workload: &CompiledWorkload,
    settings: &Settings,
) -> bool {
    (namespace == workload.namespace || namespace == settings.root_namespace)
        && labels_match(match_labels, &workload.labels)
}

/// The rule count passed the kernel's capacity at this policy.
fn too_many_rules(
    count: usize,
    kind: &str,
    ns: &str,
    name: &str,
    at: &Location,
    diags: &mut Diagnostics,
) {
    let capacity = MAX_RULES - FIRST_RULE_ID;
    diags.error(
        at.clone(),
        format!(
            "too many rules: {count} at {kind} {ns}/{name}, the kernel holds at most {capacity}"
        ),
    );
}

/// Rule names are kept in the kernel (RULE_NAMES) so counters survive restarts; they must fit.
fn check_rule_name(name: &str, at: Location, diags: &mut Diagnostics) {
    if name.len() > RULE_NAME_LEN {
        diags.error(
            at,
            format!(
                "rule name `{name}` is longer than {RULE_NAME_LEN} bytes, the kernel's rule name limit; use a shorter namespace or policy name"
            ),
        );
    }
}

/// Warns about binary patterns that name no executable now: the policy applies to no process
/// until one exists (the agent re-resolves them periodically).
fn warn_unresolved_binaries(
    policy: &EgressPolicy,
    binaries: &BinaryResolutions,
    diags: &mut Diagnostics,
) {
    for b in &policy.binaries {
        let text = binaries::pattern_text(&b.value);
        if binaries.get(&text).is_none_or(Vec::is_empty) {
            diags.warning(
                Location::new(&policy.location.file, b.line),
                format!(
                    "EgressPolicy {}/{}: binary `{text}` names no executable file now; the policy applies to it once it exists",
                    policy.namespace, policy.name
                ),
            );
        }
    }
}

/// The workload × binary subjects, and each executable's binary id (see [`binaries`]).
fn compile_subjects(
    policies: &[&EgressPolicy],
    selections: &[Vec<usize>],
    resolved: &BinaryResolutions,
    workloads: &mut [CompiledWorkload],
) -> (Vec<(FileId, u32)>, Vec<CompiledSubject>) {
    let classes = binaries::classify(policies, resolved);
    let mut subjects = Vec::new();
    let mut next_id = workloads.len() as u32 + 1;
    for (w, workload) in workloads.iter_mut().enumerate() {
        for (&binary_id, class) in &classes.policies {
            let applying: BTreeSet<usize> = class
                .iter()
                .copied()
                .filter(|&pi| selections[pi].contains(&w))
                .collect();
            if applying.is_empty() {
                continue;
            }
            let allow = applying
                .iter()
                .any(|&pi| policies[pi].action == Action::Allow);
            workload.flags |= workload_flags::HAS_BINARY_RULES;
            let flags = workload.flags & workload_flags::HAS_ALLOW_POLICY
                | if allow {
                    workload_flags::HAS_ALLOW_POLICY
                } else {
                    0
                };
            subjects.push(CompiledSubject {
                workload_id: workload.workload_id,
                binary_id,
                subject_id: next_id,
                flags,
                policies: applying,
            });
            next_id += 1;
        }
    }
    (classes.files, subjects)
}

/// The table ids policy `pi` writes entries for, with the index of the workload each belongs
/// to: a policy for every process reaches the workloads it selects and their subjects; a
/// binary-scoped policy reaches only the subjects of its binaries.
fn targets(
    pi: usize,
    policy: &EgressPolicy,
    selected: &[usize],
    workloads: &[CompiledWorkload],
    subjects: &[CompiledSubject],
) -> Vec<(usize, u32)> {
    let index_of = |workload_id: u32| workloads.iter().position(|w| w.workload_id == workload_id);
    let mut out = Vec::new();
    if policy.binaries.is_empty() {
        for &w in selected {
            out.push((w, workloads[w].workload_id));
            for s in subjects
                .iter()
                .filter(|s| s.workload_id == workloads[w].workload_id)
            {
                out.push((w, s.subject_id));
            }
        }
    } else {
        for s in subjects.iter().filter(|s| s.policies.contains(&pi)) {
            if let Some(w) = index_of(s.workload_id) {
                out.push((w, s.subject_id));
            }
        }
    }
    out
}

/// Warns about `*.suffix` hosts too deep to ever match: names are matched by their nearest
/// `MAX_SUFFIXES` suffixes (TLS server names and names learned from DNS answers alike).
fn warn_unenforced_hosts(policy: &EgressPolicy, diags: &mut Diagnostics) {
    for host in policy
        .rules
        .iter()
        .flat_map(|r| &r.to)
        .flat_map(|t| &t.hosts)
    {
        let HostMatch::Suffix(suffix) = &host.matches else {
            continue;
        };
        if sni_policy::suffix_labels(suffix) > sni_policy::MAX_SUFFIXES {
            diags.warning(
                Location::new(&policy.location.file, host.line),
                format!(
                    "EgressPolicy {}/{}: wildcard host `{}` has more than {} labels after `*.` and can never match a name",
                    policy.namespace, policy.name, host.text, sni_policy::MAX_SUFFIXES
                ),
            );
        }
    }
}

/// The (port, prefix) keys a rule matches, deduplicated. No `to` at all matches everything.
fn rule_keys(rule: &crate::model::EgressRule, resolved: &Resolutions) -> Vec<(u16, Prefix)> {
    let mut keys = BTreeSet::new();
    if rule.to.is_empty() {
        keys.insert((0, Prefix::ANY));
    }
    for target in &rule.to {
        let prefixes: Vec<Prefix> = if target.hosts.is_empty() {
            vec![Prefix::ANY]
        } else {
            target
                .hosts
                .iter()
                .flat_map(|h| host_prefixes(&h.matches, resolved))
                .collect()
        };
        let ports: Vec<u16> = if target.ports.is_empty() {
            vec![0]
        } else {
            target
                .ports
                .iter()
                .map(|p| match p.value {
                    PortMatch::Any => 0,
                    PortMatch::Port(n) => n,
                })
                .collect()
        };
        for &port in &ports {
            for &prefix in &prefixes {
                keys.insert((port, prefix));
            }
        }
    }
    keys.into_iter().collect()
}

/// The prefixes a host stands for today.
fn host_prefixes(host: &HostMatch, resolved: &Resolutions) -> Vec<Prefix> {
    match host {
        HostMatch::Any => vec![Prefix::ANY],
        HostMatch::Prefix(p) => vec![*p],
        HostMatch::Exact(name) => resolved
            .get(name.as_str())
            .map(|ips| ips.iter().map(|ip| Prefix::host(*ip)).collect())
            .unwrap_or_default(),
        // Not learnable yet: matches nothing (warned about at compile).
        HostMatch::Suffix(_) => Vec::new(),
    }
}
