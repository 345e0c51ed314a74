"""lstm, gru, rnn: one layer, time-major x [s, b, I], looped over time in numpy.

Semantics are the op definitions' (ops/defs/iOS15, iOS17, iOS18 recurrent.py) as coremltools'
own op tests pin them down (those tests pass on Core ML):

- gate layouts: lstm weights/biases [input, forget, output, cell] ("ifoz"), peepholes
  [input, forget, output]; gru [reset, output(new), update] ("roz"); bias = ih + hh biases;
- direction "reverse" runs the sequence backwards and returns outputs in the order it computed
  them (row 0 is the last time step); "bidirectional" (lstm) realigns the backward half to
  input time and concatenates [forward | backward] on the last axis, as torch does; the initial
  states hold [forward | backward] halves the same way;
- lstm ``clip`` clips the cell state after each update; peepholes read the previous cell
  state for the input and forget gates and the new one for the output gate;
- gru (iOS15/17) applies the reset gate before the hidden matmul: W_o x + R_o (r * h) + b_o;
  iOS18 ``reset_after=True`` applies it after: W_o x + b_io + r * (R_o h + b_ho), with
  ``input_bias`` the input-side biases (torch.nn.GRU's formula);
- output_sequence=False returns the last computed step as [1, b, H].

Activations take their MIL defaults (scaled_tanh: 1, 1 -> tanh; hard sigmoid: 0.2x + 0.5).
"""
import numpy as np

from ..registry import kernel
from ._util import F32, f32, flag


def _hard_sigmoid(x):
    return np.clip(F32(0.2) * x + F32(0.5), 0, 1)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(F32)


_ACTIVATIONS = {
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "scaled_tanh": np.tanh,
    "hard_sigmoid": _hard_sigmoid,
    "sigmoid_hard": _hard_sigmoid,
    "relu": lambda x: np.maximum(x, 0),
    "linear": lambda x: x,
}


def _act(a, key, default, op):
    name = str(a.get(key, default)).lower()
    if name not in _ACTIVATIONS:
        raise ValueError(f"{op.op_type} {op.name!r}: unknown activation {name!r}")
    return _ACTIVATIONS[name]


def _bias(a, key, size):
    b = a.get(key)
    return np.zeros(size, F32) if b is None else f32(b)


def _sequence(outs, h_last, a):
    """Every step's h ([s, b, H]) with output_sequence, else the last one as [1, b, H]."""
    return np.stack(outs) if flag(a, "output_sequence") else h_last[None]


# ---- lstm ---------------------------------------------------------------------

def _lstm_direction(x, h, c, w_ih, w_hh, b, peep, acts, clip, reverse):
    rec, cell, out_act = acts
    hidden = h.shape[-1]
    steps = x[::-1] if reverse else x
    xw = steps @ w_ih.T + b  # input projections of every step in one GEMM
    p_i, p_f, p_o = (None, None, None) if peep is None else np.split(peep, 3)
    outs = []
    for t in range(steps.shape[0]):
        g = xw[t] + h @ w_hh.T
        i, f, o, z = (g[:, k * hidden:(k + 1) * hidden] for k in range(4))
        if p_i is not None:
            i, f = i + c * p_i, f + c * p_f
        c = rec(f) * c + rec(i) * cell(z)
        if clip is not None:
            c = np.clip(c, -clip, clip)
        if p_o is not None:
            o = o + c * p_o
        h = rec(o) * out_act(c)
        outs.append(h)
    return outs, h, c


@kernel("lstm")
def lstm(a, op):
    x, h0, c0 = f32(a["x"]), f32(a["initial_h"]), f32(a["initial_c"])
    w_ih, w_hh = f32(a["weight_ih"]), f32(a["weight_hh"])
    hidden = w_hh.shape[1]
    acts = (_act(a, "recurrent_activation", "sigmoid", op), _act(a, "cell_activation", "tanh", op),
            _act(a, "activation", "tanh", op))
    clip = None if a.get("clip") is None else F32(a["clip"])
    peep = None if a.get("peephole") is None else f32(a["peephole"])
    direction = a.get("direction", "forward")
    if direction != "bidirectional":
        outs, h, c = _lstm_direction(x, h0, c0, w_ih, w_hh, _bias(a, "bias", 4 * hidden), peep, acts, clip,
                                     direction == "reverse")
        return _sequence(outs, h, a), h, c
    peep_b = None if a.get("peephole_back") is None else f32(a["peephole_back"])
    fwd, h_f, c_f = _lstm_direction(x, h0[:, :hidden], c0[:, :hidden], w_ih, w_hh, _bias(a, "bias", 4 * hidden),
                                    peep, acts, clip, False)
    bwd, h_b, c_b = _lstm_direction(x, h0[:, hidden:], c0[:, hidden:], f32(a["weight_ih_back"]),
                                    f32(a["weight_hh_back"]), _bias(a, "bias_back", 4 * hidden), peep_b, acts, clip,
                                    True)
    h, c = np.concatenate([h_f, h_b], -1), np.concatenate([c_f, c_b], -1)
    if flag(a, "output_sequence"):
        seq = np.concatenate([np.stack(fwd), np.stack(bwd[::-1])], -1)  # backward half at input time
    else:
        seq = h[None]
    return seq, h, c


# ---- gru ----------------------------------------------------------------------

@kernel("gru")
def gru(a, op):
    x, h = f32(a["x"]), f32(a["initial_h"])
    w_ih, w_hh = f32(a["weight_ih"]), f32(a["weight_hh"])
    hidden = w_hh.shape[1]
    rec, act = _act(a, "recurrent_activation", "sigmoid", op), _act(a, "activation", "tanh", op)
    b_h, b_i = _bias(a, "bias", 3 * hidden), _bias(a, "input_bias", 3 * hidden)
    reset_after = flag(a, "reset_after")
    steps = x[::-1] if a.get("direction", "forward") == "reverse" else x
    xw = steps @ w_ih.T + b_i
    if not reset_after:
        xw = xw + b_h
    r_w, o_w, z_w = (w_hh[k * hidden:(k + 1) * hidden] for k in range(3))
    outs = []
    for t in range(steps.shape[0]):
        x_r, x_o, x_z = (xw[t][:, k * hidden:(k + 1) * hidden] for k in range(3))
        if reset_after:
            hw = h @ w_hh.T + b_h
            r = rec(x_r + hw[:, :hidden])
            z = rec(x_z + hw[:, 2 * hidden:])
            o = act(x_o + r * hw[:, hidden:2 * hidden])
        else:
            r, z = rec(x_r + h @ r_w.T), rec(x_z + h @ z_w.T)
            o = act(x_o + (r * h) @ o_w.T)
        h = (1 - z) * o + z * h
        outs.append(h)
    return _sequence(outs, h, a), h


# ---- rnn ----------------------------------------------------------------------

@kernel("rnn")
def rnn(a, op):
    x, h = f32(a["x"]), f32(a["initial_h"])
    w_ih, w_hh = f32(a["weight_ih"]), f32(a["weight_hh"])
    act = _act(a, "activation", "tanh", op)
    steps = x[::-1] if a.get("direction", "forward") == "reverse" else x
    xw = steps @ w_ih.T + _bias(a, "bias", w_hh.shape[0])
    outs = []
    for t in range(steps.shape[0]):
        h = act(xw[t] + h @ w_hh.T)
        outs.append(h)
    return _sequence(outs, h, a), h
