"""Bundled models: ESPCN super-resolution (Shi et al. 2016) for scales 2, 3, 4."""

from .espcn import ESPCN, SCALES, upscale_image, upscale_luma

__all__ = ["ESPCN", "SCALES", "upscale_image", "upscale_luma"]
