//! `control::AuthorizationPolicy` → `istio.security.Authorization`, as istiod writes it.
//!
//! Each YAML rule becomes one wire rule (so rule `#i` keeps its index and name): one clause of
//! the `from` sources, one clause of the `to` operations, and one single-match clause per
//! `when` condition — the shape `convert/authorization.rs` reads back into the same fields.
//! A `from` or `to` with an entry that sets nothing always holds, so it gives no clause (an
//! empty wire match would match nothing instead).
//!
//! What meshward cannot evaluate is lowered as istiod lowers it for ztunnel, which is also what
//! control's compiler does with the YAML (docs/policy-reference.md, "HTTP-only fields",
//! "CUSTOM"), so `to_config` of the result decides as the YAML does: a CUSTOM policy is not
//! sent; an ALLOW rule using an HTTP-only field is dropped (a rule that never matches where a
//! later rule needs its index); DENY and AUDIT rules are sent without their HTTP-only fields.

use control::{AuthorizationAction, AuthorizationPolicy, AuthorizationRule, Settings, Spanned};

use super::values;
use crate::proto::authorization::{
    Action, Address, Authorization, Clause, Match, Rule, Scope, StringMatch,
};

/// The scope istiod gives a policy: every namespace from the root namespace without a
/// selector, its own namespace without one, else the workloads its selector selects.
pub(crate) fn scope(p: &AuthorizationPolicy, settings: &Settings) -> Scope {
    match (
        p.match_labels.is_empty(),
        p.namespace == settings.root_namespace,
    ) {
        (false, _) => Scope::WorkloadSelector,
        (true, true) => Scope::Global,
        (true, false) => Scope::Namespace,
    }
}

/// The wire form, or every reason it has none (each prefixed with the field's path). `None`
/// for CUSTOM: istiod hands such a policy to an external authorization provider and sends
/// ztunnel nothing for it; meshward ignores it too (it neither allows nor denies, and does not
/// make its workloads default-deny), so no resource says the same.
pub(crate) fn encode(
    p: &AuthorizationPolicy,
    settings: &Settings,
) -> Result<Option<Authorization>, Vec<String>> {
    let mut errors = Vec::new();
    // AUDIT is `dry_run`: evaluated and reported, never enforced (`convert` reads any dry-run
    // policy as AUDIT, whatever its action).
    let (action, dry_run) = match p.action {
        AuthorizationAction::Allow => (Action::Allow, false),
        AuthorizationAction::Deny => (Action::Deny, false),
        AuthorizationAction::Audit => (Action::Allow, true),
        AuthorizationAction::Custom => return Ok(None),
    };
    // An ALLOW rule using HTTP-only fields is dropped (it allows nothing), as istiod does for
    // ztunnel and as control's compiler does with the YAML; DENY and AUDIT rules are sent
    // without those fields (`rule`).
    let mut rules: Vec<Option<Rule>> = p
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let dropped = p.action == AuthorizationAction::Allow && uses_http_only(r);
            (!dropped).then(|| rule(&format!("spec.rules[{i}]"), r, &mut errors))
        })
        .collect();
    // Rule `#i` is named after its index, in the YAML and in what `to_config` reads back (the
    // position in `rules`), so a dropped rule cannot simply be left out: every later rule
    // would take the index before its own and report another rule's name. Dropped rules at
    // the end are left out (no rule follows them); any other dropped rule keeps its place as a
    // rule that never matches, which admits nothing, exactly as the dropped rule. An ALLOW
    // policy left with no rules at all still selects its workloads and allows nothing to them,
    // on the wire (ztunnel: no ALLOW rule matches) as in control (`rules: []` allows nothing).
    while rules.last().is_some_and(Option::is_none) {
        rules.pop();
    }
    let rules = rules
        .into_iter()
        .map(|r| r.unwrap_or_else(never_matches))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Some(Authorization {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        scope: scope(p, settings) as i32,
        action: action as i32,
        rules,
        dry_run,
    }))
}

/// Condition keys that are L4 (control's compiler enforces these; every other key is HTTP-only).
const L4_KEYS: &[&str] = &[
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
];

/// Whether the rule sets an HTTP-only field or condition key, as control's compiler decides it
/// (a field counts when its list is not empty).
fn uses_http_only(r: &AuthorizationRule) -> bool {
    r.from.iter().any(|s| {
        !(s.request_principals.is_empty()
            && s.not_request_principals.is_empty()
            && s.remote_ip_blocks.is_empty()
            && s.not_remote_ip_blocks.is_empty())
    }) || r.to.iter().any(|o| {
        !(o.hosts.is_empty()
            && o.not_hosts.is_empty()
            && o.methods.is_empty()
            && o.not_methods.is_empty()
            && o.paths.is_empty()
            && o.not_paths.is_empty())
    }) || r.when.iter().any(|c| !L4_KEYS.contains(&c.key.as_str()))
}

/// A rule that matches no connection, holding the place of a dropped ALLOW rule: one clause
/// whose only match needs a source outside every IPv4 and every IPv6 address. ztunnel reads
/// it so (each family's whole space is excluded), and so does `to_config`: a source with
/// `notIpBlocks: [0.0.0.0/0, ::/0]`, which no client address satisfies. (An empty match would
/// also never match on the wire, but `to_config` leaves such a rule out, which renumbers.)
fn never_matches() -> Rule {
    let everything = |address: Vec<u8>| Address { address, length: 0 };
    Rule {
        clauses: vec![Clause {
            matches: vec![Match {
                not_source_ips: vec![everything(vec![0; 4]), everything(vec![0; 16])],
                ..Default::default()
            }],
        }],
    }
}

/// One wire rule for a YAML rule. HTTP-only fields and condition keys are left out: this is
/// only called for rules that are enforced without them (DENY, AUDIT) or that have none. A
/// source or operation left with nothing set then always holds, as in control's compiler (a
/// DENY operation of only `methods` matches every operation), and an HTTP-only condition
/// holds too (the compiler skips it).
fn rule(path: &str, r: &AuthorizationRule, errors: &mut Vec<String>) -> Rule {
    let mut clauses = Vec::new();
    let from: Vec<Match> = r
        .from
        .iter()
        .map(|s| Match {
            principals: strings(&s.principals),
            not_principals: strings(&s.not_principals),
            namespaces: strings(&s.namespaces),
            not_namespaces: strings(&s.not_namespaces),
            source_ips: s.ip_blocks.iter().map(|b| values::cidr(&b.value)).collect(),
            not_source_ips: s
                .not_ip_blocks
                .iter()
                .map(|b| values::cidr(&b.value))
                .collect(),
            ..Default::default()
        })
        .collect();
    clause_unless_always(from, &mut clauses);
    let to: Vec<Match> =
        r.to.iter()
            .map(|o| Match {
                destination_ports: o.ports.iter().map(|p| u32::from(p.value)).collect(),
                not_destination_ports: o.not_ports.iter().map(|p| u32::from(p.value)).collect(),
                ..Default::default()
            })
            .collect();
    clause_unless_always(to, &mut clauses);
    for (i, c) in r.when.iter().enumerate() {
        let at = format!("{path}.when[{i}]");
        let mut m = Match::default();
        let (values, not_values) = (&c.values, &c.not_values);
        match c.key.as_str() {
            "source.principal" => {
                m.principals = strings(values);
                m.not_principals = strings(not_values);
            }
            "source.namespace" => {
                m.namespaces = strings(values);
                m.not_namespaces = strings(not_values);
            }
            "source.ip" => {
                m.source_ips = parsed(&at, "values", values, values::cidr_text, errors);
                m.not_source_ips = parsed(&at, "notValues", not_values, values::cidr_text, errors);
            }
            "destination.ip" => {
                m.destination_ips = parsed(&at, "values", values, values::cidr_text, errors);
                m.not_destination_ips =
                    parsed(&at, "notValues", not_values, values::cidr_text, errors);
            }
            "destination.port" => {
                m.destination_ports = parsed(&at, "values", values, values::port_text, errors);
                m.not_destination_ports =
                    parsed(&at, "notValues", not_values, values::port_text, errors);
            }
            // HTTP-only: not evaluated at L4, so the condition holds (DENY/AUDIT enforced
            // without it).
            _ => {}
        }
        // A condition without values holds; an empty wire match would never match.
        if m != Match::default() {
            clauses.push(Clause { matches: vec![m] });
        }
    }
    Rule { clauses }
}

/// The matches as one clause (OR), unless one of them sets nothing: that one always holds, and
/// so does the clause, which is then left out.
fn clause_unless_always(matches: Vec<Match>, clauses: &mut Vec<Clause>) {
    if !matches.is_empty() && !matches.iter().any(|m| *m == Match::default()) {
        clauses.push(Clause { matches });
    }
}

fn strings(list: &[Spanned<String>]) -> Vec<StringMatch> {
    list.iter()
        .map(|v| values::string_match(&v.value))
        .collect()
}

fn parsed<T>(
    at: &str,
    field: &str,
    values: &[Spanned<String>],
    parse: impl Fn(&str) -> Result<T, String>,
    errors: &mut Vec<String>,
) -> Vec<T> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            parse(&v.value)
                .map_err(|e| errors.push(format!("{at}.{field}[{i}]: {e}")))
                .ok()
        })
        .collect()
}
