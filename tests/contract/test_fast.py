"""The fast layout's declaration: torch-free, sized from the config, its context within what the model allows."""
import pytest

from checkpoint.fixture import make_config
from contract.fast import COMPONENTS, LM_FUNCTIONS, prefill_calls
from contract.layout import declare, option_metadata, options_from_metadata
from contract.streaming import NAME as STREAM_DECODER

FULL = make_config(full=True, vocab_size=73448)


def test_full_size_declaration():
    layout = declare(FULL, "fast")
    assert layout.required == COMPONENTS and layout.deployment_target == "macOS15" and layout.spec_version == 9
    assert layout.max_context == 2048 and layout.options == {"max_context": 2048, "prefill_chunk": 64, "timesteps": 10}
    stream = layout[STREAM_DECODER]   # optional: the streaming decoder, its 22 contexts as states
    assert layout.optional == (STREAM_DECODER,) and len(stream.states) == 22 and not stream.inputs[1:]
    assert {c.deployment_target for c in layout} == {"macOS15"}
    lm = layout["lm"]
    assert [f.name for f in lm.functions] == list(LM_FUNCTIONS) == ["step", "prefill"]
    states = lm.states
    assert len(states) == 2 * (24 + 8) and {t.shape for t in states} == {(1, 2, 2048, 64)}
    assert states[0].name == "base_k0" and states[-1].name == "residual_v7" and {t.dtype for t in states} == {"fp16"}
    step, prefill = lm.function("step"), lm.function("prefill")
    assert [(t.name, t.shape) for t in step.inputs] == [("feat", (1, 1, 4, 64)), ("position", (1,))]
    assert [(t.name, t.shape) for t in step.outputs] == [("mu", (1, 1024)), ("stop_logit", (1, 2)),
                                                         ("lm_hidden", (1, 1024))]
    assert [(t.name, t.shape) for t in prefill.inputs] == [
        ("text_embeds", (1, 64, 1024)), ("feats", (1, 64, 4, 64)), ("audio_mask", (1, 64)), ("start", (1,)),
        ("last", (1,))]
    assert step.states == prefill.states == states               # one state serves both functions
    diffusion = layout["diffusion"]
    assert [(t.name, t.shape) for t in diffusion.inputs] == [("noise", (1, 64, 4)), ("mu", (1, 1024)),
                                                             ("cond", (1, 64, 4)), ("cfg", (1,))]
    assert all(t.description for c in layout for f in c.functions or (c,) for t in f.inputs + f.outputs + f.states)


def test_fp32_build_keeps_fp16_states():
    lm = declare(FULL, "fast", float_dtype="fp32")["lm"]
    assert {t.dtype for t in lm.function("step").inputs} == {"fp32", "int32"}
    assert {t.dtype for t in lm.states} == {"fp16"}   # the only state type Core ML has


def test_context_is_capped_at_what_the_model_allows():
    tiny = make_config(full=False, vocab_size=300)          # max_length 1024
    assert declare(tiny, "fast").max_context == 1024
    assert declare(tiny, "fast", max_context=256).max_context == 256
    with pytest.raises(ValueError, match="1..1024"):
        declare(tiny, "fast", max_context=2048)
    with pytest.raises(ValueError, match="prefill chunk"):
        declare(tiny, "fast", max_context=32, prefill_chunk=64)


def test_options_round_trip_through_package_metadata():
    layout = declare(FULL, "fast", prefill_chunk=32, timesteps=6)
    metadata = {**option_metadata(layout), "voxcpm.layout": "fast"}
    assert options_from_metadata(metadata) == layout.options
    assert declare(FULL, "fast", **options_from_metadata(metadata)) == layout
    assert option_metadata(declare(FULL, "published")) == {}


@pytest.mark.parametrize("total,chunk,context,rows", [(164, 64, 2048, None), (27, 8, 48, 1), (27, 8, 48, 3),
                                                      (46, 8, 48, 5), (5, 64, 2048, None), (2048, 64, 2048, 7)])
def test_prefill_calls_cover_every_position_once_within_the_context(total, chunk, context, rows):
    calls = prefill_calls(total, chunk, context, rows)
    new = []
    for start, count in calls:
        assert 0 <= start and start + chunk <= context and 1 <= count <= chunk
        new += [p for p in range(start, start + count) if p not in new]
    assert new == list(range(total))
    assert calls[-1][0] + calls[-1][1] == total                # the last real row is the last position


def test_100_tokens_and_a_10_s_prompt_take_3_prefill_calls():
    assert len(prefill_calls(100 + 1 + 63, 64, 2048)) == 3     # 10 s = 62.5 patches, left-padded to 63
