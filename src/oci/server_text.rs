//! Text a registry or token service chose (error messages, header values, URLs it named)
//! made fit for an error message: secrets it may have echoed back are blanked out, then
//! the text is escaped to one line and cut to [`MAX_SERVER_TEXT_CHARS`].

/// Longest server-supplied text kept in one message, in characters.
pub const MAX_SERVER_TEXT_CHARS: usize = 300;

/// What replaces a secret in shown text.
const REDACTED: &str = "***";

/// `text` escaped to one line and capped: for server-supplied values that carry no secret
/// of ours (header values, URLs, media types).
pub fn shown(text: &str) -> String {
    crate::output::escape_capped(text, MAX_SERVER_TEXT_CHARS)
}

/// `text` with every occurrence of `secrets` and every credential that follows a `Basic`
/// or `Bearer` scheme word replaced by `***`, then escaped and capped like [`shown`].
/// Redaction comes first, so a cut can never leave half a secret visible.
pub fn redacted(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, REDACTED);
    }
    shown(&blank_credentials(&text))
}

/// Characters of a base64 (Basic) or token68 (Bearer) credential.
fn is_credential_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// Replaces the credential after each `basic` / `bearer` word (any case, followed by
/// whitespace) with `***`.
fn blank_credentials(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let scheme_len = ["basic", "bearer"].iter().find_map(|scheme| {
            let end = i + scheme.len();
            let word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
            (word_start
                && end < bytes.len()
                && bytes[i..end].eq_ignore_ascii_case(scheme.as_bytes()))
            .then_some(scheme.len())
        });
        let Some(scheme_len) = scheme_len else {
            i += 1;
            continue;
        };
        let mut j = i + scheme_len;
        let spaces = j;
        while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
            j += 1;
        }
        let token_start = j;
        while j < bytes.len() && is_credential_byte(bytes[j]) {
            j += 1;
        }
        if j == spaces || token_start == spaces || j == token_start {
            i += scheme_len;
            continue;
        }
        // Every index used here is at an ASCII byte, so the slices are on char boundaries.
        out.push_str(&text[copied..token_start]);
        out.push_str(REDACTED);
        copied = j;
        i = j;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_authorization_values_are_blanked() {
        assert_eq!(
            redacted(
                "bad header Authorization: Basic dXNlcjpwYXNz= from you",
                &[]
            ),
            "bad header Authorization: Basic *** from you"
        );
        assert_eq!(
            redacted("got BEARER eyJhbGc.eyJzdWIi.sig-_x; no", &[]),
            "got BEARER ***; no"
        );
        assert_eq!(redacted("basically bearer", &[]), "basically bearer");
        assert_eq!(redacted("Basic", &[]), "Basic");
    }

    #[test]
    fn known_secrets_are_blanked_anywhere_before_the_cut() {
        let secret = "ghp_s3cret";
        let text = format!("{}{secret}\nline", "x".repeat(MAX_SERVER_TEXT_CHARS - 3));
        let shown = redacted(&text, &[secret]);
        assert!(!shown.contains("ghp_"), "{shown}");
        assert!(!shown.contains('\n'));
        assert!(shown.contains("more characters"), "{shown}");
        assert_eq!(redacted("user:ghp_s3cret", &[secret, ""]), "user:***");
    }

    #[test]
    fn shown_text_is_one_line_and_capped() {
        assert_eq!(shown("a\nb\r"), "a\\nb\\r");
        assert!(shown(&"y".repeat(5000)).chars().count() < MAX_SERVER_TEXT_CHARS + 40);
    }
}
