//! `spec.selector.matchLabels` and `spec.action`, shared by the policy kinds.

use std::collections::BTreeMap;

use crate::decode::{self, Ctx, Fields};
use crate::yaml::Node;

/// Decodes `selector`; absent or empty selects every workload in scope.
pub(crate) fn decode_selector(
    ctx: &mut Ctx<'_>,
    node: Option<&Node>,
) -> Option<BTreeMap<String, String>> {
    let Some(node) = node else {
        return Some(BTreeMap::new());
    };
    let mut f = Fields::open(ctx, node, "spec.selector")?;
    let labels = match f.take("matchLabels") {
        None => Some(BTreeMap::new()),
        Some(n) => decode::string_map(ctx, n, "spec.selector.matchLabels")
            .map(|m| m.into_iter().map(|(k, v)| (k, v.value)).collect()),
    };
    f.finish(ctx, &["matchLabels"]);
    labels
}

/// Decodes `action` against its allowed spellings (upper case, as Istio requires).
pub(crate) fn decode_action<A: Copy>(
    ctx: &mut Ctx<'_>,
    node: Option<&Node>,
    default: A,
    allowed: &[(&str, A)],
) -> Option<A> {
    let Some(node) = node else {
        return Some(default);
    };
    let text = decode::string(ctx, node, "spec.action")?;
    match allowed.iter().find(|(name, _)| *name == text) {
        Some((_, a)) => Some(*a),
        None => {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            ctx.error(
                node.line,
                format!(
                    "spec.action: unknown action `{text}` (expected one of: {})",
                    names.join(", ")
                ),
            );
            None
        }
    }
}
