//! A real SMTP server for the email tests: `smtp_sink.py` (aiosmtpd) run as a child process.
//!
//! [`SmtpSink::start`] launches it on a free port and waits, with a deadline, for the line that
//! says it is ready; it panics with the script's stderr when Python or aiosmtpd is missing, so
//! a misconfigured CI fails instead of skipping. The process is killed on drop, and it also
//! stops by itself when its stdin closes, so it cannot outlive a crashed test.
//!
//! [`TestCa`] makes a throwaway CA and a server certificate for `127.0.0.1`/`localhost` with
//! the `openssl` command-line tool.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// How long the server may take to start, and to answer a command.
const DEADLINE: Duration = Duration::from_secs(20);

/// How the sink speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    /// STARTTLS offered and required before any mail.
    StartTls,
    /// Implicit TLS (`smtps://`).
    Smtps,
}

/// A throwaway certificate authority and a server certificate it signed.
pub struct TestCa {
    _dir: tempfile::TempDir,
    /// The CA certificate, to trust in `ca_file`.
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl TestCa {
    /// Generates the CA and a certificate for `localhost` and `127.0.0.1` with `openssl`.
    pub fn generate() -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        openssl(
            d,
            &format!(
                "req -x509 {ec} -days 2 -keyout ca.key -out ca.pem -subj /CN=herald-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        openssl(d, &format!("req {ec} -keyout server.key -out server.csr -subj /CN=localhost"));
        openssl(
            d,
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 \
             -extfile server.ext -out server.pem",
        );
        TestCa {
            ca_pem: d.join("ca.pem"),
            cert_pem: d.join("server.pem"),
            key_pem: d.join("server.key"),
            _dir: dir,
        }
    }
}

/// Runs `openssl` with whitespace-separated arguments in `dir`.
fn openssl(dir: &Path, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("openssl").args(&args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("the email TLS tests need the `openssl` command-line tool, which failed to start: {e}")
    });
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message exactly as received (CRLF line ends).
    pub raw: String,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub auth_user: Option<String>,
    /// Python's reading of the message: `content_type`, `headers` (lowercase names, decoded
    /// values) and `parts` (each leaf's `type`, `charset` and decoded `text`, in order).
    pub parsed: serde_json::Value,
}

/// A running `smtp_sink.py`.
pub struct SmtpSink {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    out: tempfile::TempDir,
    pub port: u16,
}

impl SmtpSink {
    /// Starts the sink; with `auth`, AUTH with exactly that user and password is required.
    pub fn start(mode: Mode, auth: Option<(&str, &str)>, ca: Option<&TestCa>) -> SmtpSink {
        let out = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let python = std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let stderr = std::fs::File::create(out.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(&python);
        cmd.arg(&script).arg("--out").arg(out.path()).arg("--mode").arg(match mode {
            Mode::Plain => "plain",
            Mode::StartTls => "starttls",
            Mode::Smtps => "smtps",
        });
        if let Some(ca) = ca {
            cmd.arg("--cert").arg(&ca.cert_pem).arg("--key").arg(&ca.key_pem);
        }
        if let Some((user, password)) = auth {
            cmd.args(["--user", user, "--password", password]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} (needed by the email tests): {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sink = SmtpSink { child, stdin, lines, out, port: 0 };
        let ready = sink.next_line("start");
        sink.port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| sink.die(&format!("unexpected first line {ready:?}")));
        sink
    }

    /// Answers the next `count` DATA commands with `code` (say 451 or 550).
    pub fn fail_next(&mut self, code: u16, count: u32) {
        self.command(&format!("fail {code} {count}"));
    }

    /// Waits `seconds` before answering the next `count` DATA commands.
    pub fn stall_next(&mut self, seconds: f64, count: u32) {
        self.command(&format!("stall {seconds} {count}"));
    }

    /// Every accepted message, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|eml| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap()).unwrap();
                Received {
                    raw: String::from_utf8(std::fs::read(eml).unwrap()).expect("a mail is ASCII/UTF-8"),
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_tos: serde_json::from_value(meta["rcpt_tos"].clone()).unwrap(),
                    auth_user: meta["auth_user"].as_str().map(str::to_string),
                    parsed: meta["parsed"].clone(),
                }
            })
            .collect()
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").and_then(|_| self.stdin.flush()).expect("write to smtp_sink.py");
        let answer = self.next_line(line);
        assert_eq!(answer, "ok", "smtp_sink.py refused {line:?}");
    }

    fn next_line(&mut self, waiting_for: &str) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.die(&format!("no answer to {waiting_for:?} within {DEADLINE:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.die(&format!("it exited before {waiting_for:?}"))
            }
        }
    }

    fn die(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        let stderr = std::fs::read_to_string(self.out.path().join("stderr.log")).unwrap_or_default();
        panic!(
            "smtp_sink.py failed ({why}; exit {status:?}). The email tests need python3 with aiosmtpd \
             (python3 -m pip install aiosmtpd). Its stderr:\n{stderr}"
        );
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
