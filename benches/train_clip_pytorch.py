"""The demo's CLIP pre-training step in plain PyTorch, with OpenAI's model
code (clip-anytorch's `clip.model.CLIP`): the same shapes, optimiser
(AdamW, betas 0.9/0.98, eps 1e-6, decay on matrices and convolutions only,
the text tower at an eighth of the image tower's learning rate),
learning-rate schedule and temperature clamp as toe-pipe's `train_clip`, on
the batches the Rust benchmark wrote. Prints the wall and CPU seconds of
the timed steps and the mean loss of the last ten.

    python train_clip_pytorch.py FOLDER WARMUP STEPS BATCH THREADS WIDTH TEXT_WIDTH TEXT_LAYERS EMBED_DIM [--profile]
"""
import math
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")  # clip imports pkg_resources
from clip.model import CLIP  # noqa: E402

folder = sys.argv[1]
warmup, steps, batch, threads, width, text_width, text_layers, embed_dim = map(int, sys.argv[2:10])
profile = "--profile" in sys.argv
torch.set_num_threads(threads)
images = torch.from_numpy(np.load(f"{folder}/images.npy"))
tokens = torch.from_numpy(np.load(f"{folder}/tokens.npy"))
image_of_text = torch.from_numpy(np.load(f"{folder}/image_of_text.npy"))
resolution, context = images.shape[-1], tokens.shape[1]
torch.manual_seed(0)
model = CLIP(embed_dim, resolution, (1, 1, 1, 1), width, None, context, 49408, text_width,
             max(text_width // 64, 1), text_layers).float()
# Groups by weight decay (matrices and convolutions only) and by tower: the
# text tower learns at text_lr_factor times the image tower's rate.
peak, text_lr_factor, total, warm = 2e-3, 0.125, warmup + steps, 50
groups = {}
for n, p in model.named_parameters():
    decay = p.dim() >= 2 and "embedding" not in n
    image = n.startswith("visual.") or n == "logit_scale"
    groups.setdefault((decay, image), []).append(p)
opt = torch.optim.AdamW([{"params": ps, "weight_decay": 0.1 if decay else 0.0,
                          "factor": 1.0 if image else text_lr_factor}
                         for (decay, image), ps in groups.items()],
                        lr=peak, betas=(0.9, 0.98), eps=1e-6)
labels = torch.arange(batch)
order, cursor = torch.randperm(len(tokens)), 0


def learning_rate(i):
    """train_clip's schedule: linear warm-up, then cosine to zero."""
    if i < warm:
        return peak * (i + 1) / warm
    return 0.5 * peak * (1 + math.cos(math.pi * (i - warm) / max(total - warm, 1)))


def step(i):
    global order, cursor
    if cursor + batch > len(tokens):
        order, cursor = torch.randperm(len(tokens)), 0
    texts = order[cursor:cursor + batch]
    cursor += batch
    lr = learning_rate(i)
    for group in opt.param_groups:
        group["lr"] = lr * group["factor"]
    logits, _ = model(images[image_of_text[texts]], tokens[texts])
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(max=math.log(100))
    return loss.item()


model.train()
for i in range(warmup):
    step(i)
start, cpu = time.perf_counter(), time.process_time()
losses = [step(warmup + i) for i in range(steps)]
print(time.perf_counter() - start, time.process_time() - cpu, sum(losses[-10:]) / len(losses[-10:]))
if profile:
    from torch.profiler import profile as torch_profile
    with torch_profile() as p:
        for i in range(10):
            step(i)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=20), file=sys.stderr)
