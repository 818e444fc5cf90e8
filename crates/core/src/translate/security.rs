//! Security options shared by sandboxes and containers, written the way
//! cri-dockerd writes them into `HostConfig.SecurityOpt`.

use cri_dockerd_api::v1::{SeLinuxOption, SecurityProfile, security_profile::ProfileType};

use crate::error::{Error, Result};

/// What a seccomp profile asks of Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// Docker's default profile: no option at all.
    DockerDefault,
    Unconfined,
    /// A profile file on the node, to be read and inlined.
    Localhost(String),
}

/// The structured field wins over the deprecated path string. `absent` is
/// what an unset profile means: unconfined for containers (the kubelet's
/// default), Docker's default for sandboxes (cri-dockerd's behaviour).
pub fn seccomp_choice(
    profile: Option<&SecurityProfile>,
    legacy_path: &str,
    absent: Seccomp,
) -> Seccomp {
    if let Some(profile) = profile {
        return match ProfileType::try_from(profile.profile_type) {
            Ok(ProfileType::Unconfined) => Seccomp::Unconfined,
            Ok(ProfileType::Localhost) => Seccomp::Localhost(profile.localhost_ref.clone()),
            _ => Seccomp::DockerDefault,
        };
    }
    match legacy_path {
        "" => absent,
        "unconfined" => Seccomp::Unconfined,
        "runtime/default" | "docker/default" => Seccomp::DockerDefault,
        path => Seccomp::Localhost(path.strip_prefix("localhost/").unwrap_or(path).to_string()),
    }
}

/// `seccomp=...` for Docker; a localhost profile is inlined as compact JSON,
/// since the daemon may not see the node's files.
pub fn seccomp_security_opt(
    choice: &Seccomp,
    read_profile: &(dyn Fn(&str) -> std::io::Result<Vec<u8>> + Sync),
) -> Result<Option<String>> {
    match choice {
        Seccomp::DockerDefault => Ok(None),
        Seccomp::Unconfined => Ok(Some("seccomp=unconfined".into())),
        Seccomp::Localhost(path) => {
            if !path.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "seccomp localhost profile {path:?} must be an absolute path"
                )));
            }
            let bytes = read_profile(path).map_err(|e| {
                Error::InvalidArgument(format!("cannot read seccomp profile {path}: {e}"))
            })?;
            let profile: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::InvalidArgument(format!("seccomp profile {path} is not valid JSON: {e}"))
            })?;
            Ok(Some(format!("seccomp={profile}")))
        }
    }
}

/// `apparmor=...`; Docker applies its default profile when told nothing.
pub fn apparmor_security_opt(profile: Option<&SecurityProfile>, legacy: &str) -> Option<String> {
    if let Some(profile) = profile {
        return match ProfileType::try_from(profile.profile_type) {
            Ok(ProfileType::Unconfined) => Some("apparmor=unconfined".into()),
            Ok(ProfileType::Localhost) => {
                let name = profile
                    .localhost_ref
                    .strip_prefix("localhost/")
                    .unwrap_or(&profile.localhost_ref);
                Some(format!("apparmor={name}"))
            }
            _ => None,
        };
    }
    match legacy {
        "" | "runtime/default" => None,
        "unconfined" => Some("apparmor=unconfined".into()),
        name => Some(format!(
            "apparmor={}",
            name.strip_prefix("localhost/").unwrap_or(name)
        )),
    }
}

/// The AppArmor profile a Docker security option names, when it names one
/// of the node's own (`apparmor=<name>`, not `unconfined`).
pub fn named_apparmor_profile(security_opt: &[String]) -> Option<&str> {
    security_opt
        .iter()
        .find_map(|o| o.strip_prefix("apparmor="))
        .filter(|p| *p != "unconfined")
}

/// Whether the kernel's list of loaded profiles
/// (`/sys/kernel/security/apparmor/profiles`: `name (mode)` a line) holds
/// `name`.
pub fn apparmor_profile_loaded(profiles: &str, name: &str) -> bool {
    profiles.lines().any(|line| {
        line.rsplit_once(" (")
            .map_or(line, |(profile, _)| profile)
            .trim()
            == name
    })
}

/// `label=user:...`, `label=role:...`, `label=type:...`, `label=level:...`.
pub fn selinux_security_opts(options: Option<&SeLinuxOption>) -> Vec<String> {
    let Some(o) = options else {
        return Vec::new();
    };
    [
        ("user", &o.user),
        ("role", &o.role),
        ("type", &o.r#type),
        ("level", &o.level),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("label={k}:{v}"))
    .collect()
}

/// Docker's `User`: uid or name, with `:gid` when a group is asked for.
pub fn docker_user(uid: Option<i64>, username: &str, gid: Option<i64>) -> Result<Option<String>> {
    let user = if !username.is_empty() {
        Some(username.to_string())
    } else {
        uid.map(|u| u.to_string())
    };
    match (user, gid) {
        (None, Some(_)) => Err(Error::InvalidArgument(
            "runAsGroup is specified without a runAsUser".into(),
        )),
        (Some(user), Some(gid)) => Ok(Some(format!("{user}:{gid}"))),
        (user, None) => Ok(user),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(t: ProfileType, r: &str) -> SecurityProfile {
        SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        }
    }

    #[test]
    fn seccomp_profiles() {
        let read = |_: &str| Ok(b"{ \"defaultAction\": \"SCMP_ACT_ALLOW\" }".to_vec());
        let none = |_: &str| Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        let opt = |c: Seccomp| seccomp_security_opt(&c, &read).unwrap();
        assert_eq!(
            opt(seccomp_choice(None, "", Seccomp::Unconfined)).as_deref(),
            Some("seccomp=unconfined")
        );
        assert_eq!(opt(seccomp_choice(None, "", Seccomp::DockerDefault)), None);
        assert_eq!(
            opt(seccomp_choice(
                Some(&profile(ProfileType::RuntimeDefault, "")),
                "",
                Seccomp::Unconfined
            )),
            None
        );
        assert_eq!(
            opt(seccomp_choice(
                Some(&profile(ProfileType::Localhost, "/p.json")),
                "",
                Seccomp::Unconfined
            ))
            .as_deref(),
            Some("seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}")
        );
        assert_eq!(
            seccomp_choice(None, "localhost//x.json", Seccomp::Unconfined),
            Seccomp::Localhost("/x.json".into())
        );
        assert!(seccomp_security_opt(&Seccomp::Localhost("/missing".into()), &none).is_err());
        assert!(seccomp_security_opt(&Seccomp::Localhost("relative".into()), &read).is_err());
    }

    #[test]
    fn loaded_apparmor_profiles_are_found_by_name() {
        let profiles = "docker-default (enforce)\ncrid test (complain)\n/usr/bin/man (enforce)\n";
        assert!(apparmor_profile_loaded(profiles, "docker-default"));
        assert!(apparmor_profile_loaded(profiles, "crid test"));
        assert!(apparmor_profile_loaded(profiles, "/usr/bin/man"));
        assert!(!apparmor_profile_loaded(profiles, "docker"));
        let opts = vec![
            "seccomp=unconfined".to_string(),
            "apparmor=k8s-x".to_string(),
        ];
        assert_eq!(named_apparmor_profile(&opts), Some("k8s-x"));
        assert_eq!(
            named_apparmor_profile(&["apparmor=unconfined".to_string()]),
            None
        );
    }

    #[test]
    fn apparmor_profiles() {
        assert_eq!(apparmor_security_opt(None, ""), None);
        assert_eq!(
            apparmor_security_opt(Some(&profile(ProfileType::Unconfined, "")), "").as_deref(),
            Some("apparmor=unconfined")
        );
        assert_eq!(
            apparmor_security_opt(
                Some(&profile(ProfileType::Localhost, "localhost/k8s-x")),
                ""
            )
            .as_deref(),
            Some("apparmor=k8s-x")
        );
        assert_eq!(
            apparmor_security_opt(None, "localhost/p").as_deref(),
            Some("apparmor=p")
        );
    }

    #[test]
    fn selinux_labels() {
        let o = SeLinuxOption {
            user: "u".into(),
            role: "".into(),
            r#type: "t".into(),
            level: "s0:c1".into(),
        };
        assert_eq!(
            selinux_security_opts(Some(&o)),
            vec!["label=user:u", "label=type:t", "label=level:s0:c1"]
        );
    }

    #[test]
    fn users_and_groups() {
        assert_eq!(
            docker_user(Some(1234), "", None).unwrap().as_deref(),
            Some("1234")
        );
        assert_eq!(
            docker_user(Some(1234), "", Some(5)).unwrap().as_deref(),
            Some("1234:5")
        );
        assert_eq!(
            docker_user(Some(1), "tester", None).unwrap().as_deref(),
            Some("tester")
        );
        assert_eq!(docker_user(None, "", None).unwrap(), None);
        assert!(docker_user(None, "", Some(5)).is_err());
    }
}
