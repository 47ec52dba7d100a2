//! Compiles every `bpf/<name>.bpf.c` with clang (CO-RE, against the committed `bpf/vmlinux.h`)
//! and generates a libbpf-rs skeleton `$OUT_DIR/<name>.skel.rs` for each.
//! No bpftool is needed; clang is, and its absence is reported with the packages to install.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROBES: &[&str] = &["sched", "irq", "syscalls", "block", "tcp", "net", "numa"];

fn clang() -> PathBuf {
    let clang = env::var_os("CLANG").map_or_else(|| PathBuf::from("clang"), PathBuf::from);
    match Command::new(&clang).arg("--version").output() {
        Ok(out) if out.status.success() => clang,
        _ => panic!(
            "probes: `{}` not found or not working: the BPF programs are compiled by clang at build time. \
             Install clang, libelf-dev, zlib1g-dev, pkg-config and make (Debian: `apt-get install clang \
             libelf-dev zlib1g-dev pkg-config make`, or run scripts/setup.sh), or set CLANG=/path/to/clang.",
            clang.display()
        ),
    }
}

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf = manifest.join("bpf");
    let clang = clang();
    println!("cargo:rerun-if-env-changed=CLANG");
    for f in ["vmlinux.h", "ringside_probes.h", "rs_common.bpf.h"] {
        println!("cargo:rerun-if-changed={}", bpf.join(f).display());
    }
    for name in PROBES {
        let src = bpf.join(format!("{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        build_one(&clang, &bpf, &src, &out.join(format!("{name}.skel.rs")));
    }
}

fn build_one(clang: &Path, include: &Path, src: &Path, skel: &Path) {
    let include_arg = format!("-I{}", include.display());
    if let Err(e) = libbpf_cargo::SkeletonBuilder::new()
        .source(src)
        .clang(clang)
        .clang_args([include_arg.as_str(), "-O2", "-g", "-Wall", "-Werror"])
        .build_and_generate(skel)
    {
        panic!("probes: building {} failed: {e:#}", src.display());
    }
}
