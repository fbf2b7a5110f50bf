"""A minimal Consul client, run as its own process: ``python -m benchmarks.calibrate_client
PORT COUNT`` sends COUNT register requests one after another over one keep-alive connection,
then reads /v1/agent/services 20 times. Prints the seconds the registers took and the median
milliseconds of one read. It measures the double (plus the least a Python client costs), so
the daemon's figures can be told apart from the double's."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import sys
import time


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    host = socket.gethostname()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    began = time.perf_counter()
    for n in range(count):
        body = json.dumps(
            {
                "ID": f"{host}:calib.{n}:{20000 + n}",
                "Name": "busybox",
                "Address": "127.0.0.1",
                "Port": 20000 + n,
                "Tags": [],
                "Meta": {"registrator": host},
            }
        )
        conn.request("PUT", "/v1/agent/service/register", body)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    took = time.perf_counter() - began
    reads = []
    for _ in range(20):
        t = time.perf_counter()
        conn.request("GET", "/v1/agent/services")
        response = conn.getresponse()
        json.loads(response.read())
        reads.append((time.perf_counter() - t) * 1000)
    print(f"{took:.4f} {statistics.median(reads):.3f}")


if __name__ == "__main__":
    main()
