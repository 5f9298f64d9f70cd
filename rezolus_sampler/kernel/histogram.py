"""The Rust `histogram` crate's bucketing and quantiles, in Python: the reference
the BPF index code is proven against and the way the proof command reads a
Rezolus histogram map.

Ported from iopsystems/histogram at tag v1.3.1 (commit
7fb67e5eeb3c65a4d4000de08edd8ebf97830b2c): ``src/config.rs`` (``Config::new``,
``total_buckets``, ``value_to_index``, ``index_to_lower_bound``,
``index_to_upper_bound``) and ``src/standard.rs`` (``SampleQuantiles::quantiles``
of ``Histogram``).  Both files are unchanged up to v1.5.0; metriken 0.10.1, whose
``RwLockHistogram`` Rezolus' samplers fill, requires ``histogram = "1.4.1"``.
Rezolus' ``src/agent/bpf/histogram.h`` says its ``value_to_index`` is compatible
with this crate's indexing (it links the older pelikan-io/rustcommon copy of
``config.rs``); ``tests/test_histogram_index.py`` checks that claim value by value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

U64_MAX = (1 << 64) - 1


class HistogramConfigError(ValueError):
    """Parameters the crate's ``Config::new`` refuses."""


@dataclasses.dataclass(frozen=True)
class Config:
    """``histogram::Config`` for ``(grouping_power, max_value_power)``."""

    grouping_power: int
    max_value_power: int

    def __post_init__(self) -> None:
        if self.max_value_power > 64:
            raise HistogramConfigError(
                f"max_value_power {self.max_value_power} > 64 (Error::MaxPowerTooHigh)"
            )
        if self.grouping_power >= self.max_value_power:
            raise HistogramConfigError(
                f"grouping_power {self.grouping_power} >= max_value_power "
                f"{self.max_value_power} (Error::MaxPowerTooLow)"
            )

    @property
    def cutoff_power(self) -> int:
        return self.grouping_power + 1

    @property
    def cutoff_value(self) -> int:
        return 1 << self.cutoff_power

    @property
    def upper_bin_divisions(self) -> int:
        return 1 << self.grouping_power

    @property
    def lower_bin_count(self) -> int:
        return self.cutoff_value

    @property
    def upper_bin_count(self) -> int:
        return (self.max_value_power - self.cutoff_power) * self.upper_bin_divisions

    @property
    def max(self) -> int:
        return U64_MAX if self.max_value_power == 64 else (1 << self.max_value_power) - 1

    @property
    def total_buckets(self) -> int:
        return self.lower_bin_count + self.upper_bin_count

    @property
    def relative_error(self) -> float:
        """Largest (upper - lower) / lower of a logarithmic bucket: 2^-grouping_power
        (the crate's ``error()`` returns it in percent)."""
        if self.grouping_power == self.max_value_power - 1:
            return 0.0
        return 1.0 / (1 << self.grouping_power)

    def value_to_index(self, value: int) -> int:
        if value < 0:
            raise ValueError(f"{value} is not a u64")
        if value < self.cutoff_value:
            return value
        if value > self.max:
            raise ValueError(f"{value} > {self.max} (Error::OutOfRange)")
        power = value.bit_length() - 1  # 63 - value.leading_zeros()
        log_bin = power - self.cutoff_power
        offset = (value - (1 << power)) >> (power - self.grouping_power)
        return self.lower_bin_count + log_bin * self.upper_bin_divisions + offset

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.total_buckets:
            raise IndexError(f"bucket {index} outside 0..{self.total_buckets - 1}")

    def index_to_lower_bound(self, index: int) -> int:
        self._check_index(index)
        g = index >> self.grouping_power
        h = index - g * (1 << self.grouping_power)
        if g < 1:
            return h
        return (1 << (self.grouping_power + g - 1)) + (1 << (g - 1)) * h

    def index_to_upper_bound(self, index: int) -> int:
        """Inclusive."""
        self._check_index(index)
        if index == self.total_buckets - 1:
            return self.max
        g = index >> self.grouping_power
        h = index - g * (1 << self.grouping_power) + 1
        if g < 1:
            return h - 1
        return (1 << (self.grouping_power + g - 1)) + (1 << (g - 1)) * h - 1


# Rezolus: `RwLockHistogram::new(HISTOGRAM_GROUPING_POWER, 64)` with
# crate::common::HISTOGRAM_GROUPING_POWER = 3 and histogram.h HISTOGRAM_BUCKETS_POW_3.
REZOLUS = Config(3, 64)
assert REZOLUS.total_buckets == 496


def boundary_values(config: Config) -> Iterator[int]:
    """Every bucket's lower and upper bound, the value below the lower and above
    the upper where they are u64, plus 0, 1 and u64::MAX (some repeat)."""
    yield from (0, 1, U64_MAX)
    for i in range(config.total_buckets):
        lo, hi = config.index_to_lower_bound(i), config.index_to_upper_bound(i)
        yield lo
        yield hi
        if lo > 0:
            yield lo - 1
        if hi < U64_MAX:
            yield hi + 1


@dataclasses.dataclass(frozen=True)
class Bucket:
    """``histogram::Bucket``: a count and the inclusive range ``lower..=upper``."""

    index: int
    count: int
    lower: int
    upper: int


@dataclasses.dataclass(frozen=True)
class Quantiles:
    """``histogram::QuantilesResult``: the bucket each quantile falls in, the total
    count, and the first (p0) and last (p100) non-empty buckets."""

    total: int
    entries: dict[float, Bucket]
    min: Bucket
    max: Bucket


def quantiles(config: Config, buckets: Sequence[int], qs: Sequence[float]) -> Quantiles | None:
    """``Histogram::quantiles``: None for an empty histogram.  A quantile q maps
    to the first bucket at which the running count reaches max(1, ceil(q * total))
    (the product in f64, as the crate computes it)."""
    if len(buckets) != config.total_buckets:
        raise ValueError(f"{len(buckets)} buckets, the config has {config.total_buckets}")
    for q in qs:
        if not (isinstance(q, (int, float)) and 0.0 <= q <= 1.0):
            raise ValueError(f"quantile {q!r} outside 0.0..=1.0 (Error::InvalidQuantile)")
    total = sum(buckets)
    if total == 0:
        return None

    def bucket(i: int) -> Bucket:
        return Bucket(
            i, buckets[i], config.index_to_lower_bound(i), config.index_to_upper_bound(i)
        )

    nonzero = [i for i, c in enumerate(buckets) if c]
    entries: dict[float, Bucket] = {}
    index, partial = 0, buckets[0]
    for q in sorted(set(float(q) for q in qs)):
        need = max(1, math.ceil(q * float(total)))
        while True:
            if partial >= need:
                entries[q] = bucket(index)
                break
            if index == len(buckets) - 1:
                break
            index += 1
            partial += buckets[index]
    return Quantiles(total, entries, bucket(nonzero[0]), bucket(nonzero[-1]))
