//! `skyhose config [COMMAND [OPTIONS]]`: the settings COMMAND would run with,
//! each with its source, printed as a TOML table that can seed a config file.

use std::ffi::OsString;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command};

use crate::config::{self, mask::mask, Layers};

/// Options of `skyhose config`.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// The command line to explain, e.g. `ingest --redis redis://cache:6379`
    /// (default: `run`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// `cli` is the whole command-line definition, so any command can be explained.
pub fn run(args: ConfigArgs, cli: Command) -> anyhow::Result<()> {
    let process_argv: Vec<OsString> = std::env::args_os().collect();
    let (cli, layers) = config::layered(cli, &process_argv)?;
    let mut argv: Vec<OsString> = vec![cli.get_name().into()];
    if args.command.is_empty() {
        argv.push("run".into());
    } else {
        argv.extend(args.command);
    }
    let matches = config::matches_or_exit(&cli, &argv, &layers);
    print!("{}", render(&cli, &matches, &layers)?);
    Ok(())
}

/// One printed setting.
struct Line {
    key: String,
    value: Option<String>,
    source: String,
}

fn render(cli: &Command, matches: &ArgMatches, layers: &Layers) -> anyhow::Result<String> {
    let mut path = Vec::new();
    let (mut cmd, mut m) = (cli, matches);
    while let Some((name, sub_matches)) = m.subcommand() {
        path.push(name.to_owned());
        cmd = cmd
            .find_subcommand(name)
            .with_context(|| format!("no command {name}"))?;
        m = sub_matches;
    }
    if path.is_empty() {
        anyhow::bail!("name a command, e.g. `skyhose config ingest`");
    }
    if path.first().map(String::as_str) == Some("config") {
        anyhow::bail!("`config` has no settings of its own; name another command");
    }

    let mut lines = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version" | "config") {
            continue;
        }
        let key = arg.get_long().unwrap_or(id).to_owned();
        let value = m
            .try_get_raw(id)
            .ok()
            .flatten()
            .map(|raw| {
                raw.map(|v| mask(id, &v.to_string_lossy()))
                    .collect::<Vec<_>>()
            })
            .map(|values| match values.as_slice() {
                [one] => literal(one),
                many => format!(
                    "[{}]",
                    many.iter()
                        .map(|v| literal(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) => format!("flag --{key}"),
            Some(ValueSource::EnvVariable) => format!(
                "env {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(ValueSource::DefaultValue) => match layers.from_file.key(&path, id) {
                Some(file_key) => format!("file: {file_key}"),
                None => "default".to_owned(),
            },
            _ => "not set".to_owned(),
        };
        lines.push(Line { key, value, source });
    }

    let mut out = format!("# skyhose {}: effective configuration\n", path.join(" "));
    match &layers.file {
        Some((file, named_by)) => out.push_str(&format!(
            "# config file: {} (from {named_by})\n",
            file.display()
        )),
        None => out.push_str(&format!(
            "# config file: none (--config FILE or {})\n",
            config::CONFIG_ENV
        )),
    }
    out.push_str(&format!("[{}]\n", path.join(".")));
    let width = lines
        .iter()
        .map(|l| l.key.len() + l.value.as_ref().map_or(0, |v| v.len() + 3) + 2)
        .max()
        .unwrap_or(0);
    for line in lines {
        let assignment = match &line.value {
            Some(value) => format!("{} = {value}", line.key),
            // Commented out, so the output stays a valid config file.
            None => format!("# {}", line.key),
        };
        out.push_str(&format!("{assignment:<width$}  # {}\n", line.source));
    }
    Ok(out)
}

/// A TOML number or boolean when the value reads as one (the file accepts
/// either form for any option), else a string.
fn literal(value: &str) -> String {
    let integer = value.parse::<i64>().is_ok_and(|n| n.to_string() == value);
    if integer || value == "true" || value == "false" {
        value.to_owned()
    } else {
        quote(value)
    }
}

/// A TOML basic string.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{literal, quote};

    #[test]
    fn quoted_values_are_toml_strings() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("x\u{1}"), r#""x\u0001""#);
        assert_eq!(literal("500000"), "500000");
        assert_eq!(literal("007"), "\"007\"");
        assert_eq!(literal("true"), "true");
        assert_eq!(literal("30s"), "\"30s\"");
    }
}
