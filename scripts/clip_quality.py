"""How good a CLIP checkpoint is, measured with OpenAI's own code
(clip-anytorch, in the project venv): zero-shot accuracy on an ImageFolder
("a photo of a {class}") and in-batch retrieval accuracy on image-caption
pairs (a COCO-style corpus): for each batch of 128 pairs, the fraction of
images whose own caption scores highest among the batch's captions.

    .venv/bin/python scripts/clip_quality.py MODEL.pt IMAGEFOLDER CORPUS [--batch 128] [--pairs 2560]

MODEL.pt is a state dict (as `train_clip` writes it) or a released
TorchScript model. Images are resized and centre-cropped to the model's
resolution and normalised as CLIP does. Prints one JSON object.
"""
import argparse
import json
import os
import warnings

import torch

warnings.filterwarnings("ignore")  # clip imports pkg_resources
import clip  # noqa: E402
from clip.model import build_model  # noqa: E402
from PIL import Image  # noqa: E402


def load(path):
    try:
        state = torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        state = torch.load(path, map_location="cpu")
    return build_model(state).float().eval()


def features(model, preprocess, paths, texts):
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(p)) for p in paths])
        image = model.encode_image(images)
        text = model.encode_text(clip.tokenize(texts, context_length=model.context_length, truncate=True))
    return image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("image_folder")
    parser.add_argument("corpus")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=2560)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load(args.model)
    preprocess = clip.clip._transform(model.visual.input_resolution)

    classes = sorted(d for d in os.listdir(args.image_folder) if os.path.isdir(os.path.join(args.image_folder, d)))
    samples = [(os.path.join(args.image_folder, c, f), i)
               for i, c in enumerate(classes) for f in sorted(os.listdir(os.path.join(args.image_folder, c)))]
    image, text = features(model, preprocess, [p for p, _ in samples], [f"a photo of a {c}" for c in classes])
    predicted = (image @ text.t()).argmax(dim=1)
    zero_shot = (predicted == torch.tensor([label for _, label in samples])).float().mean().item()

    corpus = json.load(open(os.path.join(args.corpus, "captions.json")))
    files = {im["id"]: im["file_name"] for im in corpus["images"]}
    pairs = corpus["annotations"][: args.pairs - args.pairs % args.batch]
    correct = 0
    for start in range(0, len(pairs), args.batch):
        batch = pairs[start:start + args.batch]
        paths = [os.path.join(args.corpus, "images", files[a["image_id"]]) for a in batch]
        image, text = features(model, preprocess, paths, [a["caption"] for a in batch])
        correct += ((image @ text.t()).argmax(dim=1) == torch.arange(len(batch))).sum().item()
    print(json.dumps({"zero_shot_accuracy": zero_shot, "classes": len(classes), "images": len(samples),
                      "retrieval_accuracy": correct / len(pairs), "batch": args.batch, "pairs": len(pairs)}))


if __name__ == "__main__":
    main()
