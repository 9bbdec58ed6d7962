#!/usr/bin/python3
"""Flask-Session's SQLAlchemy backend on MySQL/MariaDB through PyMySQL, as apps run it.

Run with Debian's /usr/bin/python3 (python3-flask-session 0.3.2,
python3-flask-sqlalchemy, python3-pymysql). URI is the SQLAlchemy URI the
connection Secret gives apps (FLASK_SQLALCHEMY_DATABASE_URI), such as
mysql+pymysql://user:password@127.0.0.1:3306/db.

  flask_sqlalchemy_mysql.py create URI TABLE
      creates the table with SQLAlchemy's own DDL (db.create_all())
  flask_sqlalchemy_mysql.py write URI TABLE LIFETIME_SECONDS COUNT [PERMANENT]
      prints a JSON list of {"sid", "value"} for COUNT new sessions; a negative
      lifetime writes sessions that have already expired; PERMANENT "false"
      writes non-permanent sessions, whose expiry Flask-Session stores as NULL
  flask_sqlalchemy_mysql.py read URI TABLE < sids.json
      prints a JSON object mapping each sid to the value the app reads back
      (null when the app finds no session)
  flask_sqlalchemy_mysql.py connargs URI
      prints what SQLAlchemy hands PyMySQL for URI (user, password, host,
      port, database, ssl), then connects as that user and prints
      CURRENT_USER() and whether the connection is encrypted
"""
import json
import sys

from flask_session_app import make_app, read_sessions, write_sessions


def sqlalchemy_app(uri, table, lifetime, permanent=True):
    if not uri.startswith("mysql+pymysql://"):
        sys.exit("want a mysql+pymysql:// URI")
    return make_app(lifetime, permanent, SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=uri,
                    SESSION_SQLALCHEMY_TABLE=table)


def connargs(uri):
    import sqlalchemy
    engine = sqlalchemy.create_engine(uri)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    with engine.connect() as conn:
        user = conn.exec_driver_sql("SELECT CURRENT_USER()").scalar()
        cipher = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").fetchone()[1]
    json.dump({"user": kwargs.get("user"), "password": kwargs.get("password"), "host": kwargs.get("host"),
               "port": kwargs.get("port"), "database": kwargs.get("database") or kwargs.get("db"),
               "ssl": kwargs.get("ssl"), "current_user": user, "encrypted": bool(cipher)}, sys.stdout)


def main():
    mode, uri = sys.argv[1:3]
    if mode == "connargs":
        connargs(uri)
        return
    table = sys.argv[3]
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
