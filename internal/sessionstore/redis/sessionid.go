package redis

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sessionstore/sessionstore-operator/internal/sessionstore"
)

// Flask-Session's session ids: str(uuid4()) in 0.3/0.4, and
// secrets.token_urlsafe(n) from 0.7 on (n is SESSION_ID_LENGTH, 32 by
// default: 43 characters). token_urlsafe(n) is n random bytes in unpadded
// base64url, ceil(4n/3) characters; n >= 16 gives 22 or more, and no
// unpadded base64 string has a length of 1 modulo 4.
var (
	uuid4ID        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tokenURLSafeID = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

const (
	minTokenURLSafeLength = 22 // token_urlsafe(16)
	// maxTokenURLSafeLength is token_urlsafe(192); longer is not an id.
	maxTokenURLSafeLength = 256
	// maxNotASessionSamples bounds the key names a dry run lists.
	maxNotASessionSamples = 5
	maxSampleLength       = 80
)

// isSessionID says whether sid has the shape of a Flask-Session session id.
func isSessionID(sid string) bool {
	if uuid4ID.MatchString(sid) {
		return true
	}
	n := len(sid)
	return n >= minTokenURLSafeLength && n <= maxTokenURLSafeLength && n%4 != 1 && tokenURLSafeID.MatchString(sid)
}

// isSerializedSession says whether a value's first byte starts a serialized
// session: a pickle (protocol 2 and later open with 0x80; 0.3/0.4 pickle,
// 0.7+ read it back) or a msgpack map (0.7+; fixmap 0x80-0x8f, map16 0xde,
// map32 0xdf). An app's counter ("42") or JSON is neither.
func isSerializedSession(head string) bool {
	if head == "" {
		return false
	}
	b := head[0]
	return b&0xf0 == 0x80 || b == 0xde || b == 0xdf
}

// splitSessions splits keys without a TTL into the Flask-Session sessions
// among them and the other keys: only a key whose id has a session id's
// shape and whose value is a string that starts like a serialized session
// is a session.
func (s *redisStore) splitSessions(ctx context.Context, keys []string) (sessions, others []string, err error) {
	var candidates []string
	for _, key := range keys {
		if isSessionID(strings.TrimPrefix(key, s.cfg.KeyPrefix)) {
			candidates = append(candidates, key)
		} else {
			others = append(others, key)
		}
	}
	if len(candidates) == 0 {
		return nil, others, nil
	}
	pipe := s.client.Pipeline()
	heads := make([]*redis.StringCmd, len(candidates))
	for i, key := range candidates {
		heads[i] = pipe.GetRange(ctx, key, 0, 0)
	}
	// Exec's error is the first command's; a WRONGTYPE (a hash, a list)
	// only says that key is not a session, so each is looked at below.
	_, _ = pipe.Exec(ctx)
	for i, cmd := range heads {
		head, err := cmd.Result()
		switch {
		case err == nil && isSerializedSession(head):
			sessions = append(sessions, candidates[i])
		case err == nil, errors.Is(err, redis.Nil), strings.HasPrefix(err.Error(), "WRONGTYPE"):
			others = append(others, candidates[i])
		default:
			return nil, nil, redisError("read session values in redis", err)
		}
	}
	return sessions, others, nil
}

// redisTally counts what a run found without a TTL.
type redisTally struct {
	noTTL, fixed, others int64
	samples              []string
}

func (t *redisTally) noteOthers(keys []string) {
	t.others += int64(len(keys))
	for _, key := range keys {
		if len(t.samples) == maxNotASessionSamples {
			return
		}
		if len(key) > maxSampleLength {
			key = strings.ToValidUTF8(key[:maxSampleLength], "") + "..."
		}
		t.samples = append(t.samples, fmt.Sprintf("%q", key))
	}
}

func (t redisTally) addKept(rep *sessionstore.Report) {
	rep.AddKept("noTTL", t.noTTL-t.fixed)
	rep.AddKept("ttlFixed", t.fixed)
	rep.AddKept("notASession", t.others)
}
