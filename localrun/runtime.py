"""`make run`: the whole system on a bare machine, with embedded defaults.

It plays the parts AWS plays in production and invokes the same handlers AWS invokes:
an embedded moto server (unless AWS_ENDPOINT_URL is set), the Prometheus binary
scraping a development gateway with demo traffic (unless PROMETHEUS_URL is set), a
scheduler for the collector (EventBridge), a stream poller for the alerts function
(Lambda's event-source mapping), `chalice local` for the API, and an outbox that
prints and saves every email sent (both parts, as sent).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import List


from chalicelib.core import observability

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
OUTBOX = ROOT / "outbox"
log = logging.getLogger("localrun")

DEFAULTS = {
    "TABLE_NAME": "bandwidth-meter",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "ALERT_FROM": "alerts@bandwidth-meter.local",
    "STAGE": "dev",
    "COLLECT_LAG_SECONDS": "15",
    "INITIAL_BACKFILL_MINUTES": "5",
}
# Not Bandwidth Meter's settings but boto's own variables, which boto3 and PynamoDB read from the
# process's environment: credentials the embedded moto server accepts, and botocore >= 1.40's
# account-based stream hosts, which moto does not route.
BOTO_DEFAULTS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


class StartupError(Exception):
    pass


class _Context:
    def __init__(self, name):
        self.function_name = name
        self.aws_request_id = "local"


def scheduled_event(region: str = "us-east-1") -> dict:
    return {"version": "0", "id": "local", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "000000000000", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": region, "resources": ["local-schedule"], "detail": {}}


class Runtime:
    """``env``: the user's variables (the process's environment unless given). The runtime never
    changes them: it keeps its own copy, adds what it started (the moto server, Prometheus, the
    Admin API), builds the settings from that and hands them to the functions with
    ``bootstrap.override(settings=...)``; only `chalice local`, a child process, gets them as an
    environment."""

    def __init__(self, env=os.environ):
        self.env = dict(env)
        self.api_port = int(env.get("API_PORT", "8000"))
        self.api_host = env.get("API_HOST", "127.0.0.1")  # 0.0.0.0 inside a container
        self.interval = float(env.get("COLLECT_INTERVAL", "60"))
        self.stop_event = threading.Event()
        self.parent = os.getppid()  # make, or the shell: when it is gone, nobody can stop us
        self.children: List[subprocess.Popen] = []
        self.closers = []
        self.moto = None
        self.prometheus = None
        self.gateway_url = None
        self.admin_url = None

    # -- start-up ----------------------------------------------------------------------------
    def start(self) -> None:
        from localrun.processes import port_in_use

        if port_in_use(self.api_port):
            raise StartupError(f"API_PORT {self.api_port} is already in use on 127.0.0.1; "
                               "stop what runs there or choose another port: API_PORT=8001 make run")
        for name, value in DEFAULTS.items():
            self.env.setdefault(name, value)
        self._configure_boto()
        self._start_aws()
        stream_arn = self._create_resources()
        self._start_prometheus()
        self._start_api()
        self._start_loops(stream_arn)
        self._write_pids()
        self._announce()

    def settings(self):
        """The functions' settings: the user's variables, the defaults and what was started."""
        from chalicelib.core.settings import from_env

        return from_env(self.env)

    def _use_settings(self) -> None:
        from chalicelib import bootstrap

        bootstrap.reset()
        bootstrap.override(settings=self.settings())  # binds the models to the table

    def _configure_boto(self) -> None:
        """boto's variables, for this process (boto3 and PynamoDB read them from its environment)
        and for the API's; credentials only when the AWS is our own embedded moto server."""
        embedded = not self.env.get("AWS_ENDPOINT_URL")
        for name, value in BOTO_DEFAULTS.items():
            if embedded or name == "AWS_ACCOUNT_ID_ENDPOINT_MODE":
                self.env.setdefault(name, value)
                os.environ.setdefault(name, self.env[name])

    def _start_aws(self) -> None:
        if self.env.get("AWS_ENDPOINT_URL"):
            return
        from moto.server import ThreadedMotoServer

        from localrun.processes import free_port

        port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        self.closers.append(self.moto.stop)
        self.env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"

    def _create_resources(self) -> str:
        import boto3

        from chalicelib import bootstrap
        from chalicelib.core import tables

        self._use_settings()
        stream_arn = tables.ensure_table()
        bootstrap.current().aws_client("ses").verify_email_identity(EmailAddress=self.env["ALERT_FROM"])
        self.streams = boto3.client("dynamodbstreams", region_name=self.env["AWS_REGION"],
                                    endpoint_url=self.env["AWS_ENDPOINT_URL"])
        return stream_arn

    def _start_prometheus(self) -> None:
        if self.env.get("PROMETHEUS_URL"):
            return
        from localrun.devgateway import DEMO_CONFIG, DemoUpstream, DevGateway, load_config
        from localrun.prometheus import PrometheusServer
        from localrun.traffic import TrafficGenerator

        upstream = DemoUpstream().start()
        # The gateway speaks the format the collector reads (the first of GATEWAY: make run GATEWAY=apisix).
        config = load_config(DEMO_CONFIG, {"UPSTREAM_URL": upstream.url}, gateway=self.settings().gateways[0])
        admin_state = None
        if not self.env.get("KONG_ADMIN_URL"):
            # The gateway's Admin API on its own port, as Kong's 8001: the collector's reconcile
            # blocks services here and the gateway answers their requests 429.
            from localrun.kongadmin import AdminServer, AdminState

            admin_state = AdminState(sorted({r.service for r in config.routes}))
            admin = AdminServer(admin_state).start()
            self.closers.append(admin.stop)
            self.env["KONG_ADMIN_URL"] = self.admin_url = admin.url
        gateway = DevGateway(config, admin=admin_state).start()
        traffic = TrafficGenerator(gateway.url, config.traffic["mix"], config.traffic.get("rate_per_second", 4)).start()
        self.closers += [upstream.stop, gateway.stop, traffic.stop]
        self.gateway_url = gateway.url
        RUN_DIR.mkdir(exist_ok=True)
        self.prometheus = PrometheusServer(targets=[gateway.url.split("//", 1)[1]], scrape_interval="5s",
                                           log_path=str(RUN_DIR / "prometheus.log")).start()
        self.children.append(self.prometheus.process)
        self.closers.append(self.prometheus.stop)
        self.prometheus.wait_ready()
        self.env["PROMETHEUS_URL"] = self.prometheus.url

    def _start_api(self) -> None:
        from localrun.processes import ProcessFailed, start_chalice_local

        RUN_DIR.mkdir(exist_ok=True)
        self.env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{self.api_port}")
        try:
            self.api, _ = start_chalice_local(self.api_port, dict(self.env), RUN_DIR / "api.log", host=self.api_host)
        except ProcessFailed as e:
            raise StartupError(f"the API did not start ({e}); see {RUN_DIR / 'api.log'}") from None
        self.children.append(self.api)

    def _start_loops(self, stream_arn: str) -> None:
        import app
        from chalicelib import bootstrap

        from localrun.streams import StreamPoller

        self._use_settings()  # the settings now include the Prometheus this runtime started
        # The handlers run in this process: their mailer hands each message it sent to the outbox,
        # both parts as sent (the SES emulators keep only one of them).
        from chalicelib.notify.mailer import CopyingMailer

        deps = bootstrap.current()
        bootstrap.override(deps.settings, mailer=CopyingMailer(deps.mailer, deps.settings.alert_from,
                                                               self._save_email))

        self.poller = StreamPoller(self.streams, stream_arn, app.alerts, failed_dir=str(RUN_DIR / "failed-batches"),
                                   context=_Context("bandwidth-meter-local-alerts"))
        self.collect_handler = app.collect
        self.shard_handler = app.collect_shard
        self.shard_count = bootstrap.current().settings.shard_count
        for target in (self._schedule_loop, self._stream_loop):
            threading.Thread(target=target, daemon=True, name=target.__name__).start()

    def _write_pids(self) -> None:
        (RUN_DIR / "pids").write_text("\n".join(str(p.pid) for p in [*self.children]) + f"\n{os.getpid()}\n")

    def _announce(self) -> None:
        from chalicelib.api import access
        from chalicelib import bootstrap

        api = f"http://127.0.0.1:{self.api_port}"
        lines = [
            "Bandwidth Meter is running:",
            f"  API          {api}/v1/health   (docs {api}/docs, dashboard {api}/dashboard)",
            f"  Prometheus   {self.env['PROMETHEUS_URL']}" + (" (embedded)" if self.prometheus else ""),
            f"  AWS          {self.env['AWS_ENDPOINT_URL']}" + (" (embedded moto server)" if self.moto else ""),
            f"  table        {self.env['TABLE_NAME']}, sender {self.env['ALERT_FROM']}",
            f"  collector    every {self.interval:g} s; emails are printed and saved under {OUTBOX}/",
            f"  access       {access.startup_notice(bootstrap.current().settings)}",
        ]
        if self.gateway_url:
            lines.append(f"  gateway      {self.gateway_url}/metrics (development gateway with demo traffic, "
                         f"{self.settings().gateways[0]} format)")
        if self.admin_url:
            lines.append(f"  kong admin   {self.admin_url}/plugins (the gateway's Admin API: quotas with action "
                         "reject block services here)")
        # The command line's default is port 8000: say how to point it here, whatever API_PORT is.
        lines.append(f"  command line export BWMETER_URL={api}   (paste in another terminal, then: "
                     ".venv/bin/bwmeter services)")
        lines.append("Press Ctrl+C to stop.")
        print("\n".join(lines), flush=True)

    # -- loops -------------------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            if self.shard_count > 1:
                self._run_shards()
            else:
                self._run_collect(lambda: self.collect_handler(scheduled_event(self.env["AWS_REGION"]),
                                                               _Context("bandwidth-meter-local-collect")), "collect")
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _run_shards(self) -> None:
        """SHARD_COUNT > 1: what the schedule's fan-out does in AWS, as parallel local workers
        (threads calling the worker handler, each with its payload)."""
        workers = [threading.Thread(target=self._run_collect, name=f"collect-shard-{shard}", args=(
            lambda shard=shard: self.shard_handler({"shard": shard}, _Context("bandwidth-meter-local-collect_shard")),
            f"collect {shard}")) for shard in range(self.shard_count)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    @staticmethod
    def _run_collect(handler, label: str) -> None:
        try:
            report = handler()
            minutes = f"{report['minutes']} minute" + ("" if report["minutes"] == 1 else "s")
            print(f"[{label}] {report['status']}: {minutes} up to {report['end']}; "
                  f"{observability.readable(observability.last_flushed(clear=True))}", flush=True)
            Runtime._print_enforcement(report.get("enforcement"))
        except Exception as e:  # Lambda would log the failure and run again next minute
            print(f"[{label}] failed: {e}; {observability.readable(observability.last_flushed(clear=True))}",
                  flush=True)

    @staticmethod
    def _print_enforcement(enforcement) -> None:
        if not enforcement:
            return
        for service in enforcement.get("added", []):
            print(f"[enforce] {service} blocked at the gateway (429 until its quota period ends)", flush=True)
        for service in enforcement.get("lifted", []):
            print(f"[enforce] {service} unblocked", flush=True)
        for problem in enforcement.get("errors", []) + [m["error"] for m in enforcement.get("missing", [])]:
            print(f"[enforce] {problem}", flush=True)

    def _stream_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                if not self.poller.poll_once():
                    self.stop_event.wait(1)
                alerts = observability.last_flushed(clear=True)
                if alerts:  # the same counts the alerts function emits as metrics in AWS
                    print(f"[alerts] {observability.readable(alerts)}", flush=True)
            except Exception as e:
                print(f"[alerts] stream polling failed: {e}", flush=True)
                self.stop_event.wait(2)

    def _save_email(self, email: EmailMessage) -> None:
        """Save a message the mailer sent, as sent (multipart/alternative: text and HTML)."""
        OUTBOX.mkdir(exist_ok=True)
        message_id = email["Message-ID"].strip("<>").split("@")[0]
        path = OUTBOX / f"{time.strftime('%Y%m%dT%H%M%S')}-{message_id}.eml"
        path.write_bytes(bytes(email))
        print(f"[email] {time.strftime('%H:%M:%S')} to {email['To']}: {email['Subject']} "
              f"({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})", flush=True)

    # -- running and stopping ------------------------------------------------------------------
    def wait(self) -> int:
        while not self.stop_event.is_set():
            if os.getppid() != self.parent:  # orphaned: `make` was killed alone, its child is left
                print("The process that started Bandwidth Meter is gone; stopping.", file=sys.stderr)
                return 1
            for child in self.children:
                if child.poll() is not None:
                    print(f"A child process ({child.args[0] if isinstance(child.args, list) else child.args}) "
                          f"exited with {child.returncode}; stopping. Logs are in {RUN_DIR}/", file=sys.stderr)
                    return 1
            self.stop_event.wait(1)
        return 0

    def stop(self) -> None:
        from localrun.processes import stop_process

        self.stop_event.set()
        for child in self.children:
            stop_process(child)
        for close in reversed(self.closers):
            try:
                close()
            except Exception as e:  # stopping goes on for the others
                print(f"while stopping: {e}", file=sys.stderr)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the embedded moto server's request log
    runtime = Runtime()

    def on_signal(signum, frame):
        runtime.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        runtime.start()
        code = runtime.wait()
    except Exception as e:  # a failed install, a busy port, a child that would not start
        print(f"Cannot start: {e}", file=sys.stderr)
        code = 1
    finally:
        runtime.stop()
    print("Stopped.", flush=True)
    return code
