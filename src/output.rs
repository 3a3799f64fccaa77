//! The only way text reaches stdout and stderr.
//!
//! The Actions runner reads our output line by line and acts on two shapes: a line that,
//! after leading whitespace, starts with `::` (`::error::`, `::add-mask::`,
//! `::stop-commands::`) and, anywhere in a line, the legacy `##[command]` form. Branch and
//! tag names, pipeline-file values and registry answers can come from outsiders, so:
//!
//! - every such value is printed through [`escape`], which turns line breaks and other
//!   control characters into visible escapes, so one value can never start a new line;
//! - everything written to stdout or stderr passes [`guard`], which defuses any line that
//!   would still read as a workflow command. Only `workflow_command` (what
//!   [`crate::github::actions::Runner`] writes on purpose) bypasses it.
//!
//! Log lines from `tracing` go through [`GuardedStderr`], so a value logged with `%` is
//! covered too.

use std::borrow::Cow;
use std::io::Write as _;

/// `text` as one printable line: control characters, Unicode line and paragraph
/// separators and bidirectional overrides become `\n`, `\r`, `\t` or `\u{..}` escapes.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Appends `text` to `out` as one escaped line, for reports built line by line whose
/// lines quote names, refs, commands and server answers.
pub fn push_line(out: &mut String, text: &str) {
    out.push_str(&escape(text));
    out.push('\n');
}

/// [`escape`], then cut to at most `max_chars` characters with a note of how much was left
/// out (for messages a server chose, which may be any length).
pub fn escape_capped(text: &str, max_chars: usize) -> String {
    let escaped = escape(text);
    let total = escaped.chars().count();
    if total <= max_chars {
        return escaped.into_owned();
    }
    let kept: String = escaped.chars().take(max_chars).collect();
    format!("{kept}… ({} more characters)", total - max_chars)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text made safe for the runner to read: a line that would start a workflow command gets
/// a `\` before its `::`, a legacy `##[` becomes `##\u005b` (still valid inside a JSON
/// string), and a stray carriage return or other control character (other than newline and
/// tab) becomes `\u00XX`. Text that needs none of this is returned as it is.
pub fn guard(text: &str) -> Cow<'_, str> {
    let risky = text.contains("##[")
        || text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        || text
            .split('\n')
            .any(|line| line.trim_start().starts_with("::"));
    if !risky {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let mut line_out = String::with_capacity(line.len());
        line_out.push_str(indent);
        if body.starts_with("::") {
            line_out.push('\\');
        }
        for c in body.chars() {
            if c.is_control() && c != '\t' {
                line_out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                line_out.push(c);
            }
        }
        // Only whitespace and controls can precede `::` after the escapes above, so one
        // pass over `##[` suffices.
        out.push_str(&line_out.replace("##[", "##\\u005b"));
    }
    Cow::Owned(out)
}

/// Writes `text` to stdout through [`guard`].
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(guard(text).as_bytes());
    let _ = stdout.flush();
}

/// Writes `text` and a newline to stdout through [`guard`].
pub fn out_line(text: &str) {
    out(&format!("{text}\n"));
}

/// Writes `text` and a newline to stderr through [`guard`].
pub fn err_line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(guard(&format!("{text}\n")).as_bytes());
}

/// Writes a workflow command line the tool means to send, as it is. Only the runner
/// interface calls this; its arguments are built with the runner's own escaping.
pub(crate) fn workflow_command(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// A `tracing` writer for stderr that passes every log event through [`guard`]. An event
/// is one line; a line break inside it (from a logged value) is escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for GuardedStderr {
    type Writer = GuardedEvent;

    fn make_writer(&'a self) -> Self::Writer {
        GuardedEvent(Vec::new())
    }
}

/// One log event being written; flushed to stderr, guarded, when dropped.
#[derive(Debug)]
pub struct GuardedEvent(Vec<u8>);

impl std::io::Write for GuardedEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for GuardedEvent {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let line = format!("{}{newline}", guard(&body.replace('\n', "\\n")));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_a_value_on_one_line() {
        assert_eq!(escape("feature/x"), "feature/x");
        assert_eq!(
            escape("a\n::error::b\r%0A\u{1b}[31m\u{2028}"),
            "a\\n::error::b\\r%0A\\u{1b}[31m\\u{2028}"
        );
        assert_eq!(escape_capped("abcdef", 3), "abc… (3 more characters)");
        assert_eq!(escape_capped("abc", 3), "abc");
    }

    #[test]
    fn guard_defuses_commands_and_leaves_plain_text_alone() {
        let plain = "plan for push to main\n  - lint\n";
        assert!(matches!(guard(plain), Cow::Borrowed(_)));
        assert_eq!(
            guard("ok\n  ::error::x\n::stop-commands::t"),
            "ok\n  \\::error::x\n\\::stop-commands::t"
        );
        assert_eq!(
            guard("name: a ##[error]b\r"),
            "name: a ##\\u005berror]b\\u000d"
        );
        // Still valid JSON, and decodes to the original value.
        let json = serde_json::to_string(&"x##[set-output name=a]y").unwrap();
        let guarded = guard(&json);
        assert!(!guarded.contains("##["));
        let back: String = serde_json::from_str(&guarded).unwrap();
        assert_eq!(back, "x##[set-output name=a]y");
    }
}
