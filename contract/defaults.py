"""Constants every package shares: special tokens, sampler settings, the published context, defaults, gates.

Each number is written here once; where it is VoxCPM's own, the comment says where voxcpm 2.0.3
has it. Sampler settings are also written into OUT/constants/config.json by the converter
(`contract.generation`), so an app reads them from there.
"""

# ---------------------------------------------------------------------------- the model
AUDIO_START_TOKEN = 101            # appended after the text (voxcpm `audio_start_token`)
AUDIO_END_TOKEN = 102              # unused at inference

# ---------------------------------------------------------------------------- the published interface
MAX_CONTEXT = 512                  # positions: text + audio-start + prompt patches + generated patches
VAE_ENCODER_SECONDS = 5            # the encoder takes a fixed 5 s window (220 500 samples at 44.1 kHz)
DECODER_FRAMES = (4, 2000)         # latent frames the decoder accepts (one patch .. ~80 s)
CFG_BRANCHES = 2                   # LocDiT runs the conditional and unconditional branch as a batch of 2

# ---------------------------------------------------------------------------- the sampler (voxcpm's defaults)
CFG_VALUE = 2.0
INFERENCE_TIMESTEPS = 10
SWAY_SAMPLING_COEF = 1.0
CFG_ZERO_INIT_FRACTION = 0.04      # CFG-Zero*: the first int((timesteps + 1) * 0.04) >= 1 steps use zero velocity
MIN_LEN = 2                        # patches before the stop head may end a generation
MAX_LENGTH_RATIO = 6.0             # max_len = text tokens * 6 + 10 ...
MAX_LENGTH_OFFSET = 10
RETRY_MAX = 3                      # retry_badcase tries
PROMPT_CONTEXT_PATCHES = 2         # the last prompt patches decoded before the generated ones, then cut
STREAM_CONTEXT_PATCHES = 2         # streaming with the whole decoder: voxcpm's generate_streaming decodes the
                                   # new patch with the 2 before it (streaming_prefix_len 3) and keeps its 7056 samples

# ---------------------------------------------------------------------------- what the commands default to
DEFAULT_MODEL = "openbmb/VoxCPM1.5"
DEFAULT_OUT = "build/voxcpm-1.5-coreml"
DEFAULT_LAYOUT = "published"
# package precisions: fp16 and int8 are what apps ship; fp32 is a reference build for parity checks
PRECISIONS = ("fp16", "int8", "fp32")
SHIPPED_PRECISIONS = ("fp16", "int8")
# the interpreter's compute modes (how it computes, not what a package holds)
COMPUTE_MODES = ("fp16", "fp32")

# ---------------------------------------------------------------------------- validation gates (TRIALS.md)
# calibrated on random-weight checkpoints; to be recalibrated on the real VoxCPM 1.5 weights
GATES = {"fp16": {"corr": 0.9999, "rel_l2": 5e-3}, "int8": {"corr": 0.999, "rel_l2": 2e-2}}
STOP_MARGIN = 0.05                 # a stop decision may flip where torch's |logit1 - logit0| is below this
FSQ_MARGIN = {"fp16": 0.1, "int8": 0.3}   # FSQ codes this close to a rounding boundary may differ
E2E_MAX_WER = 0.3                  # English word error rate of the Core ML speech
E2E_CER_MARGIN = 0.1               # Chinese CER above the FP32 reference's on the same sentence
