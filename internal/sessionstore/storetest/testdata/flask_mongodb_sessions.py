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
import sys

import pymongo

from flask_session_app import make_app, read_sessions, write_sessions


def mongodb_app(url, db, collection, prefix, lifetime, permanent=True):
    return make_app(lifetime, permanent, SESSION_TYPE="mongodb", SESSION_MONGODB=pymongo.MongoClient(url),
                    SESSION_MONGODB_DB=db, SESSION_MONGODB_COLLECT=collection, SESSION_KEY_PREFIX=prefix)


def main():
    mode, url, db, collection, prefix = sys.argv[1:6]
    if mode == "write":
        permanent = sys.argv[8:9] != ["non-permanent"]
        write_sessions(mongodb_app(url, db, collection, prefix, int(sys.argv[6]), permanent), int(sys.argv[7]))
    elif mode == "read":
        read_sessions(mongodb_app(url, db, collection, prefix, 3600))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
