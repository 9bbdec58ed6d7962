#!/usr/bin/python3
"""Flask-Session 0.8's SQLAlchemy model with SESSION_SQLALCHEMY_SEQUENCE, on Debian's Flask-SQLAlchemy.

Debian's Flask-Session is 0.3.2, which has no SEQUENCE setting, so this script
declares the model Flask-Session 0.8 builds in create_session_model()
(flask_session/sqlalchemy/sqlalchemy.py):
    id = Column(Integer, Sequence(sequence), primary_key=True)
    session_id = Column(String(255), unique=True)
    data = Column(LargeBinary)
    expiry = Column(DateTime)
and writes sessions as 0.8's _upsert_session does: a new record with
expiry = utcnow() + lifetime, added and committed; SQLAlchemy draws each id
with nextval(sequence) in the INSERT. Run with /usr/bin/python3. URI as in
flask_sqlalchemy_sessions.py (?options=-csearch_path%3Dschema for a schema).

  flask_sqlalchemy_sequence.py create URI TABLE SEQUENCE
      creates table and sequence with SQLAlchemy's own DDL (db.create_all())
  flask_sqlalchemy_sequence.py write URI TABLE SEQUENCE COUNT
      inserts COUNT sessions and prints the JSON list of their ids
"""
import json
import secrets
import sys
from datetime import datetime, timedelta

from flask import Flask
from flask_sqlalchemy import SQLAlchemy


def make_model(uri, table, sequence):
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    app.config["SQLALCHEMY_TRACK_MODIFICATIONS"] = False
    db = SQLAlchemy(app)

    class Session(db.Model):
        __tablename__ = table
        id = db.Column(db.Integer, db.Sequence(sequence), primary_key=True)
        session_id = db.Column(db.String(255), unique=True)
        data = db.Column(db.LargeBinary)
        expiry = db.Column(db.DateTime)

    return app, db, Session


def main():
    mode, uri, table, sequence = sys.argv[1:5]
    app, db, Session = make_model(uri, table, sequence)
    with app.app_context():
        if mode == "create":
            db.create_all()
        elif mode == "write":
            ids = []
            for _ in range(int(sys.argv[5])):
                record = Session(session_id="session:" + secrets.token_urlsafe(32), data=b"\x81\xa1k\xa1v",
                                 expiry=datetime.utcnow() + timedelta(days=31))
                db.session.add(record)
                db.session.commit()
                ids.append(record.id)
            print(json.dumps(ids))
        else:
            sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
