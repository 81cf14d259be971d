"""Python side of `cargo bench --bench images`: makes the JPEG data set and
times Pillow + torchvision on it.

  python benches/images_pillow.py make DIR COUNT
      COUNT ImageNet-like JPEGs (mostly 500x375 / 500x333 / 375x500,
      quality 90, 4:2:0) in ImageFolder layout under DIR.
  python benches/images_pillow.py bench DIR WORKERS BATCH N_PX
      torchvision ImageFolder + OpenAI CLIP's transform through a torch
      DataLoader (num_workers=WORKERS, batches of BATCH, workers started and
      warmed up before timing); prints one JSON line with images per second,
      and the time per image in one process without a DataLoader.
      (A multiprocessing pool was slower: its results travel pickled through
      pipes, where the DataLoader uses shared memory.)
"""

import json
import sys
import time
from pathlib import Path

import numpy as np


def photo(rng, h, w):
    """Photo-like content: smooth gradients, texture, edges and noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = rng.uniform(5, 40, 6)
    img = np.stack(
        [
            128 + 100 * np.sin(x / f[0] + rng.uniform(0, 6)) * np.cos(y / f[1]),
            128 + 90 * np.sin((x + y) / f[2]) * np.cos(x / f[3]),
            128 + 80 * np.cos(x / f[4] - y / f[5]),
        ],
        -1,
    )
    img += rng.normal(0, 10, (h, w, 3)).astype(np.float32)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - 20), rng.integers(0, w - 20)
        img[y0 : y0 + rng.integers(10, h // 2), x0 : x0 + rng.integers(10, w // 2)] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def make(out, count):
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(500, 375), (500, 375), (500, 333), (375, 500), (500, 400), (333, 500)]
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        d = Path(out) / f"class_{i % 10:02d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(rng, h, w)).save(d / f"img_{i:05d}.jpg", quality=90)


# --- Pillow + torchvision, as the original code runs it -----------------------


def clip_transform(n_px):
    import clip.clip

    return clip.clip._transform(n_px)


def bench(root, workers, batch, n_px):
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    torch.set_num_threads(1)
    ds = ImageFolder(root, transform=clip_transform(n_px))
    n = len(ds)
    result = {"images": n}

    # One process, no DataLoader: where the time goes per image.
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    result["one_process_ms_per_image"] = 1e3 * (time.perf_counter() - t) / n

    # Time the second epoch of persistent workers: steady-state throughput.
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=False, persistent_workers=True)
    for epoch in range(2):
        t = time.perf_counter()
        seen = 0
        for x, y in loader:
            seen += x.shape[0]
        result["dataloader_images_per_s"] = seen / (time.perf_counter() - t)
    del loader

    print(json.dumps(result))


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "bench":
        bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
