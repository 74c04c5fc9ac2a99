//! `security.istio.io` AuthorizationPolicy: decoded and validated in full. What is enforced, and
//! how fields meshward cannot see are handled, is decided by the compiler (`compile/inbound.rs`).

use super::egress_policy::decode_port;
use super::metadata::Metadata;
use super::selector::{decode_action, decode_selector};
use crate::decode::{self, Ctx, Fields, Spanned};
use crate::model::{
    AuthorizationAction, AuthorizationPolicy, AuthorizationRule, Condition, Operation, Source,
};
use crate::net::{self, PortMatch, Prefix};
use crate::yaml::{Node, Value};

pub(crate) fn decode(
    ctx: &mut Ctx<'_>,
    meta: &Metadata,
    spec: Option<&Node>,
) -> Option<AuthorizationPolicy> {
    let location = ctx.loc(meta.name.line);
    let mut policy = AuthorizationPolicy {
        namespace: meta.namespace.clone(),
        name: meta.name.value.clone(),
        match_labels: Default::default(),
        action: AuthorizationAction::Allow,
        provider: None,
        rules: Vec::new(),
        location,
    };
    let Some(spec) = spec else {
        return Some(policy);
    };
    let mut f = Fields::open(ctx, spec, "spec")?;
    let selector = decode_selector(ctx, f.take("selector"));
    let action_node = f.take("action");
    let action = decode_action(
        ctx,
        action_node,
        AuthorizationAction::Allow,
        &[
            ("ALLOW", AuthorizationAction::Allow),
            ("DENY", AuthorizationAction::Deny),
            ("AUDIT", AuthorizationAction::Audit),
            ("CUSTOM", AuthorizationAction::Custom),
        ],
    );
    let provider_node = f.take("provider");
    let provider = match provider_node {
        None => Some(None),
        Some(n) => decode_provider(ctx, n).map(Some),
    };
    let rules = match f.take("rules") {
        None => Some(Vec::new()),
        Some(n) => decode::list(ctx, n, "spec.rules", decode_rule),
    };
    f.finish(ctx, &["selector", "action", "provider", "rules"]);

    let (action, provider) = (action?, provider?);
    match (action, &provider) {
        (AuthorizationAction::Custom, None) => {
            ctx.error(
                action_node.map_or(spec.line, |n| n.line),
                "spec.action: CUSTOM requires spec.provider.name",
            );
            return None;
        }
        (a, Some(_)) if a != AuthorizationAction::Custom => {
            let line = provider_node.map_or(spec.line, |n| n.line);
            ctx.error(line, "spec.provider: only allowed with action CUSTOM");
            return None;
        }
        _ => {}
    }
    policy.match_labels = selector?;
    policy.action = action;
    policy.provider = provider;
    policy.rules = rules?;
    Some(policy)
}

fn decode_provider(ctx: &mut Ctx<'_>, node: &Node) -> Option<String> {
    let mut f = Fields::open(ctx, node, "spec.provider")?;
    let name = f
        .require(ctx, "name")
        .and_then(|n| decode::string(ctx, n, "spec.provider.name"));
    f.finish(ctx, &["name"]);
    name
}

fn decode_rule(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<AuthorizationRule> {
    let mut f = Fields::open(ctx, node, path)?;
    let from = match f.take("from") {
        None => Some(Vec::new()),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of("from"), "matches any source");
            decode::list(ctx, n, &f.path_of("from"), decode_from)
        }
    };
    let to = match f.take("to") {
        None => Some(Vec::new()),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of("to"), "matches any operation");
            decode::list(ctx, n, &f.path_of("to"), decode_to)
        }
    };
    let when = match f.take("when") {
        None => Some(Vec::new()),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of("when"), "adds no condition");
            decode::list(ctx, n, &f.path_of("when"), decode_condition)
        }
    };
    f.finish(ctx, &["from", "to", "when"]);
    Some(AuthorizationRule {
        from: from?,
        to: to?,
        when: when?,
        line: node.line,
    })
}

/// `from[i]`: a mapping with exactly the key `source`.
fn decode_from(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Source> {
    let mut f = Fields::open(ctx, node, path)?;
    let source = f
        .require(ctx, "source")
        .and_then(|n| decode_source(ctx, n, &format!("{path}.source")));
    f.finish(ctx, &["source"]);
    source
}

fn decode_source(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Source> {
    let mut f = Fields::open(ctx, node, path)?;
    let mut ok = true;
    let mut strings = |ctx: &mut Ctx<'_>, f: &mut Fields<'_>, name: &str| match f.take(name) {
        None => Vec::new(),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of(name), "is the same as an absent field");
            decode::string_list(ctx, n, &f.path_of(name)).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            })
        }
    };
    let principals = strings(ctx, &mut f, "principals");
    let not_principals = strings(ctx, &mut f, "notPrincipals");
    let request_principals = strings(ctx, &mut f, "requestPrincipals");
    let not_request_principals = strings(ctx, &mut f, "notRequestPrincipals");
    let namespaces = strings(ctx, &mut f, "namespaces");
    let not_namespaces = strings(ctx, &mut f, "notNamespaces");
    let mut blocks = |ctx: &mut Ctx<'_>, f: &mut Fields<'_>, name: &str| match f.take(name) {
        None => Vec::new(),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of(name), "is the same as an absent field");
            decode::list(ctx, n, &f.path_of(name), decode_ip_block).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            })
        }
    };
    let ip_blocks = blocks(ctx, &mut f, "ipBlocks");
    let not_ip_blocks = blocks(ctx, &mut f, "notIpBlocks");
    let remote_ip_blocks = blocks(ctx, &mut f, "remoteIpBlocks");
    let not_remote_ip_blocks = blocks(ctx, &mut f, "notRemoteIpBlocks");
    f.finish(
        ctx,
        &[
            "principals",
            "notPrincipals",
            "requestPrincipals",
            "notRequestPrincipals",
            "namespaces",
            "notNamespaces",
            "ipBlocks",
            "notIpBlocks",
            "remoteIpBlocks",
            "notRemoteIpBlocks",
        ],
    );
    ok.then_some(Source {
        principals,
        not_principals,
        request_principals,
        not_request_principals,
        namespaces,
        not_namespaces,
        ip_blocks,
        not_ip_blocks,
        remote_ip_blocks,
        not_remote_ip_blocks,
        line: node.line,
    })
}

fn decode_ip_block(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Spanned<Prefix>> {
    let text = decode::string(ctx, node, path)?;
    match net::parse_cidr(text.trim()) {
        Ok((prefix, normalised)) => {
            if normalised {
                ctx.warning(
                    node.line,
                    format!("{path}: `{text}` has host bits set; using {prefix}"),
                );
            }
            Some(Spanned {
                value: prefix,
                line: node.line,
            })
        }
        Err(e) => {
            ctx.error(node.line, format!("{path}: {e}"));
            None
        }
    }
}

/// `to[i]`: a mapping with exactly the key `operation`.
fn decode_to(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Operation> {
    let mut f = Fields::open(ctx, node, path)?;
    let operation = f
        .require(ctx, "operation")
        .and_then(|n| decode_operation(ctx, n, &format!("{path}.operation")));
    f.finish(ctx, &["operation"]);
    operation
}

fn decode_operation(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Operation> {
    let mut f = Fields::open(ctx, node, path)?;
    let mut ok = true;
    let mut strings = |ctx: &mut Ctx<'_>, f: &mut Fields<'_>, name: &str| match f.take(name) {
        None => Vec::new(),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of(name), "is the same as an absent field");
            decode::string_list(ctx, n, &f.path_of(name)).unwrap_or_else(|| {
                ok = false;
                Vec::new()
            })
        }
    };
    let hosts = strings(ctx, &mut f, "hosts");
    let not_hosts = strings(ctx, &mut f, "notHosts");
    let methods = strings(ctx, &mut f, "methods");
    let not_methods = strings(ctx, &mut f, "notMethods");
    let paths = strings(ctx, &mut f, "paths");
    let not_paths = strings(ctx, &mut f, "notPaths");
    let mut ports = |ctx: &mut Ctx<'_>, f: &mut Fields<'_>, name: &str| match f.take(name) {
        None => Vec::new(),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of(name), "is the same as an absent field");
            decode::list(ctx, n, &f.path_of(name), |ctx, n, p| {
                decode_port(ctx, n, p, false).map(|s| Spanned {
                    value: match s.value {
                        PortMatch::Port(p) => p,
                        // decode_port rejects `*` when allow_any is false.
                        PortMatch::Any => 0,
                    },
                    line: s.line,
                })
            })
            .unwrap_or_else(|| {
                ok = false;
                Vec::new()
            })
        }
    };
    let port_list = ports(ctx, &mut f, "ports");
    let not_ports = ports(ctx, &mut f, "notPorts");
    f.finish(
        ctx,
        &[
            "hosts",
            "notHosts",
            "ports",
            "notPorts",
            "methods",
            "notMethods",
            "paths",
            "notPaths",
        ],
    );
    ok.then_some(Operation {
        hosts,
        not_hosts,
        ports: port_list,
        not_ports,
        methods,
        not_methods,
        paths,
        not_paths,
        line: node.line,
    })
}

fn decode_condition(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Condition> {
    let mut f = Fields::open(ctx, node, path)?;
    let key = f
        .require(ctx, "key")
        .and_then(|n| decode::string(ctx, n, &format!("{path}.key")));
    let values = match f.take("values") {
        None => Some(Vec::new()),
        Some(n) => decode::string_list(ctx, n, &f.path_of("values")),
    };
    let not_values = match f.take("notValues") {
        None => Some(Vec::new()),
        Some(n) => decode::string_list(ctx, n, &f.path_of("notValues")),
    };
    f.finish(ctx, &["key", "values", "notValues"]);
    let (key, values, not_values) = (key?, values?, not_values?);
    if key.trim().is_empty() {
        ctx.error(node.line, format!("{path}.key: must not be empty"));
        return None;
    }
    if values.is_empty() && not_values.is_empty() {
        ctx.error(
            node.line,
            format!("{path}: a condition needs `values` or `notValues`"),
        );
        return None;
    }
    let key = key.trim().to_string();
    if !known_condition_key(&key) {
        ctx.error(
            node.line,
            format!(
                "{path}.key: unknown key `{key}` (expected one of: {}, request.headers[NAME], request.auth.claims[NAME], experimental.envoy.filters.*)",
                CONDITION_KEYS.join(", ")
            ),
        );
        return None;
    }
    let mut ok = true;
    for v in values.iter().chain(&not_values) {
        if let Err(e) = check_condition_value(&key, v.value.trim()) {
            ctx.error(v.line, format!("{path}: {e}"));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(Condition {
        key,
        values,
        not_values,
        line: node.line,
    })
}

/// `x: []` means the same as an absent field in Istio; say so, since it reads like "none".
fn warn_if_empty_list(ctx: &mut Ctx<'_>, node: &Node, path: &str, meaning: &str) {
    if matches!(&node.value, Value::Seq(items) if items.is_empty()) {
        ctx.warning(
            node.line,
            format!("{path}: an empty list {meaning}; omit the field to say so"),
        );
    }
}

/// Condition keys with a fixed spelling, as Istio's validation accepts them.
const CONDITION_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

fn known_condition_key(key: &str) -> bool {
    let bracketed = |prefix: &str| {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|name| !name.is_empty())
    };
    CONDITION_KEYS.contains(&key)
        || bracketed("request.headers[")
        || bracketed("request.auth.claims[")
        || key.starts_with("experimental.envoy.filters.")
}

/// Values of the address and port keys must be addresses/CIDRs and ports (Istio validates them
/// the same way).
fn check_condition_value(key: &str, value: &str) -> Result<(), String> {
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => net::parse_cidr(value).map(|_| ()),
        "destination.port" => match net::parse_port(value, false) {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
        _ => Ok(()),
    }
}
