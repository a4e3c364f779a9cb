"""Images that come with a message to the bot: which the model is shown, and what the person is told.

An assistant without ``vision = true`` is shown none: nothing is downloaded, and the person is told,
in one short message, that it cannot see images and which setting changes that. With vision, each
image must be PNG, JPEG, GIF or WebP (by its bytes; the platform's word is only a first filter) and
at most ``THREADLINE_MAX_IMAGE_MB``; one that is not, or cannot be downloaded, is left out and said so,
and the others are shown. What the person is told is one message, however many images came.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from core.images import KIND_NAMES, KINDS, ReadyImage, SharedImage, declared_kind, sniff
from core.knowledge.base import DownloadFailed
from core.store.store import new_id

__all__ = ["ImageIntake", "TakenImages", "vision_off_notice"]

_log = logging.getLogger(__name__)


def vision_off_notice(assistant: str, names: Sequence[str]) -> str:
    what = names[0] if len(names) == 1 else f"these {len(names)} images"
    return (
        f"This assistant ({assistant}) cannot see images, so I did not look at {what}. If its model takes "
        f"images, set `vision = true` for it in the assistants file."
    )


@dataclass(frozen=True)
class TakenImages:
    """What became of a message's images: those to show, those left out (by name), what to tell the person."""

    ready: tuple[ReadyImage, ...] = ()
    left_out: tuple[str, ...] = ()
    notice: str | None = None


class ImageIntake:
    def __init__(self, max_mb: float) -> None:
        self.max_mb = max_mb  # THREADLINE_MAX_IMAGE_MB
        self._max_bytes = int(max_mb * 1024 * 1024)

    async def take(self, images: Sequence[SharedImage], *, vision: bool, assistant: str) -> TakenImages:
        """Check (and download) the images of one message for an assistant that can see images or not."""
        if not images:
            return TakenImages()
        if not vision:
            names = tuple(image.name for image in images)
            return TakenImages(left_out=names, notice=vision_off_notice(assistant, names))
        ready: list[ReadyImage] = []
        left_out: list[str] = []
        problems: list[str] = []
        for image in images:
            checked = await self._check(image)
            if isinstance(checked, ReadyImage):
                ready.append(checked)
            else:
                left_out.append(image.name)
                problems.append(checked)
        return TakenImages(tuple(ready), tuple(left_out), "\n".join(problems) or None)

    async def _check(self, image: SharedImage) -> ReadyImage | str:
        """The image, ready; or why it is left out, for the person."""
        limit = self._max_bytes
        if declared_kind(image.name, image.mime) is None:
            return f"I can look at {KIND_NAMES} images; {image.name} is not one of them, so I did not look at it."
        if image.size is not None and image.size > limit:
            return self._too_large(image.name, image.size)
        data = image.data
        if image.download is not None:
            try:
                data = await image.download(limit)
            except DownloadFailed as exc:
                _log.info("image %s not downloaded: %s", image.name, exc)
                return f"I could not download {image.name}, so I did not look at it. Share it again."
        if len(data) > limit:
            return self._too_large(image.name, len(data))
        kind = sniff(data[:16])
        if kind is None:
            _log.info("image %s (%s, %d bytes) is none of the kinds shown to models", image.name, image.mime, len(data))
            return f"{image.name} is not a {KIND_NAMES.replace(' and ', ' or ')} image, so I did not look at it."
        return ReadyImage(id=new_id("img"), name=image.name, mime=KINDS[kind], data=data)

    def _too_large(self, name: str, size: int) -> str:
        return (
            f"{name} is {size / 1024 / 1024:.1f} MB, over the {self.max_mb:g} MB limit for images here, so I did not "
            "look at it. Share a smaller one."
        )
