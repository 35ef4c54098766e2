//! The tonic example's generated code is checked in (so building the example, or tollgate,
//! never needs `protoc`); this test regenerates it with `protoc` (Debian's `protobuf-compiler`,
//! which `.ci/run` installs) and fails if the checked-in file is stale.
//!
//! Without `protoc` the test says so and skips, unless `TOLLGATE_REQUIRE_PROTOC=1` (CI sets it), as
//! the Redis tests do without `redis-server`. `TOLLGATE_REGENERATE=1 cargo test -p
//! tollgate-examples --test tonic_codegen` rewrites the file.

use std::path::Path;

#[test]
fn the_checked_in_grpc_code_matches_the_proto() {
    let has_protoc = std::process::Command::new("protoc")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_protoc {
        let required = std::env::var("TOLLGATE_REQUIRE_PROTOC").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "protoc is not installed but TOLLGATE_REQUIRE_PROTOC=1 (apt-get install protobuf-compiler)"
        );
        eprintln!(
            "skipped: protoc is not installed (set TOLLGATE_REQUIRE_PROTOC=1 to fail instead)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("tollgate-tonic-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out)
        .compile_protos(
            &[root.join("examples/proto/chat.proto")],
            &[root.join("examples/proto")],
        )
        .expect("protoc is installed (apt-get install protobuf-compiler) and the proto compiles");
    let fresh = std::fs::read_to_string(out.join("tollgate.chat.v1.rs")).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    let checked_in = root.join("examples/generated/tollgate.chat.v1.rs");
    if std::env::var("TOLLGATE_REGENERATE").is_ok_and(|v| v == "1") {
        std::fs::write(&checked_in, &fresh).unwrap();
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == fresh,
        "examples/generated/tollgate.chat.v1.rs is stale: run TOLLGATE_REGENERATE=1 cargo test -p tollgate-examples --test tonic_codegen"
    );
}
