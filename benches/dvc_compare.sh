#!/usr/bin/env bash
# toe-pipe against DVC on the same synthetic pipelines, side by side in one
# run, plus blake3 hashing throughput and the check of an unchanged
# 100k-file source folder.
#
#   benches/dvc_compare.sh              # 10, 100 and 300 stages
#   SIZES="10 100" benches/dvc_compare.sh
#   SIZES="" benches/dvc_compare.sh     # hashing and the 100k-file folder only
#
# DVC is pip-installed into a throwaway venv under /tmp (not the project's
# .venv). toe-pipe is the release build (built here if missing). Times are
# wall-clock milliseconds; quick steps are the median of several runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes="${SIZES-10 100 300}"   # SIZES="" skips the pipeline comparison
toe="$root/target/release/toe-pipe"
venv="${DVC_VENV:-/tmp/toe-pipe-bench-dvc-venv}"
work="$(mktemp -d /tmp/toe-pipe-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export DVC_NO_ANALYTICS=1

log() { printf '%s\n' "$*" >&2; }

if [ ! -x "$toe" ] || [ -n "$(find "$root/src" -newer "$toe" -name '*.rs' | head -1)" ]; then
    log "building toe-pipe (release)"
    (cd "$root" && cargo build --release --quiet --bin toe-pipe)
fi
if [ ! -x "$venv/bin/dvc" ]; then
    log "installing DVC into $venv (a few minutes, once)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q dvc
fi
dvc="$venv/bin/dvc"

# ms CMD...: run once, print milliseconds; output goes to $work/last.log
ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" > "$work/last.log" 2>&1 || { log "failed: $*"; cat "$work/last.log" >&2; exit 1; }
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}
# median REPEATS CMD...
median() {
    local n=$1; shift
    local xs=()
    for _ in $(seq "$n"); do xs+=("$(ms "$@")"); done
    printf '%s\n' "${xs[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0fx", a / b; else printf "inf" }'; }

echo "# toe-pipe $("$toe" --version | cut -d' ' -f2) vs DVC $("$dvc" --version) on $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| stages | step | toe-pipe ms | DVC ms | DVC / toe-pipe |"
echo "|---:|---|---:|---:|---:|"
for n in $sizes; do
    t="$work/toe-$n"; d="$work/dvc-$n"
    python3 "$root/benches/gen_pipeline.py" "$t" "$n"
    python3 "$root/benches/gen_pipeline.py" "$d" "$n"
    (cd "$d" && "$dvc" init --no-scm -q && "$dvc" config core.autostage false >/dev/null 2>&1 || true)

    tf=$(ms "$toe" run "$t/toe.toml")
    df=$(cd "$d" && ms "$dvc" repro)
    echo "| $n | full run | $tf | $df | $(ratio "$df" "$tf") |"

    tn=$(median 7 "$toe" run "$t/toe.toml")
    grep -q "nothing to do" "$work/last.log" || { log "toe-pipe no-op run did something"; cat "$work/last.log"; exit 1; }
    dn=$(cd "$d" && median 3 "$dvc" repro)
    echo "| $n | no-op re-run | $tn | $dn | $(ratio "$dn" "$tn") |"

    ts=$(median 7 "$toe" status "$t/toe.toml")
    ds=$(cd "$d" && median 3 "$dvc" status)
    echo "| $n | status | $ts | $ds | $(ratio "$ds" "$ts") |"

    python3 "$root/benches/gen_pipeline.py" "$t" "$n" --edit 1
    python3 "$root/benches/gen_pipeline.py" "$d" "$n" --edit 1
    te=$(ms "$toe" run "$t/toe.toml")
    reran=$(grep -c '^ *ran ' "$work/last.log" || true)
    de=$(cd "$d" && ms "$dvc" repro)
    echo "| $n | re-run after editing stage 1 ($reran stages re-run) | $te | $de | $(ratio "$de" "$te") |"
done

echo
echo "## blake3 throughput on a 1 GiB file"
big="$work/big.bin"
head -c 1073741824 /dev/urandom > "$big"
sync
sleep 5  # let the (virtual) disk finish writing it before timing reads
mbps() { awk -v ms="$1" 'BEGIN { printf "%.2f GiB/s", 1000 / ms }'; }
drop() {  # evict the file from the page cache (no root needed)
    python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$big"
}
# Cold reads alternate between toe-pipe and cat, so both see the same disk.
cold_hash=(); cold_cat=()
for _ in 1 2 3; do
    drop; cold_hash+=("$(ms "$toe" hash "$big")")
    drop; cold_cat+=("$(ms cat "$big")")
done
med() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
cold=$(med "${cold_hash[@]}"); coldcat=$(med "${cold_cat[@]}")
cat "$big" > /dev/null
warm=$(median 3 "$toe" hash "$big")
one=$(RAYON_NUM_THREADS=1 median 3 "$toe" hash "$big")
warmcat=$(median 3 cat "$big")
echo
echo "| what (median of 3) | ms | throughput |"
echo "|---|---:|---:|"
echo "| toe-pipe hash, cold (evicted with posix_fadvise DONTNEED; streamed) | $cold | $(mbps "$cold") |"
echo "| cat > /dev/null, cold (the disk's read speed) | $coldcat | $(mbps "$coldcat") |"
echo "| toe-pipe hash, warm, $(nproc) threads (mmap + rayon) | $warm | $(mbps "$warm") |"
echo "| toe-pipe hash, warm, 1 thread (RAYON_NUM_THREADS=1) | $one | $(mbps "$one") |"
echo "| cat > /dev/null, warm | $warmcat | $(mbps "$warmcat") |"
if [ -x "$root/.venv/bin/python" ]; then
    bw=$("$root/.venv/bin/python" -c '
import numpy as np, time
a = np.ones(1 << 27); b = np.empty_like(a); best = 1e9
for _ in range(5):
    t = time.perf_counter(); np.copyto(b, a); best = min(best, time.perf_counter() - t)
print(f"{2 * a.nbytes / best / 2**30:.2f}")')
    echo "| memory bandwidth (numpy copy of 1 GiB, read + write) | | $bw GiB/s |"
fi
rm -f "$big"

echo
echo "## an unchanged 100k-file source folder"
src="$work/folder"
python3 - "$src" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    sub = os.path.join(root, f"class{d:03d}")
    os.makedirs(sub)
    for f in range(1000):
        with open(os.path.join(sub, f"img{f:04d}.txt"), "w") as fh:
            fh.write(f"{d} {f}\n")
PY
mkdir -p "$work/folder-ws"
cat > "$work/folder-ws/p.toml" <<TOML
[[node]]
id = "count"
cmd = "find \${in.images} -type f | wc -l > \${out.n}"
sources.images = "$src"
outputs.n = "text"
TOML
first=$(ms "$toe" run "$work/folder-ws/p.toml")
sleep 3  # past the stat cache's 2 s window for just-written files
"$toe" status "$work/folder-ws/p.toml" > /dev/null
st=$(median 5 "$toe" status "$work/folder-ws/p.toml")
noop=$(median 5 "$toe" run "$work/folder-ws/p.toml")
verify=$(ms "$toe" status --verify "$work/folder-ws/p.toml")
echo
echo "| what | ms |"
echo "|---|---:|"
echo "| first run (hashes all 100,000 files, then runs the node) | $first |"
echo "| status, folder unchanged (stat cache) | $st |"
echo "| no-op run, folder unchanged | $noop |"
echo "| status --verify (re-reads every file) | $verify |"
mkdir -p "$work/folder-dvc" && cd "$work/folder-dvc" && "$dvc" init --no-scm -q
cat > dvc.yaml <<YAML
stages:
  count:
    cmd: find $src -type f | wc -l > n.txt
    deps: [$src]
    outs: [n.txt]
YAML
dfirst=$(ms "$dvc" repro)
dst=$(median 3 "$dvc" status)
echo "| DVC: first repro | $dfirst |"
echo "| DVC: status, folder unchanged | $dst |"
