//! Builds the first-party plugins in `plugins/` as components and gathers the operator
//! console's files and the plugin SDK's sources; the binary embeds all three.

#[path = "build_console.rs"]
mod build_console;
#[path = "build_guests.rs"]
mod build_guests;
#[path = "build_sdk.rs"]
mod build_sdk;

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace");
    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    build_console::embed_console(&root.join("host/console"), Path::new(&out_dir));
    build_sdk::embed_sdk(root, Path::new(&out_dir));
    let manifest = root.join("plugins/Cargo.toml");
    let members = workspace_members(&manifest);
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    build_guests::build_guest_workspace(
        &manifest,
        &members,
        &[
            &root.join("plugins"),
            &root.join("sdk/src"),
            &root.join("sdk/macros/src"),
            &root.join("wit"),
        ],
    );
}

/// The crates of the plugins workspace (`members = [...]`): the one list of first-party
/// plugins; `runtime/builtin.rs` names each once (a unit test there checks it).
fn workspace_members(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("plugins/Cargo.toml is readable");
    let list = text
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("plugins/Cargo.toml lists its members");
    list.split(',')
        .map(|member| member.trim().trim_matches('"').to_owned())
        .filter(|member| !member.is_empty())
        .collect()
}
