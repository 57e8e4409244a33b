"""The augmentations a config may name, their arguments and the values those accept.

Checked when the config is read, so a misspelt name or a negative sigma exits 2 before
anything trains; the transforms themselves are built from torchvision by
``data.augment`` (the same names and arguments, checked by a test)::

    augmentations: [hflip, rot90, {rotate: {degrees: 20}}, {gaussian_noise: {sigma: 0.05}}]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dlsteps.errors import did_you_mean

# One entry of ``augmentations`` after validation: {name: {arg: value}}.
Entry = dict[str, dict[str, Any]]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{what} must be [low, high], got {value!r}")
    return _number(value[0], what), _number(value[1], what)


def _probability(args: Mapping[str, Any]) -> None:
    p = _number(args.get("p", 0.5), "p")
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")


def _nothing(args: Mapping[str, Any]) -> None:
    pass


def _degrees(args: Mapping[str, Any]) -> None:
    degrees = args.get("degrees", 15.0)
    if isinstance(degrees, int | float) and not isinstance(degrees, bool):
        if degrees < 0:
            raise ValueError(f"degrees must be >= 0, got {degrees}")
        return
    low, high = _pair(degrees, "degrees")
    if low > high:
        raise ValueError(f"degrees must be [low, high] with low <= high, got {degrees}")


def _scale_crop(args: Mapping[str, Any]) -> None:
    scale = _pair(args.get("scale", (0.5, 1.0)), "scale")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must be [low, high] with 0 < low <= high <= 1, got {list(scale)}")
    ratio = _pair(args.get("ratio", (0.75, 4 / 3)), "ratio")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must be [low, high] with 0 < low <= high, got {list(ratio)}")


def _jitter(args: Mapping[str, Any]) -> None:
    for key in ("brightness", "contrast", "saturation"):
        value = args.get(key, 0.2)
        if isinstance(value, Sequence) and not isinstance(value, str):
            low, high = _pair(value, key)
            if not 0 <= low <= high:
                raise ValueError(f"{key} must be [low, high] with 0 <= low <= high, got {value}")
        elif _number(value, key) < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
    hue = args.get("hue", 0.0)
    if isinstance(hue, Sequence) and not isinstance(hue, str):
        low, high = _pair(hue, "hue")
        if not -0.5 <= low <= high <= 0.5:
            raise ValueError(f"hue must be [low, high] within [-0.5, 0.5], got {hue}")
    elif not 0 <= _number(hue, "hue") <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    low, high = _pair(args.get("value_range", (0.0, 1.0)), "value_range")
    if not high > low:
        raise ValueError(f"value_range must be [low, high] with high > low, got {[low, high]}")


def _noise(args: Mapping[str, Any]) -> None:
    if _number(args.get("sigma", 0.1), "sigma") < 0:
        raise ValueError(f"sigma must be >= 0, got {args['sigma']}")
    _number(args.get("mean", 0.0), "mean")


@dataclass(frozen=True)
class Augmentation:
    params: tuple[str, ...]  # the arguments a config may set
    check: Callable[[Mapping[str, Any]], None]  # raises ValueError naming a bad value


AUGMENTATIONS: dict[str, Augmentation] = {
    "hflip": Augmentation(("p",), _probability),
    "vflip": Augmentation(("p",), _probability),
    "rot90": Augmentation((), _nothing),
    "rotate": Augmentation(("degrees",), _degrees),
    "scale_crop": Augmentation(("scale", "ratio"), _scale_crop),
    "color_jitter": Augmentation(
        ("brightness", "contrast", "saturation", "hue", "value_range"), _jitter
    ),
    "gaussian_noise": Augmentation(("sigma", "mean"), _noise),
}


def normalize_entries(entries: Sequence[Any]) -> list[Entry]:
    """Check ``augmentations`` entries (a name, or ``{name: {args}}``) and return them as
    ``{name: args}``. Raises ``ValueError`` with the entry's index (pydantic adds the key)."""
    out: list[Entry] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            name, args = entry, {}
        elif isinstance(entry, Mapping) and len(entry) == 1:
            name, args = next(iter(entry.items()))
            args = {} if args is None else args
            if not isinstance(args, Mapping):
                raise ValueError(f"[{i}] {name}: arguments must be a mapping, got {args!r}")
        else:
            raise ValueError(f"[{i}]: expected a name or {{name: {{args}}}}, got {entry!r}")
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"[{i}]: unknown augmentation '{name}'.{did_you_mean(str(name), AUGMENTATIONS)}"
                f" Built-ins: {', '.join(AUGMENTATIONS)}"
            )
        spec, args = AUGMENTATIONS[name], dict(args)
        if unknown := [k for k in args if k not in spec.params]:
            raise ValueError(
                f"[{i}] {name}: unknown argument '{unknown[0]}'."
                f"{did_you_mean(str(unknown[0]), spec.params)} "
                f"Arguments: {', '.join(spec.params) or 'none'}"
            )
        try:
            spec.check(args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"[{i}] {name}: {exc}") from None
        out.append({name: args})
    return out
