//! Builds the guest fixtures in `tests/fixtures/` and tells the tests where they are.

#[path = "../host/build_guests.rs"]
mod build_guests;

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = root.parent().expect("tests/ is inside the workspace");
    let guests = build_guests::build_guest_workspace(
        &root.join("fixtures/Cargo.toml"),
        &[
            "hostile",
            "hostile_provider",
            "echo",
            "echo_connector",
            "other_major",
            "vectors_user",
            "contract_0_1_0",
            "hostile_channel",
        ],
        &[
            &root.join("fixtures"),
            &workspace.join("sdk/src"),
            &workspace.join("sdk/macros/src"),
            &workspace.join("wit"),
        ],
    );
    println!("cargo:rustc-env=DATABOT_FIXTURES={}", guests.display());
}
