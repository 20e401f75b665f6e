#!/usr/bin/env bash
# Fuzzes the VNET front end for a bounded time: fuzz/run.sh SECONDS [TARGET...]
#
# Targets (fuzz_targets/): `parse` (decode, parse, format, formatter idempotence; the
# default), `analyze` (parse and the whole checker), `seal_record` (the sealed-link record
# decoder: any bytes, and real records with one byte altered) and `seal_handshake` (any bytes
# as a Noise first message or reply). Works from a fresh clone: installs
# cargo-fuzz when missing (about 30 s), builds the targets (about 2 min the first time), seeds
# the corpus with the formatter's test inputs, then runs each target for SECONDS. Exits
# non-zero when a target crashes, hangs (over 10 s on one input) or fails to build; the
# input that crashed is left in fuzz/artifacts/TARGET/.
#
# The machine has a stable toolchain only: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the
# unstable flags it needs, and `-s none` turns the sanitizer off (AddressSanitizer needs a
# nightly standard library; this code has no unsafe of its own for it to find).
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(parse)
fi

cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version '^0.13'
fi

export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
    corpus=corpus/$target
    mkdir -p "$corpus"
    # The language targets start from the formatter's inputs and the language's words; the
    # seal targets from nothing (libFuzzer finds the type bytes by itself).
    dict=()
    if [[ $target != seal_* ]]; then
        cp ../grammar/tests/fmt/*.in.vnet "$corpus"/
        dict=(-dict=vnet.dict)
    fi
    echo "fuzz/run.sh: fuzzing $target for ${seconds}s" >&2
    cargo fuzz run "$target" -s none "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 "${dict[@]}" -print_final_stats=1
done
echo "fuzz/run.sh: no crash in ${targets[*]} (${seconds}s each)" >&2
