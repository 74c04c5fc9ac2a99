//! A small YAML tree that remembers the line of every node.
//!
//! `yaml-rust2` reports events with source positions; we build our own tree from them so that
//! every field we decode can point an error at its exact line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node and the 1-based line where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null`, or nothing at all.
    Null,
    /// Any scalar; `plain` is false for quoted and block scalars (they are always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys in document order; keys are scalars (checked while building).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's type for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error and the line where the parser gave up.
#[derive(Debug)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses every document of `text`. Empty documents (`---` alone, only comments) are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        line: e.marker().line().max(1),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder
        .documents
        .into_iter()
        .filter(|d| d.value != Value::Null)
        .collect())
}

/// A container under construction.
enum Open {
    Seq(Node),
    /// The map node, and a key waiting for its value.
    Map(Node, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Open, usize)>,
    documents: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn finish_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some((Open::Seq(seq), _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some((Open::Map(map, pending), _)) => match pending.take() {
                None => {
                    if !matches!(node.value, Value::Scalar { .. }) && self.error.is_none() {
                        self.error = Some(SyntaxError {
                            line: node.line,
                            message: format!(
                                "mapping keys must be scalars, found {}",
                                node.kind_name()
                            ),
                        });
                    }
                    // A mapping's line is the line of its first key.
                    if let Value::Map(entries) = &map.value
                        && entries.is_empty()
                    {
                        map.line = node.line;
                    }
                    *pending = Some(node);
                }
                Some(key) => {
                    // A null value is reported at its key's line, not where the parser noticed it.
                    let node = if node.value == Value::Null {
                        Node {
                            line: key.line,
                            value: Value::Null,
                        }
                    } else {
                        node
                    };
                    if let Value::Map(entries) = &mut map.value {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line().max(1);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                };
                self.finish_node(Node { line, value }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Open::Seq(Node {
                    line,
                    value: Value::Seq(Vec::new()),
                }),
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push((
                Open::Map(
                    Node {
                        line,
                        value: Value::Map(Vec::new()),
                    },
                    None,
                ),
                anchor,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((open, anchor)) = self.stack.pop() {
                    let node = match open {
                        Open::Seq(n) | Open::Map(n, _) => n,
                    };
                    self.finish_node(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(n) => Node {
                        line,
                        value: n.value.clone(),
                    },
                    None => Node {
                        line,
                        value: Value::Null,
                    },
                };
                self.finish_node(node, 0);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_empty_documents() {
        let docs =
            parse_documents("# c\n---\n---\n# only\n---\na: 1\nb:\n  - x\n  - 'y'\nc:\n").unwrap();
        assert_eq!(docs.len(), 1);
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map")
        };
        assert_eq!(docs[0].line, 6);
        assert_eq!(entries[0].1.line, 6);
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].line, 9);
        assert_eq!(
            items[1].value,
            Value::Scalar {
                text: "y".into(),
                plain: false
            }
        );
        assert_eq!(entries[2].1.line, 10);
        assert_eq!(entries[2].1.value, Value::Null);
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse_documents("a: b\n  c: d: e\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn aliases_are_expanded() {
        let docs = parse_documents("a: &x {q: 1}\nb: *x\n").unwrap();
        let Value::Map(entries) = &docs[0].value else {
            panic!()
        };
        assert_eq!(entries[1].1.line, 2);
        assert!(matches!(entries[1].1.value, Value::Map(_)));
    }
}
