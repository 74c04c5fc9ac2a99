//! Field-by-field decoding of a [`Node`] tree, collecting every problem with its line.
//!
//! Decoders return `None` after recording an error, so decoding goes on and all errors of a
//! configuration are reported together.

use std::collections::BTreeMap;

use crate::diagnostics::{Diagnostics, Location};
use crate::yaml::{Node, Value};

/// The file being decoded and the diagnostics collected so far.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    pub fn loc(&self, line: usize) -> Location {
        Location::new(self.file, line)
    }

    pub fn error(&mut self, line: usize, message: impl Into<String>) {
        let loc = self.loc(line);
        self.diags.error(loc, message);
    }

    pub fn warning(&mut self, line: usize, message: impl Into<String>) {
        let loc = self.loc(line);
        self.diags.warning(loc, message);
    }
}

/// A mapping being decoded: fields are taken one by one, and whatever is left is unknown.
pub(crate) struct Fields<'n> {
    pub line: usize,
    path: String,
    entries: Vec<(&'n str, &'n Node, usize, bool)>,
}

impl<'n> Fields<'n> {
    /// Opens `node` as a mapping; records an error and returns `None` if it is not one.
    pub fn open(ctx: &mut Ctx<'_>, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        let shown = if path.is_empty() { "document" } else { path };
        let Value::Map(entries) = &node.value else {
            ctx.error(
                node.line,
                format!("{shown}: expected a mapping, found {}", node.kind_name()),
            );
            return None;
        };
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Value::Scalar { text, .. } = &key.value else {
                ctx.error(key.line, format!("{shown}: mapping keys must be strings"));
                continue;
            };
            if let Some(first) = seen.insert(text.as_str(), key.line) {
                ctx.error(
                    key.line,
                    format!("{shown}: duplicate field `{text}` (first at line {first})"),
                );
                continue;
            }
            fields.push((text.as_str(), value, key.line, false));
        }
        Some(Fields {
            line: node.line,
            path: path.to_string(),
            entries: fields,
        })
    }

    /// Path of a field of this mapping, for messages: `spec.rules[0].to`.
    pub fn path_of(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// Takes a field; a null value counts as absent.
    pub fn take(&mut self, name: &str) -> Option<&'n Node> {
        let entry = self.entries.iter_mut().find(|e| e.0 == name)?;
        entry.3 = true;
        if entry.1.value == Value::Null {
            None
        } else {
            Some(entry.1)
        }
    }

    /// Takes a field that must be present.
    pub fn require(&mut self, ctx: &mut Ctx<'_>, name: &str) -> Option<&'n Node> {
        let found = self.take(name);
        if found.is_none() {
            ctx.error(
                self.line,
                format!("{}: missing required field `{name}`", self.path_or_root()),
            );
        }
        found
    }

    /// Marks fields as known but without effect (they are accepted and ignored).
    pub fn ignore(&mut self, names: &[&str]) {
        for e in &mut self.entries {
            if names.contains(&e.0) {
                e.3 = true;
            }
        }
    }

    /// Reports every field that was not taken as unknown, naming the known ones.
    pub fn finish(self, ctx: &mut Ctx<'_>, known: &[&str]) {
        for (name, _, line, used) in &self.entries {
            if !used {
                ctx.error(
                    *line,
                    format!(
                        "{}: unknown field `{name}` (expected one of: {})",
                        self.path_or_root(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn path_or_root(&self) -> &str {
        if self.path.is_empty() {
            "document"
        } else {
            &self.path
        }
    }
}

/// A decoded value and the line it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Spanned<T> {
    pub value: T,
    pub line: usize,
}

/// A scalar as a string (numbers and booleans are taken as written).
pub(crate) fn string(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => {
            ctx.error(
                node.line,
                format!("{path}: expected a string, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// A list; each item is decoded by `item` with its path `path[i]`.
pub(crate) fn list<T>(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: &str,
    mut item: impl FnMut(&mut Ctx<'_>, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let Value::Seq(items) = &node.value else {
        ctx.error(
            node.line,
            format!("{path}: expected a list, found {}", node.kind_name()),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, n) in items.iter().enumerate() {
        match item(ctx, n, &format!("{path}[{i}]")) {
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A list of strings, each with its line.
pub(crate) fn string_list(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: &str,
) -> Option<Vec<Spanned<String>>> {
    list(ctx, node, path, |ctx, n, p| {
        string(ctx, n, p).map(|value| Spanned {
            value,
            line: n.line,
        })
    })
}

/// A string-to-string map such as labels or annotations.
pub(crate) fn string_map(
    ctx: &mut Ctx<'_>,
    node: &Node,
    path: &str,
) -> Option<BTreeMap<String, Spanned<String>>> {
    let Value::Map(entries) = &node.value else {
        ctx.error(
            node.line,
            format!("{path}: expected a mapping, found {}", node.kind_name()),
        );
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, value) in entries {
        let Value::Scalar { text: k, .. } = &key.value else {
            ctx.error(key.line, format!("{path}: keys must be strings"));
            ok = false;
            continue;
        };
        let item_path = format!("{path}.{k}");
        let Some(v) = (match &value.value {
            // `key:` with no value is an empty string in Kubernetes label maps.
            Value::Null => Some(String::new()),
            _ => string(ctx, value, &item_path),
        }) else {
            ok = false;
            continue;
        };
        if out.contains_key(k) {
            ctx.error(key.line, format!("{path}: duplicate key `{k}`"));
            ok = false;
            continue;
        }
        out.insert(
            k.clone(),
            Spanned {
                value: v,
                line: value.line,
            },
        );
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;

    #[test]
    fn unknown_and_duplicate_fields() {
        let docs = parse_documents("a: 1\nb: 2\na: 3\n").unwrap();
        let mut diags = Diagnostics::new();
        let mut ctx = Ctx {
            file: "f.yaml",
            diags: &mut diags,
        };
        let mut fields = Fields::open(&mut ctx, &docs[0], "spec").unwrap();
        assert!(fields.take("a").is_some());
        fields.finish(&mut ctx, &["a"]);
        let text = diags.to_string();
        assert!(
            text.contains("f.yaml:3: error: spec: duplicate field `a` (first at line 1)"),
            "{text}"
        );
        assert!(
            text.contains("f.yaml:2: error: spec: unknown field `b`"),
            "{text}"
        );
    }
}
