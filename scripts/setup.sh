#!/usr/bin/env bash
# One idempotent set-up step for toe-pipe: a project-local venv holding
# PyPI's torch==2.13.0 (which provides libtorch for the tch crate), then a
# release build of toe-pipe whose rpath points into that venv.
# Safe to run again: it only does what is missing or out of date.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
req="$root/scripts/requirements.txt"
python="${PYTHON:-python3}"
stamp="$venv/.toe-pipe-requirements"

log() { printf 'setup: %s\n' "$*" >&2; }

# JPEG decoding links the system libjpeg-turbo (Pillow's decoder, so CLIP
# preprocessing sees Pillow's pixels); its headers are needed to build.
if ! printf '#include <stdio.h>\n#include <jpeglib.h>\n' | ${CC:-cc} -E -x c - >/dev/null 2>&1; then
    log "the libjpeg headers are missing; install them with:"
    log "  sudo apt-get install libjpeg-dev   (Debian/Ubuntu; libjpeg-turbo-devel on Fedora)"
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    command -v "$python" >/dev/null || { log "no $python on PATH; install Python 3.9+ (e.g. apt install python3 python3-venv)"; exit 1; }
    log "creating $venv"
    "$python" -m venv "$venv"
fi

if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
    # torch and its CUDA wheels take about 5.2 GB installed, plus the
    # downloaded wheels while pip unpacks them; a full disk otherwise surfaces
    # as pip's bare "[Errno 28] No space left on device" half-way through.
    need_kb=$((8 * 1024 * 1024))
    for dir in "$root" "${TMPDIR:-/tmp}"; do
        free_kb="$(df -Pk "$dir" | awk 'NR==2 {print $4}')"
        if [ -n "$free_kb" ] && [ "$free_kb" -lt "$need_kb" ]; then
            log "only $((free_kb / 1024)) MiB free under $dir; installing torch 2.13.0 needs about 8 GiB"
            log "  free some space (or point TMPDIR at a larger disk) and run scripts/setup.sh again"
            exit 1
        fi
    done
    log "installing Python packages (torch 2.13.0 is about 5 GB, once)"
    # --no-cache-dir: a second copy of the wheels in ~/.cache would double the space needed.
    "$venv/bin/pip" install --disable-pip-version-check --no-cache-dir -q -r "$req"
    # OpenAI's CLIP reference code: --no-deps, its own deps would upgrade torch.
    "$venv/bin/pip" install --disable-pip-version-check --no-cache-dir -q --no-deps clip-anytorch
    cp "$req" "$stamp"
fi

# Check the pin held: a different torch breaks the tch build in obscure ways.
# (read from the installed metadata: importing torch takes seconds)
version="$(ls -d "$venv"/lib/python3*/site-packages/torch-*.dist-info 2>/dev/null | sed -n 's/.*torch-\([^/]*\)\.dist-info$/\1/p' | head -n 1)"
if [ "$version" != "2.13.0" ]; then
    log "the venv has torch ${version:-(none)} but tch 0.26 needs 2.13.0; fix with:"
    log "  $venv/bin/pip install torch==2.13.0 && rm -f $stamp && scripts/setup.sh"
    exit 1
fi

torch_dir="$(ls -d "$venv"/lib/python3*/site-packages/torch | head -n 1)"
# Compared resolved: a checkout whose .venv links to another checkout's
# venv (a git worktree) must not repoint the shared link at itself.
if [ "$(readlink -f "$venv/libtorch" 2>/dev/null)" != "$(readlink -f "$torch_dir")" ]; then
    ln -sfn "$torch_dir" "$venv/libtorch"
fi

if [ "${TOE_PIPE_SKIP_BUILD:-0}" != 1 ]; then
    command -v cargo >/dev/null || { log "no cargo on PATH; install Rust (https://rustup.rs)"; exit 1; }
    [ -x "$root/target/release/toe-pipe-worker" ] || log "building toe-pipe (release; the first build takes a few minutes)"
    cargo build --release --quiet --bins
fi
