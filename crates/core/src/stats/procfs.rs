//! What cAdvisor's process metrics read of a container's processes in
//! `/proc`: their open files and sockets, and the open-files limit.

/// Open file descriptors of a set of processes, and how many are sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFiles {
    pub descriptors: u64,
    pub sockets: u64,
}

/// Counts the descriptors in `/proc/<pid>/fd` of each process; a process
/// that exits under the walk counts for nothing, as in cAdvisor.
pub fn open_files(pids: &[i64]) -> OpenFiles {
    let mut out = OpenFiles::default();
    for pid in pids {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            out.descriptors += 1;
            if std::fs::read_link(entry.path()).is_ok_and(|target| {
                target
                    .as_os_str()
                    .as_encoded_bytes()
                    .starts_with(b"socket:")
            }) {
                out.sockets += 1;
            }
        }
    }
    out
}

/// The soft limit on open files of a process (`Max open files` in
/// `/proc/<pid>/limits`); `None` when unlimited or unreadable.
pub fn max_open_files(pid: i64) -> Option<u64> {
    parse_max_open_files(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
        assert_eq!(parse_max_open_files(""), None);
    }

    #[test]
    fn this_process_has_files_and_a_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = std::process::id() as i64;
        let files = open_files(&[me, i64::MAX]);
        assert!(files.descriptors >= 3, "{files:?}");
        assert!(files.sockets >= 1, "{files:?}");
        assert!(max_open_files(me).is_some());
        drop(socket);
    }
}
