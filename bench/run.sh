#!/usr/bin/env bash
# Reproduces the figures of bench/README.md on this machine. Each part prints one line
# per figure; nothing else should run meanwhile.
#
#   bench/run.sh synth     whole-process synth: release binary writing synth-out/ (current, and
#                          one stack changed), median of 100 runs, peak RSS          (~1 min)
#   bench/run.sh edit      edit -> synth: one value changed in the app's stack, then
#                          `cargo run [-p metrics-stack] --bin synth` (debug), median of 9
#                                                                                    (~1 min)
#   bench/run.sh release   the deploy tools' first release build, empty target dir   (~5 min)
#   bench/run.sh lambda    the handlers' arm64 release build and zip sizes            (~5 min)
#   bench/run.sh tests     the README's test command with an empty target dir        (~12 min)
#   bench/run.sh capacity  `local`, 500 orders at --time-scale 1, paced and unpaced side by
#                          side: drain time against synth's prediction, the most WCU in any
#                          minute, throttles                                          (~6 min)
#   bench/run.sh all       every part above
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
target="${CARGO_TARGET_DIR:-$root/target}"

machine() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB, $(rustc --version)"
}

# Median wall time in ms of running "$@" N times (spawned from Python, as the README measures).
median_ms() {
    local n="$1"
    shift
    python3 - "$n" "$@" <<'EOF'
import statistics, subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
times = []
for _ in range(n):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append((time.perf_counter() - t) * 1000)
print(f"{statistics.median(times):.2f}")
EOF
}

peak_kib() {
    /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1
}

synth() {
    cargo build --release --bin synth -q
    local bin="$target/release/synth"
    "$bin" >/dev/null
    echo "whole-process synth, synth-out current: $(median_ms 100 "$bin") ms median of 100"
    echo "whole-process synth --check:           $(median_ms 100 "$bin" --check) ms median of 100"
    # One stack's files changed before each run: the workshop stack's YAML gets a stray byte.
    local yaml="synth-out/serverlesspresso-metrics.template.yaml"
    python3 - "$bin" "$yaml" <<'EOF'
import statistics, subprocess, sys, time
bin, yaml = sys.argv[1], sys.argv[2]
times = []
for _ in range(100):
    with open(yaml, "a") as f:
        f.write("#")
    t = time.perf_counter()
    subprocess.run([bin], check=True, stdout=subprocess.DEVNULL)
    times.append((time.perf_counter() - t) * 1000)
print(f"whole-process synth, one file changed:  {statistics.median(times):.2f} ms median of 100")
EOF
    echo "synth peak RSS:                        $(peak_kib "$bin") KiB"
    echo "spawning /bin/true the same way:       $(median_ms 100 /bin/true) ms"
}

# One value changed in the app's stack, then `cargo run "$@" --bin synth` (debug), 9 times.
edit_runs() {
    local lib="infra/stack/src/lib.rs"
    # Built once first: each variant keeps its own build (features unified differently).
    cargo run -q "$@" --bin synth >/dev/null
    local times=()
    for i in 1 2 3 4 5 6 7 8 9; do
        if [ $((i % 2)) = 1 ]; then
            sed -i 's/publish_memory_mb: 256,/publish_memory_mb: 320,/' "$lib"
        else
            sed -i 's/publish_memory_mb: 320,/publish_memory_mb: 256,/' "$lib"
        fi
        local start end
        start=$(date +%s%N)
        cargo run -q "$@" --bin synth >/dev/null
        end=$(date +%s%N)
        times+=($(((end - start) / 1000000)))
    done
    local sorted
    sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
    echo "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 5p) ms median of 9 ($sorted)"
}

edit() {
    local lib="infra/stack/src/lib.rs"
    grep -q "publish_memory_mb: 256," "$lib" || { echo "$lib has no 'publish_memory_mb: 256,' to toggle" >&2; exit 2; }
    cp "$lib" "$target/bench-lib.rs.orig"
    trap 'cp "$target/bench-lib.rs.orig" "$lib"; cargo run -q --bin synth >/dev/null' RETURN
    echo "edit -> synth (debug), cargo run --bin synth: $(edit_runs)"
    echo "edit -> synth (debug), cargo run -p metrics-stack --bin synth: $(edit_runs -p metrics-stack)"
    echo "cargo run --bin synth with nothing changed: $(median_ms 3 cargo run -q --bin synth) ms median of 3"
    echo "cargo run -p metrics-stack --bin synth with nothing changed: $(median_ms 3 cargo run -q -p metrics-stack --bin synth) ms median of 3"
}

release() {
    local scratch
    scratch="$(mktemp -d)"
    /usr/bin/time -f "deploy tools' first release build (cargo build --release --bins -p deploy-cli -p metrics-stack): wall %e s, peak RSS %M KiB" \
        env CARGO_TARGET_DIR="$scratch" cargo build --release --bins -p deploy-cli -p metrics-stack -q 2>&1 | tail -1
    rm -rf "$scratch"
}

lambda() {
    bench/lambda-build.sh
}

tests() {
    local scratch
    scratch="$(mktemp -d)"
    local start
    start=$(date +%s)
    if env CARGO_TARGET_DIR="$scratch" cargo test --workspace --locked >"$scratch.log" 2>&1; then
        echo "README's test command, empty target dir and venvs: $(($(date +%s) - start)) s, $(grep -c '\.\.\. ok' "$scratch.log") tests passed"
    else
        echo "README's test command FAILED after $(($(date +%s) - start)) s (log: $scratch.log)"
    fi
    rm -rf "$scratch"
}

capacity() {
    cargo build -q --bins -p local -p publish-metrics -p events-load-test
    local scratch
    scratch="$(mktemp -d)"
    python3 - "$scratch" "$target" <<'EOF'
import json, os, struct, subprocess, sys, zipfile
scratch, target = sys.argv[1], sys.argv[2]
# Stand-ins for the zips: moto stores the code, `local` runs the host builds.
for name in ["publish-metrics", "events-load-test"]:
    os.makedirs(f"{scratch}/zips/{name}", exist_ok=True)
    with zipfile.ZipFile(f"{scratch}/zips/{name}/bootstrap.zip", "w") as z:
        info = zipfile.ZipInfo("bootstrap"); info.external_attr = 0o755 << 16
        z.writestr(info, b"\x7fELF" + bytes(14) + struct.pack("<H", 0xB7) + name.encode())
runs = {"paced (as deployed)": [], "unpaced, burst empty": ["--unpaced"]}
procs = {}
for label, extra in runs.items():
    logs = f"{scratch}/{len(procs)}"
    procs[label] = subprocess.Popen(
        [f"{target}/debug/local", "--count", "500", "--time-scale", "1", "--json",
         "--lambda-dir", f"{scratch}/zips", "--handlers", f"{target}/debug", "--logs", logs, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
for label, p in procs.items():
    out, _ = p.communicate()
    s = json.loads(out)
    t, l = s["table"], s["lambda"]
    predicted = s["predictedDrainSecs"]
    off = f" ({(s['drainSecs'] / predicted - 1) * 100:+.1f} %)" if predicted else ""
    print(f"{label}: {s['sent']} orders drained in {s['drainSecs']:.1f} s; synth predicts "
          f"{predicted and f'{predicted:.1f} s' or '-'}{off}; most WCU in any minute {t['mostWcuInAMinute']} "
          f"of {t['provisionedWcuPerMinute']} (+ one transaction of up to {t['largestWriteWcu']}); "
          f"{t['consumedWcu']} WCU consumed; {t['throttledRequests']} requests throttled ({t['throttledWcu']} WCU); "
          f"Lambda throttles {l['throttles']}, highest receive count {l['maxReceiveCount']}; exact: {s['exact']}")
EOF
    rm -rf "$scratch"
}

machine
case "${1:-}" in
    synth | edit | release | lambda | tests | capacity) "$1" ;;
    all) synth; edit; release; lambda; tests; capacity ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
esac
