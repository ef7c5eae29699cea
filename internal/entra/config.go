package entra

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults and limits for Config. They follow reliability.md §4.3: small clock
// leeway, a hard cap on token size, and a JWKS refresh on unknown kid that an
// attacker cannot turn into a flood against login.microsoftonline.com.
const (
	DefaultAuthorityHost   = "https://login.microsoftonline.com/"
	DefaultLeeway          = time.Minute
	MaxLeeway              = 2 * time.Minute
	DefaultMaxTokenBytes   = 16 << 10
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultKeyMaxAge bounds how long a fetched key set is trusted without a
	// refresh, so a key Microsoft withdraws stops verifying within a day even if
	// no unknown kid ever shows up.
	DefaultKeyMaxAge = 24 * time.Hour
	// fetchTimeout bounds one discovery+JWKS refresh when the HTTP client has
	// no timeout of its own.
	fetchTimeout = 15 * time.Second
	// maxMetadataBytes caps discovery and JWKS bodies (Entra's are ~10 KiB).
	maxMetadataBytes = 1 << 20
)

// Config configures a Verifier. TenantID and at least one audience are
// required; everything else has a production default.
type Config struct {
	// TenantID is the directory (tenant) GUID whose tokens are accepted. A
	// domain name is not accepted: the `tid` claim is always the GUID.
	TenantID string
	// Audiences lists the accepted `aud` values: the API app registration's
	// client ID (v2 tokens, some v1 tokens) and its App ID URI (v1 tokens).
	Audiences []string
	// AuthorityHost is the Entra authority, with or without trailing slash.
	// Override for national clouds, the local DevIssuer, or tests. Must be
	// https unless it names a loopback host.
	AuthorityHost string
	// Leeway is the clock skew tolerated on exp/nbf; ≤ MaxLeeway.
	Leeway time.Duration
	// MaxTokenBytes caps the Authorization header value before any parsing.
	MaxTokenBytes int
	// RefreshInterval is the minimum time between two JWKS refreshes caused by
	// tokens with an unknown kid.
	RefreshInterval time.Duration
	// KeyMaxAge forces a refresh of a key set older than this (default 24h).
	// If that refresh fails the old keys stay in use.
	KeyMaxAge time.Duration
	// HTTPClient fetches discovery documents and keys. Nil means a client with
	// a 15 s timeout.
	HTTPClient *http.Client
	// Clock returns the current time; nil means time.Now. Tests use it to
	// check leeway edges and refresh intervals without sleeping.
	Clock func() time.Time
}

// withDefaults validates c and returns a copy with defaults applied.
func (c Config) withDefaults() (Config, error) {
	if !isGUID(c.TenantID) {
		return c, errors.New("entra: TenantID must be a tenant GUID")
	}
	c.TenantID = normGUID(c.TenantID)
	var auds []string
	for _, a := range c.Audiences {
		if a = strings.TrimSpace(a); a != "" {
			auds = append(auds, a)
		}
	}
	if len(auds) == 0 {
		return c, errors.New("entra: at least one audience (client ID or App ID URI) is required")
	}
	c.Audiences = auds
	if c.AuthorityHost == "" {
		c.AuthorityHost = DefaultAuthorityHost
	}
	if !strings.HasSuffix(c.AuthorityHost, "/") {
		c.AuthorityHost += "/"
	}
	if err := checkServiceURL(c.AuthorityHost); err != nil {
		return c, fmt.Errorf("entra: AuthorityHost: %w", err)
	}
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0 || c.Leeway > MaxLeeway:
		return c, fmt.Errorf("entra: Leeway must be between 0 and %v", MaxLeeway)
	}
	switch {
	case c.MaxTokenBytes == 0:
		c.MaxTokenBytes = DefaultMaxTokenBytes
	case c.MaxTokenBytes < 0:
		return c, errors.New("entra: MaxTokenBytes must not be negative")
	}
	switch {
	case c.RefreshInterval == 0:
		c.RefreshInterval = DefaultRefreshInterval
	case c.RefreshInterval < 0:
		return c, errors.New("entra: RefreshInterval must not be negative")
	}
	switch {
	case c.KeyMaxAge == 0:
		c.KeyMaxAge = DefaultKeyMaxAge
	case c.KeyMaxAge < c.RefreshInterval:
		return c, errors.New("entra: KeyMaxAge must not be shorter than RefreshInterval")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c, nil
}

// checkServiceURL accepts absolute https URLs, and http only for loopback
// hosts (tests, the local dev issuer). Plain-http identity metadata from a real
// host would let anyone on the path substitute keys.
// CheckServiceURL is checkServiceURL for other packages: the settings that name the authority host and the Graph
// base URL are refused when they are read, with the rule the verifier and the directory apply when they are built.
func CheckServiceURL(raw string) error { return checkServiceURL(raw) }

func checkServiceURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", raw, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not a plain absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q: http is only allowed for loopback hosts", raw)
	default:
		return fmt.Errorf("%q: scheme must be https", raw)
	}
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
