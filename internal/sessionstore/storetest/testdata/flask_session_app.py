"""What every Flask-Session script here shares: an app that stores one
value per session, and writing and reading sessions through it.

Each flask_*_sessions.py configures the app for its backend and calls these.
"""
import json
import sys
import uuid
from datetime import timedelta

from flask import Flask, session
from flask_session import Session


def make_app(lifetime, permanent=True, **config):
    """Returns a Flask app with Flask-Session configured by config."""
    app = Flask(__name__)
    app.config.update(SESSION_PERMANENT=permanent, PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime), **config)
    Session(app)

    @app.route("/write/<value>")
    def write(value):
        session["value"] = value
        return session.sid

    @app.route("/read")
    def read():
        return json.dumps(session.get("value"))

    return app


def write_sessions(app, count):
    """Makes count new sessions; prints [{"sid", "value"}] as JSON."""
    out = []
    for _ in range(count):
        value = uuid.uuid4().hex
        resp = app.test_client().get("/write/" + value)
        if resp.status_code != 200:
            sys.exit("write failed: HTTP %d" % resp.status_code)
        out.append({"sid": resp.get_data(as_text=True), "value": value})
    json.dump(out, sys.stdout)


def read_sessions(app):
    """Reads the sids on stdin; prints {sid: value or null} as JSON."""
    # Without its own cookie jar the test client sends our Cookie header.
    client = app.test_client(use_cookies=False)
    name = app.config["SESSION_COOKIE_NAME"]
    out = {}
    for sid in json.load(sys.stdin):
        resp = client.get("/read", headers={"Cookie": name + "=" + sid})
        if resp.status_code != 200:
            sys.exit("read of %s failed: HTTP %d" % (sid, resp.status_code))
        out[sid] = json.loads(resp.get_data(as_text=True))
    json.dump(out, sys.stdout)
