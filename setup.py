"""Build hook for the C extensions; everything else is in pyproject.toml.

- gossip/_lzwc.c: LZW (gossip.lzw runs its pure-Python code without it);
- dnsserver/_udpc.c: recvmmsg/sendmmsg for the DNS server's UDP socket (without it the server
  answers through the asyncio transport, the reference path).
- lb/_splicec.c: the TCP-mode splice pump's two system calls per readable event in one call
  (without it lb/tcp.py makes them with os.splice, the reference path).

Both are optional: without a C compiler the install still succeeds.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gossip._lzwc", ["gossip/_lzwc.c"], optional=True,
                             extra_compile_args=["-O2"]),
                   Extension("dnsserver._udpc", ["dnsserver/_udpc.c"], optional=True,
                             extra_compile_args=["-O2"]),
                   Extension("lb._splicec", ["lb/_splicec.c"], optional=True,
                             extra_compile_args=["-O2"])])
