//! The `jisu-deploy` binary: parse flags, set up logging, run, map the error to an exit code.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use jisu_deploy::cli::Cli;
use jisu_deploy::error::{self, InputError};
use jisu_deploy::github::actions::{AnnotationAt, Runner};
use jisu_deploy::output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(split_command(std::env::args_os())) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help and version on stdout (exit 0) and usage errors on stderr (2).
            // clap quotes the offending value back; it goes through the output guard.
            let text = err.render().to_string();
            if err.use_stderr() {
                output::err_line(text.trim_end());
            } else {
                output::out(&text);
            }
            return ExitCode::from(if err.use_stderr() {
                error::EXIT_BAD_INPUT as u8
            } else {
                0
            });
        }
    };
    init_logging(&cli.log_level);
    let runner = Runner::from_env();
    match jisu_deploy::commands::run(&cli, runner.clone()) {
        Ok(()) => ExitCode::from(error::EXIT_OK as u8),
        Err(err) => {
            report(&err, &runner);
            ExitCode::from(error::exit_code(&err) as u8)
        }
    }
}

/// The Docker action passes its `command` input as one argument; `image build` arrives as
/// one word with a space, which becomes two here. No subcommand name has a space, so
/// nothing else changes meaning.
fn split_command(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.collect();
    if let Some(first) = args.get(1).and_then(|a| a.to_str()).map(str::to_owned)
        && first.contains(' ')
        && !first.starts_with('-')
    {
        let words: Vec<OsString> = first.split_whitespace().map(OsString::from).collect();
        args.splice(1..2, words);
    }
    args
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::GuardedStderr)
        // Colour codes only for a person at a terminal, never in CI logs or files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Prints the error on stderr and, inside Actions, as annotations GitHub shows on the run.
fn report(err: &anyhow::Error, runner: &Runner) {
    output::err_line(&format!("error: {}", error_text(err)));
    match err.downcast_ref::<InputError>() {
        Some(input) => {
            for problem in &input.problems {
                let at = AnnotationAt {
                    file: problem.position.map(|_| problem.source.clone()),
                    line: problem.position.map(|(line, _)| line),
                    column: problem.position.map(|(_, column)| column),
                    title: Some("jisu-deploy: bad input".to_owned()),
                };
                runner.error_annotation(&at, &problem.to_string());
            }
        }
        None => runner.error_annotation(&AnnotationAt::default(), &format!("{err:#}")),
    }
}

/// The error and its causes, `: `-separated as anyhow's `{:#}` does. Messages quote values
/// from outside (refs, file content, server answers), so each cause is escaped onto one
/// line; only the problems of an input error each get their own line.
fn error_text(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        match cause.downcast_ref::<InputError>() {
            Some(input) => {
                let problems: Vec<String> = input
                    .problems
                    .iter()
                    .map(|problem| output::escape(&problem.to_string()).into_owned())
                    .collect();
                parts.push(problems.join("\n       "));
            }
            None => parts.push(output::escape(&cause.to_string()).into_owned()),
        }
    }
    parts.join(": ")
}
