//! Generates the mesh.v1 API with a protoc that comes from a crate, never from the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through this variable.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=mesh/v1/mesh.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Clients are built on our own mutual-TLS channel; the generated
        // `connect(dst)` constructor would also clash with the Connect RPC.
        .build_transport(false)
        // Ordered maps make encoding deterministic, so a spec's hash is
        // stable across processes and restarts.
        .btree_map(".")
        .compile_protos(&["mesh/v1/mesh.proto"], &["."])?;
    Ok(())
}
