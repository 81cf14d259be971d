#!/usr/bin/env bash
# The same 100-node trivial DAG (99 independent `echo` nodes and one that
# joins them) through Slurm: toe-pipe's Slurm executor against Snakemake's
# (snakemake-executor-plugin-slurm from PyPI, in a throwaway venv), on the
# single-node cluster of scripts/slurm_local.sh. Prints the wall time of a
# first run and of a no-op run, and the jobs each submitted.
#
#   benches/slurm_compare.sh            (as root; needs slurm-wlm and munge)
#
# Snakemake's jobs run `srun` inside the job, which looks for the cluster's
# config at /etc/slurm/slurm.conf: the script links it there for the run
# when no config is there, and removes the link afterwards.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
toe="$root/target/release/toe-pipe"
[ -x "$toe" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
work=$(mktemp -d /tmp/toe-slurm-bench-XXXX)
cluster="$work/cluster"
linked=""
cleanup() {
    "$root/scripts/slurm_local.sh" stop "$cluster" || true
    for f in $linked; do rm -f "$f"; done
}
trap cleanup EXIT
eval "$(SLURM_LOCAL_PORT=${SLURM_LOCAL_PORT:-6917} "$root/scripts/slurm_local.sh" start "$cluster")"
for f in slurm.conf gres.conf; do
    if [ ! -e "/etc/slurm/$f" ]; then
        mkdir -p /etc/slurm && ln -s "$cluster/$f" "/etc/slurm/$f" && linked="$linked /etc/slurm/$f"
    fi
done

venv=/tmp/toe-slurm-bench-venv
[ -x "$venv/bin/snakemake" ] || {
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q snakemake snakemake-executor-plugin-slurm
}

# toe-pipe
mkdir -p "$work/toe" && cd "$work/toe"
python3 - <<'EOF'
parts = ", ".join(f'"{i}"' for i in range(99))
open("p.toml", "w").write(f'''[vars]
parts = [{parts}]

[[node]]
id = "part_${{i}}"
for_each.i = "${{parts}}"
cmd = "echo ${{i}} > ${{out.o}}"
outputs.o = {{ kind = "text", path = "out/part_${{i}}.txt" }}

[[node]]
id = "join"
cmd = "cat ${{in.parts}} > ${{out.o}}"
inputs.parts = ["part_${{parts}}.o"]
outputs.o = {{ kind = "text", path = "out/all.txt" }}
''')
EOF
jobs_before=$(wc -l < "$cluster/jobcomp.txt")
/usr/bin/time -f %e -o "$work/t" "$toe" run -q --executor slurm p.toml >/dev/null 2>&1
t_first=$(cat "$work/t")
jobs_first=$(($(wc -l < "$cluster/jobcomp.txt") - jobs_before))
/usr/bin/time -f %e -o "$work/t" "$toe" run -q --executor slurm p.toml >/dev/null 2>&1
t_noop=$(cat "$work/t")
sleep 1
jobs_noop=$(($(wc -l < "$cluster/jobcomp.txt") - jobs_before - jobs_first))

# Snakemake
mkdir -p "$work/smk" && cd "$work/smk"
cat >Snakefile <<'EOF'
PARTS = range(99)

rule all:
    input: "out/all.txt"

rule part:
    output: "out/part_{i}.txt"
    shell: "echo {wildcards.i} > {output}"

rule join:
    input: expand("out/part_{i}.txt", i=PARTS)
    output: "out/all.txt"
    shell: "cat {input} > {output}"
EOF
smk=("$venv/bin/snakemake" --executor slurm --jobs 100 --slurm-no-account --slurm-status-command squeue
    --slurm-init-seconds-before-status-checks 1 --default-resources slurm_partition=cpu mem_mb=100 runtime=5)
jobs_before=$(wc -l < "$cluster/jobcomp.txt")
/usr/bin/time -f %e -o "$work/t" "${smk[@]}" >first.log 2>&1
s_first=$(cat "$work/t")
sleep 1
s_jobs_first=$(($(wc -l < "$cluster/jobcomp.txt") - jobs_before))
/usr/bin/time -f %e -o "$work/t" "${smk[@]}" >noop.log 2>&1
s_noop=$(cat "$work/t")
sleep 1
s_jobs_noop=$(($(wc -l < "$cluster/jobcomp.txt") - jobs_before - s_jobs_first))

echo
echo "100-node DAG on $(sbatch --version), single node, 2 CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-28s %12s %12s\n' "" toe-pipe "Snakemake $("$venv/bin/snakemake" --version)"
printf '%-28s %11ss %11ss\n' "first run (wall)" "$t_first" "$s_first"
printf '%-28s %12s %12s\n' "jobs submitted" "$jobs_first" "$s_jobs_first"
printf '%-28s %11ss %11ss\n' "no-op run (wall)" "$t_noop" "$s_noop"
printf '%-28s %12s %12s\n' "jobs submitted (no-op)" "$jobs_noop" "$s_jobs_noop"
