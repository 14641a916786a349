"""Demo traffic through the development gateway: a weighted mix of paths, sizes and errors,
each request sent as one of its entry's consumers (their API key in Kong's ``apikey`` header)
or, for an entry without consumers, anonymously."""
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
        self.sent_as = Counter()  # consumer username ("" anonymous) -> count
        self._stop = threading.Event()
        self._thread = None

    def send_one(self) -> int:
        entry = self.random.choices(self.mix, weights=[m.get("weight", 1) for m in self.mix])[0]
        params = {"size": entry.get("size", 512)}
        if self.random.random() < entry.get("error_share", 0):
            params["status"] = self.random.choice([500, 502, 429, 404])
        # (username, key) pairs, resolved from the entry's consumers by localrun.devgateway.load_config
        senders = entry.get("senders") or []
        username, key = self.random.choice(senders) if senders else ("", None)
        headers = {"apikey": key} if key else {}
        try:
            status = requests.get(self.gateway_url + entry["path"], params=params, headers=headers,
                                  timeout=10).status_code
        except requests.RequestException:
            status = 0
        self.sent[(entry["path"], status)] += 1
        self.sent_as[username] += 1
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
    from localrun.devgateway import DEMO_CONFIG, load_config

    traffic = TrafficGenerator(args.gateway, load_config(DEMO_CONFIG).traffic["mix"], args.rate)
    sent = traffic.run(args.count)
    for (path, status), n in sorted(sent.items()):
        print(f"{path} {status}: {n}")
    for username, n in sorted(traffic.sent_as.items()):
        print(f"as {username or '(anonymous)'}: {n}")


if __name__ == "__main__":
    main()
