package entra

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// errUnknownKID is the internal cause when a token names a key that the
// (possibly just refreshed) key set does not contain.
var errUnknownKID = errors.New("signing key not in the tenant's key set")

// keySnapshot is one consistent view of the tenant's metadata: the issuers
// from both discovery documents and the RSA keys of the JWKS they point at.
// It is immutable once published.
type keySnapshot struct {
	keys     map[string]*rsa.PublicKey
	v1Issuer string
	v2Issuer string
	fetched  time.Time
}

// refreshCall is one in-flight refresh that concurrent callers share.
type refreshCall struct {
	done chan struct{}
	snap *keySnapshot
	err  error
}

// keyCache caches the tenant's signing keys. Fetches are serialised (one in
// flight, shared by every caller that needs it) and rate limited: tokens with
// an unknown kid trigger at most one fetch per RefreshInterval (so junk kids
// cannot be used to flood Entra), and after a failed fetch no new one starts
// for failureBackoff (so an outage neither floods Entra nor pins the service
// in 503 for a whole interval). The first load and the refresh of a key set
// older than KeyMaxAge are not limited by the kid interval.
type keyCache struct {
	cfg            *Config
	v1DiscoveryURL string
	v2DiscoveryURL string
	wantV2Issuer   string
	failureBackoff time.Duration

	mu             sync.Mutex
	snap           *keySnapshot
	lastAttempt    time.Time // any fetch
	lastErr        error     // result of the last fetch
	lastKIDRefresh time.Time // last fetch started for an unknown kid
	inflight       *refreshCall
}

func newKeyCache(cfg *Config) *keyCache {
	base := cfg.AuthorityHost + cfg.TenantID
	backoff := 10 * time.Second
	if cfg.RefreshInterval < backoff {
		backoff = cfg.RefreshInterval
	}
	return &keyCache{
		cfg:            cfg,
		v1DiscoveryURL: base + "/.well-known/openid-configuration",
		v2DiscoveryURL: base + "/v2.0/.well-known/openid-configuration",
		wantV2Issuer:   base + "/v2.0",
		failureBackoff: backoff,
	}
}

// lookup returns the key for kid and the snapshot it came from. Errors are
// errUnknownKID (the token is not verifiable: 401) or wrap ErrUnavailable
// (we cannot tell: 503).
func (c *keyCache) lookup(ctx context.Context, kid string) (*rsa.PublicKey, *keySnapshot, error) {
	c.mu.Lock()
	now := c.cfg.Clock()
	snap := c.snap
	var (
		key   *rsa.PublicKey
		known bool
	)
	if snap != nil {
		key, known = snap.keys[kid]
		if known && now.Sub(snap.fetched) < c.cfg.KeyMaxAge {
			c.mu.Unlock()
			return key, snap, nil
		}
	}
	reason := reasonUnknownKID
	switch {
	case snap == nil:
		reason = reasonLoad
	case known:
		reason = reasonStale
	}
	call := c.startRefreshLocked(ctx, now, reason)
	lastErr := c.lastErr
	c.mu.Unlock()

	if call == nil {
		// Refresh not allowed yet.
		switch {
		case known: // stale but still the best we have
			return key, snap, nil
		case lastErr != nil:
			return nil, nil, fmt.Errorf("%w: last key refresh failed: %w", ErrUnavailable, lastErr)
		default:
			return nil, snap, errUnknownKID
		}
	}
	select {
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w: waiting for key refresh: %w", ErrUnavailable, ctx.Err())
	case <-call.done:
	}
	if call.err != nil {
		if known {
			return key, snap, nil
		}
		return nil, nil, call.err
	}
	if k, ok := call.snap.keys[kid]; ok {
		return k, call.snap, nil
	}
	return nil, call.snap, errUnknownKID
}

// Why a fetch is wanted; only unknown kids are subject to RefreshInterval.
const (
	reasonLoad = iota
	reasonStale
	reasonUnknownKID
)

// startRefreshLocked joins the in-flight fetch or starts one if the rate
// limits allow; it returns nil when no fetch may run now.
func (c *keyCache) startRefreshLocked(ctx context.Context, now time.Time, reason int) *refreshCall {
	if c.inflight != nil {
		return c.inflight
	}
	if c.lastErr != nil && now.Sub(c.lastAttempt) < c.failureBackoff {
		return nil
	}
	prevKIDRefresh := c.lastKIDRefresh
	if reason == reasonUnknownKID {
		if !c.lastKIDRefresh.IsZero() && now.Sub(c.lastKIDRefresh) < c.cfg.RefreshInterval {
			return nil
		}
		c.lastKIDRefresh = now
	}
	call := &refreshCall{done: make(chan struct{})}
	c.inflight = call
	c.lastAttempt = now
	// The refresh outlives the request that triggered it: other callers
	// share it, and a cancelled client must not waste the fetch.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	go func() {
		defer cancel()
		snap, err := c.fetch(fctx, now)
		c.mu.Lock()
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			c.lastErr = err
			if reason == reasonUnknownKID {
				// A fetch that failed has not looked for the kid: only failureBackoff may hold back the next
				// one, or a token signed with a genuinely new key would get 503 for a whole RefreshInterval
				// after a brief Entra outage.
				c.lastKIDRefresh = prevKIDRefresh
			}
		} else {
			c.snap, c.lastErr = snap, nil
		}
		c.inflight = nil
		call.snap, call.err = snap, err
		c.mu.Unlock()
		close(call.done)
	}()
	return call
}

// prefetch loads the key set if it has never been loaded, so a service can
// fail its readiness check early instead of on the first request.
func (c *keyCache) prefetch(ctx context.Context) error {
	c.mu.Lock()
	if c.snap != nil {
		c.mu.Unlock()
		return nil
	}
	call := c.startRefreshLocked(ctx, c.cfg.Clock(), reasonLoad)
	lastErr := c.lastErr
	c.mu.Unlock()
	if call == nil {
		return lastErr
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for key refresh: %w", ErrUnavailable, ctx.Err())
	case <-call.done:
		return call.err
	}
}

type discoveryDoc struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// fetch reads both discovery documents and the JWKS and checks that they are
// for our tenant.
func (c *keyCache) fetch(ctx context.Context, now time.Time) (*keySnapshot, error) {
	var v2 discoveryDoc
	if err := c.getJSON(ctx, c.v2DiscoveryURL, &v2); err != nil {
		return nil, fmt.Errorf("v2 discovery document: %w", err)
	}
	if v2.Issuer != c.wantV2Issuer {
		return nil, fmt.Errorf("v2 discovery document issuer %q, want %q", v2.Issuer, c.wantV2Issuer)
	}
	if err := checkMetadataURL(v2.JWKSURI); err != nil {
		return nil, fmt.Errorf("v2 discovery document jwks_uri: %w", err)
	}
	var v1 discoveryDoc
	if err := c.getJSON(ctx, c.v1DiscoveryURL, &v1); err != nil {
		return nil, fmt.Errorf("v1 discovery document: %w", err)
	}
	if err := c.checkV1Issuer(v1.Issuer); err != nil {
		return nil, fmt.Errorf("v1 discovery document: %w", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := c.getJSON(ctx, v2.JWKSURI, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey, len(set.Keys))
	for _, raw := range set.Keys {
		kid, key, ok := parseRSAJWK(raw)
		if !ok {
			continue // EC keys, encryption keys, junk: not ours to use
		}
		if _, dup := keys[kid]; !dup {
			keys[kid] = key
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS contains no usable RSA signing key")
	}
	return &keySnapshot{keys: keys, v1Issuer: v1.Issuer, v2Issuer: v2.Issuer, fetched: now}, nil
}

// checkV1Issuer accepts the tenant-specific v1 issuer, which lives on another
// host than the authority (https://sts.windows.net/{tid}/ in the public cloud).
func (c *keyCache) checkV1Issuer(iss string) error {
	u, err := url.Parse(iss)
	if err != nil || u.Host == "" || !strings.HasSuffix(u.Path, "/"+c.cfg.TenantID+"/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("issuer %q is not a v1 issuer for tenant %s", iss, c.cfg.TenantID)
	}
	if u.Scheme != "https" && (u.Scheme != "http" || !isLoopbackHost(u.Hostname())) {
		return fmt.Errorf("issuer %q must be https", iss)
	}
	if iss == c.wantV2Issuer {
		return fmt.Errorf("v1 issuer %q equals the v2 issuer", iss)
	}
	return nil
}

// checkMetadataURL is checkServiceURL but allows a query (Entra adds
// ?appid=... for apps with claims mapping).
func checkMetadataURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", raw, err)
	}
	u.RawQuery = ""
	return checkServiceURL(u.String())
}

func (c *keyCache) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if len(body) > maxMetadataBytes {
		return fmt.Errorf("GET %s: body exceeds %d bytes", u, maxMetadataBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding %s: %w", u, err)
	}
	return nil
}

// jwk holds the members of an RSA JWK we look at (RFC 7517/7518).
type jwk struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	N      string   `json:"n"`
	E      string   `json:"e"`
}

// parseRSAJWK accepts RSA keys usable for RS256 signatures: 2048..8192-bit
// modulus, odd public exponent ≥ 3 that fits an int, a kid, and no use/alg/
// key_ops saying otherwise.
func parseRSAJWK(raw json.RawMessage) (string, *rsa.PublicKey, bool) {
	var k jwk
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", nil, false
	}
	if k.Kty != "RSA" || k.Kid == "" || (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != "RS256") {
		return "", nil, false
	}
	if len(k.KeyOps) > 0 && !slices.Contains(k.KeyOps, "verify") {
		return "", nil, false
	}
	nb, err := decodeB64URL(k.N)
	if err != nil {
		return "", nil, false
	}
	eb, err := decodeB64URL(k.E)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return "", nil, false
	}
	n := new(big.Int).SetBytes(nb)
	if n.BitLen() < 2048 || n.BitLen() > 8192 {
		return "", nil, false
	}
	var e int64
	for _, b := range eb {
		e = e<<8 | int64(b)
	}
	if e < 3 || e%2 == 0 || e > 1<<31-1 {
		return "", nil, false
	}
	return k.Kid, &rsa.PublicKey{N: n, E: int(e)}, true
}

func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
