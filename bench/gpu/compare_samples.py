"""Compare the responses of two ``rvec eval`` output folders item by item.

python bench/gpu/compare_samples.py RUN_A RUN_B [OUT.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _samples(run: Path) -> dict[str, dict[str, dict]]:
    out = {}
    for path in sorted((run / "samples").glob("*.jsonl")):
        out[path.stem] = {s["doc_id"]: s for s in map(json.loads, path.read_text().splitlines())}
    return out


def main() -> None:
    a, b = _samples(Path(sys.argv[1])), _samples(Path(sys.argv[2]))
    report = {}
    for task in sorted(set(a) & set(b)):
        ids = sorted(set(a[task]) & set(b[task]))
        differ = [i for i in ids if a[task][i].get("response") != b[task][i].get("response")]
        verdict = [i for i in ids if a[task][i].get("correct") != b[task][i].get("correct")]
        report[task] = {"n": len(ids), "differing_responses": len(differ), "differing_verdicts": len(verdict)}
    print(json.dumps(report, indent=2))
    if len(sys.argv) > 3:
        Path(sys.argv[3]).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
