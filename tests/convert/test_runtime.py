"""Every tiny package runs through the project's ML Program interpreter (runtime, backend "mil")
and returns outputs of the declared shapes; the fp16 LM step agrees with torch across positions."""
import numpy as np
import pytest

from contract.published import COMPONENTS

runtime = pytest.importorskip("runtime")


def _feed(iface, overrides=None, position=7, seed=0):
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in iface.inputs:
        shape = (overrides or {}).get(spec.name, spec.shape)
        if spec.dtype == "int32":
            feed[spec.name] = np.full(shape, position, dtype=np.int32)
        else:
            feed[spec.name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return feed


def _declared_output_shape(spec, frames, hop):
    if spec.flexible:  # the decoder: T latent frames -> T * hop samples
        return (*spec.shape[:-1], frames * hop)
    return spec.shape


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("name", COMPONENTS)
def test_package_runs_in_interpreter(tiny_out, tiny_interfaces, tiny_config, name, precision):
    from contract.sizes import model_sizes

    hop = model_sizes(tiny_config).hop
    iface = tiny_interfaces[name]
    model = runtime.load(str(tiny_out / precision / f"{name}.mlpackage"), backend="mil")
    cases = [({}, None)]
    if name == "audio_vae_decoder":  # the default length and another one
        cases = [({}, 4), ({"latent": (1, iface.inputs[0].shape[1], 9)}, 9)]
    for overrides, frames in cases:
        out = model.predict(_feed(iface, overrides))
        assert list(out) == [s.name for s in iface.outputs] or set(out) == {s.name for s in iface.outputs}
        for spec in iface.outputs:
            assert tuple(out[spec.name].shape) == tuple(_declared_output_shape(spec, frames, hop)), spec.name
            assert np.isfinite(out[spec.name]).all(), spec.name


def test_fp16_base_step_matches_torch_at_many_positions(tiny_out, tiny_interfaces, tiny_dir):
    import torch

    from patches.modules import build
    from patches.apply import patch_model
    from checkpoint.loading import load_voxcpm

    iface = tiny_interfaces["base_lm_step"]
    eager = build(iface, patch_model(load_voxcpm(tiny_dir)))
    model = runtime.load(str(tiny_out / "fp16" / "base_lm_step.mlpackage"), backend="mil")
    layers = iface.caches.layers
    names = [s.name for s in iface.inputs[2:]]
    caches = {n: np.zeros(iface.inputs[2].shape, np.float32) for n in names}
    torch_caches = [torch.zeros(iface.inputs[2].shape) for _ in names]
    rng = np.random.default_rng(3)
    for position in [0, 1, 2, 9, 130, 511]:
        embed = rng.standard_normal(iface.inputs[0].shape).astype(np.float32)
        out = model.predict({"embed": embed, "position": np.array([position], np.int32), **caches})
        with torch.no_grad():
            want = eager(torch.from_numpy(embed), torch.tensor([position], dtype=torch.int32), *torch_caches)
        torch_caches = list(want[3:])
        caches = {n: out[f"out_{n}"].astype(np.float32) for n in names}
        for i, key in enumerate(["lm_hidden", "lm_hidden_fsq", "stop_logit"]):
            ref = want[i].numpy()
            diff = np.abs(out[key].astype(np.float32) - ref) / max(np.abs(ref).max(), 1e-6)
            if key == "lm_hidden_fsq":  # fp16 may move a value across an FSQ rounding boundary: a few may flip
                assert np.mean(diff > 2e-2) <= 0.1, (key, position, np.mean(diff > 2e-2))
            elif key == "stop_logit":  # computed from the FSQ'd hidden, so it inherits those flips
                assert diff.max() < 0.1, (key, position, diff.max())
            else:
                assert diff.max() < 2e-2, (key, position, diff.max())
        assert np.abs(caches["k0"] - torch_caches[0].numpy()).max() < 2e-2
    assert layers == len(names) // 2
