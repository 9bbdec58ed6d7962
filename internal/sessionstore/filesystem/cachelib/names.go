// Package cachelib reads and writes what cachelib's FileSystemCache (and
// werkzeug.contrib.cache before it) keeps on disk: the names of its files,
// the expiry header in front of each value, and the count file.
//
// Layout, for the FileSystemCache that Flask-Session's filesystem type uses:
//
//   - one file per key, named hash_method(key).hexdigest(): md5 by default
//     (32 hex digits), sha256 and others in FIPS setups;
//   - cachelib >= 0.7 starts the file with struct.pack("I", expires): 4 bytes
//     in native byte order; older versions with pickle.dump(expires, f, 1).
//     expires is absolute Unix seconds, 0 for never; then comes the value,
//     pickled with the highest protocol of the app's Python (2 or more);
//   - the key "__wz_cache_count" holds the number of files (a cache entry
//     itself: header 0, then a pickled int), kept only while the threshold
//     is not 0;
//   - every write goes to a temporary "tmp*.__wz_cache" file that is then
//     renamed over the target; cachelib's listing skips such names.
package cachelib

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"slices"
)

// TempSuffix ends cachelib's temporary files. cachelib neither lists nor
// counts names that end with it.
const TempSuffix = ".__wz_cache"

// countKey is the key under which cachelib keeps its count of files.
const countKey = "__wz_cache_count"

// hashes are the hash_method choices hashlib guarantees; a cache names its
// files with one of them.
var hashes = []func() hash.Hash{md5.New, sha1.New, sha256.New224, sha256.New, sha512.New384, sha512.New}

// CountFiles names the count file under each hash method, md5's first.
var CountFiles = func() []string {
	names := make([]string, len(hashes))
	for i, h := range hashes {
		names[i] = FileName(h, countKey)
	}
	return names
}()

// nameLengths are the hex digest lengths of hashes.
var nameLengths = func() []int {
	lengths := make([]int, len(hashes))
	for i, h := range hashes {
		lengths[i] = 2 * h().Size()
	}
	return lengths
}()

// FileName is the name cachelib gives key's file with hash method h.
func FileName(h func() hash.Hash, key string) string {
	sum := h()
	sum.Write([]byte(key))
	return hex.EncodeToString(sum.Sum(nil))
}

// IsCountFile tells whether name is the count file under some hash method.
func IsCountFile(name string) bool {
	return slices.Contains(CountFiles, name)
}

// IsEntryName tells whether name can be a cache entry's: the lowercase hex
// digest of one of the hash methods.
func IsEntryName(name string) bool {
	if !slices.Contains(nameLengths, len(name)) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
