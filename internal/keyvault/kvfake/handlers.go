package kvfake

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // RSA-OAEP (SHA-1) is a real Key Vault algorithm the fake must implement.
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// reply is a handler's answer before it is written and journaled.
type reply struct {
	status   int
	body     any
	header   http.Header
	injected bool
}

// errorBody is Key Vault's error shape:
// {"error":{"code":"Forbidden","message":"...","innererror":{"code":"KeyOperationForbidden"}}}.
type errorBody struct {
	Error errorInfo `json:"error"`
}

type errorInfo struct {
	Code       string     `json:"code"`
	Message    string     `json:"message"`
	InnerError *errorInfo `json:"innererror,omitempty"`
}

func errReply(status int, code, msg string) reply {
	return reply{status: status, body: errorBody{Error: errorInfo{Code: code, Message: msg}}}
}

func badParameter(format string, args ...any) reply {
	return errReply(http.StatusBadRequest, "BadParameter", fmt.Sprintf(format, args...))
}

func keyOpForbidden(op string) reply {
	return reply{status: http.StatusForbidden, body: errorBody{Error: errorInfo{
		Code:       "Forbidden",
		Message:    fmt.Sprintf("Operation %s is not permitted on this key.", op),
		InnerError: &errorInfo{Code: "KeyOperationForbidden"},
	}}}
}

// route is a parsed request path.
type route struct {
	op      string
	name    string
	version string // "" = current version
	method  string // the method the route requires
}

// parseRoute maps a URL path to an operation. The azkeys client joins an empty
// version away ("/keys/ca//sign" becomes "/keys/ca/sign"), and GetKey with an
// empty version sends "/keys/ca/", so both shapes are accepted.
func parseRoute(path string) (route, bool) {
	if rest, ok := strings.CutPrefix(path, "/secrets/"); ok {
		// azsecrets sends "/secrets/name/" for the current version.
		seg := strings.Split(strings.TrimSuffix(rest, "/"), "/")
		if seg[0] == "" || len(seg) > 2 {
			return route{}, false
		}
		rt := route{op: OpGetSecret, name: seg[0], method: http.MethodGet}
		if len(seg) == 2 {
			rt.version = seg[1]
		}
		return rt, true
	}
	rest, ok := strings.CutPrefix(path, "/keys/")
	if !ok {
		return route{}, false
	}
	seg := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	if seg[0] == "" {
		return route{}, false
	}
	isOp := func(s string) bool {
		switch s {
		case OpSign, OpDecrypt, OpEncrypt, OpWrapKey, OpUnwrapKey:
			return true
		}
		return false
	}
	switch len(seg) {
	case 1:
		return route{op: OpGet, name: seg[0], method: http.MethodGet}, true
	case 2:
		switch {
		case seg[1] == OpVersions:
			return route{op: OpVersions, name: seg[0], method: http.MethodGet}, true
		case seg[1] == OpCreate:
			return route{op: OpCreate, name: seg[0], method: http.MethodPost}, true
		case isOp(seg[1]):
			return route{op: seg[1], name: seg[0], method: http.MethodPost}, true
		default:
			return route{op: OpGet, name: seg[0], version: seg[1], method: http.MethodGet}, true
		}
	case 3:
		if isOp(seg[2]) {
			return route{op: seg[2], name: seg[0], version: seg[1], method: http.MethodPost}, true
		}
	}
	return route{}, false
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	rt, known := parseRoute(r.URL.Path)
	entry := Request{Method: r.Method, Path: r.URL.Path, Op: rt.op, BodyLen: len(body)}
	var rep reply
	switch {
	case err != nil:
		rep = badParameter("request body too large or unreadable")
	case !known:
		rep = errReply(http.StatusNotFound, "NotFound", "The requested route does not exist.")
	default:
		rep, entry.Authenticated = s.handle(r, rt, body)
	}
	entry.Status = rep.status
	entry.Injected = rep.injected
	s.mu.Lock()
	s.journal = append(s.journal, entry)
	s.mu.Unlock()
	write(w, rep)
}

// handle authenticates, validates and dispatches a request for a known route.
func (s *Server) handle(r *http.Request, rt route, body []byte) (reply, bool) {
	// Authentication first, as Key Vault does: the azkeys challenge policy
	// sends its first request without credentials and without a body.
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		rep := errReply(http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
		if r.Header.Get("Authorization") != "" {
			rep = errReply(http.StatusUnauthorized, "Unauthorized", "AKV10022: Invalid audience or token.")
		}
		rep.header = http.Header{"Www-Authenticate": {
			fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s" resource="%s"`, Tenant, Resource),
		}}
		return rep, false
	}

	s.mu.Lock()
	s.counts[rt.op]++
	s.total++
	delay := s.latency[rt.op]
	if d, ok := s.latency[""]; ok && delay == 0 {
		delay = d
	}
	f := s.takeFaultLocked(rt.op)
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	if f != nil {
		return faultReply(f), true
	}

	want := APIVersion
	if rt.op == OpGetSecret {
		want = SecretsAPIVersion
	}
	if v := r.URL.Query()["api-version"]; len(v) != 1 || v[0] != want {
		return badParameter("The specified version (%s) is not recognized. Consider using the latest supported version (%s).",
			strings.Join(v, ","), want), true
	}
	if r.Method != rt.method {
		return errReply(http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("The requested resource does not support http method '%s'.", r.Method)), true
	}
	if rt.method == http.MethodPost {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return errReply(http.StatusUnsupportedMediaType, "UnsupportedMediaType",
				"The request entity's media type is not supported; use application/json."), true
		}
	} else if len(body) != 0 {
		return badParameter("A %s request must not have a body.", r.Method), true
	}

	switch rt.op {
	case OpGetSecret:
		return s.getSecret(rt), true
	case OpGet:
		return s.getKey(rt), true
	case OpVersions:
		return s.listVersions(rt), true
	case OpCreate:
		return s.createKey(rt, body), true
	case OpSign:
		return s.sign(rt, body), true
	default: // decrypt, encrypt, wrapkey, unwrapkey
		return s.cipher(rt, body), true
	}
}

// takeFaultLocked consumes one matching armed fault, if any.
func (s *Server) takeFaultLocked(op string) *fault {
	for i, f := range s.faults {
		if f.op != "" && f.op != op {
			continue
		}
		if f.remaining > 0 {
			f.remaining--
			if f.remaining == 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		return f
	}
	return nil
}

func faultReply(f *fault) reply {
	var rep reply
	switch f.status {
	case http.StatusTooManyRequests:
		rep = errReply(f.status, "Throttled",
			"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached")
	case http.StatusServiceUnavailable:
		rep = errReply(f.status, "ServiceUnavailable", "The service is temporarily unavailable.")
	case http.StatusForbidden:
		// The messages are Key Vault's, with the addresses and identities made up.
		msg := "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or " +
			"role definitions were changed recently, please observe propagation time.\r\nCaller: " +
			"appid=00000000-0000-0000-0000-0000000a2ce1;oid=00000000-0000-0000-0000-0000000a2ce2"
		if f.inner == ForbiddenByFirewall {
			msg = "Client address is not authorized and caller is not a trusted service.\r\nClient address: " +
				"203.0.113.7\r\nCaller: appid=00000000-0000-0000-0000-0000000a2ce1\r\nVault: kvfake;location=westeurope"
		}
		rep = reply{status: f.status, body: errorBody{Error: errorInfo{Code: "Forbidden", Message: msg,
			InnerError: &errorInfo{Code: f.inner}}}}
	default:
		rep = errReply(f.status, "InternalServerError", "An unexpected error occurred.")
	}
	if f.retryAfter > 0 {
		secs := int64(math.Ceil(f.retryAfter.Seconds()))
		rep.header = http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
	}
	rep.injected = true
	return rep
}

func write(w http.ResponseWriter, rep reply) {
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	var buf []byte
	if rep.body != nil {
		var err error
		if buf, err = json.Marshal(rep.body); err != nil {
			http.Error(w, "kvfake: encoding response", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.Header().Set("X-Ms-Keyvault-Service-Version", "kvfake")
	w.WriteHeader(rep.status)
	_, _ = w.Write(buf)
}

// lookup finds a key version, the current one when version is "".
func (s *Server) lookup(name, version string) (*key, *reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	versions := s.keys[objectName(name)]
	if len(versions) == 0 {
		rep := errReply(http.StatusNotFound, "KeyNotFound",
			fmt.Sprintf("A key with (name/id) %s was not found in this key vault.", name))
		return nil, &rep
	}
	if version == "" {
		return versions[len(versions)-1], nil
	}
	for _, k := range versions {
		if strings.EqualFold(k.version, version) {
			return k, nil
		}
	}
	rep := errReply(http.StatusNotFound, "KeyNotFound",
		fmt.Sprintf("A key with (name/id) %s/%s was not found in this key vault.", name, version))
	return nil, &rep
}

// jwk is the public JSON Web Key Key Vault returns in a key bundle.
type jwk struct {
	KID    string   `json:"kid"`
	Kty    string   `json:"kty"`
	KeyOps []string `json:"key_ops"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
}

type attributes struct {
	Enabled         bool   `json:"enabled"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created"`
	Updated         int64  `json:"updated"`
	RecoveryLevel   string `json:"recoveryLevel"`
	RecoverableDays int    `json:"recoverableDays"`
}

type keyBundle struct {
	Key        jwk        `json:"key"`
	Attributes attributes `json:"attributes"`
}

type keyItem struct {
	KID        string     `json:"kid"`
	Attributes attributes `json:"attributes"`
}

type keyList struct {
	Value    []keyItem `json:"value"`
	NextLink *string   `json:"nextLink"`
}

type opResult struct {
	KID   string `json:"kid"`
	Value string `json:"value"`
}

var b64 = base64.RawURLEncoding

func (s *Server) attrs(k *key) attributes {
	a := attributes{
		Enabled:         k.enabled,
		Created:         k.created.Unix(),
		Updated:         k.created.Unix(),
		RecoveryLevel:   "Recoverable+Purgeable",
		RecoverableDays: 90,
	}
	if !k.nbf.IsZero() {
		a.NotBefore = to(k.nbf.Unix())
	}
	if !k.exp.IsZero() {
		a.Expires = to(k.exp.Unix())
	}
	return a
}

func to[T any](v T) *T { return &v }

func (s *Server) bundle(k *key) keyBundle {
	j := jwk{KID: s.kid(k), Kty: k.kty, KeyOps: k.ops}
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		j.N = b64.EncodeToString(p.N.Bytes())
		j.E = b64.EncodeToString(bigEndian(p.E))
	case *ecdsa.PrivateKey:
		raw, err := p.PublicKey.Bytes() // 0x04 || X || Y, fixed size
		if err == nil {
			size := (len(raw) - 1) / 2
			j.Crv = curveName(p.Curve)
			j.X = b64.EncodeToString(raw[1 : 1+size])
			j.Y = b64.EncodeToString(raw[1+size:])
		}
	}
	return keyBundle{Key: j, Attributes: s.attrs(k)}
}

func bigEndian(e int) []byte {
	var b []byte
	for ; e > 0; e >>= 8 {
		b = append([]byte{byte(e)}, b...)
	}
	return b
}

func (s *Server) getKey(rt route) reply {
	k, rep := s.lookup(rt.name, rt.version)
	if rep != nil {
		return *rep
	}
	return reply{status: http.StatusOK, body: s.bundle(k)}
}

func (s *Server) listVersions(rt route) reply {
	s.mu.Lock()
	versions := s.keys[objectName(rt.name)]
	list := keyList{Value: []keyItem{}}
	for _, k := range versions {
		list.Value = append(list.Value, keyItem{KID: s.kid(k), Attributes: s.attrs(k)})
	}
	s.mu.Unlock()
	// Key Vault answers an empty page, not 404, for an unknown name.
	return reply{status: http.StatusOK, body: list}
}

// createRequest is the body azkeys' CreateKey sends. Unknown fields are refused.
type createRequest struct {
	Kty            string            `json:"kty"`
	KeySize        *int              `json:"key_size"`
	Crv            *string           `json:"crv"`
	KeyOps         []string          `json:"key_ops"`
	PublicExponent *int              `json:"public_exponent"`
	Tags           map[string]string `json:"tags"`
	Attributes     *struct {
		Enabled    *bool  `json:"enabled"`
		NotBefore  *int64 `json:"nbf"`
		Expires    *int64 `json:"exp"`
		Exportable *bool  `json:"exportable"`
	} `json:"attributes"`
}

var keyName = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

func (s *Server) createKey(rt route, body []byte) reply {
	var req createRequest
	if err := decodeStrict(body, &req); err != nil {
		return badParameter("Invalid request body: %v", err)
	}
	if !keyName.MatchString(rt.name) {
		return badParameter("The key name %q is invalid: use 1-127 letters, digits and dashes.", rt.name)
	}
	if req.PublicExponent != nil && *req.PublicExponent != 65537 {
		return badParameter("Only the public exponent 65537 is supported.")
	}
	var priv crypto.Signer
	var err error
	switch req.Kty {
	case "RSA", "RSA-HSM":
		if req.Crv != nil {
			return badParameter("crv is not valid for kty %s.", req.Kty)
		}
		size := 2048
		if req.KeySize != nil {
			size = *req.KeySize
		}
		if size != 2048 && size != 3072 && size != 4096 {
			return badParameter("Invalid key size %d: use 2048, 3072 or 4096.", size)
		}
		priv, err = rsa.GenerateKey(rand.Reader, size)
	case "EC", "EC-HSM":
		if req.KeySize != nil {
			return badParameter("key_size is not valid for kty %s.", req.Kty)
		}
		crv := "P-256"
		if req.Crv != nil {
			crv = *req.Crv
		}
		c := curveByName(crv)
		if c == nil {
			return badParameter("Invalid curve %q: use P-256, P-384 or P-521.", crv)
		}
		priv, err = ecdsa.GenerateKey(c, rand.Reader)
	default:
		return badParameter("Invalid kty %q: use RSA, RSA-HSM, EC or EC-HSM.", req.Kty)
	}
	if err != nil {
		return errReply(http.StatusInternalServerError, "InternalServerError", "key generation failed")
	}
	ops := req.KeyOps
	if ops == nil {
		ops = defaultOps(req.Kty)
	}
	for _, op := range ops {
		if !validKeyOp(op) {
			return badParameter("Invalid key operation %q.", op)
		}
		if strings.HasPrefix(req.Kty, "EC") && op != KeyOpSign && op != KeyOpVerify {
			return badParameter("Key operation %q is not valid for kty %s.", op, req.Kty)
		}
	}
	enabled := true
	if req.Attributes != nil && req.Attributes.Enabled != nil {
		enabled = *req.Attributes.Enabled
	}
	k := &key{name: rt.name, kty: req.Kty, priv: priv, ops: ops, enabled: enabled}
	if a := req.Attributes; a != nil && a.NotBefore != nil {
		k.nbf = time.Unix(*a.NotBefore, 0)
	}
	if a := req.Attributes; a != nil && a.Expires != nil {
		k.exp = time.Unix(*a.Expires, 0)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted[objectName(rt.name)] {
		// Soft delete keeps the name until the key is recovered or purged (90 days by default).
		return reply{status: http.StatusConflict, body: errorBody{Error: errorInfo{Code: "Conflict",
			Message: fmt.Sprintf("Key %s is currently in a deleted but recoverable state, and its name cannot be "+
				"reused; in this state, the key can only be recovered or purged.", rt.name),
			InnerError: &errorInfo{Code: "ObjectIsDeletedButRecoverable"}}}}
	}
	s.addLocked(k)
	return reply{status: http.StatusOK, body: s.bundle(k)}
}

// opRequest is the body of sign/decrypt/encrypt/wrapkey/unwrapkey. The
// symmetric-only fields (iv, aad, tag) are refused as unknown fields because
// the fake holds only asymmetric keys.
type opRequest struct {
	Alg   *string `json:"alg"`
	Value *string `json:"value"`
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON object")
	}
	return nil
}

// parseOp decodes and checks an operation body and finds the key.
func (s *Server) parseOp(rt route, body []byte, keyOp string) (*key, string, []byte, *reply) {
	var req opRequest
	if err := decodeStrict(body, &req); err != nil {
		rep := badParameter("Invalid request body: %v", err)
		return nil, "", nil, &rep
	}
	if req.Alg == nil || req.Value == nil {
		rep := badParameter("The request body must contain 'alg' and 'value'.")
		return nil, "", nil, &rep
	}
	value, err := b64.DecodeString(*req.Value)
	if err != nil {
		rep := badParameter("Property 'value' is not valid base64url: %v", err)
		return nil, "", nil, &rep
	}
	k, rep := s.lookup(rt.name, rt.version)
	if rep != nil {
		return nil, "", nil, rep
	}
	if !k.enabled {
		rep := reply{status: http.StatusForbidden, body: errorBody{Error: errorInfo{
			Code:       "Forbidden",
			Message:    fmt.Sprintf("Operation %s is not allowed on a disabled key.", keyOp),
			InnerError: &errorInfo{Code: "KeyDisabled"},
		}}}
		return nil, "", nil, &rep
	}
	if !containsOp(k.ops, keyOp) {
		rep := keyOpForbidden(keyOp)
		return nil, "", nil, &rep
	}
	// "Not-yet-valid and expired keys, outside the nbf / exp window, will work for decrypt, unwrap, and verify
	// operations" (Key Vault's documentation): the others are refused with 403.
	now := time.Now()
	if keyOp == KeyOpSign || keyOp == KeyOpEncrypt || keyOp == KeyOpWrapKey {
		if !k.exp.IsZero() && !now.Before(k.exp) {
			rep := errReply(http.StatusForbidden, "Forbidden", fmt.Sprintf("Operation %s is not allowed on an expired key.", keyOp))
			return nil, "", nil, &rep
		}
		if !k.nbf.IsZero() && now.Before(k.nbf) {
			rep := errReply(http.StatusForbidden, "Forbidden", fmt.Sprintf("Operation %s is not allowed on a key that is not yet valid.", keyOp))
			return nil, "", nil, &rep
		}
	}
	return k, *req.Alg, value, nil
}

func containsOp(ops []string, op string) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

var signAlgs = map[string]struct {
	hash crypto.Hash
	pss  bool
	ec   string // required curve for ES*
}{
	"RS256": {hash: crypto.SHA256}, "RS384": {hash: crypto.SHA384}, "RS512": {hash: crypto.SHA512},
	"PS256": {hash: crypto.SHA256, pss: true}, "PS384": {hash: crypto.SHA384, pss: true}, "PS512": {hash: crypto.SHA512, pss: true},
	"ES256": {hash: crypto.SHA256, ec: "P-256"}, "ES384": {hash: crypto.SHA384, ec: "P-384"}, "ES512": {hash: crypto.SHA512, ec: "P-521"},
}

func (s *Server) sign(rt route, body []byte) reply {
	k, alg, digest, rep := s.parseOp(rt, body, KeyOpSign)
	if rep != nil {
		return *rep
	}
	a, ok := signAlgs[alg]
	if !ok {
		return badParameter("Invalid algorithm: %s", alg)
	}
	if len(digest) != a.hash.Size() {
		return badParameter("Invalid digest length %d for algorithm %s.", len(digest), alg)
	}
	var sig []byte
	var err error
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		if a.ec != "" {
			return badParameter("Algorithm %s is not valid for key type %s.", alg, k.kty)
		}
		if a.pss {
			sig, err = rsa.SignPSS(rand.Reader, p, a.hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(nil, p, a.hash, digest)
		}
	case *ecdsa.PrivateKey:
		if a.ec == "" {
			return badParameter("Algorithm %s is not valid for key type %s.", alg, k.kty)
		}
		if a.ec != curveName(p.Curve) {
			return badParameter("Algorithm %s is not valid for curve %s.", alg, curveName(p.Curve))
		}
		sig, err = signRawECDSA(p, digest)
	}
	if err != nil {
		return errReply(http.StatusInternalServerError, "InternalServerError", "signing failed")
	}
	return reply{status: http.StatusOK, body: opResult{KID: s.kid(k), Value: b64.EncodeToString(sig)}}
}

// signRawECDSA returns the JOSE form of an ECDSA signature: r || s, each
// left-padded to the curve's byte size. This is what Key Vault returns.
func signRawECDSA(p *ecdsa.PrivateKey, digest []byte) ([]byte, error) {
	r, sv, err := ecdsa.Sign(rand.Reader, p, digest)
	if err != nil {
		return nil, err
	}
	size := (p.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	sv.FillBytes(out[size:])
	return out, nil
}

// cipher handles the RSA encryption operations.
func (s *Server) cipher(rt route, body []byte) reply {
	keyOp := map[string]string{
		OpDecrypt: KeyOpDecrypt, OpEncrypt: KeyOpEncrypt, OpWrapKey: KeyOpWrapKey, OpUnwrapKey: KeyOpUnwrapKey,
	}[rt.op]
	k, alg, value, rep := s.parseOp(rt, body, keyOp)
	if rep != nil {
		return *rep
	}
	p, ok := k.priv.(*rsa.PrivateKey)
	if !ok {
		return badParameter("Algorithm %s is not valid for key type %s.", alg, k.kty)
	}
	var h crypto.Hash
	switch alg {
	case "RSA1_5":
	case "RSA-OAEP":
		h = crypto.SHA1
	case "RSA-OAEP-256":
		h = crypto.SHA256
	default:
		return badParameter("Invalid algorithm: %s", alg)
	}
	var out []byte
	var err error
	if rt.op == OpEncrypt || rt.op == OpWrapKey {
		switch h {
		case 0:
			out, err = rsa.EncryptPKCS1v15(rand.Reader, &p.PublicKey, value)
		case crypto.SHA1:
			out, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, &p.PublicKey, value, nil)
		default:
			out, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, &p.PublicKey, value, nil)
		}
	} else {
		switch h {
		case 0:
			out, err = rsa.DecryptPKCS1v15(nil, p, value)
		case crypto.SHA1:
			out, err = rsa.DecryptOAEP(sha1.New(), nil, p, value, nil)
		default:
			out, err = rsa.DecryptOAEP(sha256.New(), nil, p, value, nil)
		}
	}
	if err != nil {
		return badParameter("The %s operation failed for the given value.", rt.op)
	}
	return reply{status: http.StatusOK, body: opResult{KID: s.kid(k), Value: b64.EncodeToString(out)}}
}

// secretBundle is Key Vault's SecretBundle, as much of it as azsecrets reads.
type secretBundle struct {
	Value      string           `json:"value"`
	ID         string           `json:"id"`
	Attributes secretAttributes `json:"attributes"`
}

type secretAttributes struct {
	Enabled       bool   `json:"enabled"`
	Created       int64  `json:"created"`
	Updated       int64  `json:"updated"`
	RecoveryLevel string `json:"recoveryLevel"`
}

func (s *Server) getSecret(rt route) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	versions := s.secrets[objectName(rt.name)]
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i]
		if rt.version != "" && !strings.EqualFold(v.version, rt.version) {
			continue
		}
		return reply{status: http.StatusOK, body: secretBundle{Value: v.value, ID: s.srv.URL + "/secrets/" + v.name + "/" + v.version,
			Attributes: secretAttributes{Enabled: true, Created: v.created.Unix(), Updated: v.created.Unix(),
				RecoveryLevel: "Recoverable+Purgeable"}}}
	}
	return errReply(http.StatusNotFound, "SecretNotFound",
		fmt.Sprintf("A secret with (name/id) %s was not found in this key vault.", rt.name))
}
