"""`python -m trainforge.tools.check_data <folder>` (`make check-data DATA=<folder>`): is this image folder trainable?

Expects `<folder>/train/<class>/<image>` and optionally `val/` and `test/` laid out the same way. Reports
class counts per split, the imbalance ratio, image sizes and every bad file; exits 1 when the data cannot
be trained on, 0 otherwise (warnings included).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass
class Report:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images
    sizes: list[tuple[int, int]] = field(default_factory=list)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_image(path: Path) -> tuple[int, int]:
    """(width, height) of a readable image; raises for a corrupt, truncated or non-image file."""
    with Image.open(path) as image:
        image.verify()  # structure and checksums; the image cannot be used after this
    with Image.open(path) as image:
        image.load()  # decodes every pixel: catches truncated data that verify() lets through
        return image.size


def check_folder(root: Path) -> Report:
    report = Report()
    if not root.is_dir():
        report.errors.append(f"{root}: folder not found")
        return report
    if not (root / "train").is_dir():
        found = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "none"
        report.errors.append(
            f"{root}: no train/ folder (expected train/<class>/<image>; sub-folders found: {found})"
        )
        return report
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        classes = sorted(p for p in folder.iterdir() if p.is_dir())
        report.counts[split] = {}
        for class_dir in classes:
            good = 0
            for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
                try:
                    report.sizes.append(check_image(path))
                    good += 1
                except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
                    kind = (
                        "not an image"
                        if isinstance(error, UnidentifiedImageError)
                        else "corrupt or truncated"
                    )
                    report.bad.append((path, f"{kind}: {error}"))
            report.counts[split][class_dir.name] = good
            if good == 0:
                report.errors.append(
                    f"{class_dir}: empty class folder (no readable image); add images or remove it"
                )
    train = report.counts.get("train", {})
    if len(train) < 2:
        report.errors.append(
            f"{root / 'train'}: {len(train)} class folder(s); a classifier needs at least 2 (one sub-folder per class)"
        )
    for split, counts in report.counts.items():
        if split == "train":
            continue
        missing = sorted(set(train) - set(counts))
        extra = sorted(set(counts) - set(train))
        if missing:
            report.errors.append(f"{root / split}: class(es) missing from this split: {', '.join(missing)}")
        if extra:
            report.errors.append(f"{root / split}: class(es) not in train/: {', '.join(extra)}")
    if report.bad:
        report.errors.append(
            f"{len(report.bad)} bad file(s) (listed above): delete or replace them, or train with "
            "`--data.skip_bad_images=true` to skip them"
        )
    nonzero = [n for n in train.values() if n > 0]
    if len(nonzero) >= 2 and max(nonzero) / min(nonzero) > 10:
        report.warnings.append(
            f"train/ is very imbalanced ({max(nonzero) / min(nonzero):.1f}x between the largest and smallest class)"
        )
    return report


def print_report(root: Path, report: Report) -> None:
    splits = list(report.counts)
    if splits:
        classes = sorted({c for counts in report.counts.values() for c in counts})
        width = max([5, *map(len, classes)])
        print(f"class counts in {root}:")
        print("  " + "class".ljust(width) + "".join(s.rjust(8) for s in splits))
        for name in classes:
            row = "".join(str(report.counts[s].get(name, "-")).rjust(8) for s in splits)
            print("  " + name.ljust(width) + row)
        print(
            "  "
            + "total".ljust(width)
            + "".join(str(sum(report.counts[s].values())).rjust(8) for s in splits)
        )
        train = [n for n in report.counts.get("train", {}).values() if n > 0]
        if train:
            print(f"imbalance ratio (largest / smallest train class): {max(train) / min(train):.2f}")
    if report.sizes:
        widths, heights = [w for w, _ in report.sizes], [h for _, h in report.sizes]
        print(
            f"image sizes (width x height): min {min(widths)}x{min(heights)}, "
            f"median {statistics.median(widths):g}x{statistics.median(heights):g}, max {max(widths)}x{max(heights)}"
        )
    for path, why in report.bad:
        print(f"bad file: {path}: {why}", file=sys.stderr)
    for message in report.warnings:
        print(f"warning: {message}", file=sys.stderr)
    for message in report.errors:
        print(f"error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make check-data", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("folder", type=Path, help="the image folder (with train/, optional val/ and test/)")
    args = parser.parse_args(argv)
    report = check_folder(args.folder)
    print_report(args.folder, report)
    if report.errors:
        print(
            f"check-data: {args.folder} cannot be trained on as it is ({len(report.errors)} problem(s)).",
            file=sys.stderr,
        )
        return 1
    print(f"check-data: {args.folder} looks trainable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
