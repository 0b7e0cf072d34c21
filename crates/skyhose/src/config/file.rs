//! The optional TOML file. Each key becomes the default value of the matching
//! option, which is what puts the file below flags and environment variables.
//!
//! Top-level keys apply to every command that has the option; a `[command]`
//! table (or `[bench.index]` for a nested one) applies to that command and
//! wins over the top level. A key is the option's long flag name
//! (`database-url`) or its environment variable (`DATABASE_URL`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Command;
use toml::{Table, Value};

/// One `key = value` of the file and the table it was written in.
#[derive(Debug)]
struct Entry {
    /// Command path of the table: empty for the top level, `["bench", "index"]`
    /// for `[bench.index]`.
    scope: Vec<String>,
    key: String,
    values: Vec<String>,
}

impl Entry {
    /// How the key is shown to the user: `key` or `[table] key`.
    fn label(&self) -> String {
        if self.scope.is_empty() {
            format!("`{}`", self.key)
        } else {
            format!("`{}` in [{}]", self.key, self.scope.join("."))
        }
    }
}

#[derive(Debug)]
pub struct FileConfig {
    pub path: PathBuf,
    entries: Vec<Entry>,
}

/// Which options took their value from the file: (command path, option id) →
/// the key as written, e.g. `` `redis` in [index] ``.
#[derive(Debug, Default)]
pub struct FromFile(HashMap<(Vec<String>, String), String>);

impl FromFile {
    pub fn key(&self, command: &[String], id: &str) -> Option<&str> {
        self.0
            .get(&(command.to_vec(), id.to_owned()))
            .map(String::as_str)
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Self> {
        let table: Table = text
            .parse()
            .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
        let mut entries = Vec::new();
        collect(&table, &mut Vec::new(), &mut entries)
            .with_context(|| format!("in the config file {}", path.display()))?;
        Ok(FileConfig {
            path: path.to_owned(),
            entries,
        })
    }

    /// Sets the file's values as defaults of `cmd`'s options. Every table must
    /// name a command and every key an option of it (or of a subcommand, for
    /// keys above it), so a typo fails at start instead of being ignored.
    pub fn apply(&self, cmd: Command) -> anyhow::Result<(Command, FromFile)> {
        let mut from_file = FromFile::default();
        let mut used = HashSet::new();
        let mut scopes = HashSet::new();
        let cmd = self.apply_to(cmd, &mut Vec::new(), &mut from_file, &mut used, &mut scopes);
        for entry in &self.entries {
            if !scopes.contains(&entry.scope) {
                bail!(
                    "config file {}: [{}] is not a skyhose command",
                    self.path.display(),
                    entry.scope.join(".")
                );
            }
        }
        if let Some(entry) = self.entries.iter().enumerate().find_map(|(i, e)| {
            let unused = !used.contains(&i);
            unused.then_some(e)
        }) {
            bail!(
                "config file {}: unknown setting {}: no option --{} there (see `skyhose <command> --help`)",
                self.path.display(),
                entry.label(),
                entry.key
            );
        }
        Ok((cmd, from_file))
    }

    fn apply_to(
        &self,
        mut cmd: Command,
        path: &mut Vec<String>,
        from_file: &mut FromFile,
        used: &mut HashSet<usize>,
        scopes: &mut HashSet<Vec<String>>,
    ) -> Command {
        scopes.insert(path.clone());
        let options: Vec<(String, Option<String>, Option<String>)> = cmd
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "config"))
            .map(|a| {
                (
                    a.get_id().to_string(),
                    a.get_long().map(str::to_owned),
                    a.get_env().and_then(|e| e.to_str()).map(str::to_owned),
                )
            })
            .collect();
        let mut defaults: HashMap<String, Vec<String>> = HashMap::new();
        for (id, long, env) in options {
            let mut best: Option<usize> = None;
            for (i, entry) in self.entries.iter().enumerate() {
                let names_it =
                    Some(&entry.key) == long.as_ref() || Some(&entry.key) == env.as_ref();
                if names_it && path.starts_with(&entry.scope) {
                    used.insert(i);
                    // The most specific table wins; within one table the last key.
                    let wins = match best {
                        None => true,
                        Some(b) => self.entries[b].scope.len() <= entry.scope.len(),
                    };
                    if wins {
                        best = Some(i);
                    }
                }
            }
            if let Some(i) = best {
                let entry = &self.entries[i];
                from_file
                    .0
                    .insert((path.clone(), id.clone()), entry.label());
                defaults.insert(id, entry.values.clone());
            }
        }
        // `mut_args` edits in place; `mut_arg` would move the option to the end of `--help`.
        if !defaults.is_empty() {
            cmd = cmd.mut_args(|arg| match defaults.get(arg.get_id().as_str()) {
                Some(values) => arg.default_values(values.clone()),
                None => arg,
            });
        }
        let subcommands: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .filter(|name| name != "config")
            .collect();
        for name in subcommands {
            path.push(name.clone());
            cmd = cmd.mut_subcommand(&name, |sub| {
                self.apply_to(sub, path, from_file, used, scopes)
            });
            path.pop();
        }
        cmd
    }
}

fn collect(table: &Table, scope: &mut Vec<String>, entries: &mut Vec<Entry>) -> anyhow::Result<()> {
    for (key, value) in table {
        if let Value::Table(inner) = value {
            scope.push(key.clone());
            collect(inner, scope, entries)?;
            scope.pop();
            continue;
        }
        let values = match value {
            Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    anyhow!("{key}: a list may hold only strings, numbers and booleans")
                })?,
            other => vec![scalar(other)
                .ok_or_else(|| anyhow!("{key}: expected a string, number or boolean"))?],
        };
        entries.push(Entry {
            scope: scope.clone(),
            key: key.clone(),
            values,
        });
    }
    Ok(())
}

/// A value as it would be typed after the flag.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Datetime(d) => Some(d.to_string()),
        Value::Array(_) | Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cli() -> Command {
        Command::new("t")
            .subcommand(
                Command::new("ingest")
                    .arg(
                        Arg::new("redis_url")
                            .long("redis")
                            .env("REDIS_URL")
                            .default_value("redis://d"),
                    )
                    .arg(Arg::new("batch_max").long("batch-max").default_value("1")),
            )
            .subcommand(
                Command::new("index")
                    .arg(
                        Arg::new("redis_url")
                            .long("redis")
                            .env("REDIS_URL")
                            .default_value("redis://d"),
                    )
                    .arg(
                        Arg::new("exit")
                            .long("exit-when-drained")
                            .action(ArgAction::SetTrue),
                    ),
            )
    }

    fn matches(text: &str, argv: &[&str]) -> anyhow::Result<(clap::ArgMatches, FromFile)> {
        let file = FileConfig::parse(Path::new("t.toml"), text)?;
        let (cmd, from_file) = file.apply(cli())?;
        Ok((cmd.try_get_matches_from(argv)?, from_file))
    }

    #[test]
    fn section_wins_over_top_level_and_flags_win_over_file() {
        let text = "REDIS_URL = \"redis://top\"\n[index]\nredis = \"redis://index\"\nexit-when-drained = true\n";
        let (m, from) = matches(text, &["t", "index"]).unwrap();
        let (_, sub) = m.subcommand().unwrap();
        assert_eq!(sub.get_one::<String>("redis_url").unwrap(), "redis://index");
        assert!(sub.get_flag("exit"));
        assert_eq!(
            from.key(&["index".into()], "redis_url"),
            Some("`redis` in [index]")
        );

        let (m, _) = matches(text, &["t", "ingest", "--redis", "redis://flag"]).unwrap();
        let (_, sub) = m.subcommand().unwrap();
        assert_eq!(sub.get_one::<String>("redis_url").unwrap(), "redis://flag");
        let (m, _) = matches(text, &["t", "ingest"]).unwrap();
        let (_, sub) = m.subcommand().unwrap();
        assert_eq!(sub.get_one::<String>("redis_url").unwrap(), "redis://top");
    }

    #[test]
    fn unknown_keys_and_tables_are_errors() {
        let err = matches("[ingest]\nbatch-maxx = 3\n", &["t"]).unwrap_err();
        assert!(
            err.to_string().contains("`batch-maxx` in [ingest]"),
            "{err}"
        );
        let err = matches("[ingset]\nredis = \"x\"\n", &["t"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("[ingset] is not a skyhose command"),
            "{err}"
        );
        // A top-level key only one command has is fine.
        matches("batch-max = 3\n", &["t"]).unwrap();
        let err = matches("nested = [[1]]\n", &["t"]).unwrap_err();
        assert!(format!("{err:#}").contains("nested"), "{err:#}");
    }
}
