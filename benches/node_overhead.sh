#!/usr/bin/env bash
# What toe-pipe adds per node: N trivial cmd nodes (each `echo i` into a
# workspace output) through `toe-pipe run -j 1` on a new store, against the
# same N commands run bare (`sh -c` from a bash loop, one after the other,
# writing the same files), in one run, alternating, R rounds; prints each
# round, the medians and the overhead per node, in wall time and in CPU time
# (user + system, the children's included: on a shared machine the wall
# time also measures the other jobs).
#
#   benches/node_overhead.sh [N=300] [R=3]
#
# TOE_PIPE: the binary (default target/release/toe-pipe). The work folder is
# made under BENCH_DIR (default $TMPDIR or /tmp), which must not be a tmpfs
# (fsync would be free there, hiding the cost of durability). Not under
# target/ either: on ext4 without a journal, cargo's deleted files make
# every file made there for the next minutes cost up to 10x more.
#
# DIRTY_MB_S=M: meanwhile another program writes M MB/s without flushing
# (4 files of M MB rewritten in turn, in the work folder), as on a shared
# server: durability that flushes the whole file system pays for its data.
set -euo pipefail
n=${1:-300}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TOE_PIPE:-$root/target/release/toe-pipe}
[ -x "$bin" ] || { echo "no $bin; build it: cargo build --release --bins" >&2; exit 1; }
base=${BENCH_DIR:-${TMPDIR:-/tmp}}
mkdir -p "$base"
if [ "$(stat -f -c %T "$base")" = tmpfs ]; then
    echo "$base is a tmpfs, where fsync costs nothing; set BENCH_DIR to a folder on a disk" >&2
    exit 1
fi
work=$(mktemp -d "$base/node_overhead.XXXXXX")
writer=
trap '[ -n "$writer" ] && kill "$writer" 2>/dev/null; wait; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
if [ "${DIRTY_MB_S:-0}" -gt 0 ]; then
    (
        i=0
        while :; do
            head -c "${DIRTY_MB_S}M" /dev/zero >"$work/dirty.$((i++ % 4))"
            sleep 1
        done
    ) &
    writer=$!
fi

{
    echo '[pipeline]'
    echo 'name = "overhead"'
    for ((i = 0; i < n; i++)); do
        printf '[[node]]\nid = "n%d"\ncmd = "echo %d > ${out.o}"\noutputs.o = { kind = "text", path = "out/%d.txt" }\n' "$i" "$i" "$i"
    done
} >"$work/p.toml"

# wall, user+sys CPU seconds (children included) of a command
timed() {
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
    awk '{printf "%s %.3f\n", $1, $2 + $3}' "$work/time"
}
bare_wall=() bare_cpu=() toe_wall=() toe_cpu=()
# Each round in new folders, all removed at the end: on ext4 a file deleted
# just before slows down the next ones made (its inode is not reused for a
# minute, and skipping it costs each allocation a look).
for ((r = 1; r <= rounds; r++)); do
    mkdir "$work/bare$r" "$work/ws$r"
    cp "$work/p.toml" "$work/ws$r/"
    sync
    read -r w c < <(timed bash -c "for ((i = 0; i < $n; i++)); do sh -c \"echo \$i > $work/bare$r/\$i.txt\"; done")
    bare_wall+=("$w") bare_cpu+=("$c")

    sync
    read -r w c < <(timed "$bin" --quiet run -j 1 "$work/ws$r/p.toml")
    toe_wall+=("$w") toe_cpu+=("$c")
    printf 'round %d: bare %.2f s (CPU %.2f s), toe-pipe %.2f s (CPU %.2f s)\n' "$r" "${bare_wall[-1]}" "${bare_cpu[-1]}" "${toe_wall[-1]}" "${toe_cpu[-1]}"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
per() { echo "($1) * 1000 / $n" | bc -l; }
bw=$(median "${bare_wall[@]}") bc=$(median "${bare_cpu[@]}") tw=$(median "${toe_wall[@]}") tc=$(median "${toe_cpu[@]}")
load=
[ "${DIRTY_MB_S:-0}" -gt 0 ] && load=", another program writing $DIRTY_MB_S MB/s"
printf '%d nodes, -j 1, median of %d rounds%s:\n' "$n" "$rounds" "$load"
printf '  bare      wall %.2f s (%.2f ms per command), CPU %.2f s (%.2f ms)\n' "$bw" "$(per "$bw")" "$bc" "$(per "$bc")"
printf '  toe-pipe  wall %.2f s (%.2f ms per node),    CPU %.2f s (%.2f ms)\n' "$tw" "$(per "$tw")" "$tc" "$(per "$tc")"
printf 'overhead per node: wall %.2f ms, CPU %.2f ms\n' "$(per "$tw - $bw")" "$(per "$tc - $bc")"
