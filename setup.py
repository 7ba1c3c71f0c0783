"""Build hook for the one C extension (gossip/_lzwc.c, LZW); everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and gossip.lzw runs
its pure-Python code.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gossip._lzwc", ["gossip/_lzwc.c"], optional=True,
                             extra_compile_args=["-O2"])])
