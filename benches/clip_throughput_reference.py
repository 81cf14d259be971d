"""OpenAI's CLIP (clip-anytorch in the venv) timed like benches/clip_throughput.rs:
encode_image under no_grad on random 224x224 batches, fp32 on the CPU, after
one warm-up batch. Prints `images/s N`.

    python benches/clip_throughput_reference.py ViT-B/16 32 3
"""
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
from clip.model import CLIP  # noqa: E402

OPENAI = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 512),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 512),
    "ViT-B/32": (512, 224, 12, 768, 32, 512),
    "ViT-B/16": (512, 224, 12, 768, 16, 512),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768),
}

name, batch, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
embed, res, layers, width, patch, text_width = OPENAI[name]
model = CLIP(embed, res, layers, width, patch, 77, 49408, text_width, text_width // 64, 12).eval()
images = torch.randn(batch, 3, res, res)
with torch.no_grad():
    model.encode_image(images)
    start = time.perf_counter()
    for _ in range(batches):
        model.encode_image(images).sum().item()
    seconds = time.perf_counter() - start
print(f"threads {torch.get_num_threads()}")
print(f"images/s {batch * batches / seconds}")
