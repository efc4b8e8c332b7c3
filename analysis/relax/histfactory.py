"""Binned HistFactory model in torch tensors, its parameter layout, and its pyhf JSON workspace.

One description serves the likelihood (:mod:`analysis.relax.likelihood`) and pyhf (the JSON and
the vector converters here). Modifiers follow HistFactory (CERN-OPEN-2012-016, Secs. 2.2, 4) as
implemented in pyhf 0.7 (https://pyhf.readthedocs.io/en/v0.7.6/likelihood.html).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import torch

from analysis.errors import InputDataError

__all__ = ["MODIFIER_KINDS", "Modifier", "Sample", "Channel", "BinnedModel", "ParameterSet",
           "PyhfConfig", "to_pyhf_workspace", "parameters_from_pyhf", "data_from_pyhf"]

MODIFIER_KINDS = ("normfactor", "normsys", "histosys", "staterror", "shapesys", "shapefactor",
                  "lumi")
#: Kinds with a constraint term (auxiliary data): Gaussian, but Poisson for shapesys.
CONSTRAINED_KINDS = frozenset(MODIFIER_KINDS) - {"normfactor", "shapefactor"}
#: one parameter per bin of the channel; a shapefactor is shared by every sample and channel
#: that names it, all of one bin count (pyhf's free "data-driven" shape)
PER_BIN_KINDS = ("staterror", "shapesys", "shapefactor")
LUMI_BOUND_SIGMAS = 5.0  # pyhf bounds of the lumi parameter: 1 ± this many sigmas
PYHF_SCHEMA_VERSION = "1.0.0"


@dataclass(frozen=True, eq=False)
class Modifier:
    """One modifier of one sample, as an entry of a pyhf sample's ``modifiers`` list.

    Attributes:
        kind: one of :data:`MODIFIER_KINDS`.
        name: parameter name; modifiers with equal names share one parameter (set).
        hi: normsys: up factor (scalar, > 0); histosys: ``(n_bins,)`` up template in events.
        lo: normsys: down factor (scalar, > 0); histosys: ``(n_bins,)`` down template in events.
        uncertainty: staterror, shapesys: ``(n_bins,)`` absolute uncertainty in events
            (for staterror the square root of the sum of squared weights).
    """

    kind: str
    name: str
    hi: torch.Tensor | float | None = None
    lo: torch.Tensor | float | None = None
    uncertainty: torch.Tensor | None = None

    @classmethod
    def normfactor(cls, name: str = "mu") -> Modifier:
        """Free multiplicative normalisation, e.g. the signal strength."""
        return cls("normfactor", name)

    @classmethod
    def normsys(cls, name: str, hi: torch.Tensor | float, lo: torch.Tensor | float) -> Modifier:
        """Normalisation uncertainty: factors ``hi``/``lo`` at ``alpha = ±1`` (code 4)."""
        return cls("normsys", name, hi=hi, lo=lo)

    @classmethod
    def histosys(cls, name: str, hi: torch.Tensor, lo: torch.Tensor) -> Modifier:
        """Shape uncertainty: ``(n_bins,)`` templates at ``alpha = ±1`` (code 4p)."""
        return cls("histosys", name, hi=hi, lo=lo)

    @classmethod
    def staterror(cls, name: str, uncertainty: torch.Tensor) -> Modifier:
        """Barlow-Beeston-lite MC statistical uncertainty, ``(n_bins,)`` events, shared per bin."""
        return cls("staterror", name, uncertainty=uncertainty)

    @classmethod
    def shapesys(cls, name: str, uncertainty: torch.Tensor) -> Modifier:
        """Uncorrelated per-bin uncertainty with a Poisson constraint, ``(n_bins,)`` events."""
        return cls("shapesys", name, uncertainty=uncertainty)

    @classmethod
    def shapefactor(cls, name: str) -> Modifier:
        """Free (unconstrained) factor per bin, nominal 1, pyhf bounds ``[0, 10]``; shared by
        every sample (in any channel of the same bin count) that carries the name."""
        return cls("shapefactor", name)

    @classmethod
    def lumi(cls, name: str = "lumi") -> Modifier:
        """Luminosity factor; its width is :attr:`BinnedModel.lumi_sigma`."""
        return cls("lumi", name)


@dataclass(frozen=True, eq=False)
class Sample:
    """A process in one channel: ``nominal`` is ``(n_bins,)`` expected events, >= 0."""

    name: str
    nominal: torch.Tensor
    modifiers: tuple[Modifier, ...] = ()

    def with_bins(self, keep: torch.Tensor) -> Sample:
        """This sample on the bins where the ``(n_bins,)`` bool ``keep`` is True: its nominal
        and every per-bin array of its modifiers (differentiable; scalars unchanged)."""
        def cut(t: torch.Tensor | float | None) -> torch.Tensor | float | None:
            return t[keep] if isinstance(t, torch.Tensor) and t.dim() == 1 else t

        return dataclasses.replace(self, nominal=self.nominal[keep], modifiers=tuple(
            dataclasses.replace(m, hi=cut(m.hi), lo=cut(m.lo), uncertainty=cut(m.uncertainty))
            for m in self.modifiers))


@dataclass(frozen=True, eq=False)
class Channel:
    """A histogram (region) with its samples; all samples have the channel's number of bins."""

    name: str
    samples: tuple[Sample, ...]

    @property
    def n_bins(self) -> int:
        """Number of bins of the channel."""
        return int(self.samples[0].nominal.shape[0])


@dataclass(frozen=True)
class ParameterSet:
    """A named parameter (set) and where it lives in the parameter and auxiliary-data vectors.

    Attributes:
        name: parameter name, as in pyhf.
        kind: modifier kind that defines it.
        index: slice into the ``(n_parameters,)`` vector.
        aux_index: slice into the ``(n_aux,)`` auxiliary data; ``None`` when unconstrained.
    """

    name: str
    kind: str
    index: slice
    aux_index: slice | None


@dataclass(frozen=True, eq=False)
class BinnedModel:
    """A binned HistFactory model whose histograms are torch tensors (possibly with gradients).

    Parameters are ordered: the POI first, then all other names alphabetically; main data are
    the channels' bins in the order of :attr:`channels`; auxiliary data follow the parameter order.

    Attributes:
        channels: the channels, in the order of the main-data vector.
        poi: name of the normfactor that is the parameter of interest (signal strength).
        lumi_sigma: relative luminosity uncertainty (auxdata 1.0); required with a lumi modifier.

    Raises:
        InputDataError: on construction, for negative or non-finite yields, mismatched bin counts,
            unknown modifier kinds or inconsistent modifiers, naming the channel and sample.
    """

    channels: tuple[Channel, ...]
    poi: str = "mu"
    lumi_sigma: float | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of all histograms."""
        return self.channels[0].samples[0].nominal.dtype

    @property
    def device(self) -> torch.device:
        """Device of all histograms."""
        return self.channels[0].samples[0].nominal.device

    @cached_property
    def parameters(self) -> tuple[ParameterSet, ...]:
        """Parameter sets in vector order (POI first, then by name)."""
        mods = [(c, m) for c in self.channels for s in c.samples for m in s.modifiers]
        kinds = {m.name: m.kind for _, m in mods}
        bins = {m.name: c.n_bins for c, m in mods if m.kind in PER_BIN_KINDS}
        sets, start, aux_start = [], 0, 0
        for name in [self.poi] + sorted(n for n in kinds if n != self.poi):
            size = bins.get(name, 1)
            aux = slice(aux_start, aux_start + size) if kinds[name] in CONSTRAINED_KINDS else None
            aux_start += size if aux else 0
            sets.append(ParameterSet(name, kinds[name], slice(start, start + size), aux))
            start += size
        return tuple(sets)

    @property
    def n_parameters(self) -> int:
        """Length of the parameter vector."""
        return int(self.parameters[-1].index.stop)

    @property
    def n_main(self) -> int:
        """Number of main-measurement bins, all channels."""
        return sum(c.n_bins for c in self.channels)

    @property
    def n_aux(self) -> int:
        """Number of auxiliary-data entries."""
        return sum(p.aux_index.stop - p.aux_index.start for p in self.parameters if p.aux_index)

    def parameter(self, name: str) -> ParameterSet:
        """The parameter set called ``name``; InputDataError if there is none."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise InputDataError(f"BinnedModel: no parameter {name!r}")


def _check_hist(x: object, where: str, what: str, n_bins: int | None, positive: bool) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 1 or not x.is_floating_point():
        raise InputDataError(f"{where}: {what} must be a 1-d floating torch.Tensor")
    if n_bins is not None and x.shape[0] != n_bins:
        raise InputDataError(f"{where}: {what} has {x.shape[0]} bins, the channel has {n_bins}")
    values = x.detach()
    is_bad = values <= 0 if positive else values < 0
    if not bool(torch.isfinite(values).all()) or bool(is_bad.any()):
        raise InputDataError(f"{where}: {what} must be finite and {'> 0' if positive else '>= 0'}"
                             f" in every bin, got {values.tolist()}")


def _check_modifier(m: Modifier, where: str, n_bins: int) -> None:
    if m.kind not in MODIFIER_KINDS:
        raise InputDataError(f"{where}: unknown modifier type {m.kind!r} ({m.name!r}); "
                             f"expected one of {MODIFIER_KINDS}")
    where = f"{where}, {m.kind} {m.name!r}"
    if m.kind == "normsys":
        for f in (m.hi, m.lo):
            value = torch.as_tensor(torch.nan if f is None else f, dtype=torch.float64).detach()
            if value.numel() != 1 or not 0 < float(value) < float("inf"):
                raise InputDataError(f"{where}: hi and lo must be finite factors > 0, got {f}")
    elif m.kind == "histosys":
        _check_hist(m.hi, where, "hi template", n_bins, positive=False)
        _check_hist(m.lo, where, "lo template", n_bins, positive=False)
    elif m.kind in ("staterror", "shapesys"):
        _check_hist(m.uncertainty, where, "uncertainty", n_bins, positive=m.kind == "shapesys")


def _kind_class(kind: str) -> str:
    """normsys and histosys may share a name: one alpha, as pyhf (and CMS's shape + rate
    split of a variation) allows; every other kind needs a name of its own."""
    return "alpha" if kind in ("normsys", "histosys") else kind


def _validate(model: BinnedModel) -> None:
    if not model.channels:
        raise InputDataError("BinnedModel: needs at least one channel")
    kinds: dict[str, str] = {}
    owner: dict[str, str] = {}  # staterror name -> channel; shapesys name -> channel/sample
    sizes: dict[str, tuple[int, str]] = {}  # shapefactor name -> (bins, first channel)
    for c in model.channels:
        if not c.samples or len({s.name for s in c.samples}) != len(c.samples):
            raise InputDataError(f"channel {c.name!r}: needs samples with distinct names")
        for s in c.samples:
            where = f"channel {c.name!r}, sample {s.name!r}"
            n_bins = None if s is c.samples[0] else c.n_bins  # the first sample sets n_bins
            _check_hist(s.nominal, where, "nominal", n_bins, positive=False)
            tensors = [s.nominal] + [t for m in s.modifiers for t in (m.hi, m.lo, m.uncertainty)
                                     if isinstance(t, torch.Tensor)]
            if any(t.dtype != model.dtype or t.device != model.device for t in tensors):
                raise InputDataError(f"{where}: tensors must be {model.dtype} on {model.device}")
            if len({(m.kind, m.name) for m in s.modifiers}) != len(s.modifiers):
                raise InputDataError(f"{where}: a modifier is listed twice")
            for m in s.modifiers:
                _check_modifier(m, where, c.n_bins)
                if _kind_class(kinds.setdefault(m.name, m.kind)) != _kind_class(m.kind):
                    raise InputDataError(f"{where}: modifier {m.name!r} is both {kinds[m.name]} "
                                         f"and {m.kind}; use distinct names")
                if m.kind == "shapefactor":
                    bins, first = sizes.setdefault(m.name, (c.n_bins, c.name))
                    if bins != c.n_bins:
                        raise InputDataError(f"{where}: shapefactor {m.name!r} has {bins} bins "
                                             f"in channel {first!r}, {c.n_bins} here; a shared "
                                             f"shapefactor needs one bin count")
                    continue
                key = c.name if m.kind == "staterror" else f"{c.name}/{s.name}"
                if m.kind in PER_BIN_KINDS and owner.setdefault(m.name, key) != key:
                    raise InputDataError(f"{where}: {m.kind} {m.name!r} is also used in "
                                         f"{owner[m.name]!r}; pyhf needs one name per "
                                         f"{'channel' if m.kind == 'staterror' else 'sample'}")
                if m.kind == "shapesys":
                    _check_hist(s.nominal, where, "nominal (with shapesys)", None, positive=True)
    _validate_model_level(model, kinds)


def _validate_model_level(model: BinnedModel, kinds: dict[str, str]) -> None:
    if kinds.get(model.poi) != "normfactor":
        raise InputDataError(f"BinnedModel: the POI {model.poi!r} must be a normfactor")
    lumis = sorted(n for n, k in kinds.items() if k == "lumi")
    if len(lumis) > 1 or (lumis and not (model.lumi_sigma or 0.0) > 0):
        raise InputDataError(f"BinnedModel: lumi modifiers {lumis} need one common name and "
                             f"lumi_sigma > 0, got {model.lumi_sigma}")
    for c in model.channels:
        for name in {m.name for s in c.samples for m in s.modifiers if m.kind == "staterror"}:
            pairs = torch.stack([torch.stack([s.nominal, m.uncertainty]) for s in c.samples
                                 for m in s.modifiers if m.name == name and m.kind == "staterror"
                                 and m.uncertainty is not None])
            if not bool((pairs.detach().sum(dim=0) > 0).all()):  # summed yields, uncertainties
                raise InputDataError(f"channel {c.name!r}, staterror {name!r}: every bin needs a "
                                     f"positive total yield and uncertainty (pyhf would fix it)")


def _floats(x: torch.Tensor | float | None) -> Any:
    """JSON numbers of a tensor or a number, without a detour through torch's float32 default."""
    return x.detach().cpu().tolist() if isinstance(x, torch.Tensor) else float(x or 0.0)


def _modifier_spec(m: Modifier) -> dict[str, Any]:
    data: Any = None
    if m.kind == "normsys":
        data = {"hi": float(_floats(m.hi)), "lo": float(_floats(m.lo))}
    elif m.kind == "histosys":
        data = {"hi_data": _floats(m.hi), "lo_data": _floats(m.lo)}
    elif m.kind in ("staterror", "shapesys"):
        data = _floats(m.uncertainty)
    return {"name": m.name, "type": m.kind, "data": data}


def to_pyhf_workspace(model: BinnedModel, observations: torch.Tensor | None = None,
                      measurement: str = "diffana",
                      poi_bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """pyhf JSON workspace (schema 1.0.0) of ``model``; ``pyhf.Workspace(spec)`` accepts it.

    Args:
        model: the binned model.
        observations: ``(n_main,)`` observed events in the order of ``model.channels``; default
            the Asimov data at the nominal parameters (the sum of the samples' nominals).
        measurement: name of the single measurement.
        poi_bounds: ``(low, high)`` bounds of the POI; default pyhf's ``(0, 10)``.

    Returns:
        JSON-serialisable dict with ``channels``, ``observations``, ``measurements``, ``version``.

    Raises:
        InputDataError: if ``observations`` is not ``(n_main,)``.

    Example:
        >>> model = BinnedModel((Channel("sr", (Sample("s", torch.tensor([1.0, 2.0]),
        ...     (Modifier.normfactor("mu"),)), Sample("b", torch.tensor([5.0, 5.0])))),))
        >>> to_pyhf_workspace(model)["observations"]
        [{'name': 'sr', 'data': [6.0, 7.0]}]
    """
    if observations is None:
        observations = torch.cat([torch.stack([s.nominal.detach() for s in c.samples]).sum(0)
                                  for c in model.channels])
    if tuple(observations.shape) != (model.n_main,):
        raise InputDataError(f"to_pyhf_workspace: observations must have shape ({model.n_main},),"
                             f" got {tuple(observations.shape)}")
    main = torch.split(observations.detach(), [c.n_bins for c in model.channels])
    parameters: list[dict[str, Any]] = []
    if poi_bounds is not None:
        parameters.append({"name": model.poi, "bounds": [list(map(float, poi_bounds))]})
    for p in model.parameters:
        if p.kind == "lumi" and model.lumi_sigma is not None:
            width = LUMI_BOUND_SIGMAS * model.lumi_sigma
            parameters.append({"name": p.name, "auxdata": [1.0], "sigmas": [model.lumi_sigma],
                               "inits": [1.0], "bounds": [[max(1.0 - width, 1e-10), 1.0 + width]]})
    channels = [{"name": c.name, "samples": [
        {"name": s.name, "data": _floats(s.nominal),
         "modifiers": [_modifier_spec(m) for m in s.modifiers]} for s in c.samples]}
        for c in model.channels]
    return {"channels": channels,
            "observations": [{"name": c.name, "data": _floats(d)}
                             for c, d in zip(model.channels, main)],
            "measurements": [{"name": measurement,
                              "config": {"poi": model.poi, "parameters": parameters}}],
            "version": PYHF_SCHEMA_VERSION}


class PyhfConfig(Protocol):
    """The parts of ``pyhf.Model.config`` that the converters read."""

    channels: Sequence[str]
    channel_nbins: dict[str, int]
    par_order: Sequence[str]
    auxdata_order: Sequence[str]

    def par_slice(self, name: str) -> slice: ...


def parameters_from_pyhf(model: BinnedModel, pars: Sequence[float] | Any,
                         config: PyhfConfig) -> torch.Tensor:
    """Reorder a pyhf parameter vector (``config.par_order``) into ``model``'s order.

    Args:
        model: the model that :func:`to_pyhf_workspace` turned into the pyhf model.
        pars: ``(n_parameters,)`` pyhf parameter values.
        config: ``pyhf_model.config``.

    Returns:
        ``(n_parameters,)`` tensor with the model's dtype and device.

    Raises:
        InputDataError: if the two models have different parameter sets.
    """
    if sorted(config.par_order) != sorted(p.name for p in model.parameters):
        raise InputDataError(f"parameters_from_pyhf: pyhf parameters {sorted(config.par_order)} "
                             f"differ from {sorted(p.name for p in model.parameters)}")
    values = torch.as_tensor(pars, dtype=model.dtype, device=model.device)
    return torch.cat([values[config.par_slice(p.name)] for p in model.parameters])


def data_from_pyhf(model: BinnedModel, data: Sequence[float] | Any,
                   config: PyhfConfig) -> torch.Tensor:
    """Reorder pyhf's main + auxiliary data (channels sorted, ``auxdata_order``) into ours.

    Args:
        model: the model that :func:`to_pyhf_workspace` turned into the pyhf model.
        data: ``(n_main + n_aux,)`` pyhf data, e.g. ``pyhf_model.expected_data(pars)``.
        config: ``pyhf_model.config``.

    Returns:
        ``(n_main + n_aux,)`` tensor with the model's dtype and device.

    Raises:
        InputDataError: if ``data`` has the wrong length or the models differ in parameters.
    """
    values = torch.as_tensor(data, dtype=model.dtype, device=model.device)
    if tuple(values.shape) != (model.n_main + model.n_aux,):
        raise InputDataError(f"data_from_pyhf: expected ({model.n_main + model.n_aux},) values, "
                             f"got {tuple(values.shape)}")
    starts, start = {}, 0
    for name in config.channels:
        starts[name], start = start, start + config.channel_nbins[name]
    aux = {}
    for name in config.auxdata_order:
        sl = config.par_slice(name)
        aux[name], start = values[start:start + sl.stop - sl.start], start + sl.stop - sl.start
    main = [values[starts[c.name]:starts[c.name] + c.n_bins] for c in model.channels]
    try:
        return torch.cat(main + [aux[p.name] for p in model.parameters if p.aux_index])
    except KeyError as err:
        raise InputDataError(f"data_from_pyhf: pyhf has no auxiliary data for {err}") from err
