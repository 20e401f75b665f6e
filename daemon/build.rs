//! Compiles the kernel fast path (bpf/fastpath.bpf.c) with clang for the BPF target. Without
//! clang the daemon is built without it (`cfg(vnet_fastpath)` unset) and says so at start.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vnet_fastpath)");
    println!("cargo::rerun-if-changed=bpf/fastpath.bpf.c");
    println!("cargo::rerun-if-env-changed=VNET_CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("fastpath.o");
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
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-I{multiarch}"))
            .args(["-c", "bpf/fastpath.bpf.c", "-o"])
            .arg(&obj)
            .status();
        match status {
            Ok(s) if s.success() => {
                println!("cargo::rustc-cfg=vnet_fastpath");
                return;
            }
            Ok(_) => panic!("{clang} failed to compile bpf/fastpath.bpf.c (set VNET_CLANG to choose another clang)"),
            Err(_) => continue,
        }
    }
    println!("cargo::warning=clang not found: vnetd is built without its kernel fast path (apt-get install clang libbpf-dev)");
}
