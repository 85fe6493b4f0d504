"""Provider emulator: NanoBanana Video and NoHuman Studio APIs on loopback (an emulator, not the providers)."""

from .render import output_dimensions, render_video
from .server import ProviderEmulator

__all__ = ["ProviderEmulator", "output_dimensions", "render_video"]
