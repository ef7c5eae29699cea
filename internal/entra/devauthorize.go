package entra

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The development issuer's authorization-code + PKCE flow (RFC 6749 §4.1, RFC 7636 S256 only). It lets a browser
// page — the certificate console under `make run` — sign in the way an SPA signs in with Entra: redirect to
// …/authorize, come back with a one-time code, redeem it at …/token with the PKCE verifier. The "sign-in" is a
// form where the developer types a UPN and ticks app roles: there is no password, which is why the issuer exists
// only in local mode and refuses non-loopback peers.

const (
	devCodeLifetime = 2 * time.Minute
	devMaxCodes     = 1024
)

// devRoles are the roles the sign-in form offers (the API app registration's roles).
var devRoles = []string{RoleCertificatesManage, RoleCertificatesRead, RoleCSRRequestDb, RoleCSRSelfService}

// devAuthorizer holds the outstanding authorization codes; the zero value is ready.
type devAuthorizer struct {
	mu    sync.Mutex
	codes map[string]devCode
}

type devCode struct {
	clientID, redirectURI, challenge string
	req                              DevTokenRequest
	expires                          time.Time
}

// authorizeRequest is the validated query (GET) or form (POST) of /authorize.
type authorizeRequest struct {
	ClientID, RedirectURI, State, Challenge, Scope string
}

// parseAuthorize validates the OAuth parameters. Only response_type=code with an S256 challenge is accepted, and
// the redirect URI must be on the issuer's own origin: the issuer serves nothing but pages of this app.
func (d *DevIssuer) parseAuthorize(v url.Values) (authorizeRequest, error) {
	a := authorizeRequest{ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"), State: v.Get("state"),
		Challenge: v.Get("code_challenge"), Scope: v.Get("scope")}
	switch {
	case v.Get("response_type") != "code":
		return a, fmt.Errorf("response_type must be code")
	case a.ClientID == "":
		return a, fmt.Errorf("client_id is required")
	case v.Get("code_challenge_method") != "S256":
		return a, fmt.Errorf("code_challenge_method must be S256")
	case len(a.Challenge) != 43 || strings.Trim(a.Challenge, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "":
		return a, fmt.Errorf("code_challenge must be a base64url SHA-256")
	case len(a.State) > 512 || len(a.ClientID) > 128 || len(a.Scope) > 512:
		return a, fmt.Errorf("a parameter is too long")
	}
	if err := d.checkRedirect(a.RedirectURI); err != nil {
		return a, err
	}
	return a, nil
}

func (d *DevIssuer) checkRedirect(raw string) error {
	u, err := url.Parse(raw)
	base, _ := url.Parse(d.cfg.BaseURL) // validated by NewDevIssuer
	if err != nil || u.Scheme != base.Scheme || u.Host != base.Host || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("redirect_uri must be an absolute URL on %s://%s", base.Scheme, base.Host)
	}
	return nil
}

// serveAuthorize shows the sign-in form (GET) or issues a code and redirects back (POST).
func (d *DevIssuer) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	var v url.Values
	switch r.Method {
	case http.MethodGet:
		v = r.URL.Query()
	case http.MethodPost:
		if !d.fromOwnPage(r) {
			http.Error(w, "the sign-in form is posted only from this issuer's own page", http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, devMaxRequestBytes)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "the form could not be read", http.StatusBadRequest)
			return
		}
		v = r.PostForm
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, err := d.parseAuthorize(v)
	if err != nil {
		// Never redirect to an unvalidated URI: show the error here (RFC 6749 §4.1.2.1).
		http.Error(w, "invalid authorization request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodGet {
		d.signInPage(w, a)
		return
	}
	req := DevTokenRequest{UPN: strings.TrimSpace(v.Get("upn")), Name: strings.TrimSpace(v.Get("name"))}
	for _, role := range v["role"] {
		for _, known := range devRoles {
			if role == known {
				req.Roles = append(req.Roles, role)
			}
		}
	}
	if req.UPN == "" || len(req.UPN) > 256 || !strings.Contains(req.UPN, "@") || len(req.Name) > 256 {
		http.Error(w, "upn must be a user principal name (name@domain)", http.StatusBadRequest)
		return
	}
	code, err := d.auth.issue(devCode{clientID: a.ClientID, redirectURI: a.RedirectURI, challenge: a.Challenge,
		req: req, expires: d.cfg.Clock().Add(devCodeLifetime)}, d.cfg.Clock())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	back, _ := url.Parse(a.RedirectURI) // checked by parseAuthorize
	q := back.Query()
	q.Set("code", code)
	if a.State != "" {
		q.Set("state", a.State)
	}
	back.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, back.String(), http.StatusSeeOther)
}

// fromOwnPage tells whether a POST may come from the issuer's sign-in page: a browser marks a post from another
// site's page (Sec-Fetch-Site, Origin), and any page open in the developer's browser can post a form to the
// loopback port. Unmarked requests come from no browser. A cross-site page would otherwise fill the outstanding
// codes (devMaxCodes), locking the console's sign-in out for devCodeLifetime.
func (d *DevIssuer) fromOwnPage(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return false
	}
	base, _ := url.Parse(d.cfg.BaseURL) // validated by NewDevIssuer
	o := r.Header.Get("Origin")
	return o == "" || o == base.Scheme+"://"+base.Host
}

func (a *devAuthorizer) issue(c devCode, now time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("entra: generating an authorization code: %w", err)
	}
	code := base64.RawURLEncoding.EncodeToString(b[:])
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.codes == nil {
		a.codes = map[string]devCode{}
	}
	for k, old := range a.codes {
		if now.After(old.expires) {
			delete(a.codes, k)
		}
	}
	if len(a.codes) >= devMaxCodes {
		return "", fmt.Errorf("too many outstanding authorization codes; retry in %v", devCodeLifetime)
	}
	a.codes[code] = c
	return code, nil
}

// redeem removes code (codes are single use, even when the redemption fails) and returns it if still valid.
func (a *devAuthorizer) redeem(code string, now time.Time) (devCode, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.codes[code]
	delete(a.codes, code)
	return c, ok && !now.After(c.expires)
}

// serveCodeToken redeems an authorization code: POST …/token, application/x-www-form-urlencoded,
// grant_type=authorization_code&code=&redirect_uri=&client_id=&code_verifier=.
func (d *DevIssuer) serveCodeToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, devMaxRequestBytes)
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", "the form could not be read")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "authorization_code" {
		oauthError(w, "unsupported_grant_type", "only authorization_code is supported with a form body")
		return
	}
	c, ok := d.auth.redeem(f.Get("code"), d.cfg.Clock())
	if !ok {
		oauthError(w, "invalid_grant", "the code is unknown, used or expired")
		return
	}
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	if f.Get("client_id") != c.clientID || f.Get("redirect_uri") != c.redirectURI ||
		subtle.ConstantTimeCompare([]byte(challenge), []byte(c.challenge)) != 1 {
		oauthError(w, "invalid_grant", "client_id, redirect_uri or code_verifier does not match the authorization request")
		return
	}
	tok, err := d.Mint(c.req)
	if err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer",
		"expires_in": int(c.req.lifetime() / time.Second)})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// signInCSS is the page's only style; the Content-Security-Policy allows exactly this text by its hash.
const signInCSS = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f3f5f8;color:#1b2430}
main{max-width:26rem;margin:3rem auto;padding:2rem;background:#fff;border:1px solid #d5dbe3;border-radius:.5rem}
h1{font-size:1.3rem;margin:0 0 .25rem}p.note{color:#5a6472;font-size:.9rem}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}input[type=text]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #9aa5b4;border-radius:.3rem}
fieldset{border:1px solid #d5dbe3;border-radius:.3rem;margin:1rem 0}fieldset label{font-weight:400;margin:.3rem 0}
button{font:inherit;padding:.55rem 1.2rem;background:#0b5cad;color:#fff;border:0;border-radius:.3rem;cursor:pointer}
button:focus-visible,input:focus-visible{outline:3px solid #f0a000;outline-offset:2px}`

var signInCSP = func() string {
	sum := sha256.Sum256([]byte(signInCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in — azscep development issuer</title><style>{{.CSS}}</style></head>
<body><main>
<h1>Development sign-in</h1>
<p class="note">The local development token issuer (local mode only). There is no password: choose who you are and
which app roles your token carries.</p>
<form method="post" action="authorize">
<input type="hidden" name="response_type" value="code">
<input type="hidden" name="client_id" value="{{.A.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.A.RedirectURI}}">
<input type="hidden" name="state" value="{{.A.State}}">
<input type="hidden" name="scope" value="{{.A.Scope}}">
<input type="hidden" name="code_challenge" value="{{.A.Challenge}}">
<input type="hidden" name="code_challenge_method" value="S256">
<label for="upn">User principal name</label>
<input type="text" id="upn" name="upn" value="admin@azscep.local" required autocomplete="username">
<label for="name">Display name</label>
<input type="text" id="name" name="name" value="Local Admin">
<fieldset><legend>App roles</legend>
{{range .Roles}}<label><input type="checkbox" name="role" value="{{.}}" checked> {{.}}</label>
{{end}}</fieldset>
<button type="submit" id="signin">Sign in</button>
</form></main></body></html>
`))

func (d *DevIssuer) signInPage(w http.ResponseWriter, a authorizeRequest) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", signInCSP)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with the form's own post,
	// which fromOwnPage cannot tell from another site's sandboxed page. The page's URL still reaches no one else.
	w.Header().Set("Referrer-Policy", "same-origin")
	_ = signInPage.Execute(w, map[string]any{"A": a, "Roles": devRoles, "CSS": template.CSS(signInCSS)})
}
