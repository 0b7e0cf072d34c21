use std::fmt;
use std::path::PathBuf;

/// Which server a setting or a connection is for; every error names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Redis,
    Postgres,
}

impl Engine {
    pub fn label(self) -> &'static str {
        match self {
            Engine::Redis => "redis",
            Engine::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Redis => "Redis",
            Engine::Postgres => "PostgreSQL",
        })
    }
}

/// A connection setting that cannot be used. Messages never contain the
/// URL itself, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{engine} URL: {reason}")]
    Url { engine: Engine, reason: String },
    #[error("{engine} CA file {}: {reason}", path.display())]
    CaFile {
        engine: Engine,
        path: PathBuf,
        reason: String,
    },
    #[error("{engine} TLS settings: {reason}")]
    Tls { engine: Engine, reason: String },
}

impl ConnectError {
    /// Counts the error (`skyhose_connect_setting_errors_total{engine}`) and
    /// hands it back, so every refused setting is both reported and counted.
    pub(crate) fn counted(self) -> Self {
        let engine = match &self {
            ConnectError::Url { engine, .. }
            | ConnectError::CaFile { engine, .. }
            | ConnectError::Tls { engine, .. } => *engine,
        };
        metrics::counter!("skyhose_connect_setting_errors_total", "engine" => engine.label())
            .increment(1);
        self
    }

    pub(crate) fn url(engine: Engine, reason: impl Into<String>) -> Self {
        ConnectError::Url {
            engine,
            reason: reason.into(),
        }
        .counted()
    }
}
