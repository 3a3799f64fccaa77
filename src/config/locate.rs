//! Finds the line and column of a field in YAML text, so errors found after parsing can
//! still point at the place to fix.
//!
//! serde_yaml reports positions only for syntax and type errors; semantic errors found on
//! the typed value (`validate.rs`) look their field up here by its dotted path.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, counting from 1.
    pub line: usize,
    /// Column, counting from 1.
    pub column: usize,
}

/// Positions of every field and list item in one YAML document, keyed by path
/// (`environments.production.checks[0].url`, the form serde_path_to_error prints).
#[derive(Debug, Default)]
pub struct FieldPositions {
    positions: HashMap<String, Position>,
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, index: usize },
}

impl FieldPositions {
    /// Indexes `text`; text that does not parse gives an empty index (serde reports the
    /// syntax error with its own position).
    pub fn index(text: &str) -> Self {
        let mut positions = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let here = Position {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            let starts_node = matches!(
                event,
                Event::Scalar(..)
                    | Event::MappingStart(..)
                    | Event::SequenceStart(..)
                    | Event::Alias(_)
            );
            let mut node_path = String::new();
            if starts_node {
                match stack.last_mut() {
                    Some(Frame::Mapping { path, key }) => match key.take() {
                        None => {
                            // A key: remember it and point the field at the key itself.
                            if let Event::Scalar(name, ..) = &event {
                                let field = join(path, name);
                                positions.entry(field).or_insert(here);
                                *key = Some(name.to_string());
                            }
                            continue;
                        }
                        Some(name) => node_path = join(path, &name),
                    },
                    Some(Frame::Sequence { path, index }) => {
                        node_path = format!("{path}[{index}]");
                        *index += 1;
                        positions.entry(node_path.clone()).or_insert(here);
                    }
                    None => {}
                }
            }
            match event {
                Event::MappingStart(..) => stack.push(Frame::Mapping {
                    path: node_path,
                    key: None,
                }),
                Event::SequenceStart(..) => stack.push(Frame::Sequence {
                    path: node_path,
                    index: 0,
                }),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        FieldPositions { positions }
    }

    /// The position of `path`, or of its nearest ancestor that exists (a missing field is
    /// reported where its parent is).
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(found) = self.positions.get(path) {
                return Some(*found);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
version: 1
environments:
  production:
    branch: main
    checks:
      - name: api
        url: /health
      - {name: web, url: /}
";

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn finds_keys_and_list_items() {
        let index = FieldPositions::index(TEXT);
        assert_eq!(index.find("version"), at(1, 1));
        assert_eq!(index.find("environments.production.branch"), at(4, 5));
        assert_eq!(index.find("environments.production.checks[0]"), at(6, 9));
        assert_eq!(
            index.find("environments.production.checks[0].url"),
            at(7, 9)
        );
        assert_eq!(
            index.find("environments.production.checks[1].url"),
            at(8, 21)
        );
    }

    #[test]
    fn missing_fields_fall_back_to_their_parent() {
        let index = FieldPositions::index(TEXT);
        assert_eq!(index.find("environments.production.namespace"), at(3, 3));
        assert_eq!(
            index.find("environments.production.checks[5].url"),
            at(5, 5)
        );
        assert_eq!(index.find("nothing.here"), None);
    }

    #[test]
    fn broken_yaml_gives_an_empty_index() {
        assert_eq!(FieldPositions::index("a: [1, 2").find("a"), at(1, 1));
        assert_eq!(FieldPositions::index(": : :\n\t- x").find("b"), None);
    }
}
