//! Outbound TLS: the certificate authorities Opsight trusts beside the built-in (Mozilla)
//! roots, from a PEM bundle (`OPSIGHT_CA_BUNDLE`): a company CA, or the one a
//! TLS-inspecting proxy signs with. Every outbound client takes it from here: the agents'
//! and tracking server's HTTP client (also used for webhooks), SMTP, the Databricks
//! client, and the database connections (the store's and the SQL sources', as
//! `sslrootcert` / `ssl-ca`).
//!
//! A leaf: it reads the file once, at start-up, and fails there with the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The extra certificate authorities (none by default).
#[derive(Clone, Debug, Default)]
pub struct Trust {
    bundle: Option<Arc<Bundle>>,
}

#[derive(Debug)]
struct Bundle {
    path: PathBuf,
    /// Each certificate's PEM block.
    pems: Vec<String>,
}

impl Trust {
    /// Reads a PEM bundle of one or more CA certificates. Fails naming the file when it
    /// cannot be read or holds no certificate that parses.
    pub fn from_file(path: &Path) -> anyhow::Result<Trust> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("the CA bundle {} cannot be read: {e}", path.display()))?;
        let pems = pem_blocks(&text);
        anyhow::ensure!(
            !pems.is_empty(),
            "the CA bundle {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
        for (i, pem) in pems.iter().enumerate() {
            // reqwest parses a certificate when a client is built with it: build one per
            // certificate, so the error names which.
            reqwest::Certificate::from_pem(pem.as_bytes())
                .and_then(|cert| {
                    reqwest::Client::builder()
                        .add_root_certificate(cert)
                        .build()
                })
                .map_err(|e| {
                    anyhow::anyhow!(
                        "the CA bundle {}: certificate {} does not load: {}",
                        path.display(),
                        i + 1,
                        causes(&e)
                    )
                })?;
        }
        Ok(Trust {
            bundle: Some(Arc::new(Bundle {
                path: path.to_path_buf(),
                pems,
            })),
        })
    }

    /// The bundle's file, when one is configured.
    pub fn ca_file(&self) -> Option<&Path> {
        self.bundle.as_ref().map(|b| b.path.as_path())
    }

    /// How many certificates the bundle adds.
    pub fn len(&self) -> usize {
        self.bundle.as_ref().map_or(0, |b| b.pems.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An HTTP client builder trusting the bundle beside the built-in roots.
    pub fn http(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder();
        for pem in self.pems() {
            // Parsed once already in `from_file`.
            if let Ok(cert) = reqwest::Certificate::from_pem(pem.as_bytes()) {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
    }

    /// TLS settings for an SMTP relay at `host`, trusting the bundle beside the built-in
    /// roots.
    pub fn smtp(
        &self,
        host: &str,
    ) -> Result<lettre::transport::smtp::client::TlsParameters, String> {
        let mut builder = lettre::transport::smtp::client::TlsParameters::builder(host.into());
        for pem in self.pems() {
            let cert = lettre::transport::smtp::client::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("the CA bundle's certificate does not load: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build()
            .map_err(|e| format!("TLS settings for {host}: {e}"))
    }

    /// A database connection string trusting the bundle: PostgreSQL gets `sslrootcert`,
    /// MySQL/MariaDB `ssl-ca`, unless the string names its own. Others are unchanged.
    /// The result is as secret as the input.
    pub fn database_url(&self, url: &str) -> String {
        let Some(file) = self.ca_file() else {
            return url.to_string();
        };
        // The parameter, and every name sqlx reads for it (a URL naming its own CA under
        // any of them keeps it).
        let (param, names): (&str, &[&str]) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                ("sslrootcert", &["sslrootcert", "ssl-root-cert", "ssl-ca"])
            } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
                ("ssl-ca", &["ssl-ca", "sslca"])
            } else {
                return url.to_string();
            };
        let query = url.split_once('?').map_or("", |(_, q)| q);
        if query
            .split('&')
            .any(|kv| kv.split('=').next().is_some_and(|k| names.contains(&k)))
        {
            return url.to_string();
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let path = file.display().to_string();
        format!("{url}{sep}{param}={}", encode_component(&path))
    }

    fn pems(&self) -> impl Iterator<Item = &String> {
        self.bundle.iter().flat_map(|b| b.pems.iter())
    }
}

/// The `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----` blocks of a PEM text
/// (other blocks, such as keys, are left out).
fn pem_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

/// An error and its sources on one line (reqwest puts the TLS reason in a source).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Percent-encodes what a URL's query value cannot hold as is.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only the PEM framing matters to these tests, so the body is not a certificate
    // (parsing is tested against a real CA in server/tests/it/trust.rs).
    const CA: &str =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----";

    #[test]
    fn pem_blocks_are_split_and_other_blocks_left_out() {
        let text = format!(
            "junk\n{CA}\n-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n{CA}\n"
        );
        let blocks = pem_blocks(&text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks
            .iter()
            .all(|b| b.starts_with("-----BEGIN CERTIFICATE-----")
                && b.trim_end().ends_with("-----END CERTIFICATE-----")));
        assert!(pem_blocks("no pem here").is_empty());
    }

    #[test]
    fn a_file_without_certificates_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("opsight-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing").unwrap();
        let e = Trust::from_file(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = Trust::from_file(&dir.join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot be read"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn database_urls_get_the_bundle_unless_they_name_their_own() {
        let t = Trust {
            bundle: Some(Arc::new(Bundle {
                path: PathBuf::from("/etc/ssl/our ca.pem"),
                pems: vec![CA.into()],
            })),
        };
        assert_eq!(
            t.database_url("postgres://u:p@db/wms"),
            "postgres://u:p@db/wms?sslrootcert=/etc/ssl/our%20ca.pem"
        );
        assert_eq!(
            t.database_url("postgres://db/wms?sslmode=verify-full"),
            "postgres://db/wms?sslmode=verify-full&sslrootcert=/etc/ssl/our%20ca.pem"
        );
        assert_eq!(
            t.database_url("mysql://root@db/erp"),
            "mysql://root@db/erp?ssl-ca=/etc/ssl/our%20ca.pem"
        );
        for own in [
            "postgres://db/wms?sslrootcert=/mine.pem",
            "postgres://db/wms?ssl-root-cert=/mine.pem",
            "mysql://db/erp?sslca=/mine.pem",
        ] {
            assert_eq!(t.database_url(own), own);
        }
        assert_eq!(
            t.database_url("sqlite:data/opsight.db"),
            "sqlite:data/opsight.db"
        );
        assert_eq!(
            Trust::default().database_url("postgres://db/wms"),
            "postgres://db/wms"
        );
    }
}
