//! Errors the binary maps to exit codes: bad input (exit 2) versus a failed pipeline (exit 1).

use std::fmt;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code when the pipeline ran and failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code for bad usage or bad input: nothing was changed.
pub const EXIT_BAD_INPUT: i32 = 2;

/// One problem with something the user gave us (pipeline file, event payload, flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// Where the input came from: a file path, `--sha`, `INPUT_DRY-RUN`, ...
    pub source: String,
    /// Line and column in `source`, when it is a file and the place is known.
    pub position: Option<(usize, usize)>,
    /// The field at fault, as a dotted path (`environments.production.branch`).
    pub field: Option<String>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl InputProblem {
    /// A problem with no file position or field.
    pub fn new(source: &str, message: String) -> Self {
        InputProblem {
            source: source.to_owned(),
            position: None,
            field: None,
            message,
        }
    }
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Bad input: one or more problems, all reported at once, before any side effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    /// Every problem found; never empty.
    pub problems: Vec<InputProblem>,
}

impl InputError {
    /// A single problem with no file position.
    pub fn new(source: impl Into<String>, field: Option<&str>, message: impl Into<String>) -> Self {
        InputError {
            problems: vec![InputProblem {
                source: source.into(),
                position: None,
                field: field.map(str::to_owned),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// A run whose step failed (exit 1), or whose first failure was bad input found before
/// anything was changed (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RunFailed {
    /// The first failure, as `job/step: error`.
    pub message: String,
    /// The failure was bad input and nothing had been changed.
    pub bad_input: bool,
}

/// The exit code for an error that ended the run.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    let bad_input = error.chain().any(|cause| {
        cause
            .downcast_ref::<RunFailed>()
            .is_some_and(|r| r.bad_input)
            || cause.is::<InputError>()
            || cause.is::<clap::Error>()
            || cause.is::<crate::oci::ReferenceError>()
            || cause.is::<crate::images::credentials::CredentialError>()
    });
    if bad_input {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILED
    }
}
