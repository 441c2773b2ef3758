//! The real `strata` binary as a child process, for tests that must SIGKILL or SIGTERM
//! a broker (an in-process broker cannot be killed without killing the test).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `strata` process listening on a free port of 127.0.0.1; killed when dropped.
pub struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
}

impl BrokerProcess {
    /// Starts the binary on `data_dir` and waits for its "strata listening on ADDR"
    /// line, so the port is known and bound when this returns.
    pub fn spawn(data_dir: &Path) -> BrokerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn strata");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("strata listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("listen address");
        BrokerProcess { child, addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited with 0.
    pub fn sigterm(mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.child.wait().expect("reap strata").success()
    }

    /// SIGKILL (no shutdown work at all), then reaps the process.
    pub fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL"); // SIGKILL on Unix
        self.child.wait().expect("reap strata");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
