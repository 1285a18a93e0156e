"""The transformers backend: chat template, n samples, seeds, adapters, streaming, limits."""

from __future__ import annotations

import pytest

from trainer.generation.base import (
    GenerationRequest,
    Generator,
    LimitExceeded,
    Limits,
    SamplingParams,
    UnknownModel,
)

HI = [{"role": "user", "content": "Hello there, who are you?"}]
GREEDY = SamplingParams(temperature=0.0, max_tokens=12)


def req(model="base", params=GREEDY, **kw) -> GenerationRequest:
    return GenerationRequest(model=model, messages=kw.pop("messages", HI), params=params, **kw)


def test_implements_the_interface(hf):
    assert isinstance(hf, Generator)


def test_greedy_is_deterministic_and_counts_tokens(hf):
    a, b = hf.generate([req(), req()])
    assert a.texts == b.texts and a.texts[0]
    assert a.model == "base"
    assert a.completion_tokens == [12] and a.finish_reasons == ["length"]
    assert a.prompt_tokens > 0


def test_chat_template_is_applied(hf):
    text = hf._render(req())
    assert text.startswith("<|user|>\nHello there") and text.endswith("<|assistant|>\n")
    raw = hf.generate([GenerationRequest(model="base", prompt="Hello", params=GREEDY)])[0]
    assert raw.texts[0] != hf.generate([req()])[0].texts[0]


def test_n_samples_and_seeds(hf):
    params = SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=7)
    first = hf.generate([req(params=params)])[0]
    again = hf.generate([req(params=params)])[0]
    other = hf.generate([req(params=SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=8))])[0]
    assert len(first.texts) == 3 and len(set(first.texts)) > 1
    assert first.texts == again.texts
    assert first.texts != other.texts


def test_greedy_with_n_gives_n_copies(hf):
    out = hf.generate([req(params=SamplingParams(n=2, temperature=0.0, max_tokens=6))])[0]
    assert len(out.texts) == 2 and out.texts[0] == out.texts[1]


def test_batches_of_different_prompts_match_single_requests(hf):
    prompts = [[{"role": "user", "content": t}] for t in ("Hi", "Tell me a long story about cats")]
    batch = hf.generate([req(messages=m) for m in prompts])
    single = [hf.generate([req(messages=m)])[0] for m in prompts]
    assert [r.texts for r in batch] == [r.texts for r in single]


def test_adapters_change_outputs_and_can_be_unloaded(hf, adapters):
    hf.load_adapter("v1", adapters["v1"])
    hf.load_adapter("v2", adapters["v2"])
    base, v1, v2 = hf.generate([req("base"), req("v1"), req("v2")])
    assert (base.model, v1.model, v2.model) == ("base", "v1", "v2")
    assert len({base.texts[0], v1.texts[0], v2.texts[0]}) == 3
    hf.unload_adapter("v1")
    assert hf.loaded_adapters() == ["v2"]
    with pytest.raises(UnknownModel):
        hf.generate([req("v1")])
    assert hf.generate([req("v2")])[0].texts == v2.texts
    hf.unload_adapter("v2")
    assert hf.generate([req("base")])[0].texts == base.texts


def test_load_adapter_from_a_missing_dir_is_refused(hf, tmp_path):
    with pytest.raises(UnknownModel, match=r"adapter_config\.json"):
        hf.load_adapter("x", str(tmp_path))


def test_stream_yields_the_same_text_as_generate(hf, adapters):
    hf.load_adapter("v1", adapters["v1"])
    pieces = list(hf.stream(req("v1")))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == hf.generate([req("v1")])[0].texts[0].strip()
    with pytest.raises(UnknownModel):
        list(hf.stream(req("nope")))


def test_limits(tiny_model):
    from trainer.generation.hf_backend import HFGenerator

    small = HFGenerator(
        tiny_model, limits=Limits(max_prompt_chars=50, max_tokens=16, max_n=2, max_output_chars=5)
    )
    with pytest.raises(LimitExceeded, match="prompt has"):
        small.generate([req(messages=[{"role": "user", "content": "x" * 51}])])
    with pytest.raises(LimitExceeded, match="max_tokens"):
        small.generate([req(params=SamplingParams(max_tokens=17))])
    with pytest.raises(LimitExceeded, match="n must be"):
        small.generate([req(params=SamplingParams(n=3))])
    with pytest.raises(LimitExceeded, match="exactly one"):
        small.generate([GenerationRequest(model="base", params=GREEDY)])
    out = small.generate([req(params=SamplingParams(temperature=0.0, max_tokens=16))])[0]
    assert len(out.texts[0]) <= 5
    assert len("".join(small.stream(req(params=SamplingParams(temperature=0.0, max_tokens=16))))) <= 5


def test_cli_generates_and_never_imports_django(tiny_model, adapters):
    import json
    import subprocess
    import sys

    code = (
        "import sys, runpy; sys.argv = ['trainer.generation'] + sys.argv[1:];"
        "import trainer.generation.vllm_backend, trainer.generation.vllm_server;"
        "import trainer.generation.hf_backend, trainer.generation.cli;"
        "assert 'django' not in sys.modules, 'trainer must not import Django';"
        "runpy.run_module('trainer.generation', run_name='__main__')"
    )
    args = [
        "--backend",
        "hf",
        "--model-dir",
        tiny_model,
        "--adapter",
        f"v1={adapters['v1']}",
        "--model",
        "v1",
    ]
    args += ["--prompt", "Hi", "--temperature", "0", "--max-tokens", "6"]
    out = subprocess.run([sys.executable, "-c", code, "generate", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["model"] == "v1" and result["completion_tokens"] == [6]
