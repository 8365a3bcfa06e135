//! A QEMU machine (q35, TCG) booting a disk through real firmware, driven over its serial
//! console: the test reads what the guest prints and types commands at the sample host's
//! console loop (`sample-variant/init`).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use super::{OVMF_CODE, OVMF_VARS};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The firmware a machine boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// OVMF as two pflash drives: the code read-only, a per-machine copy of the variables.
    Uefi,
    /// QEMU's default SeaBIOS.
    Bios,
}

/// How a machine is started.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub firmware: Firmware,
    pub disk: PathBuf,
    /// Port of the update server on 127.0.0.1, reached by the guest as 10.0.2.100:80 through
    /// QEMU's user network with `restrict=on` (nothing else is reachable). `None`: no NIC.
    pub update_port: Option<u16>,
    /// `-no-reboot`: a guest reboot ends QEMU instead of resetting the machine.
    pub no_reboot: bool,
    /// Where the serial log is written (appended, one file per machine).
    pub log: PathBuf,
}

/// A running machine.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Every line read so far.
    pub transcript: Vec<String>,
    /// Where the transcript since the last call to [`Vm::mark`] starts.
    mark: usize,
    log: PathBuf,
    _vars: Option<tempfile::NamedTempFile>,
}

/// The argument list of a QEMU invocation for `config` (vars: the per-machine OVMF copy).
pub fn qemu_args(config: &VmConfig, vars: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = [
        "-machine",
        "q35,accel=tcg",
        "-m",
        "1024",
        "-smp",
        "1",
        "-display",
        "none",
        "-vga",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let (Firmware::Uefi, Some(vars)) = (config.firmware, vars) {
        args.push("-drive".into());
        args.push(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
        args.push("-drive".into());
        args.push(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    args.push("-drive".into());
    args.push(format!(
        "file={},format=raw,if=virtio",
        config.disk.display()
    ));
    match config.update_port {
        Some(port) => {
            args.push("-netdev".into());
            args.push(format!(
                "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:{port}"
            ));
            args.push("-device".into());
            // No option ROM: the firmware does not try to network-boot.
            args.push("virtio-net-pci,netdev=n0,romfile=".into());
        }
        None => {
            args.push("-nic".into());
            args.push("none".into());
        }
    }
    if config.no_reboot {
        args.push("-no-reboot".into());
    }
    args
}

impl Vm {
    /// Start QEMU; its serial console is read line by line on a thread.
    pub fn start(config: &VmConfig) -> Vm {
        let vars = match config.firmware {
            Firmware::Uefi => {
                let file = tempfile::NamedTempFile::new().unwrap();
                fs::copy(OVMF_VARS, file.path()).expect("copy OVMF_VARS.fd");
                Some(file)
            }
            Firmware::Bios => None,
        };
        let args = qemu_args(config, vars.as_ref().map(|v| v.path()));
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64");
        let (tx, rx) = channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (source, reader) in [
            ("", Box::new(stdout) as Box<dyn std::io::Read + Send>),
            ("qemu stderr: ", Box::new(stderr)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = clean(&String::from_utf8_lossy(&buf));
                            if tx.send(format!("{source}{line}")).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        let stdin = child.stdin.take().unwrap();
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.log)
            .unwrap();
        writeln!(log, "=== qemu-system-x86_64 {}", args.join(" ")).unwrap();
        Vm {
            child,
            stdin,
            lines: rx,
            transcript: Vec::new(),
            mark: 0,
            log: config.log.clone(),
            _vars: vars,
        }
    }

    fn take_line(&mut self, timeout: Duration) -> Result<String, RecvTimeoutError> {
        let line = self.lines.recv_timeout(timeout)?;
        let mut log = fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        writeln!(log, "{line}").unwrap();
        self.transcript.push(line.clone());
        Ok(line)
    }

    /// The last lines of the transcript, for failure messages.
    pub fn tail(&self) -> String {
        let start = self.transcript.len().saturating_sub(50);
        format!(
            "--- last serial lines (full log: {}):\n{}",
            self.log.display(),
            self.transcript[start..].join("\n")
        )
    }

    /// Wait for a line containing one of `needles`; returns its index and the line. Panics
    /// (with the console's tail) on timeout or when QEMU exits first.
    pub fn expect_any(
        &mut self,
        needles: &[&str],
        timeout: Duration,
        what: &str,
    ) -> (usize, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.take_line(left) {
                Ok(line) => {
                    if let Some(i) = needles.iter().position(|n| line.contains(n)) {
                        return (i, line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{what}: none of {needles:?} within {} s\n{}",
                    timeout.as_secs(),
                    self.tail()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{what}: QEMU ended before any of {needles:?} ({:?})\n{}",
                    self.child.try_wait(),
                    self.tail()
                ),
            }
        }
    }

    /// Wait for a line containing `needle`.
    pub fn expect(&mut self, needle: &str, timeout: Duration, what: &str) -> String {
        self.expect_any(&[needle], timeout, what).1
    }

    /// Remember where the transcript is, so [`Vm::since_mark`] returns what follows.
    pub fn mark(&mut self) {
        self.mark = self.transcript.len();
    }

    /// Lines since the last [`Vm::mark`].
    pub fn since_mark(&self) -> &[String] {
        &self.transcript[self.mark.min(self.transcript.len())..]
    }

    /// Type `command` at the host's console loop and wait for its `HOST: rc=N`; returns N and
    /// the lines it printed.
    pub fn run(&mut self, command: &str, timeout: Duration) -> (i32, Vec<String>) {
        self.type_line(command);
        let start = self.transcript.len();
        let line = self.expect("HOST: rc=", timeout, &format!("guest command `{command}`"));
        let rc = line
            .split("HOST: rc=")
            .nth(1)
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or_else(|| panic!("bad rc line {line:?}"));
        let end = self.transcript.len() - 1;
        (rc, self.transcript[start..end].to_vec())
    }

    /// Type a line at the console, without waiting.
    pub fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.stdin.flush())
            .expect("write to the serial console");
    }

    /// Wait for QEMU to exit by itself (e.g. `-no-reboot` after a guest reboot).
    pub fn wait_exit(&mut self, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            // Drain the console while waiting.
            while self.take_line(Duration::from_millis(10)).is_ok() {}
            if self.child.try_wait().unwrap().is_some() {
                while self.take_line(Duration::from_millis(100)).is_ok() {}
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: QEMU still running after {} s\n{}",
                timeout.as_secs(),
                self.tail()
            );
        }
    }

    /// Stop the machine (as pulling the plug: only what reached the disk file stays).
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while self.take_line(Duration::from_millis(100)).is_ok() {}
        std::mem::take(&mut self.transcript)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A console line without its line ending and without terminal escape sequences (the
/// firmware's and GRUB's screen handling).
pub fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: ESC + one character.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn clean_removes_escapes_and_line_ends() {
    assert_eq!(clean("\u{1b}[2J\u{1b}[01;01HGRUB: x\r\n"), "GRUB: x");
    assert_eq!(clean("HOST: rc=0\r\n"), "HOST: rc=0");
}

/// A machine that reboots like a real one (no `-no-reboot`).
pub fn vm_config(
    firmware: Firmware,
    disk: &Path,
    update_port: Option<u16>,
    log: &Path,
) -> VmConfig {
    VmConfig {
        firmware,
        disk: disk.to_path_buf(),
        update_port,
        no_reboot: false,
        log: log.to_path_buf(),
    }
}
