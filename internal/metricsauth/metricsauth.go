// Package metricsauth guards the metrics endpoint the way kube-rbac-proxy
// and controller-runtime's metrics filter do: the scraper's bearer token is
// authenticated with a TokenReview, then the user it names is authorized
// with a SubjectAccessReview for the request's verb on its path, so a
// ClusterRole with nonResourceURLs ["/metrics"] and verb get lets it in.
//
// It is ours, not controller-runtime's filters package, because that one
// pulls in k8s.io/apiserver and with it about 250 packages (CEL, gRPC,
// OpenTelemetry): 27.6 of the binary's 71.9 MB, in an image the cleanup
// Pods pull too, for two API calls.
package metricsauth

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// How long a decision is reused for the same token, verb and path: a
// scraper every 15 s costs two API calls a minute, and a revoked binding
// or a deleted token stops working within allowedFor. Denials are kept
// shorter, so a newly granted scraper gets in soon.
const (
	allowedFor = time.Minute
	deniedFor  = 10 * time.Second
	// maxDecisions bounds the cache against a flood of distinct tokens.
	maxDecisions = 1024
	// reviewTimeout bounds the two API calls a request waits on.
	reviewTimeout = 10 * time.Second
)

// FilterProvider is a metricsserver.Options.FilterProvider.
func FilterProvider(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	scheme := runtime.NewScheme()
	if err := authnv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := authzv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme, HTTPClient: httpClient})
	if err != nil {
		return nil, err
	}
	return NewFilter(c, time.Now), nil
}

// NewFilter makes the filter over a client that can create TokenReviews
// and SubjectAccessReviews; now is the clock the cache reads.
func NewFilter(c client.Client, now func() time.Time) metricsserver.Filter {
	g := &guard{client: c, now: now, decisions: map[decisionKey]decision{}}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			status := g.check(r.Context(), log, r)
			if status != http.StatusOK {
				http.Error(w, http.StatusText(status), status)
				return
			}
			next.ServeHTTP(w, r)
		}), nil
	}
}

type guard struct {
	client    client.Client
	now       func() time.Time
	mu        sync.Mutex
	decisions map[decisionKey]decision
}

// decisionKey holds a hash of the token, never the token itself.
type decisionKey struct {
	token      [sha256.Size]byte
	verb, path string
}

type decision struct {
	status int
	until  time.Time
}

// check returns 200 when the request may be served, 401 when it carries no
// token the API server accepts, 403 when its user may not, and 500 when the
// API server could not be asked (which is not cached).
func (g *guard) check(ctx context.Context, log logr.Logger, r *http.Request) int {
	token, ok := bearerToken(r)
	if !ok {
		return http.StatusUnauthorized
	}
	key := decisionKey{token: sha256.Sum256([]byte(token)), verb: strings.ToLower(r.Method), path: r.URL.Path}
	if status, ok := g.cached(key); ok {
		return status
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	status, err := g.review(ctx, token, key)
	if err != nil {
		log.Error(err, "could not review a metrics request", "path", key.path)
		return http.StatusInternalServerError
	}
	g.remember(key, status)
	return status
}

// review asks the API server who the token is, then whether that user may
// use the verb on the path.
func (g *guard) review(ctx context.Context, token string, key decisionKey) (int, error) {
	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}
	if err := g.client.Create(ctx, tr); err != nil {
		return 0, err
	}
	if !tr.Status.Authenticated {
		return http.StatusUnauthorized, nil
	}
	user := tr.Status.User
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra(user.Extra),
		NonResourceAttributes: &authzv1.NonResourceAttributes{Path: key.path, Verb: key.verb},
	}}
	if err := g.client.Create(ctx, sar); err != nil {
		return 0, err
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		return http.StatusForbidden, nil
	}
	return http.StatusOK, nil
}

func extra(in map[string]authnv1.ExtraValue) map[string]authzv1.ExtraValue {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]authzv1.ExtraValue, len(in))
	for k, v := range in {
		out[k] = authzv1.ExtraValue(v)
	}
	return out
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

func (g *guard) cached(key decisionKey) (int, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, ok := g.decisions[key]
	if !ok || !g.now().Before(d.until) {
		return 0, false
	}
	return d.status, true
}

func (g *guard) remember(key decisionKey, status int) {
	ttl := deniedFor
	if status == http.StatusOK {
		ttl = allowedFor
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.decisions) >= maxDecisions {
		for k, d := range g.decisions {
			if !now.Before(d.until) {
				delete(g.decisions, k)
			}
		}
	}
	if len(g.decisions) >= maxDecisions {
		clear(g.decisions)
	}
	g.decisions[key] = decision{status: status, until: now.Add(ttl)}
}
