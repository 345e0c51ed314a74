"""Long measurements that are not tests: `make bench` runs them (`python -m bench --help`).

Each module measures one thing and writes a Markdown table and JSON under build/bench/:
`runtime_step` (the interpreter against torch eager on a full-size decoder step, runtime.json) and
`components` (each converted component, fp16 and int8 packages, against the torch module it was
converted from, components.json; needs a checkpoint and its conversion: MODEL=..., OUT=...).
`torch_models` holds the small generic torch models they (and the runtime tests) convert.
"""
