"""How well other OoD scores separate the demo's sets on the same features.

The demo's table scores images with the energy of the trained linear head,
as TOE does. This script scores the same stored CLIP features three other
ways (cosine to the nearest ID class mean, mean cosine to the 10 nearest ID
training images, Mahalanobis distance with one shared covariance) next to
the energy of the baseline head of seed 0, and prints AUROC per OoD set (ID
positive), so one can tell whether a weak result comes from the features or
from the head.

    ./toe-pipe run pipelines/demo.toml
    .venv/bin/python scripts/demo_feature_scores.py            # artifacts/ of the project
    .venv/bin/python scripts/demo_feature_scores.py --store DIR

It reads the store's records (refs/demo.json -> actions/ -> objects/), the
layout docs/core.md describes; nothing is written.
"""
import argparse
import json
import pathlib

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

OOD_SETS = ["ood_near", "ood_scenes", "ood_textures"]


def output_path(store, nodes, node, output):
    key = nodes[node]["current"]
    record = json.loads((store / "actions" / key[:2] / f"{key[2:]}.json").read_text())
    digest = record["outputs"][output]["hash"]
    return store / "objects" / digest[:2] / digest[2:]


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=pathlib.Path(__file__).resolve().parent.parent / "artifacts", type=pathlib.Path)
    store = parser.parse_args().store
    refs = store / "refs" / "demo.json"
    if not refs.is_file():
        raise SystemExit(f"{refs} is missing: run ./toe-pipe run pipelines/demo.toml first (or pass --store)")
    nodes = json.loads(refs.read_text())["nodes"]

    feats = {s: np.load(output_path(store, nodes, f"features_{s}", "features")) for s in ["id_train", "id_val", *OOD_SETS]}
    labels = np.load(output_path(store, nodes, "features_id_train", "labels"))
    train = unit(feats["id_train"])
    classes = sorted(set(labels.tolist()))
    means = np.stack([train[labels == c].mean(0) for c in classes])
    centred = train - means[np.searchsorted(classes, labels)]
    precision = np.linalg.inv(np.cov(centred.T) + 1e-6 * np.eye(train.shape[1]))
    head = torch.load(output_path(store, nodes, "head_baseline_0", "head"))
    weight, bias = head["weight"].numpy(), head["bias"].numpy()

    # Every score is higher for more ID-like images. The demo's heads see
    # L2-normalised features (normalize_features = true in demo.toml).
    scores = {
        "energy of the baseline head (seed 0)": lambda x: np.logaddexp.reduce(unit(x) @ weight.T + bias, axis=1),
        "cosine to the nearest class mean": lambda x: (unit(x) @ unit(means).T).max(1),
        "mean cosine to 10 nearest ID images": lambda x: np.sort(unit(x) @ train.T, axis=1)[:, -10:].mean(1),
        "Mahalanobis (shared covariance)": lambda x: -np.min(
            [np.einsum("ij,jk,ik->i", unit(x) - m, precision, unit(x) - m) for m in means], axis=0
        ),
    }
    print(f"AUROC in percent (ID val positive) | {' | '.join(OOD_SETS)}")
    for name, score in scores.items():
        id_scores = score(feats["id_val"])
        row = []
        for ood in OOD_SETS:
            ood_scores = score(feats[ood])
            truth = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
            row.append(100 * roc_auc_score(truth, np.r_[id_scores, ood_scores]))
        print(f"{name} | {' | '.join(f'{v:.1f}' for v in row)}")


if __name__ == "__main__":
    main()
