"""validate.int8_floor: the error int8 weights cost by themselves, measured through the LM rollouts."""
import json

import numpy as np
import pytest
import torch

from validate import int8_floor
from validate.int8_floor import fake_quantize_int8


def test_fake_quantization_is_per_output_channel_symmetric_int8_of_fp16():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ConvTranspose1d(16, 8, 3), torch.nn.Linear(4, 4))
    original = [m.weight.detach().clone() for m in (net[0], net[1], net[2])]
    assert fake_quantize_int8(net, min_elements=100) == 2  # the 16-element Linear stays as it is
    for weight, out_axis, before in ((net[0].weight, 0, original[0]), (net[1].weight, 1, original[1])):
        w = weight.detach().numpy()
        rows = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1)
        ref = np.moveaxis(before.half().float().numpy(), out_axis, 0).reshape(rows.shape)
        scale = np.abs(ref).max(axis=1, keepdims=True) / 127
        codes = rows / scale
        np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)  # integer multiples of the row's scale
        assert np.abs(codes).max() <= 127 + 1e-3
        assert np.all(np.abs(rows - ref) <= scale / 2 + 1e-7)
    assert torch.equal(net[2].weight, original[2])


def test_floor_on_the_tiny_fixture(tiny_dir, tmp_path, capsys):
    out = tmp_path / "floor.json"
    assert int8_floor.main(["--model", str(tiny_dir), "--steps", "3", "--max-context", "64", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {(r["name"], r["output"]): r for r in result["rows"]}
    assert set(rows) == {("base_lm_step", "lm_hidden"), ("base_lm_step", "caches"),
                         ("residual_lm_step", "res_hidden"), ("residual_lm_step", "caches"),
                         ("audio_vae_encoder", "latent"), ("audio_vae_decoder", "audio"),
                         ("feat_encoder", "embedding"), ("locdit_step", "velocity")}
    for row in rows.values():
        # int8 moves every output, but by quantization noise, not by a wrong computation
        assert 1e-4 < row["rel_l2"] < 0.1 and row["corr"] > 0.99
    lm = [s for s in result["series"] if s["name"].endswith("lm_step")]
    assert len(lm) == 4 * sum(1 for s in lm if s["output"] == "lm_hidden")  # per rollout, every output
    assert all(len(s["position"]) == 3 for s in lm)
    assert "| base_lm_step | lm_hidden |" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [(["--model", "/nonexistent/ckpt"], "/nonexistent/ckpt"),
                                         (["--steps", "0", "--model", "x"], "--steps")])
def test_bad_arguments_are_one_line(argv, needle, capsys):
    assert int8_floor.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err
