//! A server the harness starts itself (`--spawn`): on a free port with a
//! temporary data dir, killed and restarted on the same dir and port for
//! crash cycles, stopped with SIGTERM at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Longest wait for the server's `listening on` line (recovery included).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Running {
    child: Child,
    /// Kept open: the server may still write to it.
    _stdout: BufReader<ChildStdout>,
}

/// A spawned server.
#[derive(Debug)]
pub struct Server {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    running: Mutex<Option<Running>>,
    starts: Mutex<u32>,
    /// Time from each start (the first, and every restart after a crash)
    /// to the `listening on` line: recovery included.
    ready_after: Mutex<Vec<Duration>>,
}

impl Server {
    /// Starts `binary` with the given secrets and extra flags.
    pub async fn start(
        binary: &Path,
        jwt_secret: &str,
        payment_secret: &str,
        extra: Vec<String>,
    ) -> Result<Server, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_owned(),
            dir.path().join("data").display().to_string(),
            "--jwt-secret".to_owned(),
            jwt_secret.to_owned(),
            "--payment-secret".to_owned(),
            payment_secret.to_owned(),
        ];
        args.extend(extra);
        let server = Server {
            binary: binary.to_owned(),
            port,
            dir,
            args,
            running: Mutex::new(None),
            starts: Mutex::new(0),
            ready_after: Mutex::new(Vec::new()),
        };
        server.launch().await?;
        Ok(server)
    }

    /// How long each start took until the server was ready.
    pub fn ready_after(&self) -> Vec<Duration> {
        self.ready_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The running process's resident memory, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|r| r.child.id())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn launch(&self) -> Result<(), String> {
        let n = {
            let mut starts = self
                .starts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *starts += 1;
            *starts
        };
        let log = std::fs::File::create(self.dir.path().join(format!("server-{n}.log")))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.binary)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let launched = std::time::Instant::now();
        let waited = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return Err("the server exited before listening".to_owned()),
                    Ok(_) if line.starts_with("listening on ") => return Ok(reader),
                    Ok(_) => {}
                }
            }
        });
        match tokio::time::timeout(START_TIMEOUT, waited).await {
            Ok(Ok(Ok(reader))) => {
                self.ready_after
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(launched.elapsed());
                *self.lock() = Some(Running {
                    child,
                    _stdout: reader,
                });
                Ok(())
            }
            Ok(Ok(Err(e))) => {
                let _ = child.kill();
                Err(format!("{e} (log in {})", self.dir.path().display()))
            }
            _ => {
                let _ = child.kill();
                Err("the server did not start in time".to_owned())
            }
        }
    }

    /// SIGKILL, then start again on the same data dir and port.
    pub async fn crash_and_restart(&self) -> Result<(), String> {
        if let Some(mut running) = self.lock().take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
        self.launch().await
    }

    /// SIGTERM and wait: answers whether it exited with status 0.
    pub async fn stop(&self) -> bool {
        let Some(mut running) = self.lock().take() else {
            return false;
        };
        let pid = running.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        if !sent.is_ok_and(|s| s.success()) {
            let _ = running.child.kill();
            return false;
        }
        tokio::task::spawn_blocking(move || running.child.wait().is_ok_and(|s| s.success()))
            .await
            .unwrap_or(false)
    }
}
