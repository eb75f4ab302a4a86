//! Generates the gRPC server traits from `proto/` and the descriptor set served by reflection.
//! Message types and clients come from the `retryd-client` crate (generated from the same
//! contracts), so the server and the clients can never disagree on a message.

use prost::Message;

include!("proto/build_support.rs");

fn main() {
    let manifest_dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let descriptors = compile_contracts(&manifest_dir.join("proto"));
    // The migrations are embedded at compile time: a new one must rebuild the server.
    println!("cargo:rerun-if-changed=migrations");
    std::fs::write(
        out_dir.join("retryd_descriptor.bin"),
        descriptors.encode_to_vec(),
    )
    .expect("write descriptor set");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".retryd.v1", "::retryd_client::v1")
        .compile_fds(descriptors)
        .expect("generate server code");
}
