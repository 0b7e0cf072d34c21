//! PostgreSQL: libpq's `sslmode` and `sslrootcert` URL parameters, read
//! here because tokio-postgres knows only `disable`, `prefer` and `require`
//! and does no certificate checks of its own.
//!
//! | sslmode | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | against `sslrootcert` if given, else not |
//! | `require` | always | against `sslrootcert` if given, else not |
//! | `verify-ca` | always | chain up to `sslrootcert` (or the public roots) |
//! | `verify-full` | always | chain and host name |
//!
//! `sslrootcert=system` means the public web PKI roots.

use std::path::Path;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{ConnectError, Engine};
use crate::query;
use crate::tls::{self, Check, Roots};

/// The connector every PostgreSQL connection is made with.
pub type PostgresTls = MakeRustlsConnect;

/// libpq's `sslmode` values that skyhose honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, ConnectError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(ConnectError::url(
                    Engine::Postgres,
                    format!(
                        "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                    ),
                ))
            }
        })
    }
}

/// A PostgreSQL server or database as a URL describes it: the
/// tokio-postgres settings and the TLS connector to use with them.
#[derive(Clone)]
pub struct Postgres {
    pub config: tokio_postgres::Config,
    pub tls: PostgresTls,
    pub ssl_mode: SslMode,
}

/// Reads `url` (`postgres://` or `postgresql://`, or libpq's `key=value`
/// form without TLS parameters) and loads its CA file.
pub fn postgres(url: &str) -> Result<Postgres, ConnectError> {
    let (base, params, fragment) = query::split(url);
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut rest = Vec::with_capacity(params.len());
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    for (name, value) in params {
        match name.as_str() {
            "sslmode" if is_url => mode = SslMode::parse(&value)?,
            "sslrootcert" if is_url => root_cert = Some(value),
            _ => rest.push((name, value)),
        }
    }
    let remaining = if is_url {
        query::join(base, &rest, fragment)
    } else {
        url.to_owned()
    };
    let mut config: tokio_postgres::Config = remaining
        .parse()
        .map_err(|e: tokio_postgres::Error| ConnectError::url(Engine::Postgres, e.to_string()))?;
    if !is_url {
        mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
    }
    let roots = match root_cert.as_deref() {
        Some("system") => Some(Roots::Public),
        Some(path) => Some(Roots::from_file(Engine::Postgres, Path::new(path))?),
        None => None,
    };
    let check = match (mode, roots) {
        (SslMode::Disable, _) => Check::Nothing,
        (SslMode::Prefer | SslMode::Require, None) => Check::Nothing,
        (SslMode::Prefer | SslMode::Require, Some(roots)) => Check::Chain(roots),
        (SslMode::VerifyCa, roots) => Check::Chain(roots.unwrap_or(Roots::Public)),
        (SslMode::VerifyFull, roots) => Check::Full(roots.unwrap_or(Roots::Public)),
    };
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    let tls = MakeRustlsConnect::new(tls::client_config(Engine::Postgres, &check)?);
    Ok(Postgres {
        config,
        tls,
        ssl_mode: mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libpq_modes_and_keeps_other_parameters() {
        let pg =
            postgres("postgres://u:p@db.example:5433/x?application_name=a&sslmode=verify-full")
                .unwrap();
        assert_eq!(pg.ssl_mode, SslMode::VerifyFull);
        assert_eq!(
            pg.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(pg.config.get_application_name(), Some("a"));
        assert_eq!(pg.config.get_dbname(), Some("x"));
        assert_eq!(
            postgres("postgres://u@h/x").unwrap().ssl_mode,
            SslMode::Prefer
        );
        assert_eq!(
            postgres("postgresql://u@h/x?sslmode=disable")
                .unwrap()
                .config
                .get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        assert_eq!(
            postgres("host=h user=u sslmode=require").unwrap().ssl_mode,
            SslMode::Require
        );
    }

    #[test]
    fn refuses_unknown_modes_and_missing_ca_files() {
        let err = postgres("postgres://u@h/x?sslmode=allow")
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("PostgreSQL URL: sslmode=allow"), "{err}");
        let err =
            postgres("postgres://u:secret@h/x?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
                .err()
                .unwrap()
                .to_string();
        assert!(
            err.contains("PostgreSQL CA file /nonexistent.pem") && !err.contains("secret"),
            "{err}"
        );
    }
}
