//! Configuration as a user meets it, through the built binary: the file is
//! overridden by the environment, which is overridden by flags; `skyhose
//! config` masks secrets; a bad value stops the start with a message naming
//! the setting it came from. No service is contacted.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

/// A config file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "skyhose-config-test-{}-{nanos}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("temp file is writable");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The binary with an environment holding only `env`, so the developer's or
/// CI's own DATABASE_URL and friends cannot leak into the result.
fn skyhose(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyhose"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("skyhose runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `key = value  # source` line of `key` in `skyhose config` output.
fn line<'a>(output: &'a str, key: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} ")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{output}"))
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let file = TempFile::new(
        r#"
# Top level: every command with the option.
redis = "redis://file-top:6379"
REDIS_STREAM_KEY = "file:events"
REDIS_CURSOR_KEY = "file:cursor"
batch-max = 10

[ingest]
relay = "wss://relay.file.example"
batch-max = 20
"#,
    );
    let path = file.0.to_str().expect("utf-8 temp path");
    let out = skyhose(
        &[
            "--config",
            path,
            "config",
            "ingest",
            "--stream-key",
            "flag:events",
        ],
        &[
            ("REDIS_URL", "redis://env:6379"),
            ("REDIS_STREAM_KEY", "env:events"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("# config file: {path} (from --config)")),
        "{text}"
    );
    assert!(text.contains("[ingest]"), "{text}");

    let relay = line(&text, "relay");
    assert!(relay.contains("\"wss://relay.file.example\""), "{relay}");
    assert!(relay.contains("# file: `relay` in [ingest]"), "{relay}");
    // The [ingest] table wins over the top level.
    let batch = line(&text, "batch-max");
    assert!(batch.starts_with("batch-max = 20 "), "{batch}");
    let redis = line(&text, "redis");
    assert!(
        redis.contains("redis://env:6379") && redis.contains("# env REDIS_URL"),
        "{redis}"
    );
    let stream = line(&text, "stream-key");
    assert!(
        stream.contains("\"flag:events\"") && stream.contains("# flag --stream-key"),
        "{stream}"
    );
    let cursor = line(&text, "cursor-key");
    assert!(
        cursor.contains("\"file:cursor\"") && cursor.contains("# file: `REDIS_CURSOR_KEY`"),
        "{cursor}"
    );
    let group = line(&text, "group");
    assert!(
        group.contains("\"firehose-processors\"") && group.ends_with("# default"),
        "{group}"
    );
    let fallback = line(&text, "fallback-cursor");
    assert!(fallback.ends_with("# not set"), "{fallback}");

    // The same file named by SKYHOSE_CONFIG, for another command: the top
    // level applies, the [ingest] table does not.
    let out = skyhose(&["config", "index"], &[("SKYHOSE_CONFIG", path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("(from SKYHOSE_CONFIG)"), "{text}");
    assert!(
        line(&text, "redis").contains("redis://file-top:6379"),
        "{text}"
    );
    assert!(line(&text, "stream-key").contains("file:events"), "{text}");
}

#[test]
fn passwords_are_masked() {
    let out = skyhose(
        &[
            "config",
            "run",
            "--database-url",
            "postgres://skyhose:pg-secret@db.internal:5432/skyhose",
        ],
        &[("REDIS_URL", "redis://:redis-secret@cache:6379/0")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains("pg-secret") && !text.contains("redis-secret"),
        "{text}"
    );
    assert!(
        line(&text, "database-url").contains("\"postgres://skyhose:***@db.internal:5432/skyhose\""),
        "{text}"
    );
    assert!(
        line(&text, "redis").contains("\"redis://:***@cache:6379/0\""),
        "{text}"
    );
}

#[test]
fn bad_values_name_the_setting() {
    // From the environment: the variable is named, not just the flag.
    let out = skyhose(&["ingest"], &[("REDIS_MAX_STREAM_LEN", "abc")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'abc' for REDIS_MAX_STREAM_LEN (--max-stream-len)"),
        "{err}"
    );

    // From the file: the key, its table and the file are named.
    let file = TempFile::new("[index]\nworkers = \"many\"\n");
    let path = file.0.to_str().expect("utf-8 temp path");
    let out = skyhose(&["--config", path, "index"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "invalid value 'many' for `workers` in [index] of {path} (--workers)"
        )),
        "{err}"
    );

    // A URL with the wrong scheme, from a flag.
    let out = skyhose(&["index", "--redis", "http://cache:6379"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("'--redis <REDIS_URL>'") && err.contains("redis://"),
        "{err}"
    );
    let out = skyhose(&["ingest"], &[("RELAY_URL", "https://bsky.network")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("for RELAY_URL (--relay)"),
        "{}",
        stderr(&out)
    );

    // A misspelt key fails rather than being ignored.
    let file = TempFile::new("[ingest]\nmax-stream-length = 5\n");
    let path = file.0.to_str().expect("utf-8 temp path");
    let out = skyhose(&["--config", path, "config", "ingest"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown setting `max-stream-length` in [ingest]"),
        "{}",
        stderr(&out)
    );

    // A missing file is named.
    let out = skyhose(&["--config", "/nonexistent/skyhose.toml", "config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/skyhose.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_example_file_is_valid_for_every_command_it_configures() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/skyhose.example.toml"
    );
    for command in ["ingest", "index", "serve", "run", "migrate"] {
        let out = skyhose(&["--config", example, "config", command], &[]);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("# file: "),
            "{command} takes nothing from the file:\n{text}"
        );
    }
}
