//! ingest, index and serve against a Redis and a PostgreSQL that accept
//! only TLS and passwords, on loopback, with certificates from a CA made
//! here: everything flows through `rediss://user:pass@…?cacert=` and
//! `postgres://user:pass@…?sslmode=verify-full&sslrootcert=`, and the wrong
//! CA, a plain connection or no CA at all fail or work as documented.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use skyhose_sim::relay::{self, RelayConfig};
use skyhose_sim::SimConfig;

const TOTAL: u64 = 2_000;
const REDIS_USER: &str = "skyhose";
const REDIS_PASSWORD: &str = "redis-pw-1";
const PG_PASSWORD: &str = "pg-pw-1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Pki {
    ca: PathBuf,
    wrong_ca: PathBuf,
    cert: String,
    key: String,
}

fn make_pki(dir: &Path) -> Pki {
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca_cert, ca_key) = ca("skyhose test CA");
    let (wrong_cert, _) = ca("some other CA");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        wrong_ca: dir.join("wrong-ca.pem"),
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.wrong_ca, wrong_cert.pem()).unwrap();
    pki
}

/// Servers and processes this test started, stopped however it ends.
struct Stop {
    children: Vec<Child>,
    pg: Option<(PathBuf, PathBuf)>,
    dir: PathBuf,
}

impl Drop for Stop {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((pg_ctl, data)) = &self.pg {
            let _ = as_postgres(Command::new(pg_ctl).arg("-D").arg(data).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]))
            .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// PostgreSQL refuses to run as root: then it runs as `postgres`.
fn as_postgres(cmd: &mut Command) -> Command {
    if !is_root() {
        let mut same = Command::new(cmd.get_program());
        same.args(cmd.get_args());
        return same;
    }
    let mut wrapped = Command::new("runuser");
    wrapped
        .args(["-u", "postgres", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    wrapped
}

fn pg_binary(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL server binaries are installed")
}

fn start_redis(dir: &Path, pki: &Pki, port: u16) -> Child {
    std::fs::write(dir.join("redis.crt"), &pki.cert).unwrap();
    std::fs::write(dir.join("redis.key"), &pki.key).unwrap();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .arg("--tls-cert-file")
        .arg(dir.join("redis.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("redis.key"))
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--user", "default", "off"])
        .args([
            "--user",
            REDIS_USER,
            "on",
            &format!(">{REDIS_PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    wait_listening(port, "Redis");
    child
}

fn start_postgres(dir: &Path, pki: &Pki, port: u16) -> (PathBuf, PathBuf) {
    let data = dir.join("pg");
    std::fs::create_dir_all(&data).unwrap();
    if is_root() {
        assert!(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap()
            .success());
    }
    let initdb = pg_binary("initdb");
    let status = as_postgres(Command::new(&initdb).arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
    ]))
    .stdout(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success(), "initdb");
    std::fs::write(data.join("server.crt"), &pki.cert).unwrap();
    std::fs::write(data.join("server.key"), &pki.key).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n\
         host all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    if is_root() {
        assert!(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data)
            .status()
            .unwrap()
            .success());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let pg_ctl = pg_binary("pg_ctl");
    let status = as_postgres(
        Command::new(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(data.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on \
                 -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c fsync=off",
                dir.display()
            ))
            .args(["-w", "start"]),
    )
    .stdout(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success(), "pg_ctl start");
    let status = Command::new(pg_binary("psql"))
        .arg("-h")
        .arg(dir)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
        ])
        .arg(format!(
            "CREATE ROLE skyhose LOGIN SUPERUSER PASSWORD '{PG_PASSWORD}'"
        ))
        .status()
        .unwrap();
    assert!(status.success(), "creating the role");
    (pg_ctl, data)
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} is not listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn skyhose(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyhose"));
    cmd.args(args).env("RUST_LOG", "warn");
    cmd
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_index_and_serve_over_tls_with_passwords() {
    let dir = std::env::temp_dir().join(format!("skyhose-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut stop = Stop {
        children: Vec::new(),
        pg: None,
        dir: dir.clone(),
    };
    let pki = make_pki(&dir);
    let ca = pki.ca.display().to_string();
    let wrong_ca = pki.wrong_ca.display().to_string();
    let redis_port = free_port();
    stop.children.push(start_redis(&dir, &pki, redis_port));
    let pg_port = free_port();
    stop.pg = Some(start_postgres(&dir, &pki, pg_port));

    let redis_url =
        format!("rediss://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/?cacert={ca}");
    let database_url = format!(
        "postgres://skyhose:{PG_PASSWORD}@127.0.0.1:{pg_port}/skyhose?sslmode=verify-full&sslrootcert={ca}"
    );

    // What must fail does, naming the engine.
    let wrong = skyhose_connect::RedisTarget::parse(&format!(
        "rediss://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/?cacert={wrong_ca}"
    ))
    .unwrap();
    let err = wrong.open_stream().await.err().expect("the wrong CA fails");
    assert!(
        err.to_string().contains("TLS handshake with Redis")
            && err.to_string().contains("certificate"),
        "{err}"
    );
    let plain = skyhose_connect::redis_client(&format!(
        "redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{redis_port}"
    ))
    .unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(15),
        plain.get_multiplexed_async_connection(),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a plain connection to the TLS port must not work"
    );
    let out = skyhose(&["migrate", "--database-url"])
        .arg(database_url.replace(&ca, &wrong_ca))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("postgres") && stderr.contains("certificate"),
        "{stderr}"
    );
    let pg_plain = skyhose_connect::postgres(&format!(
        "postgres://skyhose:{PG_PASSWORD}@127.0.0.1:{pg_port}/postgres?sslmode=disable"
    ))
    .unwrap();
    assert!(pg_plain.config.connect(pg_plain.tls.clone()).await.is_err());
    // `require` without a CA encrypts without checking the certificate.
    let require = skyhose_connect::postgres(&format!(
        "postgres://skyhose:{PG_PASSWORD}@127.0.0.1:{pg_port}/postgres?sslmode=require"
    ))
    .unwrap();
    let (client, conn) = require.config.connect(require.tls.clone()).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>("ssl"));
    drop(client);

    // The pipeline, end to end.
    let relay = relay::start(RelayConfig {
        sim: SimConfig {
            seed: 27,
            accounts: 50,
            ..SimConfig::default()
        },
        total: Some(TOTAL),
        window: TOTAL as usize + 10,
        ..RelayConfig::default()
    })
    .await
    .expect("relay starts");
    let ingest = skyhose(&["ingest", "--relay", &relay.url(), "--redis", &redis_url])
        .args(["--fallback-cursor", "0", "--stop-after", &TOTAL.to_string()])
        .stdout(Stdio::null())
        .output()
        .expect("ingest runs");
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let index = skyhose(&[
        "index",
        "--redis",
        &redis_url,
        "--database-url",
        &database_url,
    ])
    .arg("--exit-when-drained")
    .output()
    .expect("index runs");
    assert!(
        index.status.success(),
        "{}",
        String::from_utf8_lossy(&index.stderr)
    );

    let pg = skyhose_connect::postgres(&database_url).unwrap();
    let (client, conn) = pg.config.connect(pg.tls.clone()).await.unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM actors) AS actors, \
                    (SELECT min(did) FROM actors) AS did, \
                    (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl",
            &[],
        )
        .await
        .unwrap();
    let actors: i64 = row.get("actors");
    let did: String = row.get("did");
    assert!(actors > 0, "no actors indexed");
    assert!(row.get::<_, bool>("ssl"));

    let api_port = free_port();
    stop.children.push(
        skyhose(&["serve", "--database-url", &database_url])
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .stdout(Stdio::null())
            .spawn()
            .expect("serve starts"),
    );
    wait_listening(api_port, "the API");
    let answer = http_get(
        api_port,
        &format!("/xrpc/app.bsky.actor.getProfile?actor={did}"),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&did), "{answer}");
    relay.shutdown().await;
    drop(stop);
}
