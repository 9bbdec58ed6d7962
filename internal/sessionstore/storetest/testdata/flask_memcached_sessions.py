#!/usr/bin/python3
"""Writes and reads sessions through the real Flask-Session's memcached backend.

Run with Debian's /usr/bin/python3 (python3-flask-session, python3-memcache):

  flask_memcached_sessions.py write URL PREFIX LIFETIME_SECONDS COUNT
      prints a JSON list of {"sid", "value"} for COUNT new sessions
  flask_memcached_sessions.py read URL PREFIX < sids.json
      prints a JSON object mapping each sid to the value the app reads back
      (null when the app finds no session)
"""
import sys

import memcache

from flask_session_app import make_app, read_sessions, write_sessions


def servers(url):
    """memcached://h1:p1,h2:p2 -> ["h1:p1", "h2:p2"], the list memcache.Client takes."""
    return url.split("://", 1)[1].rstrip("/").split(",")


def memcached_app(url, prefix, lifetime):
    return make_app(lifetime, SESSION_TYPE="memcached", SESSION_MEMCACHED=memcache.Client(servers(url)),
                    SESSION_KEY_PREFIX=prefix)


def main():
    mode, url, prefix = sys.argv[1:4]
    if mode == "write":
        write_sessions(memcached_app(url, prefix, int(sys.argv[4])), int(sys.argv[5]))
    elif mode == "read":
        read_sessions(memcached_app(url, prefix, 3600))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
