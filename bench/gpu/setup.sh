# Sourced by the GPU checks: environment, paths, the SmolLM2 GGUF joined from its two halves and
# checked, and `step NAME CMD…` (runs CMD, prints its exit code and seconds).
# Expects: /root/smol.part00 + .gpu/b/smol.part01 (the GGUF split to fit the 64 MiB transfer),
# /root/data (gsm8k, sciq, bbh of shared/data), wheels installed in /tmp/site.
set -u
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
W=/root/w DATA=/root/data RVEC="python3 bench/gpu/rvec_cli.py"
OUT=${OUT:-/root/out}
mkdir -p "$W" "$OUT"
cat /root/smol.part00 .gpu/b/smol.part01 >"$W/smol.gguf"
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $W/smol.gguf" | sha256sum -c || exit 1
step() { local t0=$SECONDS; echo "== $1"; shift; "$@"; echo "== rc=$? in $((SECONDS - t0)) s"; }
