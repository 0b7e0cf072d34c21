//! Local Redis and PostgreSQL for the all-in-one commands.
//!
//! `run` and `demo` use the servers at their configured addresses when something
//! answers there. When nothing does and the address is local, `demo` (and `run`
//! with `--start-engines`) start private instances from the installed server
//! binaries with their data under a data directory, and stop them on exit, so a
//! newcomer needs no set-up beyond the binaries. Private instances listen on
//! 127.0.0.1 only, never on a Unix socket in a shared directory: PostgreSQL's
//! trust authentication must not be reachable from other machines.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A server this process started and must stop.
pub enum Private {
    Redis { pid_file: PathBuf, port: u16 },
    Postgres { pg_ctl: PathBuf, data_dir: PathBuf },
}

impl Private {
    pub fn stop(&self) {
        match self {
            Private::Redis { port, .. } => {
                let stopped = Command::new("redis-cli")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "shutdown",
                        "nosave",
                    ])
                    .status();
                if stopped.is_err() {
                    tracing::warn!("could not stop the private Redis on port {port}");
                }
            }
            Private::Postgres { .. } => {
                if let Err(e) = self.pg_ctl_stop("fast") {
                    tracing::warn!("{e:#}");
                }
            }
        }
    }

    /// Stops the server the way a crash would: PostgreSQL without a
    /// checkpoint (`-m immediate`, recovery runs at the next start), Redis
    /// without saving. For fault tests.
    pub fn stop_abruptly(&self) -> anyhow::Result<()> {
        match self {
            Private::Redis { .. } => {
                self.stop();
                Ok(())
            }
            Private::Postgres { .. } => self.pg_ctl_stop("immediate"),
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> anyhow::Result<()> {
        let Private::Postgres { pg_ctl, data_dir } = self else {
            return Ok(());
        };
        let mut stop = Command::new(pg_ctl);
        stop.arg("-D")
            .arg(data_dir)
            .args(["-m", mode, "-w", "stop"]);
        // pg_ctl refuses to run as root, as initdb and start do.
        run_as_owner_if_root(&mut stop, data_dir)?;
        let status = stop.status().context("running pg_ctl stop")?;
        if !status.success() {
            bail!(
                "pg_ctl stop -m {mode} exited with {status} for the private PostgreSQL in {}",
                data_dir.display()
            );
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        match self {
            Private::Redis { pid_file, port } => {
                format!(
                    "private Redis on 127.0.0.1:{port} (pid file {})",
                    pid_file.display()
                )
            }
            Private::Postgres { data_dir, .. } => {
                format!("private PostgreSQL with data in {}", data_dir.display())
            }
        }
    }
}

/// Whether something accepts TCP connections at `host:port` within 300 ms.
pub fn listening(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs.into_iter().any(|addr: SocketAddr| {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    })
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

fn wait_until_listening(host: &str, port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if listening(host, port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} did not start listening on {host}:{port} within 30 s")
}

/// Finds a server binary on PATH or in Debian's versioned PostgreSQL directories.
fn find_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|p| p.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

/// Makes sure a Redis answers at `host:port`, starting a private one if needed.
pub fn ensure_redis(host: &str, port: u16, data_dir: &Path) -> anyhow::Result<Option<Private>> {
    if listening(host, port) {
        return Ok(None);
    }
    if !is_loopback(host) {
        bail!("Redis at {host}:{port} is not answering (set --redis / REDIS_URL to a reachable server)");
    }
    let Some(server) = find_binary("redis-server") else {
        bail!(
            "nothing answers at Redis {host}:{port} and `redis-server` is not installed: \
             install it (Debian/Ubuntu: apt-get install redis-server) or point --redis at a running server"
        );
    };
    let dir = data_dir.join("redis");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pid_file = dir.join("redis.pid");
    let status = Command::new(server)
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .arg("--pidfile")
        .arg(&pid_file)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .status()
        .context("starting redis-server")?;
    if !status.success() {
        bail!(
            "redis-server exited with {status}; see {}",
            dir.join("redis.log").display()
        );
    }
    wait_until_listening("127.0.0.1", port, "the private Redis")?;
    Ok(Some(Private::Redis { pid_file, port }))
}

/// A free loopback port (bound and released; fine for a harness that then
/// starts a server on it).
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Server settings for a cluster that takes the firehose, as
/// docs/deploy.md recommends for any server skyhose writes to.
///
/// - `shared_buffers`, a quarter of the memory (128 MB to 8 GB): the
///   default 128 MB holds a fraction of the indexes every batch writes into,
///   so backends spend their CPU copying pages in from the kernel's cache and
///   writing dirty ones out themselves.
/// - `max_wal_size` and `checkpoint_timeout`: the first change of a page
///   after a checkpoint logs the whole page, and batches touch pages all over
///   large indexes; checkpoints every few minutes made most of the WAL such
///   images.
/// - `wal_writer_delay`: the WAL writer writes and flushes a batch's WAL
///   while the batch runs, so its commit finds most of it on disk instead
///   of writing and flushing megabytes itself while its worker waits.
pub fn indexing_settings() -> Vec<(&'static str, String)> {
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024);
    vec![
        (
            "shared_buffers",
            format!("{}MB", (memory_mb / 4).clamp(128, 8192)),
        ),
        ("max_wal_size", "8GB".to_owned()),
        ("checkpoint_timeout", "15min".to_owned()),
        ("wal_writer_delay", "10ms".to_owned()),
    ]
}

/// Makes sure a PostgreSQL answers at `host:port`, starting a private cluster
/// (trust auth, superuser `postgres`) if needed.
pub fn ensure_postgres(host: &str, port: u16, data_dir: &Path) -> anyhow::Result<Option<Private>> {
    if listening(host, port) {
        return Ok(None);
    }
    if !is_loopback(host) {
        bail!("PostgreSQL at {host}:{port} is not answering (set --database-url / DATABASE_URL)");
    }
    let (Some(initdb), Some(pg_ctl)) = (find_binary("initdb"), find_binary("pg_ctl")) else {
        bail!(
            "nothing answers at PostgreSQL {host}:{port} and `initdb`/`pg_ctl` are not installed: \
             install PostgreSQL (Debian/Ubuntu: apt-get install postgresql) or point --database-url at a running server"
        );
    };
    let dir = data_dir.join("postgres");
    if !dir.join("PG_VERSION").is_file() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut init = Command::new(&initdb);
        init.arg("-D")
            .arg(&dir)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        run_as_owner_if_root(&mut init, &dir)?;
        let status = init.status().context("running initdb")?;
        if !status.success() {
            bail!("initdb exited with {status} for {}", dir.display());
        }
    }
    let mut start = Command::new(&pg_ctl);
    start
        .arg("-D")
        .arg(&dir)
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -c unix_socket_directories='' -c listen_addresses=127.0.0.1 {}",
            indexing_settings()
                .iter()
                .map(|(name, value)| format!("-c {name}={value}"))
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .args(["-w", "start"]);
    run_as_owner_if_root(&mut start, &dir)?;
    let status = start.status().context("running pg_ctl start")?;
    if !status.success() {
        bail!(
            "pg_ctl start exited with {status}; see {}",
            dir.join("server.log").display()
        );
    }
    wait_until_listening("127.0.0.1", port, "the private PostgreSQL")?;
    Ok(Some(Private::Postgres {
        pg_ctl,
        data_dir: dir,
    }))
}

/// PostgreSQL refuses to run as root; when we are root, the private cluster is
/// owned by and run as the `postgres` system user if it exists.
fn run_as_owner_if_root(cmd: &mut Command, dir: &Path) -> anyhow::Result<()> {
    // `id -u` spares a libc dependency for one number.
    let uid = Command::new("id").arg("-u").output().ok();
    let is_root = uid.is_some_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !is_root {
        return Ok(());
    }
    let chown = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .context("chown of the PostgreSQL data directory")?;
    if !chown.success() {
        bail!(
            "running as root needs a `postgres` system user to own {}",
            dir.display()
        );
    }
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("runuser");
    wrapped
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args);
    *cmd = wrapped;
    Ok(())
}
