"""The toolkit's torch-free contract: what every package agrees on, declared once.

Nothing here imports torch or coremltools, so convert, validate, generate, the tests and an app
developer's script can all read it.
"""
