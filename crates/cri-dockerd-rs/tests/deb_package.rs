//! `make deb`: the package's fields and files, its binary run, its
//! maintainer scripts checked by shellcheck, and dpkg installing it into a
//! scratch root the way it lands on a node: taking over a cri-dockerd
//! package, enabling the units, keeping an admin's disable on upgrade,
//! removing and purging. Maintainer scripts run with `DPKG_ROOT` pointing at
//! the scratch root (dpkg's chrootless mode), so the host is not touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cri_dockerd_testkit::repo_root;

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).unwrap()
}

fn build_package(out: &Path) -> PathBuf {
    let printed = stdout(
        Command::new("make")
            .arg("-s")
            .arg("deb")
            .arg(format!("DEB_DIR={}", out.display()))
            .current_dir(repo_root()),
    );
    let deb = PathBuf::from(printed.lines().last().expect("make deb prints the package"));
    assert!(deb.is_file(), "{}", deb.display());
    deb
}

fn field(deb: &Path, name: &str) -> String {
    stdout(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// path -> (mode string, owner) of every entry.
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    stdout(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let path = parts[5].trim_start_matches('.').to_string();
            (path, (parts[0].to_string(), parts[1].to_string()))
        })
        .collect()
}

/// A package named cri-dockerd with the files cri-dockerd's own package
/// puts where ours go: the units by the same names.
fn cri_dockerd_standin(dir: &Path, arch: &str) -> PathBuf {
    let stage = dir.join("standin");
    std::fs::create_dir_all(stage.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(stage.join("usr/bin")).unwrap();
    std::fs::create_dir_all(stage.join("lib/systemd/system")).unwrap();
    std::fs::write(stage.join("usr/bin/cri-dockerd"), "#!/bin/sh\n").unwrap();
    for unit in ["cri-docker.service", "cri-docker.socket"] {
        std::fs::write(
            stage.join("lib/systemd/system").join(unit),
            "# cri-dockerd's unit\n",
        )
        .unwrap();
    }
    std::fs::write(
        stage.join("DEBIAN/control"),
        format!(
            "Package: cri-dockerd\nVersion: 0.3.21~3-0~debian-bookworm\nArchitecture: {arch}\n\
             Maintainer: test <test@example.invalid>\nDescription: stand-in for cri-dockerd\n"
        ),
    )
    .unwrap();
    let deb = dir.join("cri-dockerd.deb");
    run(Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("--build")
        .arg(&stage)
        .arg(&deb));
    deb
}

/// dpkg on a scratch root: its own database, log and instdir; maintainer
/// scripts run chrootless with `DPKG_ROOT` set.
struct ScratchRoot {
    root: PathBuf,
    log: PathBuf,
}

impl ScratchRoot {
    fn new(dir: &Path) -> Self {
        let root = dir.join("root");
        for sub in [
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "etc",
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        Self {
            root,
            log: dir.join("dpkg.log"),
        }
    }

    fn dpkg(&self, args: &[&str]) -> String {
        stdout(
            Command::new("dpkg")
                .arg(format!("--root={}", self.root.display()))
                .arg(format!("--log={}", self.log.display()))
                .arg("--force-script-chrootless")
                // The scratch root has no libc6 or docker.io package.
                .arg("--force-depends")
                .args(args),
        )
    }

    fn status(&self, package: &str) -> String {
        let out = Command::new("dpkg-query")
            .arg(format!("--admindir={}/var/lib/dpkg", self.root.display()))
            .args(["--show", "--showformat=${Status}", package])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn enabled(&self) -> (bool, bool) {
        (
            self.path("/etc/systemd/system/sockets.target.wants/cri-docker.socket")
                .symlink_metadata()
                .is_ok(),
            self.path("/etc/systemd/system/multi-user.target.wants/cri-docker.service")
                .symlink_metadata()
                .is_ok(),
        )
    }
}

fn host_links() -> Vec<PathBuf> {
    [
        "/etc/systemd/system/sockets.target.wants/cri-docker.socket",
        "/etc/systemd/system/multi-user.target.wants/cri-docker.service",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.symlink_metadata().is_ok())
    .collect()
}

#[test]
fn make_deb_builds_a_package_that_takes_over_a_cri_dockerd_node() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_package(&dir.path().join("out"));
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_string();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!("cri-dockerd-rs_{version}_{arch}.deb")
    );

    // Fields.
    assert_eq!(field(&deb, "Package"), "cri-dockerd-rs");
    assert_eq!(field(&deb, "Version"), version);
    assert_eq!(field(&deb, "Architecture"), arch);
    let depends = field(&deb, "Depends");
    assert!(depends.contains("docker.io | docker-ce"), "{depends}");
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");
    for relation in ["Conflicts", "Replaces", "Provides"] {
        assert_eq!(field(&deb, relation), "cri-dockerd", "{relation}");
    }
    assert!(!field(&deb, "Maintainer").is_empty());
    assert!(field(&deb, "Installed-Size").parse::<u64>().unwrap() > 1000);

    // Files: exactly these, root-owned, with these modes.
    let files: BTreeMap<String, (String, String)> = contents(&deb)
        .into_iter()
        .filter(|(_, (mode, _))| !mode.starts_with('d'))
        .collect();
    let expected = [
        ("/usr/bin/cri-dockerd-rs", "-rwxr-xr-x"),
        ("/lib/systemd/system/cri-docker.service", "-rw-r--r--"),
        ("/lib/systemd/system/cri-docker.socket", "-rw-r--r--"),
        ("/usr/share/doc/cri-dockerd-rs/copyright", "-rw-r--r--"),
    ];
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        {
            let mut paths: Vec<_> = expected.iter().map(|(p, _)| p.to_string()).collect();
            paths.sort();
            paths
        }
        .iter()
        .collect::<Vec<_>>()
    );
    for (path, mode) in expected {
        assert_eq!(
            files[path],
            (mode.to_string(), "root/root".to_string()),
            "{path}"
        );
    }

    // The binary in it runs, and the units are the repository's.
    let unpacked = dir.path().join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    let binary = unpacked.join("usr/bin/cri-dockerd-rs");
    let said = stdout(Command::new(&binary).arg("--version"));
    assert!(
        said.starts_with(&format!("cri-dockerd-rs {version}")),
        "{said}"
    );
    let help = stdout(Command::new(&binary).arg("--help"));
    for flag in [
        "--metrics-bind-addr",
        "--log-format",
        "--container-runtime-endpoint",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
    for unit in ["cri-docker.service", "cri-docker.socket"] {
        assert_eq!(
            std::fs::read(unpacked.join("lib/systemd/system").join(unit)).unwrap(),
            std::fs::read(repo_root().join("packaging/systemd").join(unit)).unwrap(),
            "{unit}"
        );
    }
    let service =
        std::fs::read_to_string(unpacked.join("lib/systemd/system/cri-docker.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/cri-dockerd-rs "));

    // Maintainer scripts: present, executable, clean under shellcheck.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o755, "{script}");
        run(Command::new("shellcheck").arg(&path));
    }

    // dpkg on a node that runs cri-dockerd.
    let host_before = host_links();
    let node = ScratchRoot::new(dir.path());
    node.dpkg(&[
        "--install",
        cri_dockerd_standin(dir.path(), &arch).to_str().unwrap(),
    ]);
    assert!(
        node.status("cri-dockerd")
            .starts_with("install ok installed")
    );
    node.dpkg(&["--install", deb.to_str().unwrap()]);
    let replaced = node.status("cri-dockerd");
    assert!(
        !replaced.starts_with("install ok installed"),
        "cri-dockerd is removed in favour of cri-dockerd-rs: {replaced}"
    );
    assert_eq!(node.status("cri-dockerd-rs"), "install ok installed");
    assert!(!node.path("/usr/bin/cri-dockerd").exists());
    assert!(node.path("/usr/bin/cri-dockerd-rs").is_file());
    assert_eq!(
        std::fs::read(node.path("/lib/systemd/system/cri-docker.service")).unwrap(),
        std::fs::read(repo_root().join("packaging/systemd/cri-docker.service")).unwrap(),
        "our unit replaced cri-dockerd's"
    );
    assert_eq!(node.enabled(), (true, true), "socket and service enabled");

    // An admin disables the units; an upgrade keeps that choice.
    run(Command::new("systemctl")
        .arg(format!("--root={}", node.root.display()))
        .args(["disable", "cri-docker.socket", "cri-docker.service"]));
    assert_eq!(node.enabled(), (false, false));
    node.dpkg(&["--install", deb.to_str().unwrap()]);
    assert_eq!(
        node.enabled(),
        (false, false),
        "an upgrade does not re-enable"
    );
    run(Command::new("systemctl")
        .arg(format!("--root={}", node.root.display()))
        .args(["enable", "cri-docker.socket", "cri-docker.service"]));

    // Removal takes the files; a purge also the enable links.
    node.dpkg(&["--remove", "cri-dockerd-rs"]);
    assert!(!node.path("/usr/bin/cri-dockerd-rs").exists());
    assert!(!node.path("/lib/systemd/system/cri-docker.service").exists());
    node.dpkg(&["--purge", "cri-dockerd-rs"]);
    assert_eq!(
        node.enabled(),
        (false, false),
        "purge drops the enable links"
    );
    assert_eq!(host_links(), host_before, "the host's units are untouched");
}
