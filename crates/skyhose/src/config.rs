//! Where settings come from, strongest first: flags, environment variables, the
//! optional TOML file named by `--config` or `SKYHOSE_CONFIG`, built-in
//! defaults. The file's values are installed as clap defaults before parsing,
//! so clap itself applies the order and validates every value, whatever its
//! source. See docs/configuration.md.

pub mod check;
mod file;
pub mod mask;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, Command, Parser};

pub use file::FromFile;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "SKYHOSE_CONFIG";

/// The config file in effect, if any, and which options took their value from it.
#[derive(Debug, Default)]
pub struct Layers {
    /// The file and what named it (`--config` or `SKYHOSE_CONFIG`).
    pub file: Option<(PathBuf, &'static str)>,
    pub from_file: FromFile,
}

/// `cmd` with the config file's values installed as defaults. `argv` is only
/// searched for `--config`; it is not parsed here.
pub fn layered(cmd: Command, argv: &[OsString]) -> anyhow::Result<(Command, Layers)> {
    let Some((path, named_by)) = config_path(argv) else {
        return Ok((cmd, Layers::default()));
    };
    let file = file::FileConfig::load(&path)?;
    let (cmd, from_file) = file.apply(cmd)?;
    Ok((
        cmd,
        Layers {
            file: Some((path, named_by)),
            from_file,
        },
    ))
}

/// Parses the process's command line into `T` with every layer applied, or
/// exits with a message naming the bad setting (status 2, as clap does).
pub fn parse<T: Parser>() -> T {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let (mut cmd, layers) = match layered(T::command(), &argv) {
        Ok(layered) => layered,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let mut matches = matches_or_exit(&cmd, &argv, &layers);
    match T::from_arg_matches_mut(&mut matches) {
        Ok(parsed) => parsed,
        Err(e) => e.format(&mut cmd).exit(),
    }
}

/// `argv` parsed by `cmd`, or the process exits with clap's message, reworded
/// to name the environment variable or file key when the bad value came from one.
pub fn matches_or_exit(cmd: &Command, argv: &[OsString], layers: &Layers) -> ArgMatches {
    match cmd.clone().try_get_matches_from(argv) {
        Ok(matches) => matches,
        Err(err) => match name_the_source(&err, cmd, argv, layers) {
            Some(message) => {
                eprint!("{message}");
                std::process::exit(2);
            }
            None => err.exit(),
        },
    }
}

/// The `--config FILE` of `argv` (before any `--`), else `SKYHOSE_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<(PathBuf, &'static str)> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(|p| (PathBuf::from(p), "--config"));
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some((PathBuf::from(path), "--config"));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(|p| (PathBuf::from(p), CONFIG_ENV))
}

/// Clap names only the flag in a bad-value error; when the value came from an
/// environment variable or the file, the message names that instead.
fn name_the_source(
    err: &clap::Error,
    cmd: &Command,
    argv: &[OsString],
    layers: &Layers,
) -> Option<String> {
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(invalid_arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = invalid_arg.split(' ').next()?;
    let long = flag.strip_prefix("--")?;
    let on_command_line = argv.iter().filter_map(|a| a.to_str()).any(|a| {
        a == flag
            || a.strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    });
    if on_command_line {
        return None;
    }
    let (path, sub) = subcommand_of(cmd, argv);
    let arg = sub.get_arguments().find(|a| a.get_long() == Some(long))?;
    let env_set = arg
        .get_env()
        .filter(|name| std::env::var_os(name).is_some())
        .and_then(|name| name.to_str());
    let setting = match (
        env_set,
        layers.from_file.key(&path, arg.get_id().as_str()),
        &layers.file,
    ) {
        (Some(env), _, _) => env.to_owned(),
        (None, Some(key), Some((file, _))) => format!("{key} of {}", file.display()),
        _ => return None,
    };
    let rendered = err.render().to_string();
    Some(rendered.replacen(
        &format!("for '{invalid_arg}'"),
        &format!("for {setting} ({flag})"),
        1,
    ))
}

/// The innermost subcommand named in `argv` and its path from the top.
fn subcommand_of<'c>(cmd: &'c Command, argv: &[OsString]) -> (Vec<String>, &'c Command) {
    let mut path = Vec::new();
    let mut current = cmd;
    for arg in argv.iter().skip(1).filter_map(|a| a.to_str()) {
        if let Some(sub) = current.find_subcommand(arg) {
            path.push(sub.get_name().to_owned());
            current = sub;
        }
    }
    (path, current)
}
