"""Several data sources as one training set: later sources override earlier ones.

``imgclf train DATA REVIEWED.csv`` trains on the dataset and a manifest of reviewed images. An
image is known by its content (sha256), not its path: when a later source lists an image an
earlier source has too, the later source's label wins (a reviewer corrected it) and the earlier
copy is dropped. A later row without a split keeps the split the image had before, so an image
never moves from validation into training by being relabelled.

Example:

>>> merged = merge_sources([(samples_a, infos_a), (samples_b, infos_b)])
>>> merged.relabelled, merged.replaced
(3, 5)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from imgclf.data.inspection import ImageInfo
from imgclf.data.sources import Sample


@dataclass(frozen=True)
class MergedSources:
    samples: list[Sample]
    infos: list[ImageInfo]
    replaced: int  # copies from earlier sources dropped for a later source's row of the same image
    relabelled: int  # of those, images whose label the later source changed


def merge_sources(sources: list[tuple[list[Sample], list[ImageInfo]]]) -> MergedSources:
    """One list of samples from ``sources`` (each a list of samples and their inspection), in order."""
    last_source: dict[str, int] = {}
    for number, (_, infos) in enumerate(sources):
        for info in infos:
            last_source[info.sha256] = number
    earlier: dict[str, Sample] = {}
    samples: list[Sample] = []
    kept_infos: list[ImageInfo] = []
    replaced = relabelled = 0
    for number, (source_samples, infos) in enumerate(sources):
        for sample, info in zip(source_samples, infos, strict=True):
            if last_source[info.sha256] != number:
                earlier.setdefault(info.sha256, sample)
                replaced += 1
                continue
            before = earlier.get(info.sha256)
            if before is not None:
                relabelled += before.label != sample.label
                if sample.split is None:
                    sample = replace(sample, split=before.split)
            samples.append(sample)
            kept_infos.append(info)
    return MergedSources(samples, kept_infos, replaced, relabelled)
