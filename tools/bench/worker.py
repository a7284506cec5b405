"""Child side: run one measurement of one implementation and write its result as JSON.

Usage (by ``runner.Runner``, never by hand)::

    python -m tools.bench.worker '{"impl": "ours", "measure": "start:start_join", "params": {...}}' OUT.json

``measure`` is ``<section module>:<name>``, resolved in that module's
``MEASURES`` table; the function is called as ``fn(api, **params)`` with
the implementation's adapter (``impls.load``) and returns JSON-able data.
The result (or the traceback) is written to ``OUT.json``, not to stdout:
helpers a measurement leaves behind (a fork server, a resource tracker)
inherit stdout, and the parent must not wait for them to close it.

This module is the ``__main__`` that spawned children re-import (as
``__mp_main__``), so it does nothing unless run as the main program.
Standard library only: it also runs under the upstream venv's interpreter.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any, Dict, List


def run(request: Dict[str, Any]) -> Dict[str, Any]:
    """Run the measurement described by ``request``; never raises."""
    try:
        from tools.bench import impls

        api = impls.load(request["impl"])
        module_name, _, name = request["measure"].partition(":")
        module = importlib.import_module(f"tools.bench.sections.{module_name}")
        measure = module.MEASURES[name]
        result = measure(api, **request.get("params", {}))
        return {"ok": True, "result": result, "impl": api.describe()}
    except BaseException:  # noqa: B036 - the parent must hear about everything
        return {"ok": False, "error": traceback.format_exc()}


def main(argv: List[str]) -> int:
    request = json.loads(argv[1])
    out_path = argv[2]
    answer = run(request)
    tmp = f"{out_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(answer, f)
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
