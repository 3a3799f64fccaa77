//! The one way text from outside (a tool's message, a branch, a path, an error) enters the
//! job summary's Markdown, and the few inline forms built on it.

/// The most characters of one text a summary shows; longer texts end in `…`.
pub(super) const MAX_TEXT_CHARS: usize = 1000;

/// Word joiner: invisible, but `@` followed by it is no mention.
const WORD_JOINER: char = '\u{2060}';

/// Text for a Markdown table cell or inline text, shown as it is and never as markup:
/// line breaks and other control characters become spaces; `<`, `>` and `&` become
/// entities, so no HTML gets through; `\`, `|`, backticks, `*`, `_`, `~`, `[` and `]` are
/// backslash-escaped, so the text cannot end a cell, open or close a code span, emphasise,
/// or make a link or an image; an `@` where a mention could start is followed by a word
/// joiner, so it mentions no one.
/// At most [`MAX_TEXT_CHARS`] characters are kept.
///
/// The text must not start a line (a `#` or `1.` there still makes a heading or a list):
/// callers put a label or a table pipe before it.
pub(super) fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars();
    let mut word = false;
    for c in chars.by_ref().take(MAX_TEXT_CHARS) {
        push_escaped(&mut out, c, word);
        word = c.is_ascii_alphanumeric() || c == '_';
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// `c` escaped; `after_word` when it follows a letter, digit or `_` (an `@` there is no
/// mention, as in `repo@sha256:...`, and stays as it is).
fn push_escaped(out: &mut String, c: char, after_word: bool) {
    match c {
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '&' => out.push_str("&amp;"),
        '\\' | '|' | '`' | '*' | '_' | '~' | '[' | ']' => {
            out.push('\\');
            out.push(c);
        }
        '@' if !after_word => {
            out.push('@');
            out.push(WORD_JOINER);
        }
        c if c.is_control() => out.push(' '),
        c => out.push(c),
    }
}

/// Text in a monospace font: a `<code>` element around [`cell`] (a Markdown code span
/// would show the escapes instead of the text).
pub(super) fn code(text: &str) -> String {
    format!("<code>{}</code>", cell(text))
}

/// A link to `url` when it is a plain `http(s)` URL that needs no escaping, else the URL
/// as escaped text.
pub(super) fn link(url: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#=%+,;@".contains(c);
    let web = url.starts_with("https://") || url.starts_with("http://");
    if web && url.len() <= MAX_TEXT_CHARS && url.chars().all(plain) {
        format!("<{url}>")
    } else {
        cell(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_markup_are_shown_as_text() {
        assert_eq!(
            cell("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(cell("a | b\nc\r\td"), r"a \| b c  d");
        assert_eq!(cell("[x](http://evil)"), r"\[x\](http://evil)");
        assert_eq!(cell("``code``"), r"\`\`code\`\`");
        assert_eq!(cell(r"\|"), r"\\\|");
        assert_eq!(cell("&lt; *a* _b_ ~c~"), r"&amp;lt; \*a\* \_b\_ \~c\~");
        assert_eq!(
            cell("@everyone, hi @org/team"),
            "@\u{2060}everyone, hi @\u{2060}org/team"
        );
        assert_eq!(cell("repo@sha256:ab"), "repo@sha256:ab");
    }

    #[test]
    fn long_texts_are_cut() {
        let long = "é".repeat(MAX_TEXT_CHARS + 5);
        let shown = cell(&long);
        assert_eq!(shown.chars().count(), MAX_TEXT_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(
            cell(&"x".repeat(MAX_TEXT_CHARS)),
            "x".repeat(MAX_TEXT_CHARS)
        );
    }

    #[test]
    fn only_plain_web_urls_become_links() {
        assert_eq!(
            link("https://staging.jisu.example"),
            "<https://staging.jisu.example>"
        );
        assert_eq!(link("https://x.example/a>b"), "https://x.example/a&gt;b");
        assert_eq!(link("javascript:alert(1)"), "javascript:alert(1)");
        assert_eq!(
            link("https://x.example/<img>"),
            "https://x.example/&lt;img&gt;"
        );
    }
}
