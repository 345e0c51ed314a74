"""python -m validate.asr [name_or_path]: load (and on first use convert and cache) the ASR model."""
import sys
import time

from .whisper_offline import AsrModelError, dims_dict, load_whisper, parameter_count


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    start = time.perf_counter()
    try:
        model = load_whisper(argv[0] if argv else None)
    except AsrModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"loaded in {time.perf_counter() - start:.1f} s: {parameter_count(model):,} parameters, "
          f"{dims_dict(model)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
