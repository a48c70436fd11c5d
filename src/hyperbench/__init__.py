"""hyperbench: measure exact attention, FlashAttention and HyperAttention side by side."""

__version__ = "0.1.0"
