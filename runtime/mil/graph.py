"""Small facts about a PyMIL op that the executor and the fusions both need."""


def input_vars(op):
    """Every Var an op reads (variadic inputs flattened)."""
    for v in op.inputs.values():
        yield from v if isinstance(v, (list, tuple)) else [v]


def nested_reads(op):
    """Names of the Vars read anywhere inside the op's nested blocks (cond, while_loop), at any depth."""
    names = set()
    for block in op.blocks:
        for inner in block.operations:
            names.update(x.name for x in input_vars(inner))
            names |= nested_reads(inner)
    return names
