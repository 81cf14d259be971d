"""Reference side of tests/testsuite/images_pillow_parity.rs.

Writes test images of odd sizes and modes into OUT/images and, for each, what
Pillow + torchvision make of them:

* OUT/ref/<name>.<conversion>.<n_px>.npy: uint8 [n_px, n_px, 3], the pixels
  ToTensor receives (Resize(n_px, BICUBIC) -> CenterCrop(n_px) -> RGB);
  conversion "on_load" opens the file with torchvision's ImageFolder loader
  (which converts to RGB first), "in_transform" with Image.open as is.
* OUT/ref/<name>.tensor.<n_px>.npy: float32 [3, n_px, n_px], OpenAI CLIP's
  own transform (clip.clip._transform) on the ImageFolder loader's image.
* OUT/manifest.json: per image its Pillow mode and size.

Usage: python tests/images_pillow_reference.py OUT N_PX [N_PX ...]
"""

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets.folder import default_loader

rng = np.random.default_rng(1234)


def photo(h, w):
    """Smooth colourful content with edges and noise, like a photo."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 17.0 + 0.3) * np.cos(y / 23.0)
    g = 128 + 90 * np.sin((x + y) / 31.0)
    b = 128 + 80 * np.cos(x / 7.0 - y / 11.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 14, (h, w, 3))
    img[h // 3 : h // 2 + 1, w // 4 : w // 2 + 1] = [250, 20, 30]  # a hard-edged block
    img[:, w * 3 // 4 : w * 3 // 4 + 1] = 0  # a one-pixel line
    return np.clip(img, 0, 255).astype(np.uint8)


def write_png(path, width, height, bit_depth, colour_type, rows, palette=None, trns=None):
    """A minimal PNG writer for layouts Pillow cannot save (2/4-bit grey, 16-bit LA/RGBA)."""

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(palette))
    if trns is not None:
        out += chunk(b"tRNS", bytes(trns))
    out += chunk(b"IDAT", zlib.compress(raw, 6))
    out += chunk(b"IEND", b"")
    Path(path).write_bytes(out)


def pack_bits(values, bits):
    per = 8 // bits
    out = []
    for i in range(0, len(values), per):
        byte = 0
        group = list(values[i : i + per]) + [0] * (per - len(values[i : i + per]))
        for v in group:
            byte = (byte << bits) | int(v)
        out.append(byte)
    return out


def make_images(d):
    d.mkdir(parents=True, exist_ok=True)
    # RGB PNGs: tiny, thin, around 224, odd crops, upscales, identity
    for w, h in [(1, 1), (3, 500), (500, 3), (223, 224), (225, 225), (640, 480), (100, 60), (224, 224), (227, 300), (17, 9)]:
        Image.fromarray(photo(h, w)).save(d / f"rgb_{w}x{h}.png")
    base = photo(251, 333)
    Image.fromarray(base).convert("L").save(d / "l_333x251.png")
    la = np.stack([np.asarray(Image.fromarray(base).convert("L")), photo(251, 333)[..., 1]], -1)
    Image.fromarray(la, "LA").save(d / "la_333x251.png")
    Image.fromarray(base).quantize(64).save(d / "p_333x251.png")
    pt = Image.fromarray(photo(190, 257)).quantize(32)
    pt.info["transparency"] = 3
    pt.save(d / "p_trns_257x190.png", transparency=3)
    rgba = np.concatenate([photo(230, 310), photo(230, 310)[..., :1]], -1)
    rgba[:40, :, 3] = 0  # fully transparent band
    rgba[40:80, :, 3] = 255  # opaque band
    Image.fromarray(rgba, "RGBA").save(d / "rgba_310x230.png")
    Image.fromarray(photo(150, 200)).convert("1").save(d / "bilevel_200x150.png")
    # 16-bit grey: a ramp over the whole range plus a dark region that does not saturate
    y, x = np.mgrid[0:220, 0:300]
    g16 = (x * 65535 // 299).astype(np.uint16)
    g16[:, :100] = (x[:, :100] + y[:, :100]) % 256
    Image.fromarray(g16).save(d / "i16_300x220.png")
    # 16-bit RGB / RGBA / LA, 2- and 4-bit grey, 4-bit palette: hand-written PNGs
    p16 = (photo(120, 170).astype(np.uint16) * 257 + rng.integers(0, 257, (120, 170, 3))).astype(">u2")
    write_png(d / "rgb16_170x120.png", 170, 120, 16, 2, [r.tobytes() for r in p16])
    a16 = (photo(120, 170)[..., :1].astype(np.uint16) * 257).astype(">u2")
    write_png(d / "rgba16_170x120.png", 170, 120, 16, 6, [np.concatenate([p16, a16], -1)[i].tobytes() for i in range(120)])
    write_png(d / "la16_170x120.png", 170, 120, 16, 4, [np.concatenate([p16[..., :1], a16], -1)[i].tobytes() for i in range(120)])
    grey = np.asarray(Image.fromarray(photo(90, 131)).convert("L"))
    write_png(d / "l2bit_131x90.png", 131, 90, 2, 0, [pack_bits(r >> 6, 2) for r in grey])
    write_png(d / "l4bit_131x90.png", 131, 90, 4, 0, [pack_bits(r >> 4, 4) for r in grey])
    pal = list(rng.integers(0, 256, 16 * 3))
    write_png(d / "p4bit_131x90.png", 131, 90, 4, 3, [pack_bits(r >> 4, 4) for r in grey], palette=pal)
    rgb_trns = photo(80, 120)
    rgb_trns[10:20, 10:20] = [1, 2, 3]
    write_png(d / "rgb_trns_120x80.png", 120, 80, 8, 2, [r.tobytes() for r in rgb_trns], trns=[0, 1, 0, 2, 0, 3])
    # JPEGs: the subsamplings, progressive, grey, CMYK, odd and tiny sizes
    big = photo(375, 500)
    Image.fromarray(big).save(d / "jpeg420_500x375.jpg", quality=90)
    Image.fromarray(big.transpose(1, 0, 2).copy()).save(d / "jpeg_prog_375x500.jpg", quality=85, progressive=True)
    Image.fromarray(big).save(d / "jpeg444_500x375.jpg", quality=95, subsampling=0)
    Image.fromarray(big).save(d / "jpeg422_500x375.jpg", quality=90, subsampling=1)
    Image.fromarray(big).convert("L").save(d / "jpeg_grey_500x375.jpg", quality=90)
    Image.fromarray(big).convert("L").save(d / "jpeg_grey_prog_500x375.jpg", quality=90, progressive=True)
    Image.fromarray(big).convert("CMYK").save(d / "jpeg_cmyk_500x375.jpg", quality=90)
    Image.fromarray(photo(251, 333)).save(d / "jpeg_333x251.jpg", quality=75)
    Image.fromarray(photo(479, 641)).save(d / "jpeg_641x479.jpg", quality=80)
    Image.fromarray(photo(1, 1)).save(d / "jpeg_1x1.jpg")
    Image.fromarray(photo(9, 17)).save(d / "jpeg_17x9.jpg")
    # Other formats through the image crate, lossless layouts that must match too
    Image.fromarray(photo(70, 90)).save(d / "bmp24_90x70.bmp")
    Image.fromarray(photo(70, 90)).save(d / "tiff_90x70.tif")
    Image.fromarray(photo(70, 90)).save(d / "webp_lossless_90x70.webp", lossless=True)
    Image.fromarray(photo(70, 90)).save(d / "ppm_90x70.ppm")
    Image.fromarray(photo(70, 90)).convert("L").save(d / "pgm_90x70.pgm")
    Image.fromarray(photo(70, 90)).quantize(40).save(d / "bmp8_palette_90x70.bmp")
    Image.fromarray(photo(70, 90)).quantize(40).save(d / "tiff_palette_90x70.tif")
    Image.fromarray(g16[:70, :90].copy()).save(d / "tiff16_grey_90x70.tif")
    Image.fromarray(photo(70, 90)).save(d / "webp_lossy_90x70.webp", quality=80)


def up_to_convert(n_px):
    return T.Compose([T.Resize(n_px, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(n_px)])


def main():
    out = Path(sys.argv[1])
    sizes = [int(s) for s in sys.argv[2:]]
    images, refs = out / "images", out / "ref"
    make_images(images)
    refs.mkdir(parents=True, exist_ok=True)
    import clip.clip

    manifest = {}
    for path in sorted(images.iterdir()):
        with Image.open(path) as im:
            manifest[path.name] = {"mode": im.mode, "width": im.width, "height": im.height}
        for n in sizes:
            tf = up_to_convert(n)
            on_load = np.asarray(tf(default_loader(str(path))).convert("RGB"))
            with Image.open(path) as im:
                in_transform = np.asarray(tf(im).convert("RGB"))
            np.save(refs / f"{path.name}.on_load.{n}.npy", on_load)
            np.save(refs / f"{path.name}.in_transform.{n}.npy", in_transform)
            tensor = clip.clip._transform(n)(default_loader(str(path))).numpy()
            np.save(refs / f"{path.name}.tensor.{n}.npy", tensor.astype(np.float32))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    main()
