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
import sys

from flask_session_app import make_app, read_sessions, write_sessions


def sqlalchemy_app(uri, table, lifetime, permanent=True):
    return make_app(lifetime, permanent, SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=uri,
                    SESSION_SQLALCHEMY_TABLE=table)


def main():
    mode, uri, table = sys.argv[1:4]
    if mode == "create":
        app = sqlalchemy_app(uri, table, 3600)
        with app.app_context():
            app.session_interface.db.create_all()
    elif mode == "write":
        permanent = len(sys.argv) < 7 or sys.argv[6] != "false"
        write_sessions(sqlalchemy_app(uri, table, int(sys.argv[4]), permanent), int(sys.argv[5]))
    elif mode == "read":
        read_sessions(sqlalchemy_app(uri, table, 3600))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
