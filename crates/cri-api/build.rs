//! Compiles the project's CRI definition (proto/runtime/v1/api.proto) with
//! protoc (Debian's protobuf-compiler), and keeps its descriptor set for the
//! wire-compatibility test.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let api = root.join("runtime/v1/api.proto");
    println!("cargo:rerun-if-changed={}", api.display());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("cri_v1_descriptor.bin"))
        // Undecodable messages are InvalidArgument, not Internal.
        .codec_path("crate::codec::CriCodec")
        .compile_protos(&[api], &[root])
        .expect(
            "compiling proto/runtime/v1/api.proto (needs protoc: apt install protobuf-compiler)",
        );
}
