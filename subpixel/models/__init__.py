"""Bundled models: ESPCN super-resolution (Shi et al. 2016) for scales 2, 3, 4, run over
images of any size (:mod:`.tiling`, :mod:`.large`), from files (:mod:`.upscale`), or
exported and run in a runtime (:mod:`.export`, :mod:`.runtime`)."""

from .espcn import ESPCN, SCALES
from .runtime import RuntimeModel
from .tiling import upscale_image, upscale_luma

__all__ = ["ESPCN", "SCALES", "RuntimeModel", "upscale_image", "upscale_luma"]
