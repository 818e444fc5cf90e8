//! CDI devices (the Container Device Interface): what Dynamic Resource
//! Allocation and device plugins hand a container. The kubelet sends them
//! in `ContainerConfig.CDI_devices`; older clients name them in annotations
//! `cdi.k8s.io/<anything>` whose value lists fully-qualified device names,
//! comma-separated (as containerd accepts them). Docker 25+ injects them
//! when asked with a device request of driver `cdi`.

use bollard::models::DeviceRequest;
use cri_dockerd_api::v1::ContainerConfig;

use crate::error::{Error, Result};

/// Annotations that carry CDI device names.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// Docker's device driver for CDI devices.
pub const DOCKER_DRIVER: &str = "cdi";

/// Every CDI device the container asks for, fields first, then annotations
/// (by key, so the order is stable), each once. A name that is not a
/// fully-qualified CDI name (`vendor.com/class=name`) is the caller's
/// mistake.
pub fn requested_devices(config: &ContainerConfig) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str, from: &str| -> Result<()> {
        let name = name.trim();
        check_qualified_name(name).map_err(|why| {
            Error::InvalidArgument(format!("CDI device {name:?} ({from}): {why}"))
        })?;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        Ok(())
    };
    for device in &config.cdi_devices {
        add(&device.name, "CDI_devices")?;
    }
    let mut annotated: Vec<(&String, &String)> = config
        .annotations
        .iter()
        .filter(|(key, _)| key.starts_with(ANNOTATION_PREFIX))
        .collect();
    annotated.sort();
    for (key, value) in annotated {
        if key.len() == ANNOTATION_PREFIX.len() {
            return Err(Error::InvalidArgument(format!(
                "annotation {key:?} names no CDI request: use {ANNOTATION_PREFIX}<name>"
            )));
        }
        for name in value.split(',').filter(|n| !n.trim().is_empty()) {
            add(name, &format!("annotation {key}"))?;
        }
    }
    Ok(names)
}

/// The device request that makes Docker inject `names`.
pub fn device_request(names: &[String]) -> DeviceRequest {
    DeviceRequest {
        driver: Some(DOCKER_DRIVER.into()),
        device_ids: Some(names.to_vec()),
        ..Default::default()
    }
}

/// `vendor.com/class=name`, as the CDI specification parses it: the vendor
/// a domain-like name, the class and the device name of letters, digits
/// and a few separators, each starting and ending with a letter or digit.
pub fn check_qualified_name(name: &str) -> std::result::Result<(), String> {
    let (kind, device) = name
        .split_once('=')
        .ok_or("not a fully-qualified CDI name (vendor.com/class=name)")?;
    let (vendor, class) = kind
        .split_once('/')
        .ok_or("the kind has no vendor (vendor.com/class)")?;
    check_part(vendor, "vendor", |c| {
        c.is_ascii_alphanumeric() || "-_.".contains(c)
    })?;
    if !vendor.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the vendor must start with a letter".into());
    }
    check_part(class, "class", |c| {
        c.is_ascii_alphanumeric() || "-_".contains(c)
    })?;
    if !class.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("the class must start with a letter".into());
    }
    check_part(device, "device name", |c| {
        c.is_ascii_alphanumeric() || "-_.:".contains(c)
    })
}

fn check_part(
    part: &str,
    what: &str,
    allowed: impl Fn(char) -> bool,
) -> std::result::Result<(), String> {
    if part.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if let Some(c) = part.chars().find(|c| !allowed(*c)) {
        return Err(format!("the {what} {part:?} holds {c:?}"));
    }
    let edge = |c: char| c.is_ascii_alphanumeric();
    if !part.starts_with(edge) || !part.ends_with(edge) {
        return Err(format!(
            "the {what} {part:?} must start and end with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_dockerd_api::v1::CdiDevice;

    fn config(fields: &[&str], annotations: &[(&str, &str)]) -> ContainerConfig {
        ContainerConfig {
            cdi_devices: fields
                .iter()
                .map(|n| CdiDevice {
                    name: n.to_string(),
                })
                .collect(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn fields_then_annotations_each_once() {
        let c = config(
            &["nvidia.com/gpu=0", "example.com/net=eth1"],
            &[
                ("cdi.k8s.io/b", "vendor.io/x=a, nvidia.com/gpu=0"),
                ("cdi.k8s.io/a", "vendor.io/x=b"),
                ("other.io/cdi", "not/a=device"),
            ],
        );
        assert_eq!(
            requested_devices(&c).unwrap(),
            vec![
                "nvidia.com/gpu=0",
                "example.com/net=eth1",
                "vendor.io/x=b",
                "vendor.io/x=a"
            ]
        );
        assert!(requested_devices(&config(&[], &[])).unwrap().is_empty());
    }

    #[test]
    fn qualified_names_follow_the_cdi_grammar() {
        for good in [
            "nvidia.com/gpu=0",
            "nvidia.com/gpu=GPU-4f5c:1",
            "vendor_x.example-1.io/class-a_b=dev.1",
            "v/c=all",
        ] {
            assert_eq!(check_qualified_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "gpu0",
            "nvidia.com=gpu0",
            "/gpu=0",
            "nvidia.com/=0",
            "nvidia.com/gpu=",
            "1vendor.com/gpu=0",
            "nvidia.com/1gpu=0",
            "nvidia.com/gpu=0-",
            "nvidia.com/g.pu=0",
            "nvidia.com/gpu=a b",
            "nvidia.com/gpu=a/b",
        ] {
            assert!(check_qualified_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_malformed_name_is_the_callers_mistake() {
        let e = requested_devices(&config(&["gpu0"], &[])).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("gpu0") && m.contains("CDI_devices")),
            "{e}"
        );
        let e = requested_devices(&config(&[], &[("cdi.k8s.io/x", "nope")])).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("cdi.k8s.io/x")),
            "{e}"
        );
        let e = requested_devices(&config(&[], &[("cdi.k8s.io/", "v.io/c=d")])).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
    }

    #[test]
    fn docker_gets_one_request_of_the_cdi_driver() {
        let r = device_request(&["v.io/c=a".into(), "v.io/c=b".into()]);
        assert_eq!(r.driver.as_deref(), Some("cdi"));
        assert_eq!(
            r.device_ids.unwrap(),
            vec!["v.io/c=a".to_string(), "v.io/c=b".to_string()]
        );
        assert_eq!(r.count, None);
        assert_eq!(r.capabilities, None);
    }
}
