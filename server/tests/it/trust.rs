//! Outbound TLS with a private CA (`OPSIGHT_CA_BUNDLE`): an agent behind a TLS proxy
//! whose certificate a company CA signed answers only when Opsight trusts that CA.
//!
//! The CA and the server certificate are made here with the `openssl` command; the proxy
//! (`tests/doubles/tls_proxy.py`) terminates TLS in front of a second Opsight's built-in
//! analyst, so the answer is real analysis, not a canned reply.

use crate::common::*;
use app::ssr::agent::AgentKind;
use app::ssr::trust::Trust;
use server::config::Config;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private CA and a certificate it signed for 127.0.0.1 and localhost.
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Opsight Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=agent.internal",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

struct Proxy {
    child: Child,
    port: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_proxy(cert: &Path, key: &Path, target: &str) -> Proxy {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/doubles/tls_proxy.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["--target", target])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs the TLS proxy");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().trim_start_matches("listening on ").to_string();
    assert!(port.parse::<u16>().is_ok(), "the proxy said {line:?}");
    Proxy { child, port }
}

#[tokio::test]
async fn an_agent_behind_a_private_ca_answers_only_when_the_ca_is_trusted() {
    let dir = tempdir();
    let (ca, cert, key) = private_ca(&dir);
    // The agent: another Opsight's built-in analyst, behind the TLS proxy.
    let backend = spawn_app_with(0, builtin).await;
    let target = backend.base.trim_start_matches("http://").to_string();
    let proxy = tls_proxy(&cert, &key, &target);
    let agent_url = format!("https://127.0.0.1:{}", proxy.port);
    let behind_tls = |trust: Option<&Path>| {
        let url = agent_url.clone();
        let trust = trust.map(|p| Trust::from_file(p).expect("the CA parses"));
        move |c: &mut Config| {
            set_agents(
                c,
                vec![profile(
                    AgentKind::Builtin,
                    &url,
                    Duration::from_secs(10),
                    None,
                )],
            );
            if let Some(t) = trust {
                c.trust = t;
            }
        }
    };

    // Without the CA: the certificate is not trusted, the refresh fails (502) and says so
    // safely; nothing about the agent's address or token leaks.
    let untrusting = spawn_app_tuned(3_000, behind_tls(None)).await;
    let r = untrusting.refresh("DAL", "otif").await;
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.contains("could not be refreshed"), "{body}");

    // With it: the same agent answers, over TLS, with real analysis.
    let trusting = spawn_app_tuned(3_000, behind_tls(Some(&ca))).await;
    let r = trusting.refresh("DAL", "otif").await;
    let status = r.status();
    let insight: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{insight}");
    assert!(
        !insight["headline"].as_str().unwrap_or("").is_empty(),
        "{insight}"
    );
    drop(proxy);
}

#[test]
fn the_bundle_setting_is_checked_at_start_up() {
    let dir = tempdir();
    let (ca, _, _) = private_ca(&dir);
    let cfg = |path: &Path| {
        let path = path.display().to_string();
        Config::from_lookup(
            move |k| match k {
                "OPSIGHT_CA_BUNDLE" => Some(path.clone()),
                "DATABASE_URL" => Some("postgres://opsight@db.internal/ops".into()),
                _ => None,
            },
            |_| None,
        )
    };
    let c = cfg(&ca).expect("a real CA bundle is accepted");
    assert_eq!(c.trust.len(), 1);
    // The database connection trusts it too.
    assert!(
        c.database_url
            .starts_with("postgres://opsight@db.internal/ops?sslrootcert="),
        "{}",
        c.database_url
    );
    let junk = dir.join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = format!("{:#}", cfg(&junk).unwrap_err());
    assert!(
        e.contains("OPSIGHT_CA_BUNDLE") && e.contains("junk.pem"),
        "{e}"
    );
    let e = format!("{:#}", cfg(&dir.join("absent.pem")).unwrap_err());
    assert!(
        e.contains("absent.pem") && e.contains("cannot be read"),
        "{e}"
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "opsight-trust-{}-{}",
        std::process::id(),
        app::ssr::clock::new_id(chrono::Utc::now(), "t")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
