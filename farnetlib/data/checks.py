"""Checks across the splits of a dataset, made before training: test leakage and partial copies."""
from __future__ import annotations

from collections import defaultdict

from .base import LandmarkSource
from .io import DatasetError, sha256_file

__all__ = ["check_no_leakage", "image_counts"]


def check_no_leakage(sources: dict[str, LandmarkSource]) -> list[str]:
    """Refuse an image whose content (sha256 of the file) appears in two splits, e.g. a Test1 image
    copied into the training folder; in-memory sources (synthetic) have no files and are skipped.

    A reader may declare duplicates that its official release itself holds (``known_duplicates``:
    ``(split, id, split, id)`` tuples; ISBI 2015 has two training images repeated in Test1): those
    are kept, since every published result on the official split includes them, and returned as
    text for the caller to say and record; any other is an error."""
    where: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    known: set[frozenset] = set()
    for split, source in sources.items():
        for a_split, a_id, b_split, b_id in getattr(source, "known_duplicates", ()):
            known.add(frozenset({(a_split, a_id), (b_split, b_id)}))
        for image_id, path in zip(source.ids, source.image_paths):
            if path.is_file():
                where[sha256_file(path)].append((split, str(image_id), str(path)))
    leaks = [places for places in where.values() if len({split for split, _, _ in places}) > 1]
    unknown = [p for p in leaks if frozenset((s, i) for s, i, _ in p) not in known]
    if unknown:
        first = " = ".join(f"{path} ({split})" for split, _, path in unknown[0])
        raise DatasetError(f"{len(unknown)} image(s) appear in two splits (test leakage), first: {first}; "
                           "remove the copies so that no test image is trained on")
    return [" = ".join(f"{split} {image_id}" for split, image_id, _ in p) for p in leaks]


def image_counts(sources: dict[str, LandmarkSource]) -> dict[str, dict[str, int]]:
    """Per split: images found and images the dataset should have (``expected_count``)."""
    return {split: {"found": len(s), "expected": s.expected_count} for split, s in sources.items()}
