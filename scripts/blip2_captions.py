#!/usr/bin/env python3
"""Caption every image of a folder with BLIP-2, for caption-level outliers.

The original TOE release captions the ImageNet test split with BLIP-2
OPT-2.7b (`preprocess/blip.py`), one caption per image, at most 20 new
tokens. toe-pipe runs this script as a `cmd` node on a GPU worker; the
selection of the least ID-like captions is the built-in
`mahalanobis_select` op.

Differences from the original, on purpose (`--walk-order true` undoes the
first two):
  * images are visited in sorted order (ImageFolder order), not os.walk's
    (the file system's order, which differs between machines), so the
    caption index file is reproducible, and every image extension counts
    (the original takes only names ending in ".JPEG");
  * images are captioned in batches (the original: one at a time);
  * the output is a numpy unicode array, which `np.load` opens without
    `allow_pickle` (toe-pipe reads both that and the original object array).

Python dependencies (the project's .venv has them after scripts/setup.sh):
torch, transformers, pillow, numpy. The model is read from a local folder
(`--model`), e.g. a `save_pretrained` copy of Salesforce/blip2-opt-2.7b;
nothing is downloaded (HF_HUB_OFFLINE is set).
"""
import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def image_paths(root):
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(EXTENSIONS))
    return sorted(paths)


def walk_order_paths(root):
    """The original's ImagenetDataset: os.walk order, unsorted, '.JPEG' only."""
    paths = []
    for dirpath, _, filenames in os.walk(root):
        paths.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".JPEG"))
    return paths


def flag(text):
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--model", required=True, help="local folder of a BLIP-2 model (save_pretrained layout)")
    parser.add_argument("--out", required=True, help="captions .npy to write")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--walk-order", type=flag, default=False,
                        help="true: as the original's blip.py, os.walk order, '.JPEG' files only, one image at a time")
    args = parser.parse_args()
    if args.walk_order:
        args.batch_size = 1

    if not os.path.isdir(args.images):
        sys.exit(f"blip2_captions: image folder {args.images} does not exist")
    if not os.path.isdir(args.model):
        sys.exit(f"blip2_captions: model folder {args.model} does not exist; put a save_pretrained copy of "
                 "Salesforce/blip2-opt-2.7b there (see README, 'Data and checkpoints')")
    paths = walk_order_paths(args.images) if args.walk_order else image_paths(args.images)
    if not paths:
        kind = "'.JPEG' images" if args.walk_order else "images"
        sys.exit(f"blip2_captions: no {kind} under {args.images}")

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Blip2ForConditionalGeneration

    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    processor = AutoProcessor.from_pretrained(args.model)
    model = Blip2ForConditionalGeneration.from_pretrained(args.model, torch_dtype=dtype).to(args.device).eval()

    captions = []
    for start in range(0, len(paths), args.batch_size):
        batch = [Image.open(p).convert("RGB") for p in paths[start:start + args.batch_size]]
        inputs = processor(images=batch, return_tensors="pt").to(args.device, dtype)
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=args.max_new_tokens)
        captions.extend(t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True))
        print(f"captioned {len(captions)}/{len(paths)}", file=sys.stderr, flush=True)

    np.save(args.out, np.array(captions, dtype=str))


if __name__ == "__main__":
    main()
