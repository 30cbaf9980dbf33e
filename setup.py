"""Install kvloop: ``pip install .`` (add ``[test]`` for the test dependencies)."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
INIT = (HERE / "kvloop" / "__init__.py").read_text(encoding="utf-8")
VERSION = re.search(r'__version__ = "([^"]+)"', INIT).group(1)

setup(
    name="kvloop",
    version=VERSION,
    description="A key/value database server with transactions, in pure Python",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=["kvloop"],
    python_requires=">=3.9",
    extras_require={"test": ["pytest>=7", "pytest-timeout>=2"]},
    entry_points={
        "console_scripts": [
            "kvloop-server=kvloop.server:main",
            "kvloop-client=kvloop.cli:main",
        ],
    },
)
