"""Tasks on the real data: loading, request layout (pinned bytes for lm-eval), registry, pairing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvec.errors import DataNotFoundError, InvalidArgumentError, UnknownNameError
from rvec.eval.data import DataSource, docs_digest
from rvec.eval.presets import get_preset
from rvec.eval.scoring import BBH_SUBTASKS
from rvec.eval.tasks import GROUPS, bbh_mean, expand_task_names, get_task
from rvec.eval.tasks.bbh import parse_cot_prompt
from rvec.eval.types import GenerateRequest, LoglikelihoodRequest

PAPER, LM_EVAL, LM_EVAL_CHAT = get_preset("paper"), get_preset("lm-eval"), get_preset("lm-eval-chat")


# ------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("gsm8k", 1319),
        ("sciq", 1000),
        ("humaneval", 164),
        ("gsm-symbolic", 2500),
        ("gsm-symbolic:original", 50),
    ],
)
def test_row_counts(source: DataSource, name: str, count: int) -> None:
    docs = get_task(name).docs(source)
    assert len(docs) == count
    assert len({d.doc_id for d in docs}) == count


def test_group_counts_and_limit(source: DataSource) -> None:
    assert sum(len(get_task(n).docs(source)) for n in GROUPS["bbh"]) == 6511
    plus = [n for n in GROUPS["gsm-plus"] if n != "gsm-plus:seed"]
    assert sum(len(get_task(n).docs(source)) for n in plus) == 2400
    assert [d.doc_id for d in get_task("gsm8k").docs(source, limit=3)] == ["0", "1", "2"]


def test_adversarial_items_pair_with_their_gsm8k_originals(source: DataSource) -> None:
    gsm8k = {d.doc_id: d for d in get_task("gsm8k").docs(source)}
    for name in GROUPS["gsm-plus"]:
        for doc in get_task(name).docs(source, limit=20):
            seed = doc.fields.get("seed_question", doc.fields["question"])
            assert gsm8k[doc.doc_id].fields["question"] == seed
    symbolic = get_task("gsm-symbolic")
    for doc in symbolic.docs(source, limit=60):
        original = gsm8k[symbolic.paired_doc_id(doc)]
        assert original.fields["question"] == doc.fields["original_question"]
    originals = get_task("gsm-symbolic:original").docs(source)
    assert all(gsm8k[d.doc_id].fields["question"] == d.fields["question"] for d in originals)


def test_missing_data_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        get_task("gsm8k").docs(DataSource(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "gsm8k" / "test.jsonl") in message and "--data-dir" in message
    assert "RVEC_DATA_DIR" in message and "\n" not in message


def test_data_dir_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("RVEC_DATA_DIR", str(data_dir))
    assert DataSource().data_dir == data_dir
    assert DataSource(Path("/elsewhere")).data_dir == Path("/elsewhere")


def test_docs_digest_is_stable_and_item_sensitive(source: DataSource) -> None:
    docs = get_task("gsm8k").docs(source, limit=5)
    again = get_task("gsm8k").docs(source, limit=5)
    assert docs_digest(docs) == docs_digest(again)
    assert docs_digest(docs) != docs_digest(docs[:4])
    assert len(docs_digest(docs)) == 64


# ------------------------------------------------------------------------------------ lm-eval bytes
def test_lm_eval_gsm8k_prompt_bytes(source: DataSource, data_dir: Path) -> None:
    question = json.loads((data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[0])["question"]
    request = get_task("gsm8k").request(get_task("gsm8k").docs(source, limit=1)[0], LM_EVAL)
    assert isinstance(request, GenerateRequest) and request.messages is None
    prompt = request.prompt
    assert prompt.startswith(
        "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they "
        "are done, there will be 21 trees. How many trees did the grove workers plant today?\n"
        "A: There are 15 trees originally. Then there were 21 trees after some more were planted. So there "
        "must have been 21 - 15 = 6. The answer is 6.\n\nQ: If there are 3 cars"
    )
    assert prompt.endswith(
        "A: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has "
        "23 - 15 dollars left. 23 - 15 is 8. The answer is 8.\n\nQ: " + question + "\nA:"
    )
    assert prompt.count("\n\nQ: ") == 8
    assert (request.stop, request.max_new_tokens) == (("Q:", "</s>", "<|im_end|>"), 256)


def test_lm_eval_bbh_prompt_bytes(source: DataSource) -> None:
    task = get_task("bbh:boolean_expressions")
    request = task.request(task.docs(source, limit=1)[0], LM_EVAL)
    prompt = request.prompt
    assert prompt.startswith(
        "Evaluate the result of a random Boolean expression.\n\n"
        "Q: not ( ( not not True ) ) is\nA: Let's think step by step.\n"
        "Remember that (i) expressions inside brackets are always evaluated first"
    )
    assert prompt.endswith(
        "Plugging in A, we get: Z = not not ( A ) = not not (True) = not not False = True. "
        "So the answer is True.\n\nQ: not ( True ) and ( True ) is\nA: Let's think step by step.\n"
    )
    assert prompt.count("\nA: Let's think step by step.\n") == 4
    assert (request.stop, request.max_new_tokens) == (("</s>", "Q", "\n\n"), 1024)


def test_lm_eval_chat_layout_is_multiturn(source: DataSource) -> None:
    task = get_task("bbh:sports_understanding")
    request = task.request(task.docs(source, limit=1)[0], LM_EVAL_CHAT)
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert request.messages[0]["content"].endswith("is plausible or not.\n\n")
    assert request.messages[1]["content"].endswith("\nA: Let's think step by step.\n")
    # The file separates this subtask's answers with a space; lm-eval's samples drop it.
    assert request.messages[2]["content"].startswith("Bam Adebayo is an American basketball player.")
    gsm = get_task("gsm8k").request(get_task("gsm8k").docs(source, limit=1)[0], LM_EVAL_CHAT)
    assert len(gsm.messages) == 17 and gsm.messages[1]["content"].endswith("The answer is 6.")


def test_sciq_lm_eval_requests(source: DataSource) -> None:
    task = get_task("sciq")
    docs = task.docs(source)
    raw = task.request(docs[0], LM_EVAL)
    assert isinstance(raw, LoglikelihoodRequest)
    assert raw.prompt.startswith("Oxidants and Reductants") and raw.prompt.endswith(
        "are called what?\nAnswer:"
    )
    assert raw.continuations == (" antioxidants", " Oxygen", " residues", " oxidants")
    chat = task.request(docs[0], LM_EVAL_CHAT)
    assert chat.continuations[3] == "oxidants" and chat.messages[-1]["content"] == raw.prompt
    empty = next(d for d in docs if not d.fields["support"])
    assert task.request(empty, LM_EVAL).prompt.startswith("\nQuestion: ")
    assert task.output_type(LM_EVAL) == "loglikelihood" and task.output_type(PAPER) == "generate"
    assert task.loglikelihood_request(docs[0], PAPER).messages is not None


def test_humaneval_requests(source: DataSource) -> None:
    task = get_task("humaneval")
    doc = task.docs(source, limit=1)[0]
    raw = task.request(doc, LM_EVAL)
    assert raw.prompt == doc.fields["prompt"]
    assert raw.stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint") and raw.max_new_tokens == 1024
    paper = task.request(doc, PAPER, condition="think")
    content = paper.messages[-1]["content"]
    assert "```python\n" + doc.fields["prompt"] + "```" in content
    assert content.endswith("\n\nThink step by step.")


# ------------------------------------------------------------------------------------ paper preset
def test_paper_conditions(source: DataSource) -> None:
    task = get_task("gsm8k")
    doc = task.docs(source, limit=1)[0]
    plain = task.request(doc, PAPER, condition="plain")
    think = task.request(doc, PAPER, condition="think")
    assert plain.messages == ({"role": "user", "content": doc.fields["question"]},)
    assert think.messages[-1]["content"] == doc.fields["question"] + "\n\nThink step by step."
    assert task.request(doc, PAPER) == plain
    with pytest.raises(InvalidArgumentError, match="think"):
        task.request(doc, LM_EVAL, condition="think")


def test_paper_bbh_is_multiturn_with_the_description_first(source: DataSource) -> None:
    task = get_task("bbh:date_understanding")
    request = task.request(task.docs(source, limit=1)[0], PAPER)
    assert [m["role"] for m in request.messages] == ["user", "assistant"] * 3 + ["user"]
    assert request.messages[0]["content"].startswith("Infer the date from context.\n\nQ: ")
    assert request.messages[1]["content"].startswith("Let's think step by step.")
    assert request.messages[-1]["content"].startswith("Q: Today is Christmas Eve of 1937.")


def test_sciq_paper_option_order_is_seeded_and_recorded(source: DataSource) -> None:
    task = get_task("sciq")
    docs = task.docs(source, limit=40)
    orders = [tuple(task.option_order(d, PAPER)) for d in docs]
    assert orders == [tuple(task.option_order(d, PAPER)) for d in docs]
    assert len(set(orders)) > 5  # really shuffled, not one fixed order
    gold_slots = {order.index(3) for order in orders}
    assert gold_slots == {0, 1, 2, 3}


def test_every_bbh_prompt_file_parses_into_three_shots(source: DataSource) -> None:
    for subtask in BBH_SUBTASKS:
        description, shots = parse_cot_prompt(source.bbh_cot_prompt(subtask), subtask=subtask)
        assert description and len(shots) == 3
        assert all(a.startswith("Let's think step by step.") and "the answer is" in a for _, a in shots)


# ------------------------------------------------------------------------------------ registry
def test_expand_and_lookup() -> None:
    names = expand_task_names("gsm8k, bbh,sciq,gsm8k")
    assert names[0] == "gsm8k" and names[-1] == "sciq" and len(names) == 29
    assert expand_task_names(["gsm-plus"])[0] == "gsm-plus:seed"
    assert get_task("gsm-plus:critical-thinking").name == "gsm-plus:critical-thinking"
    with pytest.raises(UnknownNameError) as err:
        expand_task_names("gsm8k,gsm9k,bbh:nope")
    assert "'gsm9k', 'bbh:nope'" in str(err.value) and "bbh:word_sorting" in str(err.value)
    with pytest.raises(UnknownNameError, match="group of 27"):
        get_task("bbh")


def test_bbh_mean_is_unweighted() -> None:
    scores = {f"bbh:{s}": {"acc": float(i % 2)} for i, s in enumerate(BBH_SUBTASKS)}
    assert bbh_mean(scores, "acc") == pytest.approx(13 / 27)
    del scores["bbh:web_of_lies"]
    with pytest.raises(InvalidArgumentError, match="1 of 27"):
        bbh_mean(scores, "acc")
    assert bbh_mean(scores, "acc", require_all=False) == pytest.approx(12 / 26)  # web_of_lies scored 1
