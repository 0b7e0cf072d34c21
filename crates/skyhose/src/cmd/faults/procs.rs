//! Pipeline processes (`skyhose ingest`, `index`, `run`) started as children of
//! this binary, so a fault can be a real SIGKILL, and their peak memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use skyhose_index::CancellationToken;
use tokio::process::{Child, Command};

use crate::cmd::bench::sample;

/// One child process; killed when dropped, so no scenario leaves one behind.
pub struct Proc {
    label: String,
    child: Child,
    pid: u32,
    rss: RssMonitor,
}

impl Proc {
    /// Starts `exe args…` with its stderr appended to `log`.
    pub fn spawn(
        exe: &Path,
        args: &[String],
        label: &str,
        log: &Path,
        rss: &RssMonitor,
    ) -> anyhow::Result<Proc> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening the log {}", log.display()))?;
        let child = Command::new(exe)
            .args(args)
            // Every setting is a flag: nothing from this shell's config may leak in.
            .env_remove(crate::config::CONFIG_ENV)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting `skyhose {label}`"))?;
        let pid = child
            .id()
            .with_context(|| format!("`skyhose {label}` exited before it had a pid"))?;
        rss.watch(pid);
        Ok(Proc {
            label: label.to_owned(),
            child,
            pid,
            rss: rss.clone(),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The exit status if the process has ended on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGSTOP (`resume` sends SIGCONT): the process holds its connections
    /// but does nothing, as a process stuck behind a slow disk or a long pause.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> anyhow::Result<()> {
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid.to_string()])
            .status()
            .with_context(|| format!("running kill -{name}"))?;
        anyhow::ensure!(sent.success(), "kill -{name} {} failed", self.pid);
        Ok(())
    }

    /// SIGKILL: no chance to flush, save or acknowledge anything.
    pub async fn sigkill(mut self) {
        self.rss.sample_now(self.pid);
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.rss.forget(self.pid);
    }

    /// SIGTERM and wait for the ordered shutdown; SIGKILL after `grace`.
    /// Returns the exit status of a clean stop, or an error saying what happened.
    pub async fn terminate(mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.rss.sample_now(self.pid);
        if let Some(status) = self.exited() {
            self.rss.forget(self.pid);
            anyhow::bail!("`skyhose {}` had already exited with {status}", self.label);
        }
        self.signal("TERM")?;
        let waited = tokio::time::timeout(grace, self.child.wait()).await;
        self.rss.forget(self.pid);
        match waited {
            Ok(status) => Ok(status?),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                anyhow::bail!(
                    "`skyhose {}` did not stop within {grace:?} of SIGTERM",
                    self.label
                )
            }
        }
    }
}

/// Highest peak resident set (VmHWM) seen among the watched processes.
/// Sampled a few times a second and once more right before each kill, since a
/// process's own peak vanishes with it.
#[derive(Clone, Default)]
pub struct RssMonitor {
    inner: Arc<Mutex<RssState>>,
}

#[derive(Default)]
struct RssState {
    live: HashMap<u32, u64>,
    peak_kb: u64,
}

impl RssMonitor {
    /// Starts sampling every 250 ms until `stop`.
    pub fn start(stop: CancellationToken) -> RssMonitor {
        let monitor = RssMonitor::default();
        let sampler = monitor.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            while !stop.is_cancelled() {
                tokio::select! {
                    _ = tick.tick() => sampler.sample_all(),
                    _ = stop.cancelled() => {}
                }
            }
        });
        monitor
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RssState> {
        // A poisoned lock only means a sampler panicked mid-update of numbers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watch(&self, pid: u32) {
        self.lock().live.insert(pid, 0);
    }

    fn forget(&self, pid: u32) {
        self.lock().live.remove(&pid);
    }

    fn sample_now(&self, pid: u32) {
        if let Some(s) = sample(pid) {
            let mut state = self.lock();
            state.peak_kb = state.peak_kb.max(s.peak_rss_kb);
        }
    }

    fn sample_all(&self) {
        let pids: Vec<u32> = self.lock().live.keys().copied().collect();
        for pid in pids {
            self.sample_now(pid);
        }
    }

    pub fn peak_kb(&self) -> u64 {
        self.sample_all();
        self.lock().peak_kb
    }
}

/// A fresh log file name under `dir` for the next process labelled `label`.
pub fn log_path(dir: &Path, label: &str, n: usize) -> PathBuf {
    dir.join(format!("{label}-{n:04}.log"))
}
