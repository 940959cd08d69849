"""Model cards (README.md) for vector and model folders, rendered from their manifests."""

from __future__ import annotations

from typing import Any


def _source_line(d: dict[str, Any]) -> str:
    rev = f" @ `{d['revision']}`" if d.get("revision") else ""
    return f"`{d.get('repo_id') or d.get('source')}`{rev}"


def vector_card(manifest: dict[str, Any]) -> str:
    """README.md of a vector folder: what it is, how it was made, how to apply it."""
    fam = manifest["family"]
    tensors = manifest["tensors"]
    total_sq = sum(t["norm"] ** 2 for t in tensors.values())
    sft, rl = manifest["sources"]["sft"], manifest["sources"]["rl"]
    return f"""---
tags:
- rvec
- reasoning-vector
- task-arithmetic
---

# Reasoning vector

`{manifest["formula"]}`, extracted by rvec {manifest["rvec_version"]} on {manifest["created"]}.

| | |
|---|---|
| SFT donor | {_source_line(sft)} |
| RL donor | {_source_line(rl)} |
| family | {fam.get("architecture")}, hidden {fam.get("hidden_size")}, {fam.get("num_hidden_layers")} layers, vocab {fam.get("vocab_size")}, tied embeddings {fam.get("tie_word_embeddings")} |
| tensors | {len(tensors)} (float32) |
| ‖v‖ | {total_sq**0.5:.6g} |

Per-tensor shapes, norms, relative norms and zero fractions are in `rvec.json`; sha256 of every
source weight file and of every shard too.

## Apply it

```
rvec check --vector . --to TARGET        # compatibility and lineage first
rvec apply . --to TARGET --alpha 1.0 -o TARGET-plus-v
rvec eval TARGET --vector . --alpha 1.0 --tasks gsm8k   # in memory, no checkpoint written
```
"""


def model_card(provenance: dict[str, Any]) -> str:
    """README.md with YAML front matter (``base_model``, ``tags``) for an ``rvec apply`` output."""
    target = provenance["target"]
    base = target.get("repo_id") or target.get("source")
    lines = []
    for v in provenance["vectors"]:
        if v["kind"] == "vector":
            what = f"vector `{v['path']}` (hash `{v['hash']}`)"
        else:
            what = f"`{_source_line(v['rl'])}` − `{_source_line(v['sft'])}`"
        lines.append(f"| {what} | {v['alpha']:g} |")
    surv = provenance["delta_survival"]
    policies = "\n".join(f"- {p}" for p in provenance["policies"]) or "- none"
    vectors_table = "\n".join(lines)
    return f"""---
base_model: {base}
tags:
- rvec
- reasoning-vector
- task-arithmetic
- merge
---

# {base} + reasoning vector

Made with rvec {provenance["rvec_version"]}: `{provenance["formula"]}`.

| vector | α |
|---|---|
{vectors_table}

- output dtype: {provenance["dtype"]}
- selection: {provenance["selection"]}
- embeddings policy: {provenance["embeddings"]}
- delta survival: {100 * (1 - surv["erased_fraction"]):.4f}% of the {surv["nonzero"]:,} non-zero α·v entries changed the weights
  ({surv["erased"]:,} erased by rounding to the output dtype)

Policies applied:
{policies}

Config, tokenizer, chat template and generation config are the target's. Full provenance:
`rvec.json`.
"""
