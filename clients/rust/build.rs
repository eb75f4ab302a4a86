//! Generates the message types and gRPC clients from the shared contracts in `proto/`.

include!("../../proto/build_support.rs");

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let descriptors = compile_contracts(&manifest_dir.join("../../proto"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)
        .expect("generate client code");
}
