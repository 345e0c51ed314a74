"""Convert VoxCPM 1.5 to Core ML packages: `python -m convert --help`.

What each component is (names, shapes, descriptions, parts, the fp32 region) is declared in
`contract/`; `converters` turns a declaration and the patched torch module into an ML Program,
`quantize` makes its int8 form, `packaging` describes and saves it, `constants` writes the host
arrays and the generation config, `manifest` records where everything came from, `pipeline` runs
it all, `check_specs` (with `declared`) compares packages with their declaration.
"""
