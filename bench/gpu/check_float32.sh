#!/bin/bash
# Second GPU check: with --dtype float32, are texts the same whatever the batch size and the other
# tasks of the run, and does --alpha 0 give exactly the base model's texts? (Setup: setup.sh.)
source bench/gpu/setup.sh
rm -rf "$W/smol" "$W/f_base" "$W/f_a0"
step convert $RVEC convert "$W/smol.gguf" -o "$W/smol"
step vector timeout 60 python3 bench/gpu/inmemory_gpu.py "$W/smol" "$W" "$OUT/inmemory_gpu.json"
step eval-fp32-mixed-bs32 timeout 150 $RVEC eval "$W/smol" --dtype float32 --tasks gsm8k,sciq,bbh:boolean_expressions \
    --preset paper --limit 32 --batch-size 32 --no-progress --data-dir "$DATA" -o "$W/f_base"
step eval-fp32-alpha0-gsm8k-bs24 timeout 120 $RVEC eval "$W/smol" --dtype float32 --vector "$W/vec" --alpha 0 \
    --tasks gsm8k --preset paper --limit 32 --batch-size 24 --no-progress --data-dir "$DATA" -o "$W/f_a0"
step compare python3 bench/gpu/compare_samples.py "$W/f_base" "$W/f_a0" "$OUT/fp32_alpha0_bs24_vs_base_bs32.json"
tar czf "$OUT/fp32_runs.tgz" -C "$W" f_base f_a0 2>/dev/null
