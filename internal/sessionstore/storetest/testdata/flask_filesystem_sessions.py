#!/usr/bin/python3
"""Writes and reads session files through the real Flask-Session filesystem
type (cachelib's FileSystemCache), and writes the layout of cachelib < 0.7.

Run with Debian's /usr/bin/python3 (python3-flask-session, python3-cachelib):

  flask_filesystem_sessions.py write DIR LIFETIME_SECONDS COUNT [THRESHOLD]
      makes COUNT sessions through the app (SESSION_FILE_THRESHOLD, default
      500); prints a JSON list of {"sid", "value"}
  flask_filesystem_sessions.py read DIR < sids.json
      prints a JSON object mapping each sid to the value the app reads back
      (null when the app finds no session)
  flask_filesystem_sessions.py count DIR [HASH]
      prints the count file's value as cachelib reads it (null if none),
      with hash_method hashlib.HASH (default md5)
  flask_filesystem_sessions.py recount DIR
      prints the number of files cachelib counts when it starts (threshold
      500), which is what it lists as cache entries
  flask_filesystem_sessions.py cacheset DIR HASH THRESHOLD < entries.json
      sets [{"key", "timeout", "value"}] through FileSystemCache with
      hash_method hashlib.HASH
  flask_filesystem_sessions.py cacheget DIR HASH < keys.json
      prints {key: value} as that cache's get returns it
  flask_filesystem_sessions.py racecount DIR THRESHOLD
      the app's side of a race on the count file: reads the count as
      _update_count does and prints "read N"; on a line of stdin writes N+1
      as _update_count does and prints "wrote"; on the next line sets 5 new
      sessions (key "session:new-I") through the cache, which prunes as
      the app does, and prints "done"
  flask_filesystem_sessions.py refresh DIR < keys.json
      sets the given cache keys again and again, as a refreshing app does,
      until stdin closes; prints "ready" after the first set, then at the end
      a JSON object mapping each key it set to the last value it set
  flask_filesystem_sessions.py get DIR < keys.json
      prints {key: value} as cachelib's get returns it
  flask_filesystem_sessions.py oldwrite DIR < entries.json
      writes [{"key", "expires", "value", "proto"}] the way cachelib < 0.7
      and werkzeug.contrib.cache did: pickle.dump(expires, f, 1), then the
      value pickled with protocol proto (default pickle.HIGHEST_PROTOCOL)
  flask_filesystem_sessions.py oldget DIR < keys.json
      reads keys the way cachelib < 0.7 did ({key: value or null})
  flask_filesystem_sessions.py pickle < values.json
      prints pickle.dumps(value, proto).hex() for each [value, proto]
"""
import hashlib
import json
import os
import pickle
import random
import sys
import tempfile
import threading
import uuid
from hashlib import md5
from time import sleep, time

from cachelib.file import FileSystemCache
from flask_session_app import make_app, read_sessions, write_sessions


def hashed_cache(cache_dir, hash_name, threshold=0):
    return FileSystemCache(cache_dir, threshold=threshold, hash_method=getattr(hashlib, hash_name))


def race_count(cache_dir, threshold):
    cache = FileSystemCache(cache_dir, threshold=threshold)
    old = cache._file_count
    print("read %d" % old, flush=True)
    sys.stdin.readline()
    # The second half of _update_count(delta=1), on the value read before.
    cache.set(cache._fs_count_file, old + 1, mgmt_element=True)
    print("wrote", flush=True)
    sys.stdin.readline()
    for i in range(5):
        if not cache.set("session:new-%d" % i, {"_permanent": True, "value": "new"}, timeout=3600):
            sys.exit("set failed")
    print("done", flush=True)


def filesystem_app(cache_dir, lifetime, threshold=500):
    return make_app(lifetime, SESSION_TYPE="filesystem", SESSION_FILE_DIR=cache_dir, SESSION_FILE_THRESHOLD=threshold)


def old_path(cache_dir, key):
    return os.path.join(cache_dir, md5(key.encode("utf-8")).hexdigest())


def landed(cache, key, value):
    """Whether a set that cachelib reported as failed still landed.

    cachelib's set() renames its temporary file over the session's name and
    then stats that name for its size accounting; if the cleanup took the
    file aside to examine it in that instant, the stat fails and set()
    returns False although the file was written, and the cleanup puts a live
    file back within microseconds. Flask-Session ignores set()'s result, so
    what matters to the app is that the session is there: look for it.
    """
    for _ in range(100):
        if cache.get(key) == value:
            return True
        sleep(0.001)
    return False


def main():
    mode = sys.argv[1]
    if mode == "pickle":
        json.dump([pickle.dumps(v, p).hex() for v, p in json.load(sys.stdin)], sys.stdout)
        return
    cache_dir = sys.argv[2]
    if mode == "write":
        threshold = int(sys.argv[5]) if len(sys.argv) > 5 else 500
        write_sessions(filesystem_app(cache_dir, int(sys.argv[3]), threshold), int(sys.argv[4]))
    elif mode == "read":
        # Threshold 0: the app does not recount (and rewrite) the count file
        # when it starts, so reading leaves the directory as it is.
        read_sessions(filesystem_app(cache_dir, 3600, threshold=0))
    elif mode == "count":
        hash_name = sys.argv[3] if len(sys.argv) > 3 else "md5"
        json.dump(hashed_cache(cache_dir, hash_name).get("__wz_cache_count"), sys.stdout)
    elif mode == "recount":
        json.dump(FileSystemCache(cache_dir, threshold=500).get("__wz_cache_count"), sys.stdout)
    elif mode == "cacheset":
        cache = hashed_cache(cache_dir, sys.argv[3], int(sys.argv[4]))
        for entry in json.load(sys.stdin):
            if not cache.set(entry["key"], entry["value"], timeout=entry["timeout"]):
                sys.exit("set failed for " + entry["key"])
    elif mode == "cacheget":
        cache = hashed_cache(cache_dir, sys.argv[3])
        json.dump({key: cache.get(key) for key in json.load(sys.stdin)}, sys.stdout)
    elif mode == "racecount":
        race_count(cache_dir, int(sys.argv[3]))
    elif mode == "get":
        cache = FileSystemCache(cache_dir, threshold=0)
        json.dump({key: cache.get(key) for key in json.load(sys.stdin)}, sys.stdout)
    elif mode == "refresh":
        cache = FileSystemCache(cache_dir, threshold=0)
        keys = json.loads(sys.stdin.readline())
        stop = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        last = {}
        first = True
        while not stop.is_set():
            key = random.choice(keys)
            value = {"_permanent": True, "value": uuid.uuid4().hex}
            if not cache.set(key, value, timeout=3600) and not landed(cache, key, value):
                sys.exit("set failed for " + key)
            last[key] = value
            if first:
                print("ready", flush=True)
                first = False
        print(json.dumps(last), flush=True)
    elif mode == "oldwrite":
        for entry in json.load(sys.stdin):
            fd, tmp = tempfile.mkstemp(suffix=".__wz_cache", dir=cache_dir)
            with os.fdopen(fd, "wb") as f:
                pickle.dump(entry["expires"], f, 1)
                pickle.dump(entry["value"], f, entry.get("proto", pickle.HIGHEST_PROTOCOL))
            os.replace(tmp, old_path(cache_dir, entry["key"]))
            os.chmod(old_path(cache_dir, entry["key"]), 0o600)
    elif mode == "oldget":
        out = {}
        for key in json.load(sys.stdin):
            # cachelib 0.6's FileSystemCache.get.
            try:
                with open(old_path(cache_dir, key), "rb") as f:
                    pickle_time = pickle.load(f)
                    if pickle_time == 0 or pickle_time >= time():
                        out[key] = pickle.load(f)
                        continue
            except FileNotFoundError:
                pass
            out[key] = None
        json.dump(out, sys.stdout)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
