"""The original TOE training step (CE + 0.5 OE on noisy text features,
Adam 1e-3, batch 32 + 32) in plain PyTorch, on the cached features the
Rust benchmark wrote; prints the wall and CPU seconds for the requested
epochs."""
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

folder, epochs = sys.argv[1], int(sys.argv[2])
# One intra-op thread: the fastest setting for these tiny per-step matmuls
# (as toe-pipe does), so the comparison is of each side at its best.
torch.set_num_threads(1)
x = torch.from_numpy(np.load(f"{folder}/x.npy"))
y = torch.from_numpy(np.load(f"{folder}/y.npy"))
o = torch.from_numpy(np.load(f"{folder}/o.npy"))
torch.manual_seed(42)
head = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
opt = torch.optim.Adam(head.parameters(), lr=1e-3)
std = math.sqrt(0.016)
start, cpu = time.perf_counter(), time.process_time()
for _ in range(epochs):
    order = torch.randperm(len(x))
    out_order, pos = torch.randperm(len(o)), 0
    for idx in order.split(32):
        if pos + 32 > len(o):
            out_order, pos = torch.randperm(len(o)), 0
        t = o[out_order[pos:pos + 32]]
        pos += 32
        t = F.normalize(F.normalize(t, dim=1) + torch.randn_like(t) * std, dim=1)
        logits = head(x[idx])
        out = head(t)
        loss = F.cross_entropy(logits, y[idx]) + 0.5 * -(out.mean(1) - torch.logsumexp(out, dim=1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
print(time.perf_counter() - start, time.process_time() - cpu)
