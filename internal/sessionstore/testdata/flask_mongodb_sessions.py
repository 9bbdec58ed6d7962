#!/usr/bin/python3
"""Writes and reads sessions through the real Flask-Session's MongoDB backend.

Run with Debian's /usr/bin/python3 (python3-flask-session 0.3.2, python3-pymongo):

  flask_mongodb_sessions.py write URL DB COLLECTION PREFIX LIFETIME_SECONDS COUNT [non-permanent]
      prints a JSON list of {"sid", "value"} for COUNT new sessions; a negative
      lifetime writes sessions that have already expired, and "non-permanent"
      writes sessions with expiration null (SESSION_PERMANENT = False)
  flask_mongodb_sessions.py read URL DB COLLECTION PREFIX < sids.json
      prints a JSON object mapping each sid to the value the app reads back
      (null when the app finds no session)
"""
import json
import sys
import uuid
from datetime import timedelta

import pymongo
from flask import Flask, session
from flask_session import Session


def make_app(url, db, collection, prefix, lifetime, permanent=True):
    app = Flask(__name__)
    app.config.update(
        SESSION_TYPE="mongodb",
        SESSION_MONGODB=pymongo.MongoClient(url),
        SESSION_MONGODB_DB=db,
        SESSION_MONGODB_COLLECT=collection,
        SESSION_KEY_PREFIX=prefix,
        SESSION_PERMANENT=permanent,
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
    mode, url, db, collection, prefix = sys.argv[1:6]
    if mode == "write":
        permanent = sys.argv[8:9] != ["non-permanent"]
        app = make_app(url, db, collection, prefix, int(sys.argv[6]), permanent)
        out = []
        for _ in range(int(sys.argv[7])):
            value = uuid.uuid4().hex
            sid = app.test_client().get("/write/" + value).get_data(as_text=True)
            out.append({"sid": sid, "value": value})
        json.dump(out, sys.stdout)
    elif mode == "read":
        app = make_app(url, db, collection, prefix, 3600)
        # Without its own cookie jar the test client sends our Cookie header.
        client = app.test_client(use_cookies=False)
        name = app.config["SESSION_COOKIE_NAME"]
        json.dump({sid: json.loads(client.get("/read", headers={"Cookie": name + "=" + sid}).get_data(as_text=True))
                   for sid in json.load(sys.stdin)}, sys.stdout)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
