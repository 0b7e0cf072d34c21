//! Redis: `redis://` (plain TCP), `rediss://` (TLS, the certificate checked
//! against the public roots or the PEM file named by `cacert=`) and
//! `unix://` sockets. ACL users log in with `user:password@` in the URL.

use std::io;
use std::path::Path;
use std::sync::Arc;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{ConnectError, Engine};
use crate::query;
use crate::tls::{self, Check, Roots};

/// A byte stream to Redis, whichever transport carries it.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// The query parameter naming the PEM file of the CA that signed the
/// server's certificate (as `redis-cli --cacert`).
const CA_PARAM: &str = "cacert";

/// A Redis server as a URL describes it, with its TLS settings loaded.
#[derive(Clone)]
pub struct RedisTarget {
    info: ConnectionInfo,
    tls: Option<RedisTls>,
}

#[derive(Clone)]
struct RedisTls {
    roots: Roots,
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

/// A `redis` client for `url`.
pub fn redis_client(url: &str) -> Result<redis::Client, ConnectError> {
    RedisTarget::parse(url)?.client()
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<Self, ConnectError> {
        let (_, params, fragment) = query::split(url);
        let info = url
            .into_connection_info()
            .map_err(|e| ConnectError::url(Engine::Redis, e.to_string()))?;
        let ca_file = params
            .iter()
            .find(|(name, _)| name == CA_PARAM)
            .map(|(_, path)| path.as_str());
        let tls = match &info.addr {
            ConnectionAddr::TcpTls { host, insecure, .. } => {
                if *insecure || !fragment.is_empty() {
                    return Err(ConnectError::url(
                        Engine::Redis,
                        "rediss:// always checks the server's certificate; \
                         give its CA with ?cacert=FILE instead of #insecure",
                    ));
                }
                let roots = match ca_file {
                    Some(path) => Roots::from_file(Engine::Redis, Path::new(path))?,
                    None => Roots::Public,
                };
                let server_name = ServerName::try_from(host.clone()).map_err(|_| {
                    ConnectError::url(Engine::Redis, format!("{host:?} is not a TLS server name"))
                })?;
                Some(RedisTls {
                    config: Arc::new(tls::client_config(
                        Engine::Redis,
                        &Check::Full(roots.clone()),
                    )?),
                    roots,
                    server_name,
                })
            }
            _ if ca_file.is_some() => {
                return Err(ConnectError::url(
                    Engine::Redis,
                    "cacert= is for TLS connections: use rediss://",
                ))
            }
            _ => None,
        };
        Ok(RedisTarget { info, tls })
    }

    /// Where and as whom to connect (address, user, password, database).
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Whether connections are encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A `redis` client that connects as this target says.
    pub fn client(&self) -> Result<redis::Client, ConnectError> {
        let built = match &self.tls {
            Some(RedisTls {
                roots: Roots::File { pem, .. },
                ..
            }) => redis::Client::build_with_tls(
                self.info.clone(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            _ => redis::Client::open(self.info.clone()),
        };
        built.map_err(|e| ConnectError::url(Engine::Redis, e.to_string()))
    }

    /// A connected byte stream (TCP without Nagle's delay, a Unix socket,
    /// or TLS over TCP), for a client that speaks RESP itself.
    pub async fn open_stream(&self) -> io::Result<Box<dyn Duplex>> {
        match (&self.info.addr, &self.tls) {
            (ConnectionAddr::Tcp(host, port), _) => Ok(Box::new(tcp(host, *port).await?)),
            (ConnectionAddr::TcpTls { host, port, .. }, Some(tls)) => {
                let socket = tcp(host, *port).await?;
                let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(tls.server_name.clone(), socket)
                    .await
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("TLS handshake with Redis: {e}"))
                    })?;
                Ok(Box::new(stream))
            }
            (ConnectionAddr::Unix(path), _) => {
                Ok(Box::new(tokio::net::UnixStream::connect(path).await?))
            }
            (other, _) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("redis address {other}: only TCP, TLS and Unix sockets are supported"),
            )),
        }
    }
}

async fn tcp(host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpStream::connect((host, port)).await?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_need_no_tls() {
        let target = RedisTarget::parse("redis://u:p@127.0.0.1:6379/2").unwrap();
        assert!(!target.is_tls());
        assert_eq!(target.info().redis.username.as_deref(), Some("u"));
        assert_eq!(target.info().redis.db, 2);
        assert!(!RedisTarget::parse("rediss://cache.example:6380")
            .unwrap()
            .client()
            .unwrap()
            .get_connection_info()
            .addr
            .to_string()
            .is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let err = RedisTarget::parse("redis://h:6379/?cacert=/tmp/x.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("Redis") && err.contains("rediss://"), "{err}");
        let err = RedisTarget::parse("rediss://h:6380/#insecure")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cacert"), "{err}");
        let err = RedisTarget::parse("rediss://h:6380/?cacert=/nonexistent/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("Redis CA file /nonexistent/ca.pem"), "{err}");
    }
}
