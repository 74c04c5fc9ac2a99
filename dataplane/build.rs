//! Builds the kernel programs (`dataplane-ebpf`) with the pinned nightly and bpf-linker, and hands
//! the object to the agent through OUT_DIR. The eBPF crate is its own workspace (other target,
//! build-std), so it is built by a nested cargo with the outer build's environment removed.
use std::{env, path::PathBuf, process::Command};

const NIGHTLY: &str = "nightly-2026-05-19";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("dataplane/ is inside the workspace")
        .to_path_buf();
    let ebpf_dir = root.join("dataplane-ebpf");
    let common_dir = root.join("dataplane-common");
    for p in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        common_dir.join("src").display()
    );

    // Shared by every host profile so `core` for bpfel is built once.
    let target_dir = root.join("target").join("ebpf");
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&ebpf_dir)
        .args([
            "run",
            NIGHTLY,
            "cargo",
            "build",
            "--release",
            "--ignore-rust-version",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTUP_TOOLCHAIN")
            || key == "RUSTFLAGS"
            || key == "RUSTDOC"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run rustup to build the eBPF programs ({e}); run scripts/bootstrap.sh")
    });
    assert!(
        status.success(),
        "building dataplane-ebpf failed ({status}); run scripts/bootstrap.sh to install the pinned \
         nightly, rust-src and bpf-linker"
    );
    // meshward: the agent's programs. classifier-study: only for benches/classifier.rs.
    for bin in ["meshward", "classifier-study"] {
        let object = target_dir.join("bpfel-unknown-none/release").join(bin);
        let out =
            PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join(format!("{bin}.bpf.o"));
        std::fs::copy(&object, &out)
            .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", object.display(), out.display()));
    }
}
