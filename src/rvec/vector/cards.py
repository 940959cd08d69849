"""Model cards (README.md) for vector and model folders, rendered from their manifests."""

from __future__ import annotations

from typing import Any


def _source_line(d: dict[str, Any]) -> str:
    rev = f" @ `{d['revision']}`" if d.get("revision") else ""
    return f"`{d.get('repo_id') or d.get('source')}`{rev}"


def _sources_rows(sources: dict[str, Any]) -> str:
    if "sft" in sources and "rl" in sources:
        return f"| SFT donor | {_source_line(sources['sft'])} |\n| RL donor | {_source_line(sources['rl'])} |"
    return "\n".join(f"| {k} | `{v}` |" for k, v in sources.items())


def _storage_line(tensors: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for t in tensors.values():
        counts[t.get("encoding", "dense")] = counts.get(t.get("encoding", "dense"), 0) + 1
    ranks = sorted({t["rank"] for t in tensors.values() if t.get("encoding") == "factored"})
    parts = [f"{n} {enc}" for enc, n in sorted(counts.items())]
    if ranks:
        parts.append(f"rank {ranks[0]}–{ranks[-1]}" if len(ranks) > 1 else f"rank {ranks[0]}")
    return ", ".join(parts)


def vector_card(manifest: dict[str, Any]) -> str:
    """README.md of a vector folder: what it is, how it was made, how to apply it."""
    control = manifest.get("control")
    if control:
        return (
            f"---\ntags:\n- rvec\n- random-control\n---\n\n# Random control vector\n\n`{manifest['formula']}`, "
            f"seed {control['seed']}.\nThis is **not** a reasoning vector: it is a control with a random direction.\n"
        )
    fam = manifest["family"]
    tensors = manifest["tensors"]
    total_sq = sum(t["norm"] ** 2 for t in tensors.values())
    compression = manifest.get("compression")
    compressed = (
        f"| compression | {compression['method']} {compression.get('rank') or compression.get('density')}, "
        f"relative error {compression['relative_error']:.4g} |\n"
        if compression
        else ""
    )
    return f"""---
tags:
- rvec
- reasoning-vector
- task-arithmetic
---

# Reasoning vector

`{manifest["formula"]}`, written by rvec {manifest["rvec_version"]} on {manifest["created"]}.

| | |
|---|---|
{_sources_rows(manifest.get("sources") or {})}
| family | {fam.get("architecture")}, hidden {fam.get("hidden_size")}, {fam.get("num_hidden_layers")} layers, vocab {fam.get("vocab_size")}, tied embeddings {fam.get("tie_word_embeddings")} |
| tensors | {len(tensors)} (float32: {_storage_line(tensors)}) |
{compressed}| ‖v‖ | {total_sq**0.5:.6g} |

Per-tensor shapes, encodings, norms, relative norms and zero fractions are in `rvec.json`; sha256 of
every source weight file and of every shard too (rvec verifies the shards before using them).

## Apply it

```
rvec check --vector . --to TARGET        # compatibility and lineage first
rvec apply . --to TARGET --alpha 1.0 -o TARGET-plus-v
rvec eval TARGET --vector . --alpha 1.0 --tasks gsm8k   # in memory, no checkpoint written
```
"""


def _what(v: dict[str, Any]) -> str:
    """One delta source of a model card's table: a vector, a donor pair, or a merge of those."""
    if v["kind"] == "vector":
        return f"vector `{v['path']}` (hash `{v['hash']}`)"
    if v["kind"] == "merge":
        return f"{v['method']} (seed {v['seed']}) of " + "; ".join(_what(i) for i in v["inputs"])
    return f"`{_source_line(v['rl'])}` − `{_source_line(v['sft'])}`"


def model_card(provenance: dict[str, Any]) -> str:
    """README.md with YAML front matter (``base_model``, ``tags``) for an ``rvec apply`` output."""
    target = provenance["target"]
    base = target.get("repo_id") or target.get("source")
    lines = []
    for v in provenance["vectors"]:
        lines.append(f"| {_what(v)} | {v['alpha']:g} |")
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
