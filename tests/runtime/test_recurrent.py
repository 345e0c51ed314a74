"""lstm / gru / rnn kernels vs torch.nn (where torch has the op's form) and a per-sample reference loop."""
import numpy as np
import pytest
import torch
import coremltools as ct
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types

from .helpers import run_program

RNG = np.random.default_rng(0)
S, B, I, H = 5, 3, 4, 6


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _ifzo_to_ifoz(w):
    i, f, z, o = np.split(w, 4)
    return np.concatenate([i, f, o, z])


def _run(op, inputs, opset=ct.target.iOS17, **kw):
    specs = [(k, v.shape, types.fp32) for k, v in inputs.items()]
    return run_program(specs, lambda *vs: op(**dict(zip(inputs, vs)), **kw), inputs, opset)


def _torch_lstm(bidirectional=False):
    torch.manual_seed(0)
    return torch.nn.LSTM(I, H, 1, bidirectional=bidirectional)


def _lstm_weights(m, suffix=""):
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    return (_ifzo_to_ifoz(sd[f"weight_ih_l0{suffix}"]), _ifzo_to_ifoz(sd[f"weight_hh_l0{suffix}"]),
            _ifzo_to_ifoz(sd[f"bias_ih_l0{suffix}"] + sd[f"bias_hh_l0{suffix}"]))


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("output_sequence", [True, False])
def test_lstm_vs_torch(direction, output_sequence):
    m = _torch_lstm()
    w_ih, w_hh, b = _lstm_weights(m)
    x, h0, c0 = rand(S, B, I), rand(B, H), rand(B, H)
    # reverse: the sequence runs backwards and rows come out in the order computed
    xt = torch.from_numpy(x[::-1].copy() if direction == "reverse" else x)
    with torch.no_grad():
        seq, (hn, cn) = m(xt, (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    want = seq.numpy() if output_sequence else seq.numpy()[-1:]
    got = _run(mb.lstm, {"x": x, "initial_h": h0, "initial_c": c0}, weight_ih=w_ih, weight_hh=w_hh, bias=b,
               direction=direction, output_sequence=output_sequence)
    np.testing.assert_allclose(got[0], want, atol=1e-5)
    np.testing.assert_allclose(got[1], hn.numpy()[0], atol=1e-5)
    np.testing.assert_allclose(got[2], cn.numpy()[0], atol=1e-5)
    if direction == "reverse" and output_sequence:
        assert not np.allclose(got[0], want[::-1], atol=1e-3)  # not realigned to input time


@pytest.mark.parametrize("output_sequence", [True, False])
def test_bidirectional_lstm_vs_torch(output_sequence):
    m = _torch_lstm(bidirectional=True)
    fw, bw = _lstm_weights(m), _lstm_weights(m, "_reverse")
    x, h0, c0 = rand(S, B, I), rand(2, B, H), rand(2, B, H)
    with torch.no_grad():
        seq, (hn, cn) = m(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    seq = seq.numpy()
    if not output_sequence:  # last forward step, and the backward direction's last step (time 0)
        seq = np.concatenate([seq[-1:, :, :H], seq[:1, :, H:]], -1)
    got = _run(mb.lstm, {"x": x, "initial_h": np.concatenate(list(h0), -1), "initial_c": np.concatenate(list(c0), -1)},
               weight_ih=fw[0], weight_hh=fw[1], bias=fw[2], weight_ih_back=bw[0], weight_hh_back=bw[1],
               bias_back=bw[2], direction="bidirectional", output_sequence=output_sequence)
    np.testing.assert_allclose(got[0], seq, atol=1e-5)
    np.testing.assert_allclose(got[1], np.concatenate(list(hn.numpy()), -1), atol=1e-5)
    np.testing.assert_allclose(got[2], np.concatenate(list(cn.numpy()), -1), atol=1e-5)


_ACT = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh, "scaled_tanh": np.tanh, "relu": lambda v: max(v, 0.0),
        "hard_sigmoid": lambda v: min(max(0.2 * v + 0.5, 0.0), 1.0), "linear": lambda v: v}


def _lstm_reference(x, w_ih, w_hh, b, p, clip, acts, clip_gate=False):
    """One sample, one unit at a time, straight from the definition (peepholes, cell-state clip)."""
    rec, cell, act = (np.vectorize(_ACT[n]) for n in acts)
    h, c, out = np.zeros(H), np.zeros(H), []
    for xt in x:
        g = w_ih @ xt + w_hh @ h + b
        gi, gf, go, gz = np.split(g, 4)
        pi, pf, po = np.split(p, 3)
        i, f = rec(gi + c * pi), rec(gf + c * pf)
        z = cell(gz)
        if clip_gate:
            z = np.clip(z, -clip, clip)
        c = f * c + i * z
        if not clip_gate:
            c = np.clip(c, -clip, clip)
        h = rec(go + c * po) * act(c)
        out.append(h)
    return np.array(out)


@pytest.mark.parametrize("acts", [("sigmoid", "tanh", "tanh"), ("hard_sigmoid", "relu", "scaled_tanh"),
                                  ("sigmoid", "linear", "relu")])
def test_lstm_peephole_clip_and_activations(acts):
    x = rand(S, 1, I)
    w_ih, w_hh, b, p = rand(4 * H, I), rand(4 * H, H), rand(4 * H), rand(3 * H)
    clip = 0.3
    got = _run(mb.lstm, {"x": x}, initial_h=np.zeros((1, H), np.float32), initial_c=np.zeros((1, H), np.float32),
               weight_ih=w_ih, weight_hh=w_hh, bias=b, peephole=p, clip=np.float32(clip), output_sequence=True,
               recurrent_activation=acts[0], cell_activation=acts[1], activation=acts[2])[0][:, 0]
    want = _lstm_reference(x[:, 0], w_ih, w_hh, b, p, clip, acts)
    np.testing.assert_allclose(got, want, atol=1e-5)
    wrong = _lstm_reference(x[:, 0], w_ih, w_hh, b, p, clip, acts, clip_gate=True)
    assert not np.allclose(got, wrong, atol=1e-3)  # the clip is on the cell state, not the cell gate


def _gru_reference(x, h, w_ih, w_hh, b, acts=("tanh", "sigmoid")):
    """The iOS15 gru as coremltools' own test computes it: reset applied before the hidden matmul."""
    act, rec = (np.vectorize(_ACT[n]) for n in acts)
    (w_r, w_o, w_z), (r_r, r_o, r_z), (b_r, b_o, b_z) = np.split(w_ih, 3), np.split(w_hh, 3), np.split(b, 3)
    out = []
    for xt in x:
        z = rec(w_z @ xt + r_z @ h + b_z)
        r = rec(w_r @ xt + r_r @ h + b_r)
        o = act(w_o @ xt + r_o @ (r * h) + b_o)
        h = (1 - z) * o + z * h
        out.append(h)
    return np.array(out)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("acts", [("tanh", "sigmoid"), ("sigmoid", "tanh")])
def test_gru_reset_before_matmul(direction, acts):
    x, h0 = rand(S, 1, I), rand(1, H)
    w_ih, w_hh, b = rand(3 * H, I), rand(3 * H, H), rand(3 * H)
    got = _run(mb.gru, {"x": x, "initial_h": h0}, weight_ih=w_ih, weight_hh=w_hh, bias=b, direction=direction,
               output_sequence=True, activation=acts[0], recurrent_activation=acts[1])
    xs = x[::-1, 0] if direction == "reverse" else x[:, 0]
    want = _gru_reference(xs, h0[0], w_ih, w_hh, b, acts)
    np.testing.assert_allclose(got[0][:, 0], want, atol=1e-5)
    np.testing.assert_allclose(got[1][0], want[-1], atol=1e-5)


def test_gru_reset_after_vs_torch():
    """iOS18 reset_after=True with input_bias is torch.nn.GRU's formula; the iOS15 form is not."""
    torch.manual_seed(1)
    m = torch.nn.GRU(I, H, 1)
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}

    def roz(w):  # torch order (r, z, n) -> MIL (r, o, z)
        r, z, n = np.split(w, 3)
        return np.concatenate([r, n, z])

    x, h0 = rand(S, B, I), rand(B, H)
    with torch.no_grad():
        seq, hn = m(torch.from_numpy(x), torch.from_numpy(h0)[None])
    kw = dict(weight_ih=roz(sd["weight_ih_l0"]), weight_hh=roz(sd["weight_hh_l0"]), bias=roz(sd["bias_hh_l0"]),
              input_bias=roz(sd["bias_ih_l0"]), output_sequence=True)
    got = _run(mb.gru, {"x": x, "initial_h": h0}, opset=ct.target.iOS18, reset_after=True, **kw)
    np.testing.assert_allclose(got[0], seq.numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1], hn.numpy()[0], atol=1e-5)
    before = _run(mb.gru, {"x": x, "initial_h": h0}, opset=ct.target.iOS18, reset_after=False, **kw)
    assert not np.allclose(before[0], seq.numpy(), atol=1e-3)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("output_sequence", [True, False])
def test_rnn_vs_torch(direction, activation, output_sequence):
    torch.manual_seed(2)
    m = torch.nn.RNN(I, H, 1, nonlinearity=activation)
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    x, h0 = rand(S, B, I), rand(B, H)
    xt = torch.from_numpy(x[::-1].copy() if direction == "reverse" else x)
    with torch.no_grad():
        seq, hn = m(xt, torch.from_numpy(h0)[None])
    got = _run(mb.rnn, {"x": x, "initial_h": h0}, weight_ih=sd["weight_ih_l0"], weight_hh=sd["weight_hh_l0"],
               bias=sd["bias_ih_l0"] + sd["bias_hh_l0"], direction=direction, output_sequence=output_sequence,
               activation=activation.upper() if activation == "relu" else activation)
    want = seq.numpy() if output_sequence else seq.numpy()[-1:]
    np.testing.assert_allclose(got[0], want, atol=1e-5)
    np.testing.assert_allclose(got[1], hn.numpy()[0], atol=1e-5)
