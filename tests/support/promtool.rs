//! `promtool check metrics` for the test binaries that render Prometheus text.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `text` and fails unless it reports no error and no lint problem. A missing
/// promtool is a failure, not a skip: `scripts/test` installs it (Debian's `prometheus`), or set `PROMTOOL`.
pub fn promtool_check(text: &str) {
    let binary = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    let mut child = match Command::new(&binary)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run {binary:?} ({error}): install Debian's `prometheus` package, which ships promtool \
             (`apt-get install prometheus`; scripts/test installs it), or set PROMTOOL to the binary"
        ),
    };
    // Written from another thread: promtool may answer before it has read a large input.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("promtool ran");
    writer
        .join()
        .expect("writer thread")
        .expect("input written");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool check metrics failed ({}):\nstdout: {stdout}\nstderr: {stderr}\ninput:\n{text}",
        output.status,
    );
}
