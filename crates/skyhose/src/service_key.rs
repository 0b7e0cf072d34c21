//! The AppView's signing key: the `#atproto` key its DID document names. It
//! lives in a file only its owner may read (0600), as the hex of a secp256k1
//! secret (the form PDS operators already use for their keys), created on
//! first use and never logged: only its public half appears in logs.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;

use anyhow::{bail, Context};
use skyhose_proto::crypto::{Curve, SigningKey};

/// Reads the key in `path`, creating it when the file does not exist.
/// Returns the key and whether it was created now.
pub fn load_or_create(path: &Path) -> anyhow::Result<(SigningKey, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            Ok((
                parse(&text).with_context(|| format!("service key {}", path.display()))?,
                false,
            ))
        }
        Err(err) if err.kind() == ErrorKind::NotFound => Ok((create(path)?, true)),
        Err(err) => Err(err).with_context(|| format!("reading service key {}", path.display())),
    }
}

fn parse(text: &str) -> anyhow::Result<SigningKey> {
    let hex = text.trim();
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|_| anyhow::anyhow!("is not the hex of a 32-byte secp256k1 secret"))?;
    if bytes.len() != 32 {
        bail!(
            "holds {} bytes, not a 32-byte secp256k1 secret",
            bytes.len()
        );
    }
    SigningKey::from_bytes(Curve::K256, &bytes)
        .ok_or_else(|| anyhow::anyhow!("is not a valid secp256k1 secret"))
}

fn create(path: &Path) -> anyhow::Result<SigningKey> {
    // A uniformly random 32-byte value is a valid scalar except with
    // negligible probability; draw again in that case.
    let key = loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).context("reading the system's random source")?;
        if let Some(key) = SigningKey::from_bytes(Curve::K256, &secret) {
            break key;
        }
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating service key {}", path.display()))?;
    let hex = data_encoding::HEXLOWER.encode(&key.to_bytes());
    writeln!(file, "{hex}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing service key {}", path.display()))?;
    Ok(key)
}

/// Refuses a key file that others can read, as ssh does.
fn check_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("service key {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "service key {} is readable by others (mode {:o}); run `chmod 600` on it",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

/// The public URL a `did:web` service DID implies: `did:web:host%3Aport`
/// is served at `https://host:port`.
pub fn default_endpoint(service_did: &str) -> Option<String> {
    let host = service_did.strip_prefix("did:web:")?;
    if host.is_empty() || host.contains(':') {
        return None;
    }
    Some(format!(
        "https://{}",
        host.replace("%3A", ":").replace("%3a", ":")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("skyhose-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("service.key");
        let _ = std::fs::remove_file(&path);
        let (key, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create(&path).err().expect("refused").to_string();
            assert!(err.contains("readable by others"), "{err}");
        }
        std::fs::write(&path, "not hex\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = format!("{:#}", load_or_create(&path).err().expect("refused"));
        assert!(err.contains("not the hex"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn did_web_names_its_endpoint() {
        assert_eq!(
            default_endpoint("did:web:appview.example.com").as_deref(),
            Some("https://appview.example.com")
        );
        assert_eq!(
            default_endpoint("did:web:localhost%3A3000").as_deref(),
            Some("https://localhost:3000")
        );
        assert_eq!(default_endpoint("did:plc:abc"), None);
        assert_eq!(default_endpoint("did:web:a.com:path"), None);
    }
}
