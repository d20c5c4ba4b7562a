"""ishowttsd: F5-TTS as a self-maintaining systemd service."""

__version__ = "0.1.0"
