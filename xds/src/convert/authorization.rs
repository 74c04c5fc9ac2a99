//! `istio.security.Authorization` → `control::AuthorizationPolicy`.
//!
//! The wire form is: rules OR, clauses AND, matches OR, fields AND. The YAML form is: rules OR,
//! each `from` (sources OR) AND `to` (operations OR) AND every `when` condition. istiod writes a
//! YAML rule as one clause of `from` matches, one clause of `to` matches and a single-match clause
//! per condition; this conversion reads that shape back into the same fields. Any other clause
//! of several matches is multiplied out: each choice of one match per such clause becomes a rule
//! whose conditions are the chosen matches' fields.

use control::{
    AuthorizationAction, AuthorizationPolicy, AuthorizationRule, Condition, Operation, Prefix,
    Settings, Source, Spanned,
};

use super::problems::Problems;
use super::values;
use crate::proto::authorization::{Action, Authorization, Match, Rule, Scope};

/// A policy and how far it reaches.
pub(crate) struct ConvertedPolicy {
    pub policy: AuthorizationPolicy,
    pub scope: Scope,
}

/// How many rules one wire rule may become when its clauses are multiplied out.
const MAX_RULES_PER_WIRE_RULE: usize = 64;

pub(crate) fn convert(
    a: &Authorization,
    settings: &Settings,
    p: &mut Problems,
) -> Option<ConvertedPolicy> {
    p.check("name", control::check_dns_subdomain(&a.name));
    p.check("namespace", control::check_dns_label(&a.namespace));
    let scope = p.check(
        "scope",
        Scope::try_from(a.scope).map_err(|_| {
            format!(
                "unknown value {} (expected GLOBAL, NAMESPACE or WORKLOAD_SELECTOR)",
                a.scope
            )
        }),
    );
    let action = p.check(
        "action",
        Action::try_from(a.action)
            .map_err(|_| format!("unknown value {} (expected ALLOW or DENY)", a.action)),
    );
    if scope == Some(Scope::Global) && a.namespace != settings.root_namespace {
        p.error(format!(
            "scope GLOBAL in namespace `{}`: meshward applies a policy to every namespace only from its root namespace `{}` (--root-namespace)",
            a.namespace, settings.root_namespace
        ));
    }
    let mut rules = Vec::new();
    for (i, rule) in a.rules.iter().enumerate() {
        rules.extend(convert_rule(&format!("rules[{i}]"), rule, p));
    }
    if p.has_errors() {
        return None;
    }
    let action = match (a.dry_run, action?) {
        (true, _) => AuthorizationAction::Audit,
        (false, Action::Allow) => AuthorizationAction::Allow,
        (false, Action::Deny) => AuthorizationAction::Deny,
    };
    Some(ConvertedPolicy {
        policy: AuthorizationPolicy {
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            // Filled in from the scope once every workload is known (`scope.rs`).
            match_labels: Default::default(),
            action,
            provider: None,
            rules,
            location: p.location(),
        },
        scope: scope?,
    })
}

fn convert_rule(path: &str, rule: &Rule, p: &mut Problems) -> Vec<AuthorizationRule> {
    let mut from: Option<Vec<Source>> = None;
    let mut to: Option<Vec<Operation>> = None;
    let mut when: Vec<Condition> = Vec::new();
    let mut multiplied: Vec<Vec<MatchFields>> = Vec::new();
    let mut never = false;
    for (c, clause) in rule.clauses.iter().enumerate() {
        // A clause without matches holds; a match without fields matches nothing (ztunnel).
        if clause.matches.is_empty() {
            continue;
        }
        let matches: Vec<MatchFields> = clause
            .matches
            .iter()
            .enumerate()
            .map(|(m, x)| MatchFields::read(&format!("{path}.clauses[{c}].matches[{m}]"), x, p))
            .filter(|f| !f.is_empty())
            .collect();
        if matches.is_empty() {
            p.warning(format!(
                "{path}.clauses[{c}] has only empty matches, so the rule never matches; it is left out"
            ));
            never = true;
            continue;
        }
        let sources: Option<Vec<Source>> = matches.iter().map(MatchFields::as_source).collect();
        let operations: Option<Vec<Operation>> =
            matches.iter().map(MatchFields::as_operation).collect();
        match (sources, operations) {
            (Some(s), _) if from.is_none() => from = Some(s),
            (_, Some(o)) if to.is_none() => to = Some(o),
            _ if matches.len() == 1 => when.extend(matches[0].as_conditions()),
            _ => multiplied.push(matches),
        }
    }
    if never || p.has_errors() {
        return Vec::new();
    }
    let count = multiplied
        .iter()
        .try_fold(1usize, |n, c| n.checked_mul(c.len()))
        .filter(|n| *n <= MAX_RULES_PER_WIRE_RULE);
    let Some(count) = count else {
        p.error(format!(
            "{path}: its clauses of several matches multiply out to more than {MAX_RULES_PER_WIRE_RULE} rules"
        ));
        return Vec::new();
    };
    if count > 1 {
        p.warning(format!(
            "{path} becomes {count} rules: clauses of several matches mixing source and destination fields are multiplied out"
        ));
    }
    let mut out = vec![AuthorizationRule {
        from: from.unwrap_or_default(),
        to: to.unwrap_or_default(),
        when,
        line: 0,
    }];
    for clause in &multiplied {
        out = out
            .iter()
            .flat_map(|r| {
                clause.iter().map(move |m| {
                    let mut r = r.clone();
                    r.when.extend(m.as_conditions());
                    r
                })
            })
            .collect();
    }
    out
}

/// One match, its values in control's forms. Lists are OR-ed, fields AND-ed.
#[derive(Default)]
struct MatchFields {
    namespaces: Vec<String>,
    not_namespaces: Vec<String>,
    principals: Vec<String>,
    /// `service_accounts` as principal patterns; AND-ed with `principals`.
    account_principals: Vec<String>,
    /// `not_principals` and `not_service_accounts`: none may match either.
    not_principals: Vec<String>,
    source_ips: Vec<Prefix>,
    not_source_ips: Vec<Prefix>,
    destination_ips: Vec<Prefix>,
    not_destination_ips: Vec<Prefix>,
    ports: Vec<u16>,
    not_ports: Vec<u16>,
}

impl MatchFields {
    fn read(path: &str, m: &Match, p: &mut Problems) -> MatchFields {
        let strings = |p: &mut Problems, name: &str, list: &[_]| -> Vec<String> {
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    p.check(&format!("{path}.{name}[{i}]"), values::string_match(s))
                })
                .collect()
        };
        let accounts = |p: &mut Problems, name: &str, list: &[_]| -> Vec<String> {
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    p.check(&format!("{path}.{name}[{i}]"), values::service_account(s))
                })
                .collect()
        };
        let prefixes = |p: &mut Problems, name: &str, list: &[_]| -> Vec<Prefix> {
            let mut out = Vec::with_capacity(list.len());
            for (i, a) in list.iter().enumerate() {
                let at = format!("{path}.{name}[{i}]");
                if let Some((prefix, normalised)) = p.check(&at, values::prefix(a)) {
                    if normalised {
                        p.warning(format!("{at}: host bits are set; using {prefix}"));
                    }
                    out.push(prefix);
                }
            }
            out
        };
        let ports = |p: &mut Problems, name: &str, list: &[u32]| -> Vec<u16> {
            list.iter()
                .enumerate()
                .filter_map(|(i, v)| p.check(&format!("{path}.{name}[{i}]"), values::port(*v)))
                .collect()
        };
        let mut not_principals = strings(p, "not_principals", &m.not_principals);
        not_principals.extend(accounts(p, "not_service_accounts", &m.not_service_accounts));
        MatchFields {
            namespaces: strings(p, "namespaces", &m.namespaces),
            not_namespaces: strings(p, "not_namespaces", &m.not_namespaces),
            principals: strings(p, "principals", &m.principals),
            account_principals: accounts(p, "service_accounts", &m.service_accounts),
            not_principals,
            source_ips: prefixes(p, "source_ips", &m.source_ips),
            not_source_ips: prefixes(p, "not_source_ips", &m.not_source_ips),
            destination_ips: prefixes(p, "destination_ips", &m.destination_ips),
            not_destination_ips: prefixes(p, "not_destination_ips", &m.not_destination_ips),
            ports: ports(p, "destination_ports", &m.destination_ports),
            not_ports: ports(p, "not_destination_ports", &m.not_destination_ports),
        }
    }

    fn is_empty(&self) -> bool {
        self.has_no_source_fields() && self.has_no_destination_ips() && self.has_no_ports()
    }

    fn has_no_source_fields(&self) -> bool {
        self.namespaces.is_empty()
            && self.not_namespaces.is_empty()
            && self.principals.is_empty()
            && self.account_principals.is_empty()
            && self.not_principals.is_empty()
            && self.source_ips.is_empty()
            && self.not_source_ips.is_empty()
    }

    fn has_no_destination_ips(&self) -> bool {
        self.destination_ips.is_empty() && self.not_destination_ips.is_empty()
    }

    fn has_no_ports(&self) -> bool {
        self.ports.is_empty() && self.not_ports.is_empty()
    }

    /// As a `from[].source`, if it has source fields only and fits one (a source has one list
    /// of principals, so principals and service accounts together need conditions).
    fn as_source(&self) -> Option<Source> {
        if !self.has_no_destination_ips()
            || !self.has_no_ports()
            || (!self.principals.is_empty() && !self.account_principals.is_empty())
        {
            return None;
        }
        let principals = if self.principals.is_empty() {
            &self.account_principals
        } else {
            &self.principals
        };
        Some(Source {
            principals: spanned(principals),
            not_principals: spanned(&self.not_principals),
            namespaces: spanned(&self.namespaces),
            not_namespaces: spanned(&self.not_namespaces),
            ip_blocks: spanned(&self.source_ips),
            not_ip_blocks: spanned(&self.not_source_ips),
            ..Default::default()
        })
    }

    /// As a `to[].operation`, if it has ports only.
    fn as_operation(&self) -> Option<Operation> {
        if !self.has_no_source_fields() || !self.has_no_destination_ips() {
            return None;
        }
        Some(Operation {
            ports: spanned(&self.ports),
            not_ports: spanned(&self.not_ports),
            ..Default::default()
        })
    }

    /// Every field as a `when` condition (conditions are AND-ed, like the fields of a match).
    fn as_conditions(&self) -> Vec<Condition> {
        let texts = |v: &[Prefix]| v.iter().map(Prefix::to_string).collect::<Vec<_>>();
        let ports = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>();
        [
            condition("source.namespace", &self.namespaces, &self.not_namespaces),
            condition("source.principal", &self.principals, &self.not_principals),
            condition("source.principal", &self.account_principals, &[]),
            condition(
                "source.ip",
                &texts(&self.source_ips),
                &texts(&self.not_source_ips),
            ),
            condition(
                "destination.ip",
                &texts(&self.destination_ips),
                &texts(&self.not_destination_ips),
            ),
            condition(
                "destination.port",
                &ports(&self.ports),
                &ports(&self.not_ports),
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

fn condition(key: &str, values: &[String], not_values: &[String]) -> Option<Condition> {
    (!values.is_empty() || !not_values.is_empty()).then(|| Condition {
        key: key.to_string(),
        values: spanned(values),
        not_values: spanned(not_values),
        line: 0,
    })
}

/// Values without a source line (a resource has none).
fn spanned<T: Clone>(values: &[T]) -> Vec<Spanned<T>> {
    values
        .iter()
        .map(|v| Spanned {
            value: v.clone(),
            line: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Empty;
    use crate::proto::authorization::string_match::MatchType;
    use crate::proto::authorization::{Address, Clause, ServiceAccountMatch, StringMatch};
    use crate::resource::ResourceType;

    fn exact(s: &str) -> StringMatch {
        StringMatch {
            match_type: Some(MatchType::Exact(s.into())),
        }
    }
    fn prefix(s: &str) -> StringMatch {
        StringMatch {
            match_type: Some(MatchType::Prefix(s.into())),
        }
    }
    fn suffix(s: &str) -> StringMatch {
        StringMatch {
            match_type: Some(MatchType::Suffix(s.into())),
        }
    }
    fn presence() -> StringMatch {
        StringMatch {
            match_type: Some(MatchType::Presence(Empty {})),
        }
    }
    fn v4(a: [u8; 4], length: u32) -> Address {
        Address {
            address: a.to_vec(),
            length,
        }
    }
    fn account(ns: &str, sa: &str) -> ServiceAccountMatch {
        ServiceAccountMatch {
            namespace: ns.into(),
            service_account: sa.into(),
        }
    }
    fn clause(matches: Vec<Match>) -> Clause {
        Clause { matches }
    }
    fn policy(rules: Vec<Rule>) -> Authorization {
        Authorization {
            name: "p".into(),
            namespace: "ns1".into(),
            scope: Scope::Namespace as i32,
            action: Action::Allow as i32,
            rules,
            dry_run: false,
        }
    }
    fn run(a: &Authorization) -> (Option<ConvertedPolicy>, Problems) {
        let mut p = Problems::new(ResourceType::Authorization, "ns1/p");
        (convert(a, &Settings::default(), &mut p), p)
    }
    fn ok(a: &Authorization) -> AuthorizationPolicy {
        let (c, p) = run(a);
        assert!(!p.has_errors(), "{:?}", p.errors);
        c.unwrap().policy
    }
    fn errors(a: &Authorization) -> Vec<String> {
        let (c, p) = run(a);
        assert!(c.is_none());
        p.errors
    }
    fn texts<T: Clone>(v: &[Spanned<T>]) -> Vec<T> {
        v.iter().map(|s| s.value.clone()).collect()
    }
    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn source_fields_and_their_not_twins() {
        let m = Match {
            namespaces: vec![exact("ns2"), prefix("team-")],
            not_namespaces: vec![suffix("-test")],
            principals: vec![exact("cluster.local/ns/ns2/sa/a"), presence()],
            not_principals: vec![suffix("/sa/b")],
            not_service_accounts: vec![account("ns3", "c")],
            source_ips: vec![v4([10, 0, 0, 0], 8)],
            not_source_ips: vec![v4([10, 9, 0, 0], 16)],
            ..Default::default()
        };
        let p = ok(&policy(vec![Rule {
            clauses: vec![clause(vec![m])],
        }]));
        assert_eq!(p.rules.len(), 1);
        let r = &p.rules[0];
        assert!(r.to.is_empty() && r.when.is_empty());
        let s = &r.from[0];
        assert_eq!(texts(&s.namespaces), strs(&["ns2", "team-*"]));
        assert_eq!(texts(&s.not_namespaces), strs(&["*-test"]));
        assert_eq!(
            texts(&s.principals),
            strs(&["cluster.local/ns/ns2/sa/a", "*"])
        );
        assert_eq!(texts(&s.not_principals), strs(&["*/sa/b", "*/ns/ns3/sa/c"]));
        let prefixes =
            |v: &[Spanned<Prefix>]| v.iter().map(|s| s.value.to_string()).collect::<Vec<_>>();
        assert_eq!(prefixes(&s.ip_blocks), strs(&["10.0.0.0/8"]));
        assert_eq!(prefixes(&s.not_ip_blocks), strs(&["10.9.0.0/16"]));
        assert!(s.request_principals.is_empty() && s.remote_ip_blocks.is_empty());
    }

    #[test]
    fn service_accounts_become_principal_patterns() {
        let m = Match {
            service_accounts: vec![account("ns2", "a"), account("ns2", "b")],
            ..Default::default()
        };
        let p = ok(&policy(vec![Rule {
            clauses: vec![clause(vec![m])],
        }]));
        assert_eq!(
            texts(&p.rules[0].from[0].principals),
            strs(&["*/ns/ns2/sa/a", "*/ns/ns2/sa/b"])
        );
    }

    #[test]
    fn principals_and_service_accounts_together_are_two_conditions() {
        let m = Match {
            principals: vec![prefix("cluster.local/")],
            service_accounts: vec![account("ns2", "a")],
            ..Default::default()
        };
        let p = ok(&policy(vec![Rule {
            clauses: vec![clause(vec![m])],
        }]));
        let r = &p.rules[0];
        assert!(r.from.is_empty());
        assert_eq!(r.when.len(), 2);
        assert_eq!(r.when[0].key, "source.principal");
        assert_eq!(texts(&r.when[0].values), strs(&["cluster.local/*"]));
        assert_eq!(r.when[1].key, "source.principal");
        assert_eq!(texts(&r.when[1].values), strs(&["*/ns/ns2/sa/a"]));
    }

    #[test]
    fn ports_and_not_ports_are_an_operation() {
        let from = Match {
            namespaces: vec![exact("ns2")],
            ..Default::default()
        };
        let to = |ports: Vec<u32>, not: Vec<u32>| Match {
            destination_ports: ports,
            not_destination_ports: not,
            ..Default::default()
        };
        let p = ok(&policy(vec![Rule {
            clauses: vec![
                clause(vec![from]),
                clause(vec![to(vec![80, 443], vec![]), to(vec![], vec![8080])]),
            ],
        }]));
        let r = &p.rules[0];
        assert_eq!(r.from.len(), 1);
        assert_eq!(r.to.len(), 2);
        assert_eq!(texts(&r.to[0].ports), vec![80, 443]);
        assert!(r.to[0].not_ports.is_empty());
        assert_eq!(texts(&r.to[1].not_ports), vec![8080]);
    }

    #[test]
    fn single_match_clauses_become_conditions() {
        let dst = Match {
            destination_ips: vec![v4([10, 0, 0, 1], 32)],
            not_destination_ips: vec![v4([10, 0, 0, 2], 32)],
            ..Default::default()
        };
        let src = Match {
            not_namespaces: vec![exact("ns3")],
            ..Default::default()
        };
        let port = Match {
            destination_ports: vec![9000],
            ..Default::default()
        };
        let mixed = Match {
            source_ips: vec![v4([192, 168, 0, 0], 16)],
            not_source_ips: vec![v4([192, 168, 1, 0], 24)],
            destination_ports: vec![22],
            not_destination_ports: vec![23],
            ..Default::default()
        };
        // `from` and `to` are taken by the first two; the rest are conditions.
        let p = ok(&policy(vec![Rule {
            clauses: vec![
                clause(vec![src.clone()]),
                clause(vec![port]),
                clause(vec![dst]),
                clause(vec![src]),
                clause(vec![mixed]),
            ],
        }]));
        let r = &p.rules[0];
        assert_eq!(r.from.len(), 1);
        assert_eq!(r.to.len(), 1);
        let when: Vec<(String, Vec<String>, Vec<String>)> = r
            .when
            .iter()
            .map(|c| (c.key.clone(), texts(&c.values), texts(&c.not_values)))
            .collect();
        assert_eq!(
            when,
            vec![
                (
                    "destination.ip".into(),
                    strs(&["10.0.0.1/32"]),
                    strs(&["10.0.0.2/32"])
                ),
                ("source.namespace".into(), vec![], strs(&["ns3"])),
                (
                    "source.ip".into(),
                    strs(&["192.168.0.0/16"]),
                    strs(&["192.168.1.0/24"])
                ),
                ("destination.port".into(), strs(&["22"]), strs(&["23"])),
            ]
        );
    }

    #[test]
    fn clauses_of_mixed_matches_are_multiplied_out() {
        let a = Match {
            namespaces: vec![exact("a")],
            destination_ports: vec![80],
            ..Default::default()
        };
        let b = Match {
            principals: vec![exact("td/ns/b/sa/b")],
            ..Default::default()
        };
        let c = Match {
            destination_ips: vec![v4([10, 0, 0, 3], 32)],
            ..Default::default()
        };
        let p = ok(&policy(vec![Rule {
            clauses: vec![clause(vec![a.clone(), b.clone()]), clause(vec![a, c])],
        }]));
        assert_eq!(p.rules.len(), 4);
        let keys: Vec<Vec<&str>> = p
            .rules
            .iter()
            .map(|r| r.when.iter().map(|c| c.key.as_str()).collect())
            .collect();
        assert_eq!(
            keys,
            vec![
                vec![
                    "source.namespace",
                    "destination.port",
                    "source.namespace",
                    "destination.port"
                ],
                vec!["source.namespace", "destination.port", "destination.ip"],
                vec!["source.principal", "source.namespace", "destination.port"],
                vec!["source.principal", "destination.ip"],
            ]
        );
        // Too many: 9 clauses of 2 mixed matches each make 512 rules.
        let mixed = Match {
            namespaces: vec![exact("a")],
            destination_ports: vec![80],
            ..Default::default()
        };
        let big = policy(vec![Rule {
            clauses: (0..9)
                .map(|_| clause(vec![mixed.clone(), mixed.clone()]))
                .collect(),
        }]);
        let e = errors(&big);
        assert!(e[0].contains("multiply out to more than 64 rules"), "{e:?}");
    }

    #[test]
    fn empty_rules_clauses_and_matches() {
        // A rule without clauses matches everything; a clause without matches holds.
        let p = ok(&policy(vec![
            Rule { clauses: vec![] },
            Rule {
                clauses: vec![clause(vec![])],
            },
        ]));
        assert_eq!(p.rules.len(), 2);
        assert!(
            p.rules
                .iter()
                .all(|r| r.from.is_empty() && r.to.is_empty() && r.when.is_empty())
        );
        // A clause of empty matches never holds: the rule is left out.
        let (c, problems) = run(&policy(vec![Rule {
            clauses: vec![clause(vec![Match::default()])],
        }]));
        assert!(c.unwrap().policy.rules.is_empty());
        assert!(problems.warnings[0].contains("never matches"));
        // No rules at all: matches nothing, as in YAML.
        assert!(ok(&policy(vec![])).rules.is_empty());
    }

    #[test]
    fn action_scope_and_dry_run() {
        let mut a = policy(vec![]);
        assert_eq!(ok(&a).action, AuthorizationAction::Allow);
        a.action = Action::Deny as i32;
        assert_eq!(ok(&a).action, AuthorizationAction::Deny);
        a.dry_run = true;
        assert_eq!(ok(&a).action, AuthorizationAction::Audit);
        a.action = Action::Allow as i32;
        assert_eq!(ok(&a).action, AuthorizationAction::Audit);
        let (c, _) = run(&a);
        let c = c.unwrap();
        assert_eq!(c.scope, Scope::Namespace);
        assert_eq!(c.policy.location.file, "xds:Authorization/ns1/p");
        a.scope = Scope::Global as i32;
        assert!(errors(&a)[0].starts_with("scope GLOBAL in namespace `ns1`"));
        a.namespace = "istio-system".into();
        assert_eq!(run(&a).0.unwrap().scope, Scope::Global);
    }

    #[test]
    fn invalid_fields_name_their_path() {
        let with = |m: Match| {
            policy(vec![
                Rule { clauses: vec![] },
                Rule {
                    clauses: vec![clause(vec![m])],
                },
            ])
        };
        let cases: Vec<(Authorization, &str)> = vec![
            (
                with(Match {
                    destination_ports: vec![0],
                    ..Default::default()
                }),
                "rules[1].clauses[0].matches[0].destination_ports[0]: port 0 is out of range (1-65535)",
            ),
            (
                with(Match {
                    not_destination_ports: vec![70000],
                    ..Default::default()
                }),
                "rules[1].clauses[0].matches[0].not_destination_ports[0]: port 70000 is out of range (1-65535)",
            ),
            (
                with(Match {
                    source_ips: vec![v4([10, 0, 0, 0], 40)],
                    ..Default::default()
                }),
                "rules[1].clauses[0].matches[0].source_ips[0]: `10.0.0.0/40` is not a valid CIDR",
            ),
            (
                with(Match {
                    not_destination_ips: vec![Address {
                        address: vec![1, 2],
                        length: 8,
                    }],
                    ..Default::default()
                }),
                "rules[1].clauses[0].matches[0].not_destination_ips[0]: an address has 2 bytes",
            ),
            (
                with(Match {
                    not_principals: vec![StringMatch { match_type: None }],
                    ..Default::default()
                }),
                "rules[1].clauses[0].matches[0].not_principals[0]: no match type",
            ),
            (
                with(Match {
                    namespaces: vec![exact("a*")],
                    ..Default::default()
                }),
                "rules[1].clauses[0].matches[0].namespaces[0]: exact `a*` ends with `*`",
            ),
            (
                with(Match {
                    service_accounts: vec![account("ns", "x/y")],
                    ..Default::default()
                }),
                "rules[1].clauses[0].matches[0].service_accounts[0]: service account:",
            ),
            (
                Authorization {
                    scope: 9,
                    ..policy(vec![])
                },
                "scope: unknown value 9 (expected GLOBAL, NAMESPACE or WORKLOAD_SELECTOR)",
            ),
            (
                Authorization {
                    action: 2,
                    ..policy(vec![])
                },
                "action: unknown value 2 (expected ALLOW or DENY)",
            ),
            (
                Authorization {
                    name: "Bad_Name".into(),
                    ..policy(vec![])
                },
                "name: `Bad_Name` is not a valid name",
            ),
        ];
        for (a, expected) in cases {
            let e = errors(&a);
            assert!(
                e.iter().any(|x| x.starts_with(expected)),
                "{expected}\n{e:?}"
            );
        }
    }

    #[test]
    fn host_bits_are_cleared_with_a_warning() {
        let m = Match {
            source_ips: vec![v4([10, 1, 2, 3], 8)],
            ..Default::default()
        };
        let (c, p) = run(&policy(vec![Rule {
            clauses: vec![clause(vec![m])],
        }]));
        assert_eq!(
            c.unwrap().policy.rules[0].from[0].ip_blocks[0]
                .value
                .to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            p.warnings,
            vec![
                "rules[0].clauses[0].matches[0].source_ips[0]: host bits are set; using 10.0.0.0/8"
                    .to_string()
            ]
        );
    }
}
