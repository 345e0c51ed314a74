"""`python -m checkpoint MODEL [--revision R] [--lora ADAPTER]`: load a checkpoint strictly and say what it is."""
import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checkpoint", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("model", help="Hugging Face id (e.g. openbmb/VoxCPM1.5) or a checkpoint directory")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) to pin")
    parser.add_argument("--lora", default=None, help="also check a LoRA adapter against the model and load it live")
    parser.add_argument("--lora-config", default=None,
                        help="the adapter's training YAML or a JSON of LoRAConfig fields")
    args = parser.parse_args(argv)

    from .loading import CheckpointError, config_dict, load_voxcpm, resolve_source

    try:
        adapter = None
        if args.lora:
            from .lora import open_adapter

            directory = resolve_source(args.model, args.revision)
            rate = config_dict(directory)["audio_vae_config"]["sample_rate"]
            adapter = open_adapter(args.lora, args.lora_config, directory, rate)
        model = load_voxcpm(args.model, args.revision, adapter=adapter)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lm = model.config.lm_config
    params = sum(p.numel() for p in model.parameters())
    print(f"{model.checkpoint_dir}: VoxCPM 1.5, {params / 1e6:.1f} M parameters, every tensor matched")
    print(f"  base LM {lm.num_hidden_layers} layers, hidden {lm.hidden_size}, heads {lm.num_attention_heads}/"
          f"{lm.num_key_value_heads}, vocab {lm.vocab_size}, use_mup {lm.use_mup}; residual LM "
          f"{model.config.residual_lm_num_layers} layers; VAE {model.sample_rate} Hz, hop {model.chunk_size}")
    if adapter is not None:
        print(f"  {adapter.describe()}; base: {adapter.base_check}")
        if adapter.warning():
            print(f"warning: {adapter.warning()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
