"""`hashtrail collect`: pull, verify and store everything new from one device (--port,
hashtrail.collector.port.collect_port) or from devices behind an MQTT broker (--mqtt,
hashtrail.collector.mqtt.collect_mqtt); this module parses and prints."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hashtrail.cli import progress
from hashtrail.cli.args import at_least, device_arg, seconds, store_arg
from hashtrail.collector.collect import DEADLINE_S, MAX_RECORDS
from hashtrail.collector.mqtt import FOLLOW_INTERVAL_S, PUSH_GAP_S, Outcome, collect_mqtt
from hashtrail.collector.port import collect_port
from hashtrail.collector.store import Store
from hashtrail.device.mqtt_link import parse_url
from hashtrail.errors import InputError
from hashtrail.userfile import read_text


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "collect", help="collect new records from an enrolled device into a collector store")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port (or a virtual device's pty)")
    where.add_argument("--mqtt", metavar="URL",
                       help="collect over an MQTT broker: mqtt://HOST[:PORT] or "
                            "mqtts://HOST[:PORT] (TLS); devices: --device, else every "
                            "device enrolled in --store")
    store_arg(p, "collector store file (SQLite), made by `hashtrail enroll`")
    p.add_argument("--baud", type=at_least(1), default=115200,
                   help="serial baud rate (default 115200)")
    p.add_argument("--no-ack", action="store_true",
                   help="do not let the device prune what was collected")
    p.add_argument("--no-set-time", action="store_true",
                   help="do not set the device clock when it is unset")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--deadline", type=seconds, default=DEADLINE_S, metavar="SECONDS",
                   help=f"stop after this long, whatever the device does "
                        f"(default {DEADLINE_S:g})")
    p.add_argument("--max-records", type=at_least(1), default=MAX_RECORDS, metavar="N",
                   help=f"at most N records in one run, fewer when the device announces "
                        f"fewer (default {MAX_RECORDS})")
    m = p.add_argument_group("MQTT (with --mqtt)")
    m.add_argument("--device", type=device_arg, action="append", metavar="ID",
                   help="a device to collect (repeatable; default: every enrolled one)")
    m.add_argument("--follow", action="store_true",
                   help="keep collecting, a round every --interval seconds, until Ctrl-C")
    m.add_argument("--interval", type=seconds, default=FOLLOW_INTERVAL_S, metavar="SECONDS",
                   help=f"seconds between rounds with --follow (default "
                        f"{FOLLOW_INTERVAL_S:g})")
    m.add_argument("--push-gap", type=seconds, default=None, metavar="SECONDS",
                   help=f"with --follow: a device that pushed new entries is collected at "
                        f"once, at most every SECONDS (default {PUSH_GAP_S:g}; each "
                        "collection costs the device a checkpoint signature)")
    m.add_argument("--mqtt-user", metavar="NAME", help="broker user name")
    m.add_argument("--mqtt-password", metavar="PASSWORD", help="broker password")
    m.add_argument("--mqtt-ca", metavar="FILE", help="CA certificates for TLS (PEM)")
    m.add_argument("--mqtt-cert", metavar="FILE", help="client certificate for TLS (PEM)")
    m.add_argument("--mqtt-key", metavar="FILE", help="client key for TLS (PEM)")
    m.add_argument("--mqtt-insecure", action="store_true",
                   help="TLS without checking the broker's host name")
    p.set_defaults(func=run)


_MQTT_ONLY = ("device", "follow", "push_gap", "mqtt_user", "mqtt_password", "mqtt_ca", "mqtt_cert",
              "mqtt_key", "mqtt_insecure")


def _notice(line: str) -> None:
    # stderr: the --json summary on stdout stays one JSON document.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _print_result(res: Any) -> None:
    print(f"{res.device_id} ({res.label}): {res.new_entries} new entries accepted, "
          f"up to seq {res.upto_seq}; "
          f"{'acknowledged' if res.acked else 'not acknowledged'}; "
          f"{res.bytes_in} bytes in {res.seconds:.2f} s", flush=True)


def _print_outcome(o: Outcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(o.to_json()), flush=True)
    elif o.result is not None:
        _print_result(o.result)
    elif o.idle:
        print(f"{o.device_id}: nothing new", flush=True)
    else:
        _notice(f"error: {o.error}")


def run_mqtt(args: argparse.Namespace) -> int:
    if args.push_gap is not None and not args.follow:
        raise InputError("--push-gap is for --follow (collecting on pushes between rounds)")
    opts = parse_url(args.mqtt, username=args.mqtt_user, password=args.mqtt_password,
                     ca_certs=args.mqtt_ca, certfile=args.mqtt_cert, keyfile=args.mqtt_key,
                     tls_insecure=args.mqtt_insecure or None)
    with Store.open(args.store, create=False) as st:
        try:
            outs = collect_mqtt(opts, st, args.device, follow=args.follow,
                                interval=args.interval,
                                push_gap=PUSH_GAP_S if args.push_gap is None
                                else args.push_gap,
                                on_outcome=lambda o: _print_outcome(o, args.json),
                                ack=not args.no_ack, set_time=not args.no_set_time,
                                deadline=args.deadline, max_records=args.max_records,
                                notice=_notice)
        except KeyboardInterrupt:
            return 0 if args.follow else 130
    return max((o.exit_code for o in outs), default=0)


def run(args: argparse.Namespace) -> int:
    for f in (args.mqtt_ca, args.mqtt_cert, args.mqtt_key):
        if f is not None and "-----BEGIN " not in read_text(f, "a PEM file (TLS)"):
            raise InputError(f"{f}: no PEM block; expected a PEM file (TLS)")
    if args.mqtt is not None:
        return run_mqtt(args)
    for k in _MQTT_ONLY:
        if getattr(args, k):
            raise InputError(f"--{k.replace('_', '-')} is for collection over MQTT (--mqtt)")
    # Notices (the device woken from its REPL, its own altered-log report, a failed
    # acknowledgement) come through the library's loggers, on stderr: the --json
    # summary on stdout stays one JSON document.
    with progress.bar("collect", unit="entries") as bar:
        def shown(got: int, expected: int, nbytes: int) -> None:
            bar.update(got, max(expected, got), detail=f"{nbytes / 1024:.1f} KiB")

        res = collect_port(args.store, args.port, args.baud, ack=not args.no_ack,
                           set_time=not args.no_set_time, progress=shown,
                           deadline=args.deadline, max_records=args.max_records)
    if args.json:
        print(json.dumps(res.to_json()))
    else:
        _print_result(res)
    return 0
