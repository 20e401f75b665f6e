//! The kernel fast path's eBPF object. The compiled object is committed
//! (`bpf/fastpath.bpf.o`, as cilium/ebpf's bpf2go users do), so every build embeds it, with
//! or without clang. When clang is present it is rebuilt from `bpf/fastpath.bpf.c` into
//! OUT_DIR and that one is embedded; the flags make the rebuild byte-identical wherever the
//! source lies, so a unit test (`fastpath::object::committed_object_matches_source`) can
//! fail when the committed object no longer matches its source.
//!
//! Tells the crate: `VNET_BPF_OBJECT` (the object to embed), `VNET_BPF_ORIGIN` (where it
//! came from, for `vnetd --version`), and `cfg(vnet_bpf_rebuilt)` when clang rebuilt it.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/fastpath.bpf.c";
const COMMITTED: &str = "bpf/fastpath.bpf.o";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vnet_bpf_rebuilt)");
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-changed={COMMITTED}");
    println!("cargo::rerun-if-env-changed=VNET_CLANG");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rebuilt = out.join("fastpath.bpf.o");
    match rebuild(&manifest, &rebuilt) {
        Some(clang) => {
            println!("cargo::rustc-cfg=vnet_bpf_rebuilt");
            println!("cargo::rustc-env=VNET_BPF_OBJECT={}", rebuilt.display());
            println!("cargo::rustc-env=VNET_BPF_ORIGIN=rebuilt from {SOURCE} by {clang}");
        }
        None => {
            let committed = manifest.join(COMMITTED);
            println!("cargo::rustc-env=VNET_BPF_OBJECT={}", committed.display());
            println!(
                "cargo::rustc-env=VNET_BPF_ORIGIN=the committed {COMMITTED} (no clang at build time)"
            );
        }
    }
}

/// Compiles the source with the first clang found; its name, or `None` without clang.
fn rebuild(manifest: &Path, obj: &Path) -> Option<String> {
    let candidates: Vec<String> = match std::env::var("VNET_CLANG") {
        Ok(c) => vec![c],
        Err(_) => ["clang", "clang-19", "clang-16", "clang-14"]
            .map(String::from)
            .to_vec(),
    };
    // Debian keeps <asm/types.h> under the multiarch directory, which clang's BPF target does
    // not search by itself.
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    for clang in candidates {
        // `-g` is needed for the BTF that describes the maps; the prefix map keeps the
        // absolute source directory out of the debug information, so the object does not
        // depend on where the repository was cloned.
        let status = Command::new(&clang)
            .current_dir(manifest)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-I{multiarch}"))
            .arg(format!("-fdebug-prefix-map={}=.", manifest.display()))
            .args(["-c", SOURCE, "-o"])
            .arg(obj)
            .status();
        match status {
            Ok(s) if s.success() => return Some(clang),
            Ok(_) => panic!(
                "{clang} failed to compile {SOURCE} (set VNET_CLANG to choose another clang)"
            ),
            Err(_) => continue,
        }
    }
    None
}
