"""read_state / coreml_update_state: the program's view of MilState."""
from ..registry import kernel


@kernel("read_state", exact=True)
def read_state(a, op):
    slot = a["input"]
    return slot.state._values[slot.name]


@kernel("coreml_update_state", exact=True)
def coreml_update_state(a, op):
    slot, value = a["state"], a["value"]
    # store a private copy: the value var may still be used (or reused) later
    slot.state._values[slot.name] = slot.state.to_compute(slot.name, value)
    return value
