"""Rebuild the fine-tuning recipe study's small image-folder data sets from fetched GitHub snapshots.

Usage:
    python scripts/recipe_data.py --mirror-root /work/.mirror --out /work/data/recipe [--only NAME ...]

Each set is read from a bare git directory at a pinned commit (`git show <commit>:<path>`), so no work
tree is needed. The git directory is looked up as `<mirror-root>/<owner>+<name>/repo[/.git]` (the layout of
the `fetch` tool), or `<mirror-root>/<owner>+<name>` if that is itself a git directory. A missing one
is a clear error naming the `fetch` source (github:<owner>/<name>) and the commit.

Sets (see docs/recipe-data.md for classes, counts and licences):
    bccd_cells        blood-smear microscopy crops (RBC / WBC / Platelets), train + test, imbalanced
    omniglot_scripts  handwritten characters, which of 5 alphabets, train + val only (no test/)
    rsscn7_aerial     aerial scenes, 7 classes, train + test
    pneumonia_xray    chest X-rays at 28x28 (PneumoniaMNIST), normal / pneumonia, train + test
    hymenoptera_photos  natural photos, ants / bees (about 120 per class), train + test
    dtd_textures      textures in the wild (DTD), 10 classes, 40 train per class, train + test
    brodatz_textures  grey album textures (Brodatz), 7 classes, 24 train tiles per class, train + test
    sign_digits       hand photos of sign-language digits, 10 classes, 30 train per class, train + test
    clothing_photos   clothing photos, 10 classes, 40 train per class, the source's test split kept

Every subsample comes from `np.random.RandomState(SEED)` (NumPy's frozen legacy generator), so the
same command writes the same files; `<out>/<name>/` is deleted and written again on each run.
Needs only the standard library, NumPy, Pillow and the `git` command.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 0
MAX_SIDE = 256  # shorter side of a stored image, at most


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    commit: str


class Snapshot:
    """Files of one repository at one commit, read from a bare git directory."""

    def __init__(self, mirror_root: Path, source: Source) -> None:
        self.source = source
        base = mirror_root / source.repo.replace("/", "+")
        candidates = [base / "repo", base / "repo" / ".git", base]
        self.git_dir = next(
            (d for d in candidates if (d / "HEAD").is_file() and (d / "objects").is_dir()), None
        )
        hint = f"fetch the source github:{source.repo} (commit {source.commit})"
        if self.git_dir is None:
            sys.exit(f"error: no git directory for {source.repo} under {base}; {hint}")
        if self._git("cat-file", "-e", f"{source.commit}^{{commit}}", check=False).returncode != 0:
            sys.exit(f"error: {self.git_dir} lacks commit {source.commit}; {hint} again")

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["git", "--git-dir", str(self.git_dir), *args], capture_output=True, check=check
        )

    def read(self, path: str) -> bytes:
        data = self._git("show", f"{self.source.commit}:{path}").stdout
        if data.startswith(b"version https://git-lfs"):
            sys.exit(f"error: {self.source.repo}:{path} is a Git LFS pointer, not the file")
        return data

    def list(self, folder: str) -> list[str]:
        out = self._git("ls-tree", "-r", "--name-only", self.source.commit, "--", folder).stdout
        return sorted(out.decode().splitlines())


def pick(rng: np.random.RandomState, n: int, k: int | None) -> list[int]:
    """`k` of `range(n)` drawn without replacement (all of them when `k` is None or >= n), in order."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(int(i) for i in rng.permutation(n)[:k])


def shrink(img: Image.Image) -> Image.Image:
    """Downscale so the shorter side is at most MAX_SIDE; smaller images are left as they are."""
    short = min(img.size)
    if short <= MAX_SIDE:
        return img
    size = (round(img.width * MAX_SIDE / short), round(img.height * MAX_SIDE / short))
    return img.resize(size, Image.Resampling.LANCZOS)


def save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shrink(img).save(path, format="PNG")


def save_rgb(snap: Snapshot, path: str, folder: Path) -> None:
    """One source image as `<folder>/<its stem>.png`, RGB."""
    save(Image.open(io.BytesIO(snap.read(path))).convert("RGB"), folder / f"{Path(path).stem}.png")


def by_class(files: list[str]) -> dict[str, list[str]]:
    """Files grouped by their parent folder's name (the class), classes sorted, file order kept."""
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(Path(f).parent.name, []).append(f)
    return dict(sorted(groups.items()))


# --- bccd_cells -------------------------------------------------------------------------------------
BCCD = Source("Shenggan/BCCD_Dataset", "d272fb14cdff6e473fafeeeba32aba5f560e9e43")
# The VOC split of the source (ImageSets/Main/trainval.txt and test.txt); None keeps every crop.
BCCD_QUOTA = {
    "train": ("trainval", {"RBC": 280, "WBC": 180, "Platelets": 140}),
    "test": ("test", {"RBC": 160, "WBC": None, "Platelets": None}),
}


def build_bccd(snap: Snapshot, out: Path) -> None:
    rng = np.random.RandomState(SEED)
    for split, (source_split, quota) in BCCD_QUOTA.items():
        ids = snap.read(f"BCCD/ImageSets/Main/{source_split}.txt").decode().split()
        crops: dict[str, list[tuple[str, int, tuple[int, int, int, int]]]] = {name: [] for name in quota}
        for image_id in ids:
            root = ET.fromstring(snap.read(f"BCCD/Annotations/{image_id}.xml"))
            for k, obj in enumerate(root.iter("object")):
                box = obj.find("bndbox")
                x0, y0, x1, y1 = (int(float(box.findtext(t))) for t in ("xmin", "ymin", "xmax", "ymax"))
                if x1 > x0 and y1 > y0:  # two source boxes are empty
                    crops[obj.findtext("name").strip()].append((image_id, k, (x0, y0, x1, y1)))
        chosen = sorted(
            (crops[name][i], name) for name in sorted(quota) for i in pick(rng, len(crops[name]), quota[name])
        )
        img, loaded = None, ""
        for (image_id, k, (x0, y0, x1, y1)), name in chosen:  # in image order: each JPEG decoded once
            if image_id != loaded:
                jpeg = snap.read(f"BCCD/JPEGImages/{image_id}.jpg")
                img, loaded = Image.open(io.BytesIO(jpeg)).convert("RGB"), image_id
            # A square around the box centre, side = the box's longer side, moved inside the image.
            side = min(max(x1 - x0, y1 - y0), img.width, img.height)
            left = min(max((x0 + x1) // 2 - side // 2, 0), img.width - side)
            top = min(max((y0 + y1) // 2 - side // 2, 0), img.height - side)
            crop = img.crop((left, top, left + side, top + side))
            save(crop, out / split / name / f"{image_id}_{k:02d}.png")


# --- omniglot_scripts -------------------------------------------------------------------------------
OMNIGLOT = Source("brendenlake/omniglot", "057f034baf2ecb8530bc5710e5a23584d2a519cc")
OMNIGLOT_ZIP = "python/images_background_small1.zip"
# Each character was drawn by 20 people; the file name's last number (01-20) says which drawing it is.
OMNIGLOT_DRAWINGS = {"train": range(1, 5), "val": range(19, 21)}


def build_omniglot(snap: Snapshot, out: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(snap.read(OMNIGLOT_ZIP))) as archive:
        for member in sorted(archive.namelist()):
            if not member.endswith(".png"):
                continue
            _, alphabet, character, filename = member.split("/")
            drawing = int(filename.removesuffix(".png").split("_")[1])
            for split, drawings in OMNIGLOT_DRAWINGS.items():
                if drawing in drawings:
                    img = Image.open(io.BytesIO(archive.read(member))).convert("L")  # 1-bit -> 8-bit grey
                    save(img, out / split / alphabet / f"{character}_{filename}")


# --- rsscn7_aerial ----------------------------------------------------------------------------------
RSSCN7 = Source("palewithout/RSSCN7", "6d77849df87d242b323184ab096e44dd63730c7e")
RSSCN7_CLASSES = {
    "aGrass": "grass",
    "bField": "field",
    "cIndustry": "industry",
    "dRiverLake": "river_lake",
    "eForest": "forest",
    "fResident": "resident",
    "gParking": "parking",
}
RSSCN7_PER_CLASS = {"train": 70, "test": 40}  # of 400 per class; the source has no split


def build_rsscn7(snap: Snapshot, out: Path) -> None:
    rng = np.random.RandomState(SEED)
    for folder, name in RSSCN7_CLASSES.items():
        save_shuffled_splits(snap, rng, snap.list(folder), RSSCN7_PER_CLASS, out, name)


def save_shuffled_splits(
    snap: Snapshot,
    rng: np.random.RandomState,
    files: list[str],
    per_split: dict[str, int],
    out: Path,
    name: str,
) -> None:
    """One class's files in a seeded order, cut into consecutive splits of the given sizes, saved as RGB PNG."""
    order = [files[int(i)] for i in rng.permutation(len(files))]
    start = 0
    for split, count in per_split.items():
        for path in sorted(order[start : start + count]):
            save_rgb(snap, path, out / split / name)
        start += count


# --- pneumonia_xray ---------------------------------------------------------------------------------
PNEUMONIA = Source("aksufatih/snn-medmnist", "5df79ab2ac7bf898a8c7bf39830053619defa2f7")
PNEUMONIA_CLASSES = {0: "normal", 1: "pneumonia"}  # MedMNIST's PneumoniaMNIST labels
PNEUMONIA_PER_CLASS = {"train": 300, "test": 150}  # drawn from the npz's own train and test arrays


def build_pneumonia(snap: Snapshot, out: Path) -> None:
    rng = np.random.RandomState(SEED)
    with np.load(io.BytesIO(snap.read("pneumoniamnist.npz"))) as arrays:
        for split, count in PNEUMONIA_PER_CLASS.items():
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"].ravel()
            for label, name in PNEUMONIA_CLASSES.items():
                where = np.flatnonzero(labels == label)
                for i in pick(rng, len(where), count):
                    index = int(where[i])
                    save(Image.fromarray(images[index]), out / split / name / f"{split}_{index:05d}.png")


# --- hymenoptera_photos -----------------------------------------------------------------------------
HYMENOPTERA = Source("zhangtao7750/syn", "f0503091488f67b6809a6da2eaa43c25f2f277fc")
HYMENOPTERA_SPLITS = {"train": "train", "test": "val"}  # the source's own split, every image kept


def build_hymenoptera(snap: Snapshot, out: Path) -> None:
    for split, source_split in HYMENOPTERA_SPLITS.items():
        for path in snap.list(f"hymenoptera_data/{source_split}"):
            save_rgb(snap, path, out / split / Path(path).parent.name)


# --- dtd_textures -----------------------------------------------------------------------------------
DTD = Source("pan8915/DeepTexture", "522f46f683af11e93673bff29f81df14f49edfb2")
DTD_PER_CLASS = {"train": 40, "test": 30}  # of 120 per class (DTD's first 10 classes); no split kept


def build_dtd(snap: Snapshot, out: Path) -> None:
    rng = np.random.RandomState(SEED)
    for name, mine in by_class(snap.list("images")).items():
        save_shuffled_splits(snap, rng, mine, DTD_PER_CLASS, out, name)


# --- brodatz_textures -------------------------------------------------------------------------------
BRODATZ = Source("daniloeler/PEx-Image", "76396c535982403c51247dbf3bdd1457bb1162bb")
BRODATZ_ZIP = "datasets/brodatz/BrodatzBoas.zip"
# Ten 200x200 crops per album plate (D<plate>_<01-10>.bmp), each cut into four 100x100 tiles; the tiles of
# one crop stay in one split.
BRODATZ_CROPS = {"train": range(1, 7), "test": range(7, 11)}


def build_brodatz(snap: Snapshot, out: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(snap.read(BRODATZ_ZIP))) as archive:
        for member in sorted(archive.namelist()):
            plate, crop = Path(member).stem.split("_")
            split = next(s for s, crops in BRODATZ_CROPS.items() if int(crop) in crops)
            img = Image.open(io.BytesIO(archive.read(member))).convert("L")
            half = img.width // 2
            for k, (x, y) in enumerate(((0, 0), (half, 0), (0, half), (half, half))):
                save(img.crop((x, y, x + half, y + half)), out / split / plate / f"{plate}_{crop}_{k}.png")


# --- sign_digits (added after the study, to confirm its rule; docs/recipe-study.md) -----------------
SIGN = Source("ardamavi/Sign-Language-Digits-Dataset", "4b09433ef9d5c60602e8805bb54b8aa2428527f8")
SIGN_PER_CLASS = {"train": 30, "test": 50}  # of about 206 hand photos per digit; the source has no split


def build_sign(snap: Snapshot, out: Path) -> None:
    rng = np.random.RandomState(SEED)
    for digit, mine in by_class(snap.list("Dataset")).items():
        save_shuffled_splits(snap, rng, mine, SIGN_PER_CLASS, out, f"digit_{digit}")


# --- clothing_photos (added after the study, to confirm its rule) -----------------------------------
CLOTHING = Source("alexeygrigorev/clothing-dataset-small", "11961516512414bf9f6c150a832cfd21b54a6b54")
CLOTHING_TRAIN_PER_CLASS = 40  # of 112-795 per class in the source's train/; its test/ (372) kept whole


def build_clothing(snap: Snapshot, out: Path) -> None:
    rng = np.random.RandomState(SEED)
    for split, quota in (("train", CLOTHING_TRAIN_PER_CLASS), ("test", None)):
        for name, mine in by_class(snap.list(split)).items():
            for i in pick(rng, len(mine), quota):
                save_rgb(snap, mine[i], out / split / name)


BUILDERS: dict[str, tuple[Source, Callable[[Snapshot, Path], None]]] = {
    "bccd_cells": (BCCD, build_bccd),
    "omniglot_scripts": (OMNIGLOT, build_omniglot),
    "rsscn7_aerial": (RSSCN7, build_rsscn7),
    "pneumonia_xray": (PNEUMONIA, build_pneumonia),
    "hymenoptera_photos": (HYMENOPTERA, build_hymenoptera),
    "dtd_textures": (DTD, build_dtd),
    "brodatz_textures": (BRODATZ, build_brodatz),
    "sign_digits": (SIGN, build_sign),
    "clothing_photos": (CLOTHING, build_clothing),
}


def summary(folder: Path) -> str:
    parts = []
    for split in sorted(p for p in folder.iterdir() if p.is_dir()):
        counts = {c.name: sum(1 for _ in c.iterdir()) for c in sorted(split.iterdir())}
        parts.append(f"{split.name} {sum(counts.values())} {counts}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mirror-root", type=Path, default=Path("/work/.mirror"), help="where fetched git dirs are"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("/work/data/recipe"), help="where the sets are written"
    )
    parser.add_argument("--only", nargs="+", choices=sorted(BUILDERS), help="build just these sets")
    args = parser.parse_args(argv)
    names = args.only or list(BUILDERS)
    snapshots = {name: Snapshot(args.mirror_root, BUILDERS[name][0]) for name in names}  # fail before writing
    for name in names:
        target = args.out / name
        if target.exists():
            shutil.rmtree(target)
        BUILDERS[name][1](snapshots[name], target)
        print(f"{name}: {summary(target)}")


if __name__ == "__main__":
    main()
