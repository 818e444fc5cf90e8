//! Running under systemd as cri-dockerd's stock units run it: the CRI
//! socket handed over by `cri-docker.socket` (`--container-runtime-endpoint
//! fd://`), `Type=notify` readiness and stop notifications, and the
//! watchdog.
//!
//! Socket passing is `sd-notify`'s (`LISTEN_PID`/`LISTEN_FDS`/
//! `LISTEN_FDNAMES`). Notifications are sent here: that crate only reaches
//! a `NOTIFY_SOCKET` that is a path, and systemd may name an abstract
//! socket (`@name`), as containers and test harnesses commonly do.

use std::ffi::OsString;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, SockaddrStorage, sockopt};

/// What systemd handed this process, taken out of the environment so that
/// the programs the shim starts (CNI plugins) do not inherit it.
#[derive(Debug, Default)]
pub struct SystemdHandover {
    listen_fds: Vec<(RawFd, String)>,
    notifier: Option<Notifier>,
    watchdog: Option<Duration>,
}

impl SystemdHandover {
    /// Reads `LISTEN_*`, `NOTIFY_SOCKET` and `WATCHDOG_*`, then removes them.
    ///
    /// # Safety
    /// Changes the environment: call it before any other thread starts.
    pub unsafe fn take() -> anyhow::Result<Self> {
        let listen_fds: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names()
            .context("reading the sockets systemd passed (LISTEN_FDS, LISTEN_FDNAMES)")?
            .collect();
        let notifier = std::env::var_os("NOTIFY_SOCKET")
            .map(|value| Notifier::from_env(&value))
            .transpose()?;
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        for name in [
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        ] {
            // SAFETY: the caller guarantees no other thread runs yet.
            unsafe { std::env::remove_var(name) };
        }
        Ok(Self {
            listen_fds,
            notifier,
            watchdog,
        })
    }

    /// The passed socket `fd://` (the first) or `fd://NAME` (by its
    /// `FileDescriptorName=`) names, ready to accept.
    pub fn listener(&mut self, name: &str) -> anyhow::Result<PassedListener> {
        if self.listen_fds.is_empty() {
            bail!(
                "--container-runtime-endpoint=fd://{name} but no socket was passed: start \
                 cri-dockerd-rs through its socket unit (cri-docker.socket), or give a unix:// endpoint"
            );
        }
        let index = if name.is_empty() {
            0
        } else {
            let names: Vec<&str> = self.listen_fds.iter().map(|(_, n)| n.as_str()).collect();
            names.iter().position(|n| *n == name).with_context(|| {
                format!("no passed socket is named {name:?} (LISTEN_FDNAMES: {names:?})")
            })?
        };
        let (fd, _) = self.listen_fds.remove(index);
        PassedListener::from_fd(fd)
    }

    pub fn notifier(&self) -> Option<Notifier> {
        self.notifier.clone()
    }

    /// The watchdog interval systemd expects pings within.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
}

/// A listening socket from systemd.
#[derive(Debug)]
pub enum PassedListener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

impl PassedListener {
    fn from_fd(fd: RawFd) -> anyhow::Result<Self> {
        // SAFETY: systemd passed `fd` to this process for it to own; it was
        // taken out of the list, so nothing else will wrap it.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let not_a_listener = || {
            format!(
                "the socket systemd passed (fd {fd}) is not a listening stream socket: \
                 use ListenStream= in the socket unit"
            )
        };
        let kind =
            nix::sys::socket::getsockopt(&owned, sockopt::SockType).with_context(not_a_listener)?;
        let listening = nix::sys::socket::getsockopt(&owned, sockopt::AcceptConn)
            .with_context(not_a_listener)?;
        if kind != SockType::Stream || !listening {
            bail!(not_a_listener());
        }
        let local: SockaddrStorage =
            nix::sys::socket::getsockname(fd).with_context(not_a_listener)?;
        let listener = match local.family() {
            Some(AddressFamily::Unix) => {
                let listener = std::os::unix::net::UnixListener::from(owned);
                listener.set_nonblocking(true)?;
                PassedListener::Unix(listener)
            }
            Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                let listener = std::net::TcpListener::from(owned);
                listener.set_nonblocking(true)?;
                PassedListener::Tcp(listener)
            }
            other => bail!("the socket systemd passed has address family {other:?}"),
        };
        Ok(listener)
    }
}

/// Sends `sd_notify` messages to the socket systemd named.
#[derive(Debug, Clone)]
pub struct Notifier {
    address: SocketAddr,
}

impl Notifier {
    fn from_env(value: &OsString) -> anyhow::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = value.as_bytes();
        let address = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(value)),
            _ => bail!("NOTIFY_SOCKET={value:?} is neither a path nor an abstract name (@name)"),
        }
        .with_context(|| format!("NOTIFY_SOCKET={value:?}"))?;
        Ok(Self { address })
    }

    pub fn notify(&self, state: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &self.address)?;
        Ok(())
    }

    /// Logs instead of failing: a lost notification must not stop the shim.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            tracing::warn!(error = %e, state = state.trim(), "sd_notify failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_paths_and_abstract_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        Notifier::from_env(&path.clone().into_os_string())
            .unwrap()
            .notify("READY=1\n")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        let name = format!("crid-notify-test-{}", std::process::id());
        let abstract_address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&abstract_address).unwrap();
        Notifier::from_env(&format!("@{name}").into())
            .unwrap()
            .notify("STOPPING=1\n")
            .unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");

        assert!(Notifier::from_env(&"relative/path".into()).is_err());
    }

    #[test]
    fn passed_sockets_must_be_listening_stream_sockets() {
        use std::os::fd::IntoRawFd;
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        assert!(matches!(
            PassedListener::from_fd(unix.into_raw_fd()).unwrap(),
            PassedListener::Unix(_)
        ));
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            PassedListener::from_fd(tcp.into_raw_fd()).unwrap(),
            PassedListener::Tcp(_)
        ));
        let datagram = UnixDatagram::unbound().unwrap();
        let err = PassedListener::from_fd(datagram.into_raw_fd()).unwrap_err();
        assert!(err.to_string().contains("ListenStream="), "{err}");
    }

    #[test]
    fn fd_endpoint_without_a_passed_socket_is_a_clear_error() {
        let mut handover = SystemdHandover::default();
        let err = handover.listener("").unwrap_err().to_string();
        assert!(err.contains("no socket was passed"), "{err}");
    }
}
