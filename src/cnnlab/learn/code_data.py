"""The data-loading part of a generated script: numpy and Pillow only, so it reads the same in
the PyTorch and the Keras script, plus each framework's own download of a named dataset."""

from __future__ import annotations

from cnnlab.learn.code_text import literal

READERS = '''
def read_idx(path):
    """An IDX file (MNIST's format), gzipped or not, as a numpy array."""
    raw = gzip.open(path).read() if str(path).endswith(".gz") else Path(path).read_bytes()
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def resized(images, size, channels):
    """uint8 (N, H, W, C) at SIZE with CHANNELS channels (stretching, as cnnlab does)."""
    if images.shape[1:] == (*size, channels):
        return images
    mode = "L" if channels == 1 else "RGB"
    out = [np.asarray(Image.fromarray(i.squeeze(-1) if i.shape[-1] == 1 else i)
                      .convert(mode).resize((size[1], size[0]), Image.BILINEAR)) for i in images]
    return np.stack(out).reshape(len(out), size[0], size[1], channels)


def read_folder(root, size, channels):
    """MNIST-style IDX files, or images in root/<class>/* (or root/train/<class>/*):
    uint8 images (N, H, W, C), integer labels and the class names."""
    root = Path(root)
    idx = sorted(root.glob("train-images-idx3-ubyte*"))
    if idx:
        x = read_idx(idx[0])[..., None]
        y = read_idx(sorted(root.glob("train-labels-idx1-ubyte*"))[0]).astype(np.int64)
        return resized(x, size, channels), y, [str(k) for k in range(10)]
    if (root / "train").is_dir():
        root = root / "train"
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    images, labels = [], []
    for k, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"):
                img = np.asarray(Image.open(f).convert("L" if channels == 1 else "RGB"))
                images.append(resized(img.reshape(1, *img.shape[:2], channels), size, channels)[0])
                labels.append(k)
    if not images:
        raise SystemExit(f"no images in {root}/<class>/ (or IDX files in {root})")
    return np.stack(images), np.array(labels, dtype=np.int64), classes
'''

TORCH_NAMED = '''
def load_named(name, size, channels):
    """mnist, fashion-mnist or cifar10, downloaded once by torchvision into ./data."""
    import torchvision

    kind = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST,
            "cifar10": torchvision.datasets.CIFAR10}[name]
    ds = kind("data", train=True, download=True)
    x = np.asarray(ds.data)
    x = x[..., None] if x.ndim == 3 else x
    return resized(x, size, channels), np.asarray(ds.targets, dtype=np.int64), list(ds.classes)
'''

KERAS_NAMED = '''
def load_named(name, size, channels):
    """mnist, fashion-mnist or cifar10 from keras.datasets (downloaded once into ~/.keras)."""
    kind = {"mnist": keras.datasets.mnist, "fashion-mnist": keras.datasets.fashion_mnist,
            "cifar10": keras.datasets.cifar10}[name]
    (x, y), _ = kind.load_data()
    x = x[..., None] if x.ndim == 3 else x
    classes = [str(k) for k in range(10)]
    return resized(x, size, channels), y.reshape(-1).astype(np.int64), classes
'''

LOAD = '''
def load_data(source):
    """A dataset name (downloaded) or a local folder."""
    if Path(source).is_dir():
        return read_folder(source, IMAGE_SIZE, CHANNELS)
    if source in ("mnist", "fashion-mnist", "cifar10"):
        return load_named(source, IMAGE_SIZE, CHANNELS)
    raise SystemExit(f"--data {source}: not a folder, nor mnist, fashion-mnist or cifar10")


def normalise(x, train_x):
    """uint8 (N, H, W, C) to floats, as the recipe's data.normalize says."""
    x = x.astype(np.float32) / 255.0
    mean, std = MEAN, STD
    if mean is None:  # normalize: dataset -- the training images' own statistics
        t = train_x.astype(np.float32) / 255.0
        mean, std = t.mean(axis=(0, 1, 2)), t.std(axis=(0, 1, 2)) + 1e-8
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
'''


def normalisation(normalize: str, channels: int, mean, std) -> tuple[str, str, str]:
    """(MEAN, STD source text, a comment) for the recipe's data.normalize."""
    from cnnlab.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

    if normalize == "unit":
        return str([0.0] * channels), str([1.0] * channels), "x / 255 (Keras's rescale=1./255)"
    if normalize == "symmetric":
        return str([0.5] * channels), str([0.5] * channels), "(x / 255 - 0.5) / 0.5: [-1, 1]"
    if normalize == "imagenet":
        if channels == 1:
            m, s = [round(sum(IMAGENET_MEAN) / 3, 4)], [round(sum(IMAGENET_STD) / 3, 4)]
        else:
            m, s = IMAGENET_MEAN, IMAGENET_STD
        return str(m), str(s), "ImageNet's mean and std"
    if normalize == "custom" and mean and std:
        means, stds = literal([float(m) for m in mean]), literal([float(s) for s in std])
        return means, stds, "the recipe's own mean and std"
    return "None", "None", "the training images' own mean and std"
