#!/usr/bin/python3
"""Writes and reads sessions through the real Flask-Session's SQLAlchemy backend.

Run with Debian's /usr/bin/python3 (python3-flask-session 0.3.2,
python3-flask-sqlalchemy, python3-psycopg2). URI is an SQLAlchemy URI such as
postgresql+psycopg2://postgres@127.0.0.1:5432/db; add
?options=-csearch_path%3Dmyschema to use a schema (0.3.2 has no schema setting).

  flask_sqlalchemy_sessions.py create URI TABLE
      creates the table with SQLAlchemy's own DDL (db.create_all())
  flask_sqlalchemy_sessions.py write URI TABLE LIFETIME_SECONDS COUNT [PERMANENT]
      prints a JSON list of {"sid", "value"} for COUNT new sessions; a negative
      lifetime writes sessions that have already expired; PERMANENT "false"
      writes non-permanent sessions, whose expiry Flask-Session stores as NULL
  flask_sqlalchemy_sessions.py read URI TABLE < sids.json
      prints a JSON object mapping each sid to the value the app reads back
      (null when the app finds no session)
"""
import json
import sys
import uuid
from datetime import timedelta

from flask import Flask, session
from flask_session import Session


def make_app(uri, table, lifetime, permanent=True):
    app = Flask(__name__)
    app.config.update(
        SESSION_TYPE="sqlalchemy",
        SQLALCHEMY_DATABASE_URI=uri,
        SESSION_SQLALCHEMY_TABLE=table,
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
    mode, uri, table = sys.argv[1:4]
    if mode == "create":
        app = make_app(uri, table, 3600)
        with app.app_context():
            app.session_interface.db.create_all()
    elif mode == "write":
        permanent = len(sys.argv) < 7 or sys.argv[6] != "false"
        app = make_app(uri, table, int(sys.argv[4]), permanent)
        out = []
        for _ in range(int(sys.argv[5])):
            value = uuid.uuid4().hex
            resp = app.test_client().get("/write/" + value)
            if resp.status_code != 200:
                sys.exit("write failed: HTTP %d" % resp.status_code)
            out.append({"sid": resp.get_data(as_text=True), "value": value})
        json.dump(out, sys.stdout)
    elif mode == "read":
        app = make_app(uri, table, 3600)
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
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
