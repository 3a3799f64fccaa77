//! A cheap bound on how deeply YAML (or JSON) text nests, checked before any parser sees
//! it. The YAML parsers take time quadratic in the depth (100,000 nested `[` took minutes),
//! and files in the checkout can come from a pull request.
//!
//! The scan is one pass over the text: brackets of flow collections outside quotes and
//! comments, plus the levels of block indentation. It over-counts rather than under-counts
//! (an unbalanced `[` inside a plain scalar counts), which is safe at a limit far above
//! what any real file needs.

/// Deepest nesting accepted in a pipeline file or manifest; real ones need fewer than 10.
pub const MAX_DEPTH: usize = 64;

/// Where the text first nests deeper than `limit` (1-based line and column), if it does.
pub fn too_deep(text: &str, limit: usize) -> Option<(usize, usize)> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    let mut quote: Option<char> = None;
    for (line_index, line) in text.lines().enumerate() {
        let body = line.trim_start_matches([' ', '-']);
        let indent = line.len() - body.len();
        if quote.is_none() && flow == 0 && !body.is_empty() && !body.starts_with('#') {
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut previous = ' ';
        for (column, c) in line.char_indices() {
            match quote {
                Some(open) => {
                    if c == open {
                        quote = None;
                    }
                }
                None => match c {
                    '"' | '\'' if !previous.is_alphanumeric() => quote = Some(c),
                    '#' if previous.is_whitespace() => break,
                    '[' | '{' => {
                        flow += 1;
                        if flow + indents.len() > limit {
                            return Some((line_index + 1, column + 1));
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            previous = c;
        }
        if indents.len() > limit {
            return Some((line_index + 1, indent + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_files_pass() {
        let pipeline = include_str!("../../examples/jisu/jisu-deploy.yml");
        assert_eq!(too_deep(pipeline, 12), None);
        assert_eq!(too_deep("a: \"[[[[[[\"\nb: '{{{{{{' # [[[[[[\n", 3), None);
    }

    #[test]
    fn deep_flow_and_block_nesting_are_found() {
        let flow = format!("x: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(too_deep(&flow, MAX_DEPTH), Some((1, 4 + MAX_DEPTH - 1)));
        let block: String = (0..100)
            .map(|level| format!("{}k{level}:\n", " ".repeat(level)))
            .collect();
        assert_eq!(
            too_deep(&block, MAX_DEPTH),
            Some((MAX_DEPTH + 1, MAX_DEPTH + 1))
        );
    }
}
