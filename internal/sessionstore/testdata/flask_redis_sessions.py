#!/usr/bin/python3
"""Writes and reads sessions through the real Flask-Session's Redis backend.

Run with Debian's /usr/bin/python3 (python3-flask-session, python3-redis):

  flask_redis_sessions.py write URL PREFIX LIFETIME_SECONDS COUNT
      prints a JSON list of {"sid", "value"} for COUNT new sessions
  flask_redis_sessions.py read URL PREFIX < sids.json
      prints a JSON object mapping each sid to the value the app reads back
      (null when the app finds no session)
"""
import json
import sys
import uuid
from datetime import timedelta

import redis
from flask import Flask, session
from flask_session import Session


def make_app(url, prefix, lifetime):
    app = Flask(__name__)
    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.from_url(url),
        SESSION_KEY_PREFIX=prefix,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime),
    )
    Session(app)

    @app.route("/write/<value>")
    def write(value):
        session["value"] = value
        return session.sid

    @app.route("/read")
    def read():
        return json.dumps(session.get("value"))

    return app


def main():
    mode, url, prefix = sys.argv[1:4]
    if mode == "write":
        app = make_app(url, prefix, int(sys.argv[4]))
        out = []
        for _ in range(int(sys.argv[5])):
            value = uuid.uuid4().hex
            sid = app.test_client().get("/write/" + value).get_data(as_text=True)
            out.append({"sid": sid, "value": value})
        json.dump(out, sys.stdout)
    elif mode == "read":
        app = make_app(url, prefix, 3600)
        # Without its own cookie jar the test client sends our Cookie header.
        client = app.test_client(use_cookies=False)
        name = app.config["SESSION_COOKIE_NAME"]
        json.dump({sid: json.loads(client.get("/read", headers={"Cookie": name + "=" + sid}).get_data(as_text=True))
                   for sid in json.load(sys.stdin)}, sys.stdout)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
