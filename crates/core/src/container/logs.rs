//! Container logs in the kubelet's CRI format, written by the shim itself.
//!
//! cri-dockerd only symlinks Docker's json-file to the kubelet's log path,
//! which the kubelet cannot rotate and critest rejects. Here one task per
//! container follows Docker's log stream and writes
//! `<RFC3339Nano> <stdout|stderr> <P|F> <text>` lines. After a restart the
//! copy resumes after the last line already in the file.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use cri_dockerd_engine::Engine;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::is_docker_not_found;
use crate::time::rfc3339_to_ns;

/// The kubelet's (and containerd's) maximum CRI log line; longer lines are
/// split into P parts ending with an F part.
pub const MAX_LOG_LINE: usize = 16 * 1024;
/// How much of an existing file is read to find where to resume.
const RESUME_TAIL: u64 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One frame of Docker's log stream (`timestamps=true`): its timestamp,
/// stream, text without the newline, and whether the line is complete.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub timestamp: &'a str,
    pub stream: Stream,
    pub text: &'a [u8],
    pub complete: bool,
}

pub fn parse_frame(stream: Stream, message: &[u8]) -> Option<Frame<'_>> {
    let space = message.iter().position(|b| *b == b' ')?;
    let timestamp = std::str::from_utf8(&message[..space]).ok()?;
    let rest = &message[space + 1..];
    let (text, complete) = match rest.strip_suffix(b"\n") {
        Some(text) => (text, true),
        None => (rest, false),
    };
    Some(Frame {
        timestamp,
        stream,
        text,
        complete,
    })
}

/// The CRI lines for a frame: parts of at most MAX_LOG_LINE bytes, all `P`
/// but the last, which is `F` when Docker's line was complete.
pub fn cri_lines(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.text.len() + 64);
    let chunks: Vec<&[u8]> = if frame.text.is_empty() {
        vec![&[][..]]
    } else {
        frame.text.chunks(MAX_LOG_LINE).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        let tag = if i == last && frame.complete {
            "F"
        } else {
            "P"
        };
        out.extend_from_slice(frame.timestamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(frame.stream.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out
}

/// Where a copy resumes. Docker reads a container's stdout and stderr in
/// two goroutines, so its json-file is not ordered by timestamp across the
/// two streams: a stderr line can follow a later stdout line. A single
/// "last timestamp" would lose such lines, so every line of the last
/// `REORDER_WINDOW` of the file is counted per (timestamp, stream), and
/// only frames before that window are taken as written without looking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub floor_ns: i64,
    pub written: HashMap<(i64, Stream), usize>,
}

/// Far more than Docker's skew between its stdout and stderr copiers.
const REORDER_WINDOW_NS: i64 = 2_000_000_000;

impl Resume {
    /// Docker's `since` takes whole seconds; the rest is skipped here.
    pub fn since_seconds(&self) -> i32 {
        (self.floor_ns / 1_000_000_000).clamp(0, i32::MAX as i64) as i32
    }

    /// Whether a frame that becomes `lines` CRI lines is already in the file.
    pub fn skip(&mut self, timestamp_ns: i64, stream: Stream, lines: usize) -> bool {
        if timestamp_ns < self.floor_ns {
            return true;
        }
        match self.written.get_mut(&(timestamp_ns, stream)) {
            Some(n) if *n >= lines => {
                *n -= lines;
                true
            }
            _ => false,
        }
    }

    /// Whether every line the file held has been matched: from here on
    /// nothing needs checking.
    pub fn exhausted(&self) -> bool {
        self.written.values().all(|n| *n == 0)
    }
}

fn parse_cri_line(line: &[u8]) -> Option<(i64, Stream)> {
    let mut parts = line.splitn(3, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let ns = rfc3339_to_ns(ts);
    (ns > 0).then_some((ns, stream))
}

/// Makes `path` a regular file ready for appending and says where to resume.
/// A symlink (cri-dockerd's link into Docker's data root) is replaced, so
/// Docker's own file is never written to, and the copy starts from the top.
/// A trailing partial line (a crash mid-write) is cut off.
pub fn prepare_file(path: &Path) -> std::io::Result<Option<Resume>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::remove_file(path)?;
            return Ok(None);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(RESUME_TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let complete_len = tail
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    if complete_len < tail.len() {
        file.set_len(start + complete_len as u64)?;
    }
    let mut lines: Vec<&[u8]> = tail[..complete_len]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if start > 0 && !lines.is_empty() {
        // The first line may have been cut by the seek.
        lines.remove(0);
    }
    let parsed: Vec<(i64, Stream)> = lines.iter().filter_map(|l| parse_cri_line(l)).collect();
    let (Some(first_ns), Some(last_ns)) = (
        parsed.iter().map(|(ns, _)| *ns).min(),
        parsed.iter().map(|(ns, _)| *ns).max(),
    ) else {
        return Ok(None);
    };
    let mut resume = Resume {
        floor_ns: first_ns.max(last_ns - REORDER_WINDOW_NS),
        written: HashMap::new(),
    };
    for key in parsed.into_iter().filter(|(ns, _)| *ns >= resume.floor_ns) {
        *resume.written.entry(key).or_default() += 1;
    }
    Ok(Some(resume))
}

enum Control {
    Reopen(oneshot::Sender<std::io::Result<()>>),
}

struct Follower {
    done: watch::Receiver<bool>,
    control: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
}

/// One log copier per container.
#[derive(Clone)]
pub struct LogManager {
    engine: Engine,
    followers: Arc<Mutex<HashMap<String, Follower>>>,
}

impl LogManager {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            followers: Arc::default(),
        }
    }

    /// Starts copying unless a copier for the container is still running.
    pub fn follow(&self, container_id: &str, path: PathBuf) {
        let mut followers = self.followers.lock();
        if let Some(f) = followers.get(container_id)
            && !*f.done.borrow()
        {
            return;
        }
        let (done_tx, done_rx) = watch::channel(false);
        let (control_tx, control_rx) = mpsc::channel(4);
        let docker = self.engine.api();
        let id = container_id.to_string();
        let span = tracing::info_span!("logs", container_id = %id);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                copy_logs(docker, &id, &path, control_rx).await;
                let _ = done_tx.send(true);
            },
            span,
        ));
        followers.insert(
            container_id.to_string(),
            Follower {
                done: done_rx,
                control: control_tx,
                task,
            },
        );
    }

    /// Waits (up to `limit`) until the copier has written everything Docker
    /// had for an exited container.
    pub async fn drained(&self, container_id: &str, limit: Duration) {
        let done = self
            .followers
            .lock()
            .get(container_id)
            .map(|f| f.done.clone());
        if let Some(mut done) = done {
            let _ = tokio::time::timeout(limit, done.wait_for(|d| *d)).await;
        }
    }

    pub fn is_following(&self, container_id: &str) -> bool {
        self.followers
            .lock()
            .get(container_id)
            .is_some_and(|f| !*f.done.borrow())
    }

    /// Closes the file and opens a new one at the same path, as the
    /// kubelet's log rotation expects after renaming the old one.
    pub async fn reopen(&self, container_id: &str) -> Option<std::io::Result<()>> {
        let control = {
            let followers = self.followers.lock();
            let f = followers.get(container_id).filter(|f| !*f.done.borrow())?;
            f.control.clone()
        };
        let (ack_tx, ack_rx) = oneshot::channel();
        control.send(Control::Reopen(ack_tx)).await.ok()?;
        ack_rx.await.ok()
    }

    pub fn forget(&self, container_id: &str) {
        if let Some(f) = self.followers.lock().remove(container_id) {
            f.task.abort();
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

async fn copy_logs(docker: Docker, id: &str, path: &Path, mut control: mpsc::Receiver<Control>) {
    loop {
        match copy_once(&docker, id, path, &mut control, true).await {
            Ok(()) => {
                // Docker 20.10's follow can end before the last lines of a
                // container that just exited: read once more from where the
                // file ends.
                if let Err(CopyError::Io(e)) =
                    copy_once(&docker, id, path, &mut control, false).await
                {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the container log");
                }
                return;
            }
            Err(CopyError::Gone) => return,
            Err(CopyError::Io(e)) => {
                tracing::error!(path = %path.display(), error = %e, "cannot write the container log");
                return;
            }
            Err(CopyError::Docker(e)) => {
                tracing::warn!(error = %e, "log stream broke; resuming");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

enum CopyError {
    Gone,
    Io(std::io::Error),
    Docker(bollard::errors::Error),
}

async fn copy_once(
    docker: &Docker,
    id: &str,
    path: &Path,
    control: &mut mpsc::Receiver<Control>,
    follow: bool,
) -> Result<(), CopyError> {
    let mut resume = prepare_file(path).map_err(CopyError::Io)?;
    let mut file = open_append(path).map_err(CopyError::Io)?;
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        timestamps: true,
        since: resume.as_ref().map(Resume::since_seconds).unwrap_or(0),
        tail: "all".into(),
        ..Default::default()
    };
    if let Some(r) = &resume {
        tracing::debug!(
            since = r.floor_ns,
            window_lines = r.written.values().sum::<usize>(),
            "resuming the log copy"
        );
    }
    let mut stream = docker.logs(id, Some(options));
    loop {
        tokio::select! {
            Some(Control::Reopen(ack)) = control.recv() => {
                let reopened = file.flush().and_then(|()| open_append(path));
                match reopened {
                    Ok(f) => { file = f; let _ = ack.send(Ok(())); }
                    Err(e) => { let _ = ack.send(Err(e)); }
                }
            }
            item = stream.next() => {
                let output = match item {
                    None => return Ok(()),
                    Some(Err(e)) if is_docker_not_found(&e) => return Err(CopyError::Gone),
                    Some(Err(e)) => return Err(CopyError::Docker(e)),
                    Some(Ok(output)) => output,
                };
                let (stream_kind, message) = match &output {
                    LogOutput::StdErr { message } => (Stream::Stderr, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => (Stream::Stdout, message),
                    LogOutput::StdIn { .. } => continue,
                };
                let Some(frame) = parse_frame(stream_kind, message) else { continue };
                let lines = cri_lines(&frame);
                let already_written = resume.as_mut().is_some_and(|r| {
                    let count = lines.iter().filter(|b| **b == b'\n').count();
                    r.skip(rfc3339_to_ns(frame.timestamp), frame.stream, count)
                });
                if resume.as_ref().is_some_and(Resume::exhausted) {
                    resume = None;
                }
                if !already_written {
                    file.write_all(&lines).map_err(CopyError::Io)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_cri_lines() {
        let f = parse_frame(
            Stream::Stdout,
            b"2026-01-02T03:04:05.123456789Z hello world\n",
        )
        .unwrap();
        assert_eq!(f.timestamp, "2026-01-02T03:04:05.123456789Z");
        assert!(f.complete);
        assert_eq!(
            cri_lines(&f),
            b"2026-01-02T03:04:05.123456789Z stdout F hello world\n"
        );
        let partial = parse_frame(Stream::Stderr, b"2026-01-02T03:04:05.1Z abc").unwrap();
        assert_eq!(
            cri_lines(&partial),
            b"2026-01-02T03:04:05.1Z stderr P abc\n"
        );
        let empty = parse_frame(Stream::Stdout, b"2026-01-02T03:04:05.1Z \n").unwrap();
        assert_eq!(cri_lines(&empty), b"2026-01-02T03:04:05.1Z stdout F \n");
        assert!(parse_frame(Stream::Stdout, b"garbage").is_none());
    }

    #[test]
    fn long_lines_become_p_parts_then_f() {
        let text = vec![b'x'; MAX_LOG_LINE * 2 + 10];
        let mut message = b"2026-01-02T03:04:05Z ".to_vec();
        message.extend_from_slice(&text);
        message.push(b'\n');
        let frame = parse_frame(Stream::Stdout, &message).unwrap();
        let out = cri_lines(&frame);
        let lines: Vec<&[u8]> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(b"2026-01-02T03:04:05Z stdout P "));
        assert!(lines[1].starts_with(b"2026-01-02T03:04:05Z stdout P "));
        assert!(lines[2].starts_with(b"2026-01-02T03:04:05Z stdout F "));
        let joined: usize = lines
            .iter()
            .map(|l| l.len() - "2026-01-02T03:04:05Z stdout P ".len())
            .sum();
        assert_eq!(joined, text.len());
    }

    #[test]
    fn resume_counts_the_lines_of_the_last_window_and_cuts_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:01Z stdout F a\n2026-01-01T00:00:05Z stdout F b\n2026-01-01T00:00:05Z stderr F c\n2026-01-01T00:00:05Z stdout F d\n2026-01-01T00:00:06Z stdout F e\n2026-01-01T00:00:06Z stdo",
        )
        .unwrap();
        let resume = prepare_file(&path).unwrap().unwrap();
        let t1 = 1_767_225_601_000_000_000;
        let t5 = 1_767_225_605_000_000_000;
        let t6 = 1_767_225_606_000_000_000;
        assert_eq!(resume.floor_ns, t6 - REORDER_WINDOW_NS);
        assert_eq!(resume.written[&(t5, Stream::Stdout)], 2);
        assert_eq!(resume.written[&(t5, Stream::Stderr)], 1);
        assert_eq!(resume.written[&(t6, Stream::Stdout)], 1);
        assert!(
            std::fs::read_to_string(&path).unwrap().ends_with("F e\n"),
            "the partial line is cut"
        );

        let mut r = resume;
        assert!(r.skip(t1, Stream::Stdout, 1), "before the window");
        assert!(r.skip(t5, Stream::Stdout, 1));
        assert!(r.skip(t5, Stream::Stderr, 1));
        assert!(r.skip(t5, Stream::Stdout, 1));
        assert!(
            !r.skip(t5, Stream::Stdout, 1),
            "a third stdout line at t5 is new"
        );
        assert!(!r.exhausted());
        assert!(r.skip(t6, Stream::Stdout, 1));
        assert!(r.exhausted());
        assert!(!r.skip(t6 + 1, Stream::Stderr, 1));
        assert_eq!(r.since_seconds(), 1767225604);
    }

    #[test]
    fn a_stderr_line_written_after_a_later_stdout_line_is_not_lost() {
        // Docker's json-file order: stdout at .500 reached the file before
        // stderr stamped .400; the copy stopped after the stdout line.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:01.300000000Z stdout F out-1\n2026-01-01T00:00:01.500000000Z stdout F out-2\n",
        )
        .unwrap();
        let mut r = prepare_file(&path).unwrap().unwrap();
        let at = |ms: i64| 1_767_225_601_000_000_000 + ms * 1_000_000;
        assert!(r.skip(at(300), Stream::Stdout, 1));
        assert!(r.skip(at(500), Stream::Stdout, 1));
        assert!(!r.skip(at(400), Stream::Stderr, 1), "err-1 is written");
    }

    #[test]
    fn symlinks_are_replaced_and_missing_files_start_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let docker_file = dir.path().join("json.log");
        std::fs::write(&docker_file, "{}").unwrap();
        let link = dir.path().join("app/0.log");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&docker_file, &link).unwrap();
        assert_eq!(prepare_file(&link).unwrap(), None);
        assert!(!link.exists());
        assert_eq!(
            std::fs::read_to_string(&docker_file).unwrap(),
            "{}",
            "Docker's file is untouched"
        );
        let fresh = dir.path().join("new/dir/1.log");
        assert_eq!(prepare_file(&fresh).unwrap(), None);
        assert!(fresh.parent().unwrap().is_dir());
    }
}
