#!/bin/bash
# The prepared GPU check (one H100/H200 lease; figures in docs/benchmarks.md, "On a GPU").
# What it expects on the machine: see setup.sh.
source bench/gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

rm -rf "$W/smol" "$W/e_base" "$W/e_a0"
step convert $RVEC convert "$W/smol.gguf" -o "$W/smol"
step eval-paper timeout 150 $RVEC eval "$W/smol" --tasks gsm8k,sciq,bbh:boolean_expressions --preset paper \
    --limit 32 --batch-size 32 --no-progress --data-dir "$DATA" -o "$W/e_base"
step batch-invariance-bf16 timeout 150 python3 bench/batch_invariance.py --data-dir "$DATA" --model "$W/smol" \
    --device cuda --dtype bfloat16 --margins 0 0.25 --batch-sizes 64 24 --n 64 --max-new-tokens 256 \
    --out "$OUT/batch_invariance_bf16.json"
step inmemory timeout 90 python3 bench/gpu/inmemory_gpu.py "$W/smol" "$W" "$OUT/inmemory_gpu.json"
step eval-alpha0 timeout 90 $RVEC eval "$W/smol" --vector "$W/vec" --alpha 0 --tasks gsm8k --preset paper \
    --limit 32 --batch-size 32 --no-progress --data-dir "$DATA" -o "$W/e_a0"
step compare-alpha0 python3 bench/gpu/compare_samples.py "$W/e_base" "$W/e_a0" "$OUT/alpha0_vs_base.json"
step batch-invariance-fp32 timeout 150 python3 bench/batch_invariance.py --data-dir "$DATA" --model "$W/smol" \
    --device cuda --dtype float32 --margins 0 auto --batch-sizes 64 24 --n 64 --max-new-tokens 256 \
    --out "$OUT/batch_invariance_fp32.json"
tar czf "$OUT/eval_runs.tgz" -C "$W" e_base e_a0 2>/dev/null
