"""``python -m kvloop`` starts the server (same flags as ``python server.py``)."""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
