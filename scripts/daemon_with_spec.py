#!/usr/bin/env python3
"""Run ishowttsd with EngineSpec fields overridden from $ISHOWTTSD_SPEC_OVERRIDES (a JSON object).

For benchmarks of engine settings the config schema does not (yet) have, e.g.
    ISHOWTTSD_SPEC_OVERRIDES='{"max_batch": 32}' python3 scripts/daemon_with_spec.py --config FILE
Everything else is the real daemon.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from ishowttsd import daemon_parts
from ishowttsd.daemon import main
from ishowttsd.engine.spec import EngineSpec


def patched(overrides: dict[str, Any]) -> Any:
    original = daemon_parts.spec_from_config

    def spec_from_config(cfg: Any, warmup_voice: Any = None) -> EngineSpec:
        return dataclasses.replace(original(cfg, warmup_voice), **overrides)

    return spec_from_config


if __name__ == "__main__":
    daemon_parts.spec_from_config = patched(json.loads(os.environ.get("ISHOWTTSD_SPEC_OVERRIDES", "{}")))
    sys.exit(main())
