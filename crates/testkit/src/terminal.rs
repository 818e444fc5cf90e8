//! A program on a pseudo-terminal, driven as a person at a terminal would:
//! type, read what appears, resize the window, wait for the exit status.
//! Interactive clients (kubectl and crictl `exec -it`, `attach -it`) behave
//! differently on a terminal: raw mode, the window size sent at start and
//! on SIGWINCH. Their TTY paths are only tested this way.
//!
//! Written here rather than with `rexpect`: the window size must be set
//! before the program starts (clients read it once at start, so setting it
//! afterwards races them), which `rexpect` cannot do, and it forks the
//! multi-threaded test process by hand where `std::process` spawns safely.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};

nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, Winsize);

pub struct Terminal {
    master: std::fs::File,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where the next `expect` starts looking.
    cursor: usize,
    what: String,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    /// Starts `command` as the session leader of a new terminal of
    /// `rows` x `cols`, with the terminal as its stdin, stdout and stderr.
    pub fn spawn(mut command: Command, rows: u16, cols: u16) -> Self {
        let what = format!("{command:?}");
        let pty = openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        command
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the terminal master");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every holder of the terminal's other side is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            master,
            child: Some(child),
            output,
            cursor: 0,
            what,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the program has written so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Types `text` (a terminal sends Enter as `\r`).
    pub fn type_text(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("writing to the terminal");
    }

    pub fn type_line(&mut self, line: &str) {
        self.type_text(&format!("{line}\r"));
    }

    /// Waits until `needle` appears after what earlier calls matched;
    /// returns the text up to and including it.
    pub async fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        match self.wait_for(needle, timeout).await {
            Some(text) => text,
            None => panic!(
                "{needle:?} did not appear within {timeout:?} on the terminal of {}; it shows:\n{:?}",
                self.what,
                self.transcript()
            ),
        }
    }

    /// As `expect`, but `None` when `needle` does not appear in time.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let started = Instant::now();
        loop {
            {
                let output = self.output.lock().unwrap();
                let rest = &output[self.cursor.min(output.len())..];
                if let Some(at) = rest
                    .windows(needle.len().max(1))
                    .position(|w| w == needle.as_bytes())
                {
                    let end = at + needle.len();
                    let text = String::from_utf8_lossy(&rest[..end]).into_owned();
                    self.cursor += end;
                    return Some(text);
                }
            }
            if started.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Changes the window size; the kernel signals SIGWINCH to the program.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        // SAFETY: TIOCSWINSZ reads one Winsize from the pointer.
        unsafe { set_window_size(self.master.as_raw_fd(), &winsize(rows, cols)) }
            .expect("TIOCSWINSZ");
    }

    /// The exit status, waiting up to `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the program") {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "{} did not exit within {timeout:?}; its terminal shows:\n{:?}",
                self.what,
                self.transcript()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
