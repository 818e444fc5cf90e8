//! Image references normalised the way Docker and the kubelet do it
//! (github.com/distribution/reference): `busybox` is
//! `docker.io/library/busybox:latest`.

use std::fmt;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub domain: String,
    /// Repository path without the domain, e.g. `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ParseError {
    pub reference: String,
    pub reason: &'static str,
}

/// What a CRI image string names: an image ID or a repository reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageName {
    /// `sha256:<64 hex>` or the bare 64 hex digits.
    Id(String),
    Reference(Reference),
}

pub fn parse_image_name(s: &str) -> Result<ImageName, ParseError> {
    if let Some(hex) = s.strip_prefix("sha256:") {
        if is_hex(hex, 64) {
            return Ok(ImageName::Id(s.to_string()));
        }
        return Err(err(s, "sha256 ids are 64 lowercase hex digits"));
    }
    if is_hex(s, 64) {
        return Ok(ImageName::Id(format!("sha256:{s}")));
    }
    parse_normalized(s).map(ImageName::Reference)
}

fn err(reference: &str, reason: &'static str) -> ParseError {
    ParseError {
        reference: reference.to_string(),
        reason,
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses and normalises a reference: default domain, `library/` for
/// official images; the tag stays absent unless given (see `with_default_tag`).
pub fn parse_normalized(s: &str) -> Result<Reference, ParseError> {
    if s.is_empty() {
        return Err(err(s, "empty reference"));
    }
    if s.len() > 4096 {
        return Err(err(s, "reference too long"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => {
            validate_digest(digest).map_err(|reason| err(s, reason))?;
            (rest, Some(digest.to_string()))
        }
        None => (s, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
        _ => (rest, None),
    };
    if let Some(tag) = &tag {
        validate_tag(tag).map_err(|reason| err(s, reason))?;
    }
    let (domain, path) = split_domain(name);
    if domain != DEFAULT_DOMAIN || !path.is_empty() {
        validate_domain(&domain).map_err(|reason| err(s, reason))?;
    }
    validate_path(&path).map_err(|reason| err(s, reason))?;
    if domain.len() + 1 + path.len() > 255 {
        return Err(err(
            s,
            "repository name must not be more than 255 characters",
        ));
    }
    Ok(Reference {
        domain,
        path,
        tag,
        digest,
    })
}

fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

fn validate_digest(digest: &str) -> Result<(), &'static str> {
    let (algorithm, hex) = digest.split_once(':').ok_or("digest needs an algorithm")?;
    match algorithm {
        "sha256" if is_hex(hex, 64) => Ok(()),
        "sha512" if is_hex(hex, 128) => Ok(()),
        _ => Err("unsupported or malformed digest"),
    }
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || tag.len() > 128 {
        return Err("malformed tag");
    }
    if bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-') {
        Ok(())
    } else {
        Err("malformed tag")
    }
}

fn validate_domain(domain: &str) -> Result<(), &'static str> {
    let host = match domain.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || domain.starts_with('[') => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err("malformed registry port");
            }
            host
        }
        _ => domain,
    };
    if host.starts_with('[') && host.ends_with(']') {
        return Ok(());
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("malformed registry domain")
    }
}

/// Path components: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn validate_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty repository name");
    }
    for component in path.split('/') {
        let bytes = component.as_bytes();
        let valid_chars = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        let alnum =
            |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_chars || !alnum(bytes.first()) || !alnum(bytes.last()) {
            return Err("repository name must be lowercase alphanumerics with separators");
        }
        let mut run = 0usize;
        let mut prev = 0u8;
        for &b in bytes {
            if matches!(b, b'.' | b'_') {
                run += 1;
                // Only "__" may repeat; "." may not, and "._" mixes are invalid.
                if run > 2 || (run == 2 && !(prev == b'_' && b == b'_')) {
                    return Err("malformed separator in repository name");
                }
            } else {
                run = 0;
            }
            prev = b;
        }
    }
    Ok(())
}

impl Reference {
    /// `domain/path`
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The reference with `:latest` added when it has neither tag nor digest.
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// The short form Docker prints in `RepoTags`: no `docker.io/`, no
    /// `library/`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        }
    }

    /// `familiar_name:tag`, what Docker lists in RepoTags.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.familiar_name()))
    }

    /// `familiar_name@digest`, what Docker lists in RepoDigests.
    pub fn familiar_digested(&self) -> Option<String> {
        self.digest
            .as_ref()
            .map(|digest| format!("{}@{digest}", self.familiar_name()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalises a Docker `RepoTags`/`RepoDigests` entry for comparisons.
pub fn normalize(s: &str) -> Option<String> {
    parse_normalized(s).ok().map(|r| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        parse_normalized(s).unwrap().with_default_tag().to_string()
    }

    #[test]
    fn official_images_get_domain_library_and_latest() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
    }

    #[test]
    fn registries_with_ports_and_digests() {
        assert_eq!(
            norm("127.0.0.1:5000/test/busybox"),
            "127.0.0.1:5000/test/busybox:latest"
        );
        assert_eq!(norm("localhost/app:v1"), "localhost/app:v1");
        assert_eq!(
            norm("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        let d = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("127.0.0.1:5000/x:1@{d}")),
            format!("127.0.0.1:5000/x:1@{d}")
        );
    }

    #[test]
    fn familiar_forms_match_docker_repo_tags() {
        let r = parse_normalized("docker.io/library/busybox")
            .unwrap()
            .with_default_tag();
        assert_eq!(r.familiar_tagged().unwrap(), "busybox:latest");
        let r = parse_normalized("127.0.0.1:5000/a/b:2").unwrap();
        assert_eq!(r.familiar_tagged().unwrap(), "127.0.0.1:5000/a/b:2");
    }

    #[test]
    fn ids_are_not_references() {
        let hex = "b".repeat(64);
        assert_eq!(
            parse_image_name(&hex).unwrap(),
            ImageName::Id(format!("sha256:{hex}"))
        );
        assert!(matches!(
            parse_image_name(&format!("sha256:{hex}")),
            Ok(ImageName::Id(_))
        ));
        assert!(parse_image_name("sha256:abc").is_err());
    }

    #[test]
    fn malformed_references_are_rejected() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox@sha256:12",
            "a//b",
            "-a",
            "a..b",
            "busybox:-x",
            "host:port/x",
            ":tag",
            "a b",
        ] {
            assert!(parse_normalized(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_normalized("a__b/c.d-e").is_ok());
    }
}
