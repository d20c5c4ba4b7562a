"""Imported once by the engine's fork server (engine/start.py), never by the daemon's own process.

Importing this module is the fork server's whole job: it imports torch, f5-tts and vocos (see
start.preload_engine for the environment around those imports), so every worker forked from the
server starts with them loaded.
"""

from __future__ import annotations

from ishowttsd.engine.start import preload_engine

preload_engine()
