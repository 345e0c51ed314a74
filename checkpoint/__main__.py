"""`python -m checkpoint MODEL [--revision R]`: load a checkpoint strictly and say what it is."""
import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checkpoint", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("model", help="Hugging Face id (e.g. openbmb/VoxCPM1.5) or a checkpoint directory")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) to pin")
    args = parser.parse_args(argv)

    from .loading import CheckpointError, load_voxcpm

    try:
        model = load_voxcpm(args.model, args.revision)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lm = model.config.lm_config
    params = sum(p.numel() for p in model.parameters())
    print(f"{model.checkpoint_dir}: VoxCPM 1.5, {params / 1e6:.1f} M parameters, every tensor matched")
    print(f"  base LM {lm.num_hidden_layers} layers, hidden {lm.hidden_size}, heads {lm.num_attention_heads}/"
          f"{lm.num_key_value_heads}, vocab {lm.vocab_size}, use_mup {lm.use_mup}; residual LM "
          f"{model.config.residual_lm_num_layers} layers; VAE {model.sample_rate} Hz, hop {model.chunk_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
