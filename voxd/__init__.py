"""voxd: a self-hosted runtime for real-time voice AI agents."""

__version__ = "0.1.0"
