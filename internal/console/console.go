// Package console serves the certificate console: a browser page for administrators at /api/console/ that
// searches, shows and revokes certificates, shows the CA overview and the revocation sync runs, and submits CSRs.
//
// Everything it serves is embedded in the binary (no CDN, no external fonts or scripts) and sent with a strict
// Content-Security-Policy: no inline script or style, no framing, connections only to this origin and, in Azure
// mode, to the Entra authority MSAL signs in with. The page holds no data of its own: every action is a call to
// the existing authenticated API (/api/certificates for Certificates.Read and Certificates.Manage, /api/csr for CSR.Request.Db) with the
// signed-in user's bearer token, on the same origin, so the API's CORS stays closed.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// MSALVersion is the pinned @azure/msal-browser release whose browser bundle is embedded
// (assets/vendor/msal-browser.min.js, reproduced by `make console-msal`).
const MSALVersion = "5.31.0"

// MSALSHA256 is the SHA-256 of the embedded bundle; a test checks the checked-in file against it.
const MSALSHA256 = "79ddbdb21a80082639744e6c514d4a4c5f759f42870dc794ad4f6fbe5d457c20"

// Prefix is the path the console is served under.
const Prefix = "/api/console/"

//go:embed assets
var assets embed.FS

// Mode is how the page signs in.
type Mode string

// Sign-in modes.
const (
	// ModeEntra signs in with Microsoft Entra ID through MSAL (authorization code + PKCE).
	ModeEntra Mode = "entra"
	// ModeDev signs in with the local development token issuer's authorization-code + PKCE flow.
	ModeDev Mode = "dev"
	// ModeDisabled: the API is not configured, so there is nothing to sign in to; the page says so.
	ModeDisabled Mode = "disabled"
)

// Config is what the page needs to sign in. None of it is secret: it is served to anyone as config.json.
type Config struct {
	Mode Mode
	// ClientID is the application (client) ID the page signs in as: for Entra the API app registration itself
	// (its SPA redirect URI is …/api/console/), for the dev issuer entra.DevClientAppID.
	ClientID string
	// Scope is the delegated scope requested for the API, e.g. api://<appId>/access_as_user.
	Scope string
	// Authority is the Entra authority URL (https://login.microsoftonline.com/<tenant>) in ModeEntra.
	Authority string
	// AuthorizeURL and TokenURL are the dev issuer's endpoints (paths on this origin) in ModeDev.
	AuthorizeURL, TokenURL string
}

// Handler serves the console under Prefix.
type Handler struct {
	files   map[string]asset
	csp     string
	cfgJSON []byte
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// New checks cfg and prepares the assets.
func New(cfg Config) (*Handler, error) {
	h := &Handler{files: map[string]asset{}}
	connect := "'self'"
	switch cfg.Mode {
	case ModeEntra:
		u, err := url.Parse(cfg.Authority)
		if err != nil || u.Scheme != "https" || u.Host == "" || cfg.ClientID == "" || cfg.Scope == "" {
			return nil, fmt.Errorf("console: Entra mode needs an https authority, a client ID and a scope (authority %q)", cfg.Authority)
		}
		// MSAL fetches the authority's metadata and redeems codes from the page: exactly the authority's origin.
		// It renews tokens with the refresh token only, never in a hidden frame (app.js), so no frame is allowed.
		connect += " " + u.Scheme + "://" + u.Host
		h.csp = policy(connect)
	case ModeDev:
		if !strings.HasPrefix(cfg.AuthorizeURL, "/") || !strings.HasPrefix(cfg.TokenURL, "/") || cfg.ClientID == "" {
			return nil, errors.New("console: dev mode needs same-origin authorize and token paths and a client ID")
		}
		h.csp = policy(connect)
	case ModeDisabled:
		h.csp = policy(connect)
	default:
		return nil, fmt.Errorf("console: unknown mode %q", cfg.Mode)
	}
	var err error
	h.cfgJSON, err = json.Marshal(map[string]string{"mode": string(cfg.Mode), "clientId": cfg.ClientID,
		"scope": cfg.Scope, "authority": cfg.Authority, "authorize": cfg.AuthorizeURL, "token": cfg.TokenURL,
		"msalVersion": MSALVersion})
	if err != nil {
		return nil, fmt.Errorf("console: encoding config: %w", err)
	}
	err = fs.WalkDir(assets, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		h.files[strings.TrimPrefix(p, "assets/")] = newAsset(body, contentType(p))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console: reading embedded assets: %w", err)
	}
	h.files["config.json"] = newAsset(h.cfgJSON, "application/json")
	return h, nil
}

func newAsset(body []byte, ctype string) asset {
	sum := sha256.Sum256(body)
	return asset{body: body, ctype: ctype, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
}

// policy is the Content-Security-Policy of every console response: scripts and styles only from files of this
// origin (no inline code, no eval), connections to this origin and the authority, no frames, no plugins, no
// <base>, and the page may not be framed.
func policy(connect string) string {
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
		"connect-src " + connect + "; frame-src 'none'; object-src 'none'; base-uri 'none'; " +
		"form-action 'self'; frame-ancestors 'none'"
}

// CSP returns the Content-Security-Policy the handler sends.
func (h *Handler) CSP() string { return h.csp }

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// ServeHTTP serves index.html for the console root and the embedded files by name.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", h.csp)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
	hdr.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if name == "" {
		name = "index.html"
	}
	a, ok := h.files[name]
	if !ok || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	hdr.Set("Content-Type", a.ctype)
	// Revalidate every time: the files change with each release and are small; the ETag makes it cheap.
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", a.etag)
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(a.body)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(a.body)
	}
}
