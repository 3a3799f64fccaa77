//! The one way the parsers read XML: roxmltree with DTDs refused and a node limit.

use super::ParseError;

/// Enough for a JUnit or Cobertura report of a very large project; a document with more
/// nodes is refused rather than built in memory.
const NODES_LIMIT: u32 = 4_000_000;

/// Parses `text` as an XML document, refusing DTDs (no entity expansion).
pub(crate) fn document<'a>(
    what: &'static str,
    text: &'a str,
) -> Result<roxmltree::Document<'a>, ParseError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, options).map_err(|error| ParseError::Xml {
        what,
        reason: error.to_string(),
    })
}

/// An attribute that must be there.
pub(crate) fn required<'a>(
    what: &'static str,
    node: roxmltree::Node<'a, '_>,
    name: &str,
) -> Result<&'a str, ParseError> {
    node.attribute(name).ok_or_else(|| ParseError::Content {
        what,
        reason: format!(
            "<{}> at byte {} has no {name} attribute",
            node.tag_name().name(),
            node.range().start
        ),
    })
}
