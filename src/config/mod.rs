//! The pipeline file and the GitHub run context, each read and validated once, up front.

pub mod context;
pub mod cron;
pub mod depth;
pub mod duration;
pub mod event;
pub mod locate;
pub mod pipeline;
pub mod validate;

use std::path::{Component as PathPart, Path, PathBuf};

use crate::error::{InputError, InputProblem};
use locate::FieldPositions;
pub use pipeline::Pipeline;
use validate::Workspace;

/// Where the pipeline file is looked for when `--config` is not given.
pub const DEFAULT_PIPELINE_PATH: &str = ".github/jisu-deploy.yml";

/// A repository checkout on disk; paths in the pipeline file are relative to it.
pub struct Checkout {
    root: PathBuf,
    /// Whether the repository's files are there to check the paths against.
    files: bool,
}

impl Checkout {
    /// The checkout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Checkout {
            root: root.into(),
            files: true,
        }
    }

    /// No checkout, for a command that reads none of the repository's files (`backup`
    /// and `restore`, e.g. in a CronJob that has only the pipeline file): its paths are
    /// checked for shape only, relative and never `..`.
    pub fn without_files(root: impl Into<PathBuf>) -> Self {
        Checkout {
            root: root.into(),
            files: false,
        }
    }

    fn shaped(path: &str) -> bool {
        let path = Path::new(path);
        !path.as_os_str().is_empty()
            && path.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            })
    }

    /// Resolves a path from the pipeline file inside the checkout: absolute paths, `..`
    /// and symbolic links that lead outside are refused (see [`crate::process::inside`]).
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        crate::process::inside(&self.root, path)
    }
}

impl Workspace for Checkout {
    fn is_dir(&self, path: &str) -> bool {
        if !self.files {
            return Checkout::shaped(path);
        }
        self.resolve(path).is_some_and(|p| p.is_dir())
    }
    fn is_file(&self, path: &str) -> bool {
        if !self.files {
            return Checkout::shaped(path);
        }
        self.resolve(path).is_some_and(|p| p.is_file())
    }
}

/// Refuses a file that lies in the checkout but resolves (through symbolic links) to a
/// place outside it: a pull request can add such a link, and the file's content could end
/// up in an error or be applied to the cluster. A path the user names outside the checkout
/// (`--config /etc/jisu.yml`) is theirs to choose and is left alone.
pub fn contained(path: &Path, checkout: &Path) -> Result<(), String> {
    let absolute = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    };
    let root = absolute(checkout);
    let lexical = normalize(&absolute(path));
    if !lexical.starts_with(normalize(&root)) {
        return Ok(());
    }
    let (Ok(real), Ok(real_root)) = (path.canonicalize(), root.canonicalize()) else {
        // Missing files are reported by the read that follows.
        return Ok(());
    };
    if real.starts_with(&real_root) {
        Ok(())
    } else {
        Err("is a symbolic link to a file outside the checkout; refusing to read it".to_owned())
    }
}

/// `path` with `.` and `..` folded away, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Largest input file read (pipeline file, event payload, digests): far above any real
/// one, low enough that a wrong path cannot exhaust memory.
pub const MAX_INPUT_FILE: u64 = 8 << 20;

/// The bytes of the file at `path` when it holds at most `limit` bytes, `None` when it
/// holds more. Never reads more than `limit + 1` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Reads an input file named by a flag or the runner, at most [`MAX_INPUT_FILE`] bytes;
/// failing is bad input that names `what` it held.
pub fn read_input(path: &Path, what: &str) -> Result<String, InputError> {
    let bad = |message: String| InputError::new(path.display().to_string(), None, message);
    let bytes = read_bounded(path, MAX_INPUT_FILE)
        .map_err(|err| bad(format!("cannot read {what}: {err}")))?
        .ok_or_else(|| {
            bad(format!(
                "{what} is larger than {} MiB; is this the right file?",
                MAX_INPUT_FILE >> 20
            ))
        })?;
    String::from_utf8(bytes).map_err(|_| bad(format!("{what} is not UTF-8 text")))
}

/// Reads, parses and validates the pipeline file at `path` in `checkout`.
pub fn load(path: &Path, checkout: &Checkout) -> Result<Pipeline, InputError> {
    let source = path.display().to_string();
    contained(path, &checkout.root).map_err(|message| {
        InputError::new(&source, None, format!("the pipeline file {message}"))
    })?;
    let workspace: &dyn Workspace = checkout;
    let text = read_input(path, "the pipeline file").map_err(|err| {
        InputError::new(
            &source,
            None,
            format!(
                "{}; create it or pass --config FILE (default: {DEFAULT_PIPELINE_PATH})",
                err.problems[0].message
            ),
        )
    })?;
    parse(&text, &source, workspace)
}

/// Parses and validates pipeline YAML; `source` names it in errors.
pub fn parse(text: &str, source: &str, workspace: &dyn Workspace) -> Result<Pipeline, InputError> {
    if let Some(position) = depth::too_deep(text, depth::MAX_DEPTH) {
        return Err(InputError {
            problems: vec![InputProblem {
                source: source.to_owned(),
                position: Some(position),
                field: None,
                message: format!(
                    "the pipeline file nests deeper than {} levels here; is this the right file?",
                    depth::MAX_DEPTH
                ),
            }],
        });
    }
    let is_empty = matches!(
        serde_yaml::from_str::<serde_yaml::Value>(text),
        Ok(serde_yaml::Value::Null)
    );
    if is_empty {
        return Err(InputError::new(
            source,
            None,
            "the pipeline file is empty; it needs at least `version`, `images`, `components` and `environments` (see examples/jisu/jisu-deploy.yml)",
        ));
    }
    if has_several_documents(text) {
        return Err(InputError::new(
            source,
            None,
            "the pipeline file holds several YAML documents; keep one (remove the `---` separators)",
        ));
    }
    let positions = FieldPositions::index(text);
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let pipeline: Pipeline = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.inner();
        let position = inner
            .location()
            .map(|at| (at.line(), at.column()))
            .or_else(|| positions.find(&field).map(|p| (p.line, p.column)));
        InputError {
            problems: vec![InputProblem {
                source: source.to_owned(),
                position,
                message: without_location(&inner.to_string(), &field),
                field: (field != ".").then_some(field),
            }],
        }
    })?;
    let violations = validate::validate(&pipeline, workspace);
    if violations.is_empty() {
        return Ok(pipeline);
    }
    let problems = violations
        .into_iter()
        .map(|(field, message)| InputProblem {
            source: source.to_owned(),
            position: positions.find(&field).map(|p| (p.line, p.column)),
            field: Some(field),
            message,
        })
        .collect();
    Err(InputError { problems })
}

/// Whether `text` holds more than one YAML document. Stops at the first syntax error (which
/// the real parse then reports): serde_yaml's document iterator repeats an error forever.
fn has_several_documents(text: &str) -> bool {
    use serde::Deserialize;
    let mut documents = 0;
    for document in serde_yaml::Deserializer::from_str(text) {
        if serde::de::IgnoredAny::deserialize(document).is_err() {
            break;
        }
        documents += 1;
        if documents > 1 {
            return true;
        }
    }
    false
}

/// serde_yaml wraps its message in the field path and " at line L column C"; both are
/// reported separately.
fn without_location(message: &str, field: &str) -> String {
    let message = message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(message);
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}
