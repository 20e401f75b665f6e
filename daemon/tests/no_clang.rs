//! Issue 9.3: `cargo build` on a machine without clang still gives a vnetd with the kernel
//! fast path. Builds vnetd with every `clang*` hidden from PATH, in its own target
//! directory (under target/tmp, kept between runs so that only the first run is slow), and
//! checks that the binary says so and embeds the committed eBPF object.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A directory of symbolic links to every program on PATH except clang; removed on drop.
struct PathWithoutClang(PathBuf);

impl PathWithoutClang {
    fn new(at: PathBuf) -> PathWithoutClang {
        let _ = std::fs::remove_dir_all(&at);
        std::fs::create_dir_all(&at).expect("PATH directory");
        let path = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let link = at.join(&name);
                if name.to_string_lossy().starts_with("clang") || link.exists() {
                    continue;
                }
                let _ = std::os::unix::fs::symlink(e.path(), link);
            }
        }
        PathWithoutClang(at)
    }
}

impl Drop for PathWithoutClang {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd`, killing it after `limit`; its success.
fn run_bounded(cmd: &mut Command, limit: Duration) -> bool {
    let mut child = cmd.spawn().expect("start cargo");
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the build without clang took more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_build_without_clang_has_the_fast_path() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path =
        PathWithoutClang::new(tmp.join(format!("path-without-clang-{}", std::process::id())));
    let hidden = Command::new("clang")
        .arg("--version")
        .env("PATH", &path.0)
        .stdout(Stdio::null())
        .status();
    assert!(
        hidden.is_err(),
        "clang is still on the PATH made without it"
    );

    let target = tmp.join("target-without-clang");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let log = std::fs::File::create(tmp.join("build-without-clang.log")).expect("log");
    let built = run_bounded(
        Command::new(cargo)
            .args(["build", "--offline", "-p", "vnet-daemon", "--bin", "vnetd"])
            .arg("--target-dir")
            .arg(&target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", &path.0)
            .env_remove("VNET_CLANG")
            .stdout(log.try_clone().expect("log"))
            .stderr(log),
        Duration::from_secs(1200),
    );
    let log_text = std::fs::read_to_string(tmp.join("build-without-clang.log")).unwrap_or_default();
    assert!(built, "cargo build without clang failed:\n{log_text}");

    let vnetd = target.join("debug/vnetd");
    let out = Command::new(&vnetd)
        .arg("--version")
        .output()
        .expect("vnetd --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kernel fast path: built in (eBPF object: the committed bpf/fastpath.bpf.o (no clang at build time))"),
        "{text}"
    );
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/fastpath.bpf.o"))
        .expect("the committed object");
    let binary = std::fs::read(&vnetd).expect("the vnetd binary");
    assert!(
        contains(&binary, &committed),
        "the vnetd built without clang does not embed bpf/fastpath.bpf.o"
    );
}
