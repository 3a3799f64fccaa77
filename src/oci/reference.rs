//! Image references (`registry/repository[:tag][@sha256:digest]`): parsing, validation, display.
//!
//! The grammar is the one Docker and the OCI distribution spec use: a first path component
//! that contains `.` or `:` or is `localhost` names the registry, otherwise the registry is
//! Docker Hub (`docker.io`), where single-component names live under `library/`.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// The registry assumed when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";

/// Longest repository name (registry and path) registries accept.
const MAX_NAME_LEN: usize = 255;
/// Longest tag allowed by the distribution spec.
/// The longest tag the OCI distribution spec allows.
pub(crate) const MAX_TAG_LEN: usize = 128;

/// An image reference that failed to parse, with the input and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {problem}")]
pub struct ReferenceError {
    /// The text that was parsed.
    pub input: String,
    /// What is wrong with it.
    pub problem: ReferenceProblem,
}

/// The specific defect in an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceProblem {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// The registry host or port is malformed.
    #[error("registry {0:?} is not a valid host[:port]")]
    InvalidRegistry(String),
    /// The repository path has uppercase letters; registries only accept lowercase.
    #[error("repository {0:?} contains uppercase letters; repository names must be lowercase")]
    UppercaseRepository(String),
    /// A path component breaks the repository grammar.
    #[error(
        "repository component {component:?} is invalid: components are lowercase letters and digits, separated inside by '.', '_', '__' or '-'"
    )]
    InvalidRepository {
        /// The offending component (empty when the path has `//` or a trailing `/`).
        component: String,
    },
    /// Registry plus repository is longer than registries accept.
    #[error("the name is {0} characters long; at most 255 are allowed")]
    NameTooLong(usize),
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}`.
    #[error("tag {0:?} is invalid: it must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")]
    InvalidTag(String),
    /// The `@` part is not a valid digest.
    #[error("{0}")]
    InvalidDigest(#[from] DigestError),
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference (see the module docs for the defaults applied).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        parse(input).map_err(|problem| ReferenceError {
            input: input.to_owned(),
            problem,
        })
    }

    /// The registry host, with port when one was given (`ghcr.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/nginx`, `jisu/backend`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned (it wins over a tag, as in
    /// Docker), otherwise the tag.
    pub fn manifest_target(&self) -> Option<&str> {
        self.digest
            .as_ref()
            .map(Digest::as_str)
            .or(self.tag.as_deref())
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError {
                input: format!("{}/{}:{tag}", self.registry, self.repository),
                problem: ReferenceProblem::InvalidTag(tag.to_owned()),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest`, with no tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn parse(input: &str) -> Result<Reference, ReferenceProblem> {
    if input.is_empty() {
        return Err(ReferenceProblem::Empty);
    }
    let (rest, digest) = match input.rsplit_once('@') {
        Some((rest, digest)) => (rest, Some(digest.parse::<Digest>()?)),
        None => (input, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            if !is_valid_tag(tag) {
                return Err(ReferenceProblem::InvalidTag(tag.to_owned()));
            }
            (&rest[..last_slash + i], Some(tag.to_owned()))
        }
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(ReferenceProblem::Empty);
    }
    let (registry, repository) = split_registry(name);
    validate_registry(registry)?;
    validate_repository(repository)?;
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_owned()
    };
    let full_len = registry.len() + 1 + repository.len();
    if full_len > MAX_NAME_LEN {
        return Err(ReferenceProblem::NameTooLong(full_len));
    }
    Ok(Reference {
        registry: registry.to_owned(),
        repository,
        tag,
        digest,
    })
}

/// Splits `name` into (registry, repository) using Docker's rule for the first component.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DOCKER_HUB, name),
    }
}

fn validate_registry(registry: &str) -> Result<(), ReferenceProblem> {
    let bad = || ReferenceProblem::InvalidRegistry(registry.to_owned());
    let (host, port) = if let Some(after_bracket) = registry.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let (addr, rest) = after_bracket.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        match rest {
            "" => (None, None),
            _ => (None, Some(rest.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(())
}

fn validate_repository(repository: &str) -> Result<(), ReferenceProblem> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceProblem::UppercaseRepository(repository.to_owned()));
    }
    for component in repository.split('/') {
        if !is_valid_component(component) {
            return Err(ReferenceProblem::InvalidRepository {
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
pub(crate) fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parts(input: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(input).unwrap();
        (
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(ToString::to_string),
        )
    }

    fn problem(input: &str) -> ReferenceProblem {
        Reference::parse(input).unwrap_err().problem
    }

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(
            parts("nginx"),
            ("docker.io".into(), "library/nginx".into(), None, None)
        );
        assert_eq!(
            parts("nginx:1.25"),
            (
                "docker.io".into(),
                "library/nginx".into(),
                Some("1.25".into()),
                None
            )
        );
        assert_eq!(
            parts("bitnami/redis:7"),
            (
                "docker.io".into(),
                "bitnami/redis".into(),
                Some("7".into()),
                None
            )
        );
        assert_eq!(
            parts("index.docker.io/nginx").0,
            "docker.io",
            "index.docker.io is Docker Hub"
        );
    }

    #[test]
    fn explicit_registries() {
        assert_eq!(
            parts("ghcr.io/jisu/backend:sha-0123abc"),
            (
                "ghcr.io".into(),
                "jisu/backend".into(),
                Some("sha-0123abc".into()),
                None
            )
        );
        assert_eq!(
            parts("localhost:5000/app:v1"),
            (
                "localhost:5000".into(),
                "app".into(),
                Some("v1".into()),
                None
            )
        );
        assert_eq!(
            parts("localhost/app").0,
            "localhost",
            "localhost without port is a registry"
        );
        assert_eq!(parts("127.0.0.1:41234/a/b/c").1, "a/b/c");
        assert_eq!(parts("[::1]:5000/app").0, "[::1]:5000");
    }

    #[test]
    fn digests_and_tags_together() {
        let (_, repo, tag, digest) = parts(&format!("ghcr.io/jisu/frontend:v2@{D}"));
        assert_eq!(repo, "jisu/frontend");
        assert_eq!(tag.as_deref(), Some("v2"));
        assert_eq!(digest.as_deref(), Some(D));
        let r = Reference::parse(&format!("ghcr.io/jisu/frontend:v2@{D}")).unwrap();
        assert_eq!(r.manifest_target(), Some(D), "digest wins over tag");
        let r = Reference::parse(&format!("localhost:5000/app@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.registry(), "localhost:5000");
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "docker.io/library/nginx:1.25",
            "ghcr.io/jisu/backend:main-42",
            "localhost:5000/a/b",
            "127.0.0.1:5000/app:v1",
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), input);
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
        let pinned = format!("ghcr.io/jisu/x:t@{D}");
        assert_eq!(Reference::parse(&pinned).unwrap().to_string(), pinned);
        // Normalized forms round-trip to the same value.
        let short = Reference::parse("nginx:latest").unwrap();
        assert_eq!(short.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(Reference::parse(&short.to_string()).unwrap(), short);
    }

    #[test]
    fn tag_grammar() {
        assert!(is_valid_tag("v1.2.3-rc_1"));
        assert!(is_valid_tag("_private"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(".hidden"));
        assert!(!is_valid_tag("-dash"));
        assert!(!is_valid_tag(""));
        assert_eq!(
            problem("ghcr.io/a/b:-bad"),
            ReferenceProblem::InvalidTag("-bad".into())
        );
        assert_eq!(
            problem("ghcr.io/a/b:"),
            ReferenceProblem::InvalidTag(String::new())
        );
        assert_eq!(
            problem("ghcr.io/a/b:with+plus"),
            ReferenceProblem::InvalidTag("with+plus".into())
        );
    }

    #[test]
    fn repository_grammar() {
        assert_eq!(
            problem("ghcr.io/Jisu/Backend:v1"),
            ReferenceProblem::UppercaseRepository("Jisu/Backend".into())
        );
        assert_eq!(
            problem("ghcr.io/jisu//backend"),
            ReferenceProblem::InvalidRepository {
                component: String::new()
            }
        );
        assert_eq!(
            problem("ghcr.io/jisu/back..end"),
            ReferenceProblem::InvalidRepository {
                component: "back..end".into()
            }
        );
        assert_eq!(
            problem("ghcr.io/jisu/-backend"),
            ReferenceProblem::InvalidRepository {
                component: "-backend".into()
            }
        );
        assert!(Reference::parse("ghcr.io/a__b/c---d/e.f_g").is_ok());
        assert_eq!(problem(""), ReferenceProblem::Empty);
        assert!(matches!(
            problem(&format!("ghcr.io/{}", "a".repeat(250))),
            ReferenceProblem::NameTooLong(_)
        ));
    }

    #[test]
    fn registry_grammar() {
        assert_eq!(
            problem("ghcr.io:port/a"),
            ReferenceProblem::InvalidRegistry("ghcr.io:port".into())
        );
        assert_eq!(
            problem("bad_host.io/a"),
            ReferenceProblem::InvalidRegistry("bad_host.io".into())
        );
    }

    #[test]
    fn bad_digest_is_named() {
        let err = Reference::parse("ghcr.io/a/b@sha256:1234").unwrap_err();
        assert!(matches!(
            err.problem,
            ReferenceProblem::InvalidDigest(DigestError::BadHex(_))
        ));
        let msg = err.to_string();
        assert!(msg.contains("ghcr.io/a/b@sha256:1234"), "{msg}");
        assert!(msg.contains("64 lowercase hex"), "{msg}");
    }

    #[test]
    fn with_tag_and_digest() {
        let r = Reference::parse("ghcr.io/a/b:v1").unwrap();
        assert_eq!(r.with_tag("v2").unwrap().to_string(), "ghcr.io/a/b:v2");
        assert!(r.with_tag("no spaces").is_err());
        let d: Digest = D.parse().unwrap();
        assert_eq!(r.with_digest(d).to_string(), format!("ghcr.io/a/b@{D}"));
        assert_eq!(r.name(), "ghcr.io/a/b");
    }
}
