"""Container HEALTHCHECK: exit 0 when the service answers GET /health with 200, else 1.

Python's standard library only, so the images need no curl.
"""

import os
import sys
import urllib.request

port = os.environ.get("FARM_PORT") or (sys.argv[1] if len(sys.argv) > 1 else "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure (refused, timeout, HTTP error) means unhealthy
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
