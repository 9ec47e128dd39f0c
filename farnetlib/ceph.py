"""Cephalometric analysis: clinical measurements and classes from landmarks, and their scoring.

An orthodontist reads SNA, SNB, ANB and the facial type they put a patient in, not a radial error.
The ISBI 2015 challenge defined this second task (Wang et al., "A benchmark for comparison of dental
radiography analysis algorithms", Med. Image Anal. 31:63-76, 2016): eight measurements computed from
the 19 landmarks, each classified into anatomical types, scored by the success classification rate
(SCR). :data:`ISBI2015_ANALYSIS` is that analysis **as the challenge's evaluation code (its
``angle.py``) computes it**, which differs from textbook definitions in places:

- landmarks numbered 1-19 as in the dataset (1 sella S, 2 nasion N, 3 orbitale Or, 4 porion Po,
  5 subspinale A, 6 supramentale B, 7 pogonion Pog, 8 menton Me, 9 gnathion Gn, 10 gonion Go,
  11 lower incisal incision, 12 upper incisal incision, 17 PNS, 18 ANS), image coordinates (y down);
- SNA = angle at N between N->S and N->A; SNB likewise with B; ANB = SNA - SNB (signed);
- ODI = angle(Me->Go, B->A) + angle(Po->Or, PNS->ANS), the second negated where the 2-D cross
  product of its two vectors is negative;
- APDI = angle(Or->Po, N->Pog) + angle(N->Pog, A->B) (negated where the cross product is positive)
  + angle(Po->Or, PNS->ANS) (negated where it is negative);
- FHI = length(S-Go) / length(N-Me) (posterior over anterior face height);
- **FMA is the angle between S->N and Go->Gn** (the textbook FMA is Frankfort horizontal to the
  mandibular plane Go-Me: another analysis, not this one);
- **MW is the distance between the two incisal tips** in mm (0.1 mm/px), negative when the upper
  tip (12) lies left of (behind) the lower tip (11): not a Wits appraisal;
- coordinates are truncated to integers before anything is computed (``int()`` in that code), the
  default here (``coordinates="integer"``); ``"float"`` keeps sub-pixel coordinates.

An analysis is data: a list of :class:`Measurement` (points, kind, thresholds, class names), so a
clinic can add its own (Steiner, Downs, Ricketts) as a JSON file (:func:`load_analysis`) without
touching code. Classes: ``below`` for values under ``low``, ``within`` for ``low <= v <= high``
(the boundaries belong to the normal class, as in the challenge's strict ``<`` / ``>``), ``above``
over ``high``; ``equal`` maps exact values to a class first (MW: exactly 0 is "edge to edge").
A measurement that cannot be computed (coincident points) is NaN with class 0 (never correct).

**SCR** per measurement: the mean over classes of the per-class recall, i.e. the mean of the
diagonal of the row-normalised confusion matrix (rows: ground-truth class). A class that no
ground-truth image has is left out of that mean (its recall is undefined); the per-class counts
are reported beside it. (The widely used Python port in hjkwonispl/mpa instead counts an absent
class as 0 and always divides by 3, also for MW's 4 classes.) Plain accuracy is reported too.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["Term", "Measurement", "Analysis", "ISBI2015_ANALYSIS", "ANALYSES", "get_analysis", "load_analysis",
           "measure", "classify", "scr", "confusion", "score", "ClinicalScore", "clinical_metrics",
           "measurements_from_predictions", "landmark_array", "bootstrap_scr", "rater_landmarks", "source_clinical_metrics",
           "CLASS_GROUND_TRUTHS", "landmark_sensitivity", "class_flips"]

KINDS = ("angles", "ratio", "distance")
SIGNS = ("none", "negate_if_cross_negative", "negate_if_cross_positive")


@dataclass(frozen=True)
class Term:
    """One angle (degrees, 0-180) between the vectors ``a[0]->a[1]`` and ``b[0]->b[1]`` (1-based
    landmark numbers), times ``weight``; ``sign`` negates it by the 2-D cross product ``a x b``."""

    a: tuple[int, int]
    b: tuple[int, int]
    weight: float = 1.0
    sign: str = "none"


@dataclass(frozen=True)
class Measurement:
    """One clinical measurement and its classes.

    ``kind``: ``"angles"`` (the sum of ``terms``, degrees), ``"ratio"`` (``|p1 p2| / |p3 p4|`` of
    ``points``), ``"distance"`` (``|p1 p2|`` in mm; ``signed_by_x``: negative where ``p2`` lies left
    of ``p1``). ``low``/``high`` bound the normal range (inclusive) and ``below``/``within``/``above``
    name the class of each side; ``equal`` maps exact values to classes first; ``class_names``
    describes each class (``{1: "normal", ...}``)."""

    name: str
    kind: str
    unit: str
    low: float
    high: float
    below: int
    above: int
    within: int = 1
    terms: tuple[Term, ...] = ()
    points: tuple[int, ...] = ()
    signed_by_x: bool = False
    equal: tuple[tuple[float, int], ...] = ()
    class_names: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"measurement {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"measurement {self.name!r}: need finite low <= high, got {self.low}, {self.high}")
        if self.kind == "angles" and not self.terms:
            raise ValueError(f"measurement {self.name!r}: an 'angles' measurement needs terms")
        if self.kind != "angles" and len(self.points) != (4 if self.kind == "ratio" else 2):
            raise ValueError(f"measurement {self.name!r}: a {self.kind!r} measurement needs "
                             f"{4 if self.kind == 'ratio' else 2} points, got {list(self.points)}")
        for t in self.terms:
            if t.sign not in SIGNS:
                raise ValueError(f"measurement {self.name!r}: term sign must be one of {SIGNS}, got {t.sign!r}")

    @property
    def classes(self) -> list[int]:
        """Every class this measurement can give, sorted."""
        return sorted({self.below, self.within, self.above, *(c for _, c in self.equal)})

    @property
    def landmarks(self) -> list[int]:
        """The 1-based landmark numbers it reads."""
        pts = list(self.points) + [p for t in self.terms for p in (*t.a, *t.b)]
        return sorted(set(pts))


@dataclass(frozen=True)
class _PlaneCheck:
    name: str
    landmarks: tuple[int, int]


@dataclass(frozen=True)
class Analysis:
    """A named list of measurements over landmarks numbered 1..``num_landmarks``; ``planes`` are the
    lines an overlay draws (name, landmark, landmark)."""

    name: str
    num_landmarks: int
    measurements: tuple[Measurement, ...]
    reference: str = ""
    planes: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        for m in self.measurements + tuple(_PlaneCheck(name, (a, b)) for name, a, b in self.planes):
            bad = [p for p in m.landmarks if not 1 <= p <= self.num_landmarks]
            if bad:
                raise ValueError(f"analysis {self.name!r}, measurement {m.name!r}: landmarks {bad} outside "
                                 f"1..{self.num_landmarks} (landmarks are numbered from 1)")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.measurements]

    def __getitem__(self, name: str) -> Measurement:
        for m in self.measurements:
            if m.name == name:
                return m
        raise KeyError(f"analysis {self.name!r} has no measurement {name!r}; it has {self.names}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "analysis") -> "Analysis":
        """An analysis from plain values (as :meth:`to_dict` writes them, or a JSON file)."""
        try:
            ms = []
            for m in values["measurements"]:
                m = dict(m)
                m["terms"] = tuple(Term(tuple(t["a"]), tuple(t["b"]), float(t.get("weight", 1.0)), t.get("sign", "none"))
                                   for t in m.get("terms", ()))
                m["points"] = tuple(int(p) for p in m.get("points", ()))
                m["equal"] = tuple((float(v), int(c)) for v, c in m.get("equal", ()))
                m["class_names"] = {int(k): str(v) for k, v in m.get("class_names", {}).items()}
                for key in ("low", "high"):
                    m[key] = float(m[key])
                ms.append(Measurement(**m))
            planes = tuple((str(n), int(a), int(b)) for n, a, b in values.get("planes", ()))
            return cls(str(values["name"]), int(values["num_landmarks"]), tuple(ms), str(values.get("reference", "")),
                       planes)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: not a valid analysis ({type(err).__name__}: {err})") from None


def _angle(a0, a1, b0, b1, weight=1.0, sign="none") -> Term:
    return Term((a0, a1), (b0, b1), weight, sign)


S, N, OR, PO, A, B, POG, ME, GN, GO, LIT, UIT, PNS, ANS = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 17, 18

ISBI2015_ANALYSIS = Analysis("isbi2015", 19, (
    Measurement("ANB", "angles", "deg", 3.2, 5.7, below=3, above=2,
                terms=(_angle(N, S, N, A), _angle(N, S, N, B, weight=-1.0)),
                class_names={1: "skeletal class I", 2: "skeletal class II", 3: "skeletal class III"},
                description="SNA - SNB"),
    Measurement("SNB", "angles", "deg", 74.6, 78.7, below=2, above=3, terms=(_angle(N, S, N, B),),
                class_names={1: "normal mandible", 2: "retrognathic mandible", 3: "prognathic mandible"},
                description="angle at N between N->S and N->B"),
    Measurement("SNA", "angles", "deg", 79.4, 83.2, below=3, above=2, terms=(_angle(N, S, N, A),),
                class_names={1: "normal maxilla", 2: "prognathic maxilla", 3: "retrognathic maxilla"},
                description="angle at N between N->S and N->A"),
    Measurement("ODI", "angles", "deg", 68.4, 80.5, below=3, above=2,
                terms=(_angle(ME, GO, B, A), _angle(PO, OR, PNS, ANS, sign="negate_if_cross_negative")),
                class_names={1: "normal", 2: "deep bite tendency", 3: "open bite tendency"},
                description="overbite depth indicator: angle(Me->Go, B->A) + signed angle(Po->Or, PNS->ANS)"),
    Measurement("APDI", "angles", "deg", 77.6, 85.2, below=2, above=3,
                terms=(_angle(OR, PO, N, POG), _angle(N, POG, A, B, sign="negate_if_cross_positive"),
                       _angle(PO, OR, PNS, ANS, sign="negate_if_cross_negative")),
                class_names={1: "normal", 2: "class II tendency", 3: "class III tendency"},
                description="anteroposterior dysplasia indicator: angle(Or->Po, N->Pog) + signed angle(N->Pog, A->B) "
                            "+ signed angle(Po->Or, PNS->ANS)"),
    Measurement("FHI", "ratio", "ratio", 0.65, 0.75, below=3, above=2, points=(S, GO, N, ME),
                class_names={1: "normal", 2: "short face tendency", 3: "long face tendency"},
                description="facial height index |S Go| / |N Me|"),
    Measurement("FMA", "angles", "deg", 26.8, 31.4, below=3, above=2, terms=(_angle(S, N, GO, GN),),
                class_names={1: "normal", 2: "high mandibular angle tendency", 3: "low mandibular angle tendency"},
                description="as the challenge computes it: angle between S->N and Go->Gn (not FH to Go-Me)"),
    Measurement("MW", "distance", "mm", 2.0, 4.5, below=3, above=4, points=(LIT, UIT), signed_by_x=True,
                equal=((0.0, 2),),
                class_names={1: "normal", 2: "edge to edge", 3: "under 2 mm (cross bite if negative)", 4: "large overjet"},
                description="as the challenge computes it: distance between the incisal tips (11, 12), negative "
                            "where the upper tip lies behind the lower"),
), reference="Wang et al., Med. Image Anal. 31:63-76, 2016; the ISBI 2015 challenge's angle.py",
   planes=(("SN", S, N), ("FH", PO, OR), ("palatal", PNS, ANS), ("mandibular", GO, ME), ("N-Pog", N, POG),
           ("A-B", A, B)))

ANALYSES: dict[str, Analysis] = {"isbi2015": ISBI2015_ANALYSIS}


def get_analysis(name: str) -> Analysis:
    """A built-in analysis by name (``"isbi2015"``) or one read from a JSON file path."""
    if name in ANALYSES:
        return ANALYSES[name]
    if name.endswith(".json"):
        return load_analysis(name)
    raise ValueError(f"unknown cephalometric analysis {name!r}; built in: {', '.join(ANALYSES)}, or a .json file")


def load_analysis(path: str | Path) -> Analysis:
    """An analysis from a JSON file (the layout of :meth:`Analysis.to_dict`); errors name the file."""
    path = Path(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ValueError(f"analysis file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable analysis file ({err})") from None
    return Analysis.from_dict(values, where=str(path))


# --- computing ---------------------------------------------------------------------------------------

def _prepare(landmarks: np.ndarray, analysis: Analysis, coordinates: str) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1:] != (analysis.num_landmarks, 2):
        raise ValueError(f"analysis {analysis.name!r} needs (N, {analysis.num_landmarks}, 2) landmarks, got {np.shape(landmarks)}")
    if coordinates == "integer":
        return np.trunc(pts)  # the challenge's int(): truncation toward zero
    if coordinates != "float":
        raise ValueError(f"coordinates must be 'integer' (the challenge's) or 'float', got {coordinates!r}")
    return pts


def _vector_angles(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(angles in degrees, cross products) of ``(N, 2)`` vector pairs; NaN where a vector is 0."""
    norm = np.hypot(u[:, 0], u[:, 1]) * np.hypot(v[:, 0], v[:, 1])
    dot = u[:, 0] * v[:, 0] + u[:, 1] * v[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, dot / norm, np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


def _value(pts: np.ndarray, m: Measurement, spacing_mm: float) -> np.ndarray:
    p = lambda k: pts[:, k - 1]  # noqa: E731 - 1-based landmark number -> (N, 2)
    if m.kind == "angles":
        total = np.zeros(len(pts))
        for t in m.terms:
            angle, cross = _vector_angles(p(t.a[1]) - p(t.a[0]), p(t.b[1]) - p(t.b[0]))
            if t.sign == "negate_if_cross_negative":
                angle = np.where(cross < 0, -angle, angle)
            elif t.sign == "negate_if_cross_positive":
                angle = np.where(cross > 0, -angle, angle)
            total = total + t.weight * angle
        return total
    d = lambda i, j: np.hypot(*(p(j) - p(i)).T)  # noqa: E731
    if m.kind == "ratio":
        num, den = d(*m.points[:2]), d(*m.points[2:])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)
    dist = d(*m.points) / (1.0 / spacing_mm)  # / 10 at 0.1 mm/px, exactly as the challenge divides
    if m.signed_by_x:
        dist = np.where(p(m.points[1])[:, 0] < p(m.points[0])[:, 0], -dist, dist)
    return dist


def classify(values: np.ndarray, m: Measurement) -> np.ndarray:
    """The class of each value (0 for NaN: a measurement that could not be computed)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.where(v < m.low, m.below, np.where(v > m.high, m.above, m.within))
    for value, cls in m.equal:
        out = np.where(v == value, cls, out)
    return np.where(np.isfinite(v), out, 0).astype(int)


def measure(landmarks: np.ndarray, analysis: Analysis = ISBI2015_ANALYSIS, spacing_mm: float | None = 0.1,
            coordinates: str = "integer", ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per image of ``(N, K, 2)`` (or one ``(K, 2)``) landmarks in original pixels: each
    measurement's value (``<name>``) and class (``<name>_class``)."""
    if spacing_mm is None or not (math.isfinite(spacing_mm) and spacing_mm > 0):
        raise ValueError(f"a cephalometric analysis needs the pixel spacing (a positive number of mm/px), got {spacing_mm}")
    pts = _prepare(landmarks, analysis, coordinates)
    table = pd.DataFrame(index=pd.Index(list(ids) if ids is not None else range(len(pts)), name="id"))
    for m in analysis.measurements:
        table[m.name] = _value(pts, m, spacing_mm)
        table[f"{m.name}_class"] = classify(table[m.name].to_numpy(), m)
    return table


# --- scoring -----------------------------------------------------------------------------------------

def confusion(truth: np.ndarray, pred: np.ndarray, classes: Sequence[int]) -> pd.DataFrame:
    """Counts: rows the ground-truth class, columns the predicted one (0 = not computable)."""
    cols = list(classes) + ([0] if (np.asarray(pred) == 0).any() else [])
    table = pd.crosstab(pd.Categorical(truth, categories=list(classes)), pd.Categorical(pred, categories=cols),
                        dropna=False)
    table.index.name, table.columns.name = "truth", "predicted"
    return table


def scr(truth: np.ndarray, pred: np.ndarray, classes: Sequence[int]) -> float:
    """Success classification rate (%): mean per-class recall over the classes present in ``truth``."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    recalls = [np.mean(pred[truth == c] == c) for c in classes if (truth == c).any()]
    return float(100 * np.mean(recalls)) if recalls else float("nan")


def bootstrap_scr(truth: pd.DataFrame, pred: pd.DataFrame, analysis: Analysis, resamples: int = 2000,
                  seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Percentile bootstrap intervals over images of each measurement's SCR and of their mean: the
    same resampled images for every measurement (drawn as :mod:`farnetlib.uncertainty` draws them:
    ``default_rng(seed).integers(0, N, (resamples, N))``), computed for all resamples at once."""
    n = len(truth)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    draws = []
    for m in analysis.measurements:
        t, p = truth[f"{m.name}_class"].to_numpy()[idx], pred[f"{m.name}_class"].to_numpy()[idx]
        recalls = []
        for c in m.classes:
            count = (t == c).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append(np.where(count > 0, ((t == c) & (p == c)).sum(axis=1) / count, np.nan))
        draws.append(100 * np.nanmean(np.stack(recalls), axis=0))
    draws = np.stack(draws + [np.mean(draws, axis=0)], axis=1)  # (resamples, measurements + mean)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail], axis=0)
    names = analysis.names + ["mean"]
    point = [scr(truth[f"{m.name}_class"], pred[f"{m.name}_class"], m.classes) for m in analysis.measurements]
    return pd.DataFrame({"scr_%": point + [float(np.mean(point))], "lower": lo, "upper": hi}, index=names)


@dataclass
class ClinicalScore:
    """Everything one comparison (a model or a second rater against the ground truth) gives."""

    table: pd.DataFrame  # one row per measurement (and "mean"): SCR, accuracy, MAE, Bland-Altman, counts
    confusions: dict[str, pd.DataFrame]
    truth: pd.DataFrame  # per image: values and classes of the ground truth
    pred: pd.DataFrame
    analysis: Analysis = ISBI2015_ANALYSIS


def score(pred_landmarks: np.ndarray, truth_landmarks: np.ndarray, analysis: Analysis = ISBI2015_ANALYSIS,
          spacing_mm: float = 0.1, coordinates: str = "integer", ids: Sequence[str] | None = None,
          intervals: bool = False) -> ClinicalScore:
    """Measurements and classes of predicted vs ground-truth landmarks ``(N, K, 2)``: per measurement
    SCR, accuracy, the value's MAE and Bland-Altman bias / 95 % limits of agreement (pred - truth),
    the number of ground-truth images per class; a ``mean`` row over the measurements."""
    truth = measure(truth_landmarks, analysis, spacing_mm, coordinates, ids)
    pred = measure(pred_landmarks, analysis, spacing_mm, coordinates, ids)
    rows, confusions = [], {}
    for m in analysis.measurements:
        t, p = truth[f"{m.name}_class"].to_numpy(), pred[f"{m.name}_class"].to_numpy()
        diff = (pred[m.name] - truth[m.name]).to_numpy()
        ok = np.isfinite(diff)
        bias, sd = (float(diff[ok].mean()), float(diff[ok].std(ddof=1))) if ok.sum() > 1 else (float("nan"),) * 2
        confusions[m.name] = confusion(t, p, m.classes)
        rows.append({"measurement": m.name, "unit": m.unit, "scr_%": scr(t, p, m.classes),
                     "accuracy_%": float(100 * np.mean(t == p)), "mae": float(np.abs(diff[ok]).mean()) if ok.any() else float("nan"),
                     "bias": bias, "loa_lower": bias - 1.96 * sd, "loa_upper": bias + 1.96 * sd,
                     "not_computable": int((p == 0).sum()),
                     "truth_counts": " / ".join(f"{c}: {int((t == c).sum())}" for c in m.classes)})
    table = pd.DataFrame(rows).set_index("measurement")
    mean = {"unit": "", "scr_%": table["scr_%"].mean(), "accuracy_%": table["accuracy_%"].mean(),
            "not_computable": int(table["not_computable"].sum())}
    table.loc["mean"] = pd.Series(mean)
    if intervals:
        ci = bootstrap_scr(truth, pred, analysis)
        table["scr_lower"], table["scr_upper"] = ci["lower"], ci["upper"]
    return ClinicalScore(table, confusions, truth, pred, analysis)


def landmark_array(predictions: pd.DataFrame, columns: tuple[str, str] = ("pred_x", "pred_y")) -> tuple[list[str], np.ndarray]:
    """(image ids sorted, ``(N, K, 2)`` points) of one split's rows of a ``predictions.csv``."""
    df = predictions.sort_values(["id", "landmark"])
    ids = list(dict.fromkeys(df["id"].astype(str)))
    k = df["landmark"].nunique()
    if len(df) != len(ids) * k:
        raise ValueError(f"predictions have {len(df)} rows for {len(ids)} images x {k} landmarks")
    return ids, df[list(columns)].to_numpy(dtype=np.float64).reshape(len(ids), k, 2)


def measurements_from_predictions(predictions: pd.DataFrame, analysis: Analysis = ISBI2015_ANALYSIS,
                                  spacing_mm: float = 0.1, coordinates: str = "integer") -> pd.DataFrame:
    """Per image of one split's ``predictions.csv`` rows: the measurements of the predicted landmarks."""
    ids, pred = landmark_array(predictions, ("pred_x", "pred_y"))
    return measure(pred, analysis, spacing_mm, coordinates, ids)


def clinical_metrics(predictions: pd.DataFrame, truth_landmarks: np.ndarray, truth_ids: Sequence[str],
                     ground_truth: str, junior: np.ndarray | None = None, senior: np.ndarray | None = None,
                     analysis: Analysis = ISBI2015_ANALYSIS, spacing_mm: float = 0.1,
                     coordinates: str = "integer") -> dict:
    """The clinical block of one split's metrics (``metrics.json``): per measurement SCR, accuracy and
    MAE of the model against classes of ``truth_landmarks`` (``ground_truth`` says whose), their
    means, and, where both doctors' landmarks are given, the junior doctor scored against the senior
    doctor the same way (the human reference)."""
    ids, pred = landmark_array(predictions, ("pred_x", "pred_y"))
    order = {str(i): n for n, i in enumerate(truth_ids)}
    missing = [i for i in ids if i not in order]
    if missing:
        raise ValueError(f"no ground-truth landmarks for images {missing[:5]}")
    rows = [order[i] for i in ids]

    def block(s: ClinicalScore) -> dict:
        t = s.table
        return {"mean_scr_%": float(t.loc["mean", "scr_%"]), "mean_accuracy_%": float(t.loc["mean", "accuracy_%"]),
                **{f"{m}_{key}": float(t.loc[m, col]) for m in analysis.names
                   for key, col in (("scr_%", "scr_%"), ("accuracy_%", "accuracy_%"), ("mae", "mae"))}}

    out = {"analysis": analysis.name, "class_ground_truth": ground_truth, "coordinates": coordinates,
           "n_images": len(ids),
           **block(score(pred, np.asarray(truth_landmarks)[rows], analysis, spacing_mm, coordinates, ids))}
    if junior is not None and senior is not None:
        ref = score(np.asarray(junior)[rows], np.asarray(senior)[rows], analysis, spacing_mm, coordinates, ids)
        out["junior_vs_senior"] = block(ref)
    return out


CLASS_GROUND_TRUTHS = ("senior", "junior", "mean")


def rater_landmarks(source, class_ground_truth: str = "senior") -> tuple[np.ndarray, str, dict]:
    """(landmarks whose classes are the truth, what they are, each rater's landmarks) of a dataset
    source (a :class:`farnetlib.data.LandmarkSource`): ``senior``/``junior``/``mean`` of its raters
    where it has several (ISBI: the two doctors), else its only annotation, called ``labelled``."""
    if class_ground_truth not in CLASS_GROUND_TRUTHS:
        raise ValueError(f"class ground truth must be one of {CLASS_GROUND_TRUTHS}, got {class_ground_truth!r}")
    raters = source.raters()
    if not raters:
        return np.asarray(source.landmarks), "labelled", raters
    if class_ground_truth == "mean":
        return np.mean(list(raters.values()), axis=0), "mean of " + " and ".join(raters), raters
    return raters[class_ground_truth], class_ground_truth, raters


def source_clinical_metrics(predictions: pd.DataFrame, source, analysis: str | Analysis = "isbi2015",
                            class_ground_truth: str = "senior", spacing_mm: float | None = 0.1,
                            coordinates: str = "integer") -> dict:
    """:func:`clinical_metrics` of one split's predictions against a dataset source: classes of the
    ground truth from ``class_ground_truth`` (the senior doctor by default: the challenge's landmark
    ground truth), and the junior doctor scored against the senior one beside it where the source
    has both. A failure is recorded under ``error`` (a metric never stops a run)."""
    analysis = get_analysis(analysis) if isinstance(analysis, str) else analysis
    try:
        truth, whose, raters = rater_landmarks(source, class_ground_truth)
        return clinical_metrics(predictions, truth, source.ids, whose, raters.get("junior"), raters.get("senior"),
                                analysis, spacing_mm, coordinates)
    except (ValueError, OSError) as err:
        return {"analysis": analysis.name, "error": str(err)}


# --- teaching: how landmark errors reach the measurements -------------------------------------------

def landmark_sensitivity(landmarks: np.ndarray, analysis: Analysis = ISBI2015_ANALYSIS, spacing_mm: float = 0.1,
                         shift_mm: float = 1.0, directions: int = 8) -> pd.DataFrame:
    """Which landmarks matter most: per landmark (rows, 1-based) and measurement (columns), the
    mean over the images of ``(N, K, 2)`` landmarks of the largest change of the measurement when
    that landmark alone moves by ``shift_mm`` in any of ``directions`` directions (sub-pixel
    coordinates). Measurements that do not read a landmark show 0 there."""
    pts = np.asarray(landmarks, dtype=np.float64)
    base = measure(pts, analysis, spacing_mm, "float")[analysis.names].to_numpy()
    step = shift_mm / spacing_mm
    angles = np.linspace(0, 2 * np.pi, directions, endpoint=False)
    rows = []
    for k in range(analysis.num_landmarks):
        worst = np.zeros_like(base)
        for a in angles:
            moved = pts.copy()
            moved[:, k] += step * np.array([np.cos(a), np.sin(a)])
            change = np.abs(measure(moved, analysis, spacing_mm, "float")[analysis.names].to_numpy() - base)
            worst = np.fmax(worst, change)
        rows.append(np.nanmean(worst, axis=0))
    table = pd.DataFrame(rows, columns=analysis.names, index=pd.RangeIndex(1, analysis.num_landmarks + 1, name="landmark"))
    table.attrs.update(shift_mm=shift_mm, directions=directions, images=len(pts))
    return table


def class_flips(landmarks: np.ndarray, analysis: Analysis = ISBI2015_ANALYSIS, spacing_mm: float = 0.1,
                mre_mm: float = 1.3, draws: int = 50, seed: int = 0) -> pd.DataFrame:
    """Why a small landmark error can still change a diagnosis: per image and measurement, its
    value, the distance to the nearest class boundary, and the share of ``draws`` noisy copies
    (every landmark moved by an isotropic Gaussian error whose mean radial error is ``mre_mm``:
    sigma = mre / sqrt(pi / 2) per axis) whose class differs from the image's own."""
    pts = np.asarray(landmarks, dtype=np.float64)
    truth = measure(pts, analysis, spacing_mm, "float")
    sigma = mre_mm / spacing_mm / np.sqrt(np.pi / 2)
    rng = np.random.default_rng(seed)
    flipped = {m.name: np.zeros(len(pts)) for m in analysis.measurements}
    for _ in range(draws):
        noisy = measure(pts + rng.normal(0, sigma, pts.shape), analysis, spacing_mm, "float")
        for m in analysis.measurements:
            flipped[m.name] += noisy[f"{m.name}_class"].to_numpy() != truth[f"{m.name}_class"].to_numpy()
    rows = []
    for m in analysis.measurements:
        v = truth[m.name].to_numpy()
        rows.append(pd.DataFrame({"image": truth.index, "measurement": m.name, "value": v,
                                  "distance_to_boundary": np.minimum(np.abs(v - m.low), np.abs(v - m.high)),
                                  "flip_rate": flipped[m.name] / draws}))
    out = pd.concat(rows, ignore_index=True)
    out.attrs.update(mre_mm=mre_mm, draws=draws, seed=seed)
    return out
