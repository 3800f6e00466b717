//! `opsight serve` as a child process on an ephemeral port, with its log captured.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:<port>`, as the process logged it.
    pub base: String,
    /// Everything it wrote to stdout and stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `opsight serve` on `db_url` (reference date [`super::AS_OF`], no agents
    /// file); `env` adds or overrides variables.
    pub fn spawn(db_url: &str, env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsight"));
        cmd.arg("serve")
            .env("DATABASE_URL", db_url)
            .env("OPSIGHT_AS_OF", super::AS_OF)
            .env("OPSIGHT_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            // These tests are about processes (replicas, logs, shutdown): requests need no
            // sign-in. Authentication itself is tested in-process (tests/access.rs) and
            // through the binary in tests/cli.rs.
            .env("OPSIGHT_ANONYMOUS_ROLE", "admin")
            .env_remove("OPSIGHT_AGENTS_FILE")
            .env_remove("AGENT_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start opsight serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("serving http://") {
                        let url: String = line[i + 8..]
                            .chars()
                            .take_while(|c| !c.is_whitespace() && *c != '"')
                            .collect();
                        let _ = tx.send(url);
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server says where it serves");
        Serve { child, base, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether a job's `claimed_by` names this process.
    pub fn holds(&self, claimed_by: Option<&str>) -> bool {
        claimed_by.is_some_and(|c| c.contains(&format!("-{}-", self.pid())))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether `needle` shows up in the log within `within` (the reader threads may lag
    /// behind the process, even after it exited).
    pub fn log_shows(&self, needle: &str, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
