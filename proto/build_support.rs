// Shared by the build scripts of the server and of the Rust client (pulled in with `include!`):
// compiles every contract under proto/retryd/v1 with protox, a pure-Rust protobuf compiler, so no
// system protoc is needed.

/// Compiles the contracts and returns the descriptor set, after telling cargo to rerun the build
/// script when any contract changes.
fn compile_contracts(proto_root: &std::path::Path) -> prost_types::FileDescriptorSet {
    let contracts_dir = proto_root.join("retryd/v1");
    println!("cargo:rerun-if-changed={}", contracts_dir.display());
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&contracts_dir)
        .expect("proto/retryd/v1 is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    protox::compile(&files, [proto_root]).unwrap_or_else(|err| panic!("proto compile error: {err:?}"))
}
