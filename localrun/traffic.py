"""Demo traffic through the development gateway: a weighted mix of paths, sizes and errors."""
from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter

import requests


class TrafficGenerator:
    def __init__(self, gateway_url: str, mix: list, rate_per_second: float, seed=None, sleep=time.sleep):
        self.gateway_url = gateway_url.rstrip("/")
        self.mix = mix
        self.rate = rate_per_second
        self.random = random.Random(seed)
        self.sleep = sleep
        self.sent = Counter()  # (path, status) -> count
        self._stop = threading.Event()
        self._thread = None

    def send_one(self) -> int:
        entry = self.random.choices(self.mix, weights=[m.get("weight", 1) for m in self.mix])[0]
        params = {"size": entry.get("size", 512)}
        if self.random.random() < entry.get("error_share", 0):
            params["status"] = self.random.choice([500, 502, 429, 404])
        try:
            status = requests.get(self.gateway_url + entry["path"], params=params, timeout=10).status_code
        except requests.RequestException:
            status = 0
        self.sent[(entry["path"], status)] += 1
        return status

    def run(self, count: int) -> Counter:
        for _ in range(count):
            if self._stop.is_set():
                break
            self.send_one()
            self.sleep(1 / self.rate)
        return self.sent

    def start(self) -> "TrafficGenerator":
        def loop():
            while not self._stop.is_set():
                self.send_one()
                self._stop.wait(1 / self.rate)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description="Send demo traffic through the development gateway.")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--rate", type=float, default=2)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    import yaml

    from localrun.devgateway import DEMO_CONFIG

    with open(DEMO_CONFIG) as f:
        mix = yaml.safe_load(f)["traffic"]["mix"]
    sent = TrafficGenerator(args.gateway, mix, args.rate).run(args.count)
    for (path, status), n in sorted(sent.items()):
        print(f"{path} {status}: {n}")


if __name__ == "__main__":
    main()
