"""localstripe (an independent emulator of Stripe's API, from PyPI) on 127.0.0.1, empty.

localstripe's own entry point listens on '::' (fails where IPv6 is off) and reloads its last
state from /tmp; the tests want a fresh one on loopback.
"""
import argparse

from aiohttp import web
from localstripe.server import app

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
