//! `meshward.io/v1alpha1` EgressPolicy.

use super::metadata::Metadata;
use super::selector::{decode_action, decode_selector};
use crate::decode::{self, Ctx, Fields, Spanned};
use crate::model::{Action, BinaryMatch, EgressPolicy, EgressRule, EgressTarget, Host};
use crate::net::{self, HostMatch, PortMatch};
use crate::yaml::{Node, Value};

pub(crate) fn decode(
    ctx: &mut Ctx<'_>,
    meta: &Metadata,
    spec: Option<&Node>,
) -> Option<EgressPolicy> {
    let location = ctx.loc(meta.name.line);
    let Some(spec) = spec else {
        // An empty spec is an ALLOW policy without rules: it allows nothing.
        return Some(EgressPolicy {
            namespace: meta.namespace.clone(),
            name: meta.name.value.clone(),
            match_labels: Default::default(),
            binaries: Vec::new(),
            action: Action::Allow,
            rules: Vec::new(),
            location,
        });
    };
    let mut f = Fields::open(ctx, spec, "spec")?;
    let selector = decode_selector(ctx, f.take("selector"));
    let action = decode_action(
        ctx,
        f.take("action"),
        Action::Allow,
        &[
            ("ALLOW", Action::Allow),
            ("DENY", Action::Deny),
            ("AUDIT", Action::Audit),
        ],
    );
    let binaries = match f.take("binaries") {
        None => Some(Vec::new()),
        Some(n) => decode::list(ctx, n, "spec.binaries", decode_binary),
    };
    let rules = match f.take("rules") {
        None => Some(Vec::new()),
        Some(n) => decode::list(ctx, n, "spec.rules", decode_rule),
    };
    f.finish(ctx, &["selector", "binaries", "action", "rules"]);
    Some(EgressPolicy {
        namespace: meta.namespace.clone(),
        name: meta.name.value.clone(),
        match_labels: selector?,
        binaries: binaries?,
        action: action?,
        rules: rules?,
        location,
    })
}

fn decode_binary(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Spanned<BinaryMatch>> {
    let text = decode::string(ctx, node, path)?;
    match BinaryMatch::parse(&text) {
        Ok(value) => Some(Spanned {
            value,
            line: node.line,
        }),
        Err(e) => {
            ctx.error(node.line, format!("{path}: {e}"));
            None
        }
    }
}

fn decode_rule(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<EgressRule> {
    let mut f = Fields::open(ctx, node, path)?;
    let to = match f.take("to") {
        None => Some(Vec::new()),
        Some(n) => decode::list(ctx, n, &f.path_of("to"), decode_target),
    };
    f.finish(ctx, &["to"]);
    Some(EgressRule {
        to: to?,
        line: node.line,
    })
}

fn decode_target(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<EgressTarget> {
    let mut f = Fields::open(ctx, node, path)?;
    let hosts = match f.take("hosts") {
        None => Some(Vec::new()),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of("hosts"), "host");
            decode::list(ctx, n, &f.path_of("hosts"), decode_host)
        }
    };
    let ports = match f.take("ports") {
        None => Some(Vec::new()),
        Some(n) => {
            warn_if_empty_list(ctx, n, &f.path_of("ports"), "port");
            decode::list(ctx, n, &f.path_of("ports"), |ctx, n, p| {
                decode_port(ctx, n, p, true)
            })
        }
    };
    f.finish(ctx, &["hosts", "ports"]);
    Some(EgressTarget {
        hosts: hosts?,
        ports: ports?,
        line: node.line,
    })
}

/// `hosts: []` means "any", like an absent field; say so, since it reads like "none".
fn warn_if_empty_list(ctx: &mut Ctx<'_>, node: &Node, path: &str, what: &str) {
    if matches!(&node.value, Value::Seq(items) if items.is_empty()) {
        ctx.warning(
            node.line,
            format!("{path}: an empty list matches any {what}; omit the field to say so"),
        );
    }
}

fn decode_host(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Host> {
    let text = decode::string(ctx, node, path)?;
    match net::parse_host(&text) {
        Ok((matches, normalised)) => {
            if normalised && let HostMatch::Prefix(p) = &matches {
                ctx.warning(
                    node.line,
                    format!("{path}: `{text}` has host bits set; using {p}"),
                );
            }
            Some(Host {
                text,
                matches,
                line: node.line,
            })
        }
        Err(e) => {
            ctx.error(node.line, format!("{path}: {e}"));
            None
        }
    }
}

/// A port: an integer or a string of digits, or `*` where `allow_any`.
pub(crate) fn decode_port(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: &str,
    allow_any: bool,
) -> Option<Spanned<PortMatch>> {
    let text = decode::string(ctx, node, path)?;
    match net::parse_port(&text, allow_any) {
        Ok(p) => Some(Spanned {
            value: p,
            line: node.line,
        }),
        Err(e) => {
            ctx.error(node.line, format!("{path}: {e}"));
            None
        }
    }
}
