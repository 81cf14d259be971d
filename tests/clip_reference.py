"""Reference side of the CLIP conformance tests (tests/clip_*.rs).

Runs OpenAI's own code from the venv (`clip-anytorch`), so the Rust port is
compared with the implementation it ports, never with numbers typed by hand.

    python tests/clip_reference.py tokenize IN.json OUT.json
        IN.json: a list of strings. OUT.json: {"encode": [[id, ...], ...],
        "tokenize": [[77 ids], ...] (clip.tokenize(truncate=True)),
        "too_long": [bool, ...] (whether clip.tokenize without truncation raises)}

    python tests/clip_reference.py models OUT_DIR
        Builds tiny random CLIPs (one ViT, one ResNet) with clip.model.CLIP and
        writes, for each NAME in {vit, resnet}: NAME.ts (TorchScript traced with
        encode_image and encode_text), NAME.pt (torch.save state dict),
        NAME.wrapped.pt (the state dict inside a training checkpoint),
        NAME.safetensors (the same state dict) and NAME.io.safetensors (inputs
        `images`, `tokens` and the reference `image_features`, `text_features`).

    python tests/clip_reference.py shapes OUT.json
        For each of OpenAI's released configurations, the state dict's tensor
        shapes ({model: {name: shape}}), built on the meta device (no memory).
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")  # clip imports the deprecated pkg_resources

import torch  # noqa: E402

# Tiny shapes that still exercise every code path: several heads (width / 64),
# several blocks per stage, the ResNet's strided and downsampling blocks, and
# the real vocabulary and context so that real token ids go through.
CONFIGS = {
    "vit": dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=128,
                vision_patch_size=8, context_length=77, vocab_size=49408,
                transformer_width=128, transformer_heads=2, transformer_layers=2),
    "resnet": dict(embed_dim=24, image_resolution=64, vision_layers=(1, 2, 1, 1),
                   vision_width=8, vision_patch_size=None, context_length=77,
                   vocab_size=49408, transformer_width=64, transformer_heads=1,
                   transformer_layers=1),
}

CAPTIONS = [
    "a photo of a goldfish.",
    "",
    "A small RED star on a striped blue background!!",
    "a bad photo of the tench, a type of fish",
    "naïve café, Zürich & ünïcödé ... 東京 🐟",
]


def tokenize(src, dst):
    import clip
    from clip.simple_tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    with open(src, encoding="utf-8") as f:
        texts = json.load(f)
    too_long = []
    for text in texts:
        try:
            clip.tokenize([text])
            too_long.append(False)
        except RuntimeError:
            too_long.append(True)
    out = {
        "encode": [tokenizer.encode(t) for t in texts],
        "tokenize": clip.tokenize(texts, truncate=True).tolist(),
        "too_long": too_long,
    }
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f)


def randomise(model):
    """Random weights everywhere, also where CLIP's init puts zeros or ones
    (biases, norms, the ResNet's last batch-norm scale) and in the batch-norm
    statistics, so that no tensor can be loaded wrongly without notice."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name == "logit_scale":
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
            elif tensor.dim() <= 1:
                tensor.add_(torch.randn_like(tensor) * 0.1)
            else:
                tensor.add_(torch.randn_like(tensor) * 0.02)


def models(out_dir):
    import clip
    from clip.model import CLIP
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    for seed, (name, config) in enumerate(CONFIGS.items()):
        torch.manual_seed(seed)
        model = CLIP(**config).eval()
        randomise(model)
        res = config["image_resolution"]
        images = torch.randn(3, 3, res, res)
        tokens = clip.tokenize(CAPTIONS)
        with torch.no_grad():
            image_features = model.encode_image(images)
            text_features = model.encode_text(tokens)
            traced = torch.jit.trace_module(
                model, {"encode_image": (images,), "encode_text": (tokens,)}
            )
        traced.save(os.path.join(out_dir, f"{name}.ts"))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save(state, os.path.join(out_dir, f"{name}.pt"))
        # As training scripts save: wrapped, with data-parallel's prefix.
        wrapped = {"epoch": 3, "model": {f"module.{k}": v for k, v in state.items()},
                   "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}}}
        torch.save(wrapped, os.path.join(out_dir, f"{name}.wrapped.pt"))
        save_file(state, os.path.join(out_dir, f"{name}.safetensors"))
        save_file(
            {"images": images, "tokens": tokens, "image_features": image_features,
             "text_features": text_features},
            os.path.join(out_dir, f"{name}.io.safetensors"),
        )


# The arguments of clip.model.CLIP for OpenAI's released models.
OPENAI = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 512),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 512),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 640),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 768),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 1024),
    "ViT-B/32": (512, 224, 12, 768, 32, 512),
    "ViT-B/16": (512, 224, 12, 768, 16, 512),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 768),
}


def shapes(dst):
    from clip.model import CLIP

    out = {}
    for name, (embed, res, layers, width, patch, text_width) in OPENAI.items():
        with torch.device("meta"):
            model = CLIP(embed, res, layers, width, patch, 77, 49408, text_width, text_width // 64, 12)
        out[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
    with open(dst, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"tokenize": tokenize, "models": models, "shapes": shapes}[command](*args)
