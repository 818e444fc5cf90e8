//! Images written straight into a test registry through the registry API:
//! shapes that no daemon of the matrix builds by itself, such as an image
//! index with several platforms.

use std::io::{Read, Write};
use std::net::TcpStream;

use flate2::Compression;
use flate2::write::GzEncoder;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One HTTP/1.1 request to `registry` (`127.0.0.1:5000`); the status and
/// the headers' `Location`.
fn request(
    registry: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Option<String>) {
    let mut stream = TcpStream::connect(registry).expect("the test registry");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {registry}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
        })
        .map(|(_, v)| v.trim().to_string());
    (status, location)
}

fn put_blob(registry: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let (status, location) = request(
        registry,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        "application/octet-stream",
        &[],
    );
    assert_eq!(status, 202, "starting an upload to {repo}");
    let location = location.expect("an upload location");
    let path = location
        .strip_prefix(&format!("http://{registry}"))
        .unwrap_or(&location);
    let separator = if path.contains('?') { '&' } else { '?' };
    let (status, _) = request(
        registry,
        "PUT",
        &format!("{path}{separator}digest={digest}"),
        "application/octet-stream",
        data,
    );
    assert_eq!(status, 201, "uploading a blob to {repo}");
    digest
}

fn put_manifest(registry: &str, repo: &str, reference: &str, media_type: &str, data: &[u8]) {
    let (status, _) = request(
        registry,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        media_type,
        data,
    );
    assert_eq!(status, 201, "putting manifest {repo}:{reference}");
}

/// Pushes an image index `repo:tag` with one image per `(os, arch)`
/// platform, each a single layer holding `/platform.txt` (which names the
/// repository too, so that each repository's index is its own); the
/// index's digest.
pub fn push_index(registry: &str, repo: &str, tag: &str, platforms: &[(&str, &str)]) -> String {
    let mut manifests = Vec::new();
    for (os, arch) in platforms {
        let mut tar = tar::Builder::new(Vec::new());
        let content = format!("{repo} {os}/{arch}\n");
        let mut header = tar::Header::new_gnu();
        header.set_path("platform.txt").unwrap();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, content.as_bytes()).unwrap();
        let layer = tar.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&layer).unwrap();
        let gz = gz.finish().unwrap();
        let layer_digest = put_blob(registry, repo, &gz);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": os,
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
            "config": {"Cmd": ["/platform"]},
        }))
        .unwrap();
        let config_digest = put_blob(registry, repo, &config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": gz.len()}],
        }))
        .unwrap();
        let manifest_digest = sha256(&manifest);
        put_manifest(registry, repo, &manifest_digest, MANIFEST, &manifest);
        manifests.push(serde_json::json!({
            "mediaType": MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"os": os, "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": manifests,
    }))
    .unwrap();
    put_manifest(registry, repo, tag, INDEX, &index);
    sha256(&index)
}
