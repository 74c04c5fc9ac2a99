//! `control::AuthorizationPolicy` → `istio.security.Authorization`, as istiod writes it.
//!
//! Each YAML rule becomes one wire rule (so rule `#i` keeps its index and name): one clause of
//! the `from` sources, one clause of the `to` operations, and one single-match clause per
//! `when` condition — the shape `convert/authorization.rs` reads back into the same fields.
//! A `from` or `to` with an entry that sets nothing always holds, so it gives no clause (an
//! empty wire match would match nothing instead). HTTP-only fields, CUSTOM and wildcards the
//! wire cannot carry are errors: the encoder never drops or changes what a rule means.

use control::{AuthorizationAction, AuthorizationPolicy, AuthorizationRule, Settings, Spanned};

use super::values;
use crate::proto::authorization::{Action, Authorization, Clause, Match, Rule, Scope};

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

/// The wire form, or every reason it has none (each prefixed with the field's path).
pub(crate) fn encode(
    p: &AuthorizationPolicy,
    settings: &Settings,
) -> Result<Authorization, Vec<String>> {
    let mut errors = Vec::new();
    // AUDIT is `dry_run`: evaluated and reported, never enforced (`convert` reads any dry-run
    // policy as AUDIT, whatever its action).
    let (action, dry_run) = match p.action {
        AuthorizationAction::Allow => (Action::Allow, false),
        AuthorizationAction::Deny => (Action::Deny, false),
        AuthorizationAction::Audit => (Action::Allow, true),
        AuthorizationAction::Custom => {
            errors.push(format!(
                "spec.action: CUSTOM (provider `{}`) has no form in istio.security.Authorization",
                p.provider.as_deref().unwrap_or_default()
            ));
            (Action::Allow, false)
        }
    };
    let rules = p
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(&format!("spec.rules[{i}]"), r, &mut errors))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Authorization {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        scope: scope(p, settings) as i32,
        action: action as i32,
        rules,
        dry_run,
    })
}

fn rule(path: &str, r: &AuthorizationRule, errors: &mut Vec<String>) -> Rule {
    let mut clauses = Vec::new();
    let from: Vec<Match> = r
        .from
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("{path}.from[{i}].source");
            http_only(&at, "requestPrincipals", &s.request_principals, errors);
            http_only(
                &at,
                "notRequestPrincipals",
                &s.not_request_principals,
                errors,
            );
            http_only(&at, "remoteIpBlocks", &s.remote_ip_blocks, errors);
            http_only(&at, "notRemoteIpBlocks", &s.not_remote_ip_blocks, errors);
            Match {
                principals: strings(&at, "principals", &s.principals, errors),
                not_principals: strings(&at, "notPrincipals", &s.not_principals, errors),
                namespaces: strings(&at, "namespaces", &s.namespaces, errors),
                not_namespaces: strings(&at, "notNamespaces", &s.not_namespaces, errors),
                source_ips: s.ip_blocks.iter().map(|b| values::cidr(&b.value)).collect(),
                not_source_ips: s
                    .not_ip_blocks
                    .iter()
                    .map(|b| values::cidr(&b.value))
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    clause_unless_always(from, &mut clauses);
    let to: Vec<Match> =
        r.to.iter()
            .enumerate()
            .map(|(i, o)| {
                let at = format!("{path}.to[{i}].operation");
                http_only(&at, "hosts", &o.hosts, errors);
                http_only(&at, "notHosts", &o.not_hosts, errors);
                http_only(&at, "methods", &o.methods, errors);
                http_only(&at, "notMethods", &o.not_methods, errors);
                http_only(&at, "paths", &o.paths, errors);
                http_only(&at, "notPaths", &o.not_paths, errors);
                Match {
                    destination_ports: o.ports.iter().map(|p| u32::from(p.value)).collect(),
                    not_destination_ports: o.not_ports.iter().map(|p| u32::from(p.value)).collect(),
                    ..Default::default()
                }
            })
            .collect();
    clause_unless_always(to, &mut clauses);
    for (i, c) in r.when.iter().enumerate() {
        let at = format!("{path}.when[{i}]");
        let mut m = Match::default();
        let (values, not_values) = (&c.values, &c.not_values);
        match c.key.as_str() {
            "source.principal" => {
                m.principals = strings(&at, "values", values, errors);
                m.not_principals = strings(&at, "notValues", not_values, errors);
            }
            "source.namespace" => {
                m.namespaces = strings(&at, "values", values, errors);
                m.not_namespaces = strings(&at, "notValues", not_values, errors);
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
            key => errors.push(format!(
                "{at}.key: `{key}` is HTTP-only and has no form in istio.security.Authorization"
            )),
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

fn http_only<T>(at: &str, field: &str, values: &[Spanned<T>], errors: &mut Vec<String>) {
    if !values.is_empty() {
        errors.push(format!(
            "{at}.{field}: HTTP-only; istio.security.Authorization has no form for it"
        ));
    }
}

fn strings(
    at: &str,
    field: &str,
    values: &[Spanned<String>],
    errors: &mut Vec<String>,
) -> Vec<crate::proto::authorization::StringMatch> {
    parsed(at, field, values, values::string_match, errors)
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
