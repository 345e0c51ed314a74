"""The streaming VAE decoder converted like every component: explicit form (published layout, optional) and
stateful form (Core ML states, through a probe layout), described, quantized, manifest-recorded, spec-checked,
and equal to the whole decoder when run one patch per call."""
import json

import coremltools as ct
import numpy as np
import pytest
import torch

import runtime
from contract.published import COMPONENTS, declare
from contract.streaming import NAME, stream_decoder
from contract.sizes import model_sizes
from convert.check_specs import check_out
from convert.cli import parse_settings
from runtime.package_info import read as read_package

from tests.helpers import PROBE_LAYOUT, probe_layout

PATCH = 4
FP32_EXACT = 1e-5      # the must-show: FP32 builds, chunks joined vs one whole-decoder call


def _config(out):
    return json.loads((out / "manifest.json").read_text())["source"]["config"]


def _latent(patches=12, seed=0):
    return np.random.default_rng(seed).standard_normal((1, 64, patches * PATCH)).astype(np.float32)


def _rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def stream_explicit(model, spec, latent):
    """Decode call by call, feeding back the context outputs."""
    contexts = {t.name: np.zeros(t.shape, np.float32) for t in spec.carried.tensors}
    pieces = []
    for start in range(0, latent.shape[-1], PATCH):
        out = model.predict({"latent": latent[..., start:start + PATCH], **contexts})
        contexts = {n: out[spec.carried.output_for(n)] for n in contexts}
        pieces.append(out["audio"].reshape(-1))
    return np.concatenate(pieces)


def stream_stateful(model, latent, fresh_state_every_call=False):
    state, pieces = model.new_state(), []
    for start in range(0, latent.shape[-1], PATCH):
        state = model.new_state() if fresh_state_every_call else state
        pieces.append(model.predict({"latent": latent[..., start:start + PATCH]}, state=state)["audio"].reshape(-1))
    return np.concatenate(pieces)


def test_not_built_by_default_and_added_on_request(tiny_out):
    assert NAME not in parse_settings([]).components and parse_settings([]).components == COMPONENTS
    assert parse_settings(["--stream-decoder"]).components == COMPONENTS + (NAME,)
    assert not (tiny_out / "fp16" / f"{NAME}.mlpackage").exists()


def test_explicit_packages_recorded_described_and_checked(tiny_stream_out):
    manifest = json.loads((tiny_stream_out / "manifest.json").read_text())
    for precision in ("fp16", "int8", "fp32"):
        entry = manifest["artifacts"][f"{precision}/{NAME}"]
        assert entry["interface"]["spec_version"] == 8 and len(entry["interface"]["inputs"]) == 23
    assert manifest["artifacts"][f"int8/{NAME}"]["weights"]["int8_weights"] > 0
    rows = [r for r in check_out(tiny_stream_out) if r["component"] == NAME]
    assert len(rows) == 3 and all(not r["problems"] for r in rows)
    package = read_package(tiny_stream_out / "fp16" / f"{NAME}.mlpackage")
    spec = declare(_config(tiny_stream_out))[NAME]
    assert all(package.descriptions[t.name] == t.description for t in spec.inputs + spec.outputs)
    assert package.metadata["voxcpm.component"] == NAME


def test_fp32_explicit_stream_equals_one_whole_call(tiny_stream_out):
    """FP32 reference builds: every chunk joined = one call of the whole decoder package (and of torch)."""
    spec = declare(_config(tiny_stream_out), float_dtype="fp32")[NAME]
    latent = _latent()
    streamed = stream_explicit(runtime.load(tiny_stream_out / "fp32" / f"{NAME}.mlpackage", backend="mil",
                                            compute="fp32"), spec, latent)
    whole = runtime.load(tiny_stream_out / "fp32" / "audio_vae_decoder.mlpackage", backend="mil",
                         compute="fp32").predict({"latent": latent})["audio"].reshape(-1)
    from checkpoint.loading import load_voxcpm

    model = load_voxcpm(json.loads((tiny_stream_out / "manifest.json").read_text())["source"]["checkpoint_dir"])
    with torch.no_grad():
        reference = model.audio_vae.decode(torch.from_numpy(latent))[0, 0].numpy()
    errors = _rel_l2(streamed, whole), _rel_l2(streamed, reference), _rel_l2(whole, reference)
    print(f"fp32 explicit stream vs whole package {errors[0]:.2e}, vs torch {errors[1]:.2e}; whole vs torch "
          f"{errors[2]:.2e}")
    assert max(errors) <= FP32_EXACT


@pytest.fixture(scope="module")
def probe(stateful_probe_out):
    return stateful_probe_out


def _probe_package(out, precision):
    return out / f"{precision}-{PROBE_LAYOUT}" / f"{NAME}.mlpackage"


def test_stateful_packages_have_states_and_the_macos15_target(probe):
    spec = stream_decoder(model_sizes(_config(probe)), stateful=True)
    manifest = json.loads((probe / "manifest.json").read_text())
    for precision in ("fp16", "int8", "fp32"):
        entry = manifest["artifacts"][f"{precision}-{PROBE_LAYOUT}/{NAME}"]
        assert entry["interface"]["spec_version"] == 9
        assert [s["name"] for s in entry["interface"]["states"]] == [t.name for t in spec.states]
        assert {s["dtype"] for s in entry["interface"]["states"]} == {"fp16"}   # Core ML states are fp16 only
    package = read_package(_probe_package(probe, "fp16"))
    assert [d.name for d in package.inputs] == ["latent"] and [d.name for d in package.outputs] == ["audio"]
    assert all(package.descriptions[t.name] == t.description for t in spec.states)
    with probe_layout():
        rows = check_out(probe, layout_name=PROBE_LAYOUT)
    assert len(rows) == 3 and all(not r["problems"] for r in rows)
    spec_proto = ct.models.MLModel(str(_probe_package(probe, "int8")), skip_model_load=True).get_spec()
    assert spec_proto.specificationVersion == 9


def test_stateful_stream_equals_one_whole_call(probe, tiny_stream_out):
    """The stateful FP32 build (fp32 compute, fp16 states) against the FP32 whole decoder package: in the
    interpreter's fp32 mode (conversion error alone) within 1e-5; in fp16 mode, where the states are
    rounded to fp16 between calls as Core ML stores them, within the fp16 gate. A fresh state for every
    call (negative control: nothing carried) is far off."""
    latent = _latent(seed=1)
    whole = runtime.load(tiny_stream_out / "fp32" / "audio_vae_decoder.mlpackage", backend="mil",
                         compute="fp32").predict({"latent": latent})["audio"].reshape(-1)
    fp32 = runtime.load(_probe_package(probe, "fp32"), backend="mil", compute="fp32")
    rounded = runtime.load(_probe_package(probe, "fp32"), backend="mil", compute="fp16")
    errors = {"fp32 mode": _rel_l2(stream_stateful(fp32, latent), whole),
              "fp16 states": _rel_l2(stream_stateful(rounded, latent), whole),
              "not carried": _rel_l2(stream_stateful(fp32, latent, fresh_state_every_call=True), whole)}
    print("stateful FP32 build vs the whole FP32 decoder package: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert errors["fp32 mode"] <= FP32_EXACT and errors["fp16 states"] <= 5e-3 and errors["not carried"] > 1e-2
