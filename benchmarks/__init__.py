"""Benchmarks of the registrator daemon at scale (GitHub issue 7).

Run ``python -m benchmarks`` (``--smoke`` for a quick run); see benchmarks/README.md.
Everything runs on a private Docker daemon (tests/private_dockerd.py) and the Consul agent
double (tests/consul_double.py); only 127.0.0.1 is ever contacted.
"""
