package intunefake

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/google/uuid"
)

// Challenge is an Intune dynamic challenge as the fake understands it: the
// password the device puts in the CSR plus what Intune expects the CSR to
// contain. Empty expectations are not checked.
type Challenge struct {
	// Password is the challengePassword value (the key of the registration).
	Password string `json:"password"`
	// ExpiresAt: validation after it answers ChallengeExpired (zero = never).
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Subject is the expected subject in Go's pkix.Name.String() form
	// (RFC 2253, e.g. "CN=device1,O=Contoso"), compared case-insensitively.
	Subject string `json:"subject,omitempty"`
	// DNSNames, Emails, UPNs, URIs and IPs are the expected SANs (as sets). When any is set, every SAN type is
	// compared, so a name of a type the profile does not list (an IP address, say) is a mismatch, as in Intune.
	DNSNames []string `json:"dnsNames,omitempty"`
	Emails   []string `json:"emails,omitempty"`
	UPNs     []string `json:"upns,omitempty"`
	URIs     []string `json:"uris,omitempty"`
	IPs      []string `json:"ips,omitempty"`
	// KeyUsage is the expected keyUsage extension value (0 = unchecked).
	KeyUsage x509.KeyUsage `json:"keyUsage,omitempty"`
	// ExtKeyUsages are expected EKUs as dotted OIDs or names (clientAuth,
	// serverAuth, emailProtection, codeSigning, ipsecTunnel, ipsecUser,
	// ipsecEndSystem, timeStamping, OCSPSigning, smartcardLogon, any).
	ExtKeyUsages []string `json:"extKeyUsages,omitempty"`
	// KeySize is the expected key size in bits (RSA modulus or curve size).
	KeySize int `json:"keySize,omitempty"`
	// Untargeted answers ScepProfileNoLongerTargetedToTheClient.
	Untargeted bool `json:"untargeted,omitempty"`
	// ForceCode, if set, is answered once the password matched, to
	// exercise codes the fake does not model (e.g. BadDeviceIdInChallenge).
	ForceCode string `json:"forceCode,omitempty"`
}

// Validation is the fake's record of one validateRequest.
type Validation struct {
	TransactionID string
	Code          string
	CSR           []byte
	Time          time.Time
}

// Issued is what successNotification reported, as received.
type Issued struct {
	TransactionID        string
	CertificateRequest   string
	Thumbprint           string
	SerialNumber         string
	ExpirationDateUTC    string
	IssuingCA            string
	CAConfiguration      *string
	CertificateAuthority *string
	CallerInfo           string
	Time                 time.Time
}

// FailureReport is what failureNotification reported.
type FailureReport struct {
	TransactionID      string
	CertificateRequest string
	HResult            int64
	Description        string
	CallerInfo         string
	Time               time.Time
}

// RegisterChallenge makes validateRequest know c.Password. Registering the
// same password again replaces the expectations.
func (s *Server) RegisterChallenge(c Challenge) error {
	if c.Password == "" {
		return fmt.Errorf("intunefake: challenge password is required")
	}
	for _, e := range c.ExtKeyUsages {
		if _, err := parseEKU(e); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.challenges[c.Password] = c
	s.mu.Unlock()
	return nil
}

// Validations returns the validateRequest outcomes by transactionId.
func (s *Server) Validations() map[string]Validation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Validation, len(s.validations))
	for k, v := range s.validations {
		out[k] = v
	}
	return out
}

// IssuedCertificates returns every successNotification accepted so far.
func (s *Server) IssuedCertificates() []Issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}

// FailureReports returns every failureNotification accepted so far.
func (s *Server) FailureReports() []FailureReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.failures)
}

// headersOK runs the transport-level checks common to the five Intune
// routes (method, query, bearer token, api-version, client-request-id,
// Content-Type, UserAgent). It answers and returns false on failure.
func (s *Server) headersOK(w http.ResponseWriter, r *http.Request, e *Entry, apiVersion string) bool {
	strict := !s.opts.Lenient
	if r.Method != http.MethodPost {
		s.reject(w, e, http.StatusMethodNotAllowed, "MethodNotAllowed", "POST only")
		return false
	}
	if strict && r.URL.RawQuery != "" {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "no query string is allowed (api-version is a header)")
		return false
	}
	if status, code, msg := s.checkBearer(r, IntuneAudience, RoleScepChallengeProvider); status != 0 {
		s.reject(w, e, status, code, msg)
		return false
	}
	if got := r.Header.Get("api-version"); got == "" || (strict && got != apiVersion) {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("api-version header %q, want %q", got, apiVersion))
		return false
	}
	id := r.Header.Get("client-request-id")
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 || (strict && u.String() != id) {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("client-request-id %q is not a lower-case hyphenated UUID", id))
		return false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Content-Type %q is not application/json", r.Header.Get("Content-Type")))
		return false
	}
	if strict && strings.TrimSpace(r.Header.Get("UserAgent")) == "" {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "UserAgent header missing")
		return false
	}
	return true
}

// intuneWrapper runs headersOK and returns the raw value of the body's
// single wrapper member, or false after answering.
func (s *Server) intuneWrapper(w http.ResponseWriter, r *http.Request, e *Entry, apiVersion, wrapper string) (json.RawMessage, bool) {
	if !s.headersOK(w, r, e, apiVersion) {
		return nil, false
	}
	strict := !s.opts.Lenient
	outer, err := decodeObject(e.Body)
	if err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "body: "+err.Error())
		return nil, false
	}
	raw, ok := lookup(outer, wrapper, strict)
	if !ok {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("body has no %q member", wrapper))
		return nil, false
	}
	if strict && len(outer) != 1 {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("body must contain only %q", wrapper))
		return nil, false
	}
	return raw, true
}

// intuneRequest is intuneWrapper for wrappers holding an object.
func (s *Server) intuneRequest(w http.ResponseWriter, r *http.Request, e *Entry, apiVersion, wrapper string) (map[string]json.RawMessage, bool) {
	raw, ok := s.intuneWrapper(w, r, e, apiVersion, wrapper)
	if !ok {
		return nil, false
	}
	inner, err := decodeObject(raw)
	if err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", wrapper+": "+err.Error())
		return nil, false
	}
	return inner, true
}

// fieldReader extracts string members of a JSON object and, in strict
// mode, refuses members outside an allow-list. The first error sticks.
type fieldReader struct {
	obj    map[string]json.RawMessage
	strict bool
	err    error
}

func (f *fieldReader) str(name string, required bool) *string {
	if f.err != nil {
		return nil
	}
	raw, ok := lookup(f.obj, name, f.strict)
	if !ok || string(raw) == "null" {
		if required {
			f.err = fmt.Errorf("member %q is required", name)
		}
		return nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		f.err = fmt.Errorf("member %q must be a string", name)
		return nil
	}
	if required && strings.TrimSpace(v) == "" {
		f.err = fmt.Errorf("member %q must not be empty", name)
		return nil
	}
	return &v
}

func (f *fieldReader) only(names ...string) {
	if f.err != nil || !f.strict {
		return
	}
	for k := range f.obj {
		if !slices.Contains(names, k) {
			f.err = fmt.Errorf("unexpected member %q", k)
			return
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *Server) scepAnswer(w http.ResponseWriter, e *Entry, code, desc string) {
	s.writeJSON(w, e, http.StatusOK, map[string]any{"code": code, "errorDescription": desc})
}

// handleValidate implements ScepActions/validateRequest.
func (s *Server) handleValidate(w http.ResponseWriter, r *http.Request, e *Entry) {
	inner, ok := s.intuneRequest(w, r, e, ScepAPIVersion, "request")
	if !ok {
		return
	}
	f := &fieldReader{obj: inner, strict: !s.opts.Lenient}
	f.only("transactionId", "certificateRequest", "callerInfo")
	txID := f.str("transactionId", true)
	csrB64 := f.str("certificateRequest", true)
	f.str("callerInfo", !s.opts.Lenient)
	if f.err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "request: "+f.err.Error())
		return
	}
	code, desc, der := s.evaluate(*csrB64)
	s.mu.Lock()
	s.validations[*txID] = Validation{TransactionID: *txID, Code: code, CSR: der, Time: s.nowLocked()}
	s.mu.Unlock()
	s.scepAnswer(w, e, code, desc)
}

// evaluate emulates Intune's checks in its order (intune-protocol.md §11.3).
func (s *Server) evaluate(csrB64 string) (code, desc string, der []byte) {
	der, err := base64.StdEncoding.Strict().DecodeString(csrB64)
	if err != nil {
		return "CertificateRequestDecodingFailed", "certificateRequest is not standard padded base64", nil
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return "CertificateRequestDecodingFailed", "not a PKCS#10 request: " + err.Error(), der
	}
	if err := csr.CheckSignature(); err != nil {
		return "SignatureValidationFailed", "CSR signature is invalid", der
	}
	password, found, err := challengePassword(csr.RawTBSCertificateRequest)
	if err != nil {
		return "CertificateRequestDecodingFailed", "attributes: " + err.Error(), der
	}
	if !found {
		return "ChallengePasswordMissing", "CSR has no challengePassword attribute", der
	}
	s.mu.Lock()
	ch, known := s.challenges[password]
	now := s.nowLocked()
	s.mu.Unlock()
	switch {
	case !known:
		return "ChallengeDecryptionError", "challenge could not be decrypted", der
	case !ch.ExpiresAt.IsZero() && now.After(ch.ExpiresAt):
		return "ChallengeExpired", "challenge expired at " + ch.ExpiresAt.UTC().Format(time.RFC3339), der
	case ch.Untargeted:
		return "ScepProfileNoLongerTargetedToTheClient", "SCEP profile no longer targeted to the device", der
	case ch.ForceCode != "":
		return ch.ForceCode, "forced by test", der
	}
	if ch.Subject != "" {
		if len(csr.Subject.Names) == 0 && csr.Subject.String() == "" {
			return "SubjectNameMissing", "CSR has no subject", der
		}
		if !strings.EqualFold(csr.Subject.String(), ch.Subject) {
			return "SubjectNameMismatch", fmt.Sprintf("subject %q, expected %q", csr.Subject.String(), ch.Subject), der
		}
	}
	if len(ch.DNSNames)+len(ch.Emails)+len(ch.UPNs)+len(ch.URIs)+len(ch.IPs) > 0 {
		upns, hasSAN, err := upnsAndSANPresence(csr)
		if err != nil {
			return "CertificateRequestDecodingFailed", "SAN: " + err.Error(), der
		}
		if !hasSAN {
			return "SubjectAltNameMissing", "CSR has no subjectAltName", der
		}
		uris := make([]string, 0, len(csr.URIs))
		for _, u := range csr.URIs {
			uris = append(uris, u.String())
		}
		ips := make([]string, 0, len(csr.IPAddresses))
		for _, ip := range csr.IPAddresses {
			ips = append(ips, ip.String())
		}
		wantIPs := make([]string, 0, len(ch.IPs))
		for _, v := range ch.IPs {
			if ip := net.ParseIP(v); ip != nil {
				v = ip.String()
			}
			wantIPs = append(wantIPs, v)
		}
		if !sameSet(csr.DNSNames, ch.DNSNames, true) || !sameSet(csr.EmailAddresses, ch.Emails, true) ||
			!sameSet(upns, ch.UPNs, true) || !sameSet(uris, ch.URIs, false) || !sameSet(ips, wantIPs, false) {
			return "SubjectAltNameMismatch", "subjectAltName differs from the profile", der
		}
	}
	if ch.KeyUsage != 0 {
		ku, present, err := keyUsage(csr)
		if err != nil {
			return "CertificateRequestDecodingFailed", "keyUsage: " + err.Error(), der
		}
		if !present || ku != ch.KeyUsage {
			return "KeyUsageMismatch", fmt.Sprintf("keyUsage %#x, expected %#x", int(ku), int(ch.KeyUsage)), der
		}
	}
	if len(ch.ExtKeyUsages) > 0 {
		got, present, err := extKeyUsages(csr)
		if err != nil {
			return "CertificateRequestDecodingFailed", "extKeyUsage: " + err.Error(), der
		}
		if !present {
			return "EnhancedKeyUsageMissing", "CSR has no extendedKeyUsage", der
		}
		want := make([]string, 0, len(ch.ExtKeyUsages))
		for _, n := range ch.ExtKeyUsages {
			oid, _ := parseEKU(n)
			want = append(want, oid)
		}
		if !sameSet(got, want, false) {
			return "EnhancedKeyUsageMismatch", fmt.Sprintf("EKUs %v, expected %v", got, want), der
		}
	}
	if ch.KeySize != 0 {
		if size := keySize(csr.PublicKey); size != ch.KeySize {
			return "KeyLengthMismatch", fmt.Sprintf("key size %d, expected %d", size, ch.KeySize), der
		}
	}
	return "Success", "", der
}

// handleSuccess implements ScepActions/successNotification.
func (s *Server) handleSuccess(w http.ResponseWriter, r *http.Request, e *Entry) {
	inner, ok := s.intuneRequest(w, r, e, ScepAPIVersion, "notification")
	if !ok {
		return
	}
	f := &fieldReader{obj: inner, strict: !s.opts.Lenient}
	f.only("transactionId", "certificateRequest", "certificateThumbprint", "certificateSerialNumber",
		"certificateExpirationDateUtc", "issuingCertificateAuthority", "callerInfo", "caConfiguration", "certificateAuthority")
	rec := Issued{
		TransactionID:        deref(f.str("transactionId", true)),
		CertificateRequest:   deref(f.str("certificateRequest", true)),
		Thumbprint:           deref(f.str("certificateThumbprint", true)),
		SerialNumber:         deref(f.str("certificateSerialNumber", true)),
		ExpirationDateUTC:    deref(f.str("certificateExpirationDateUtc", true)),
		IssuingCA:            deref(f.str("issuingCertificateAuthority", true)),
		CallerInfo:           deref(f.str("callerInfo", !s.opts.Lenient)),
		CAConfiguration:      f.str("caConfiguration", false),
		CertificateAuthority: f.str("certificateAuthority", false),
	}
	if f.err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "notification: "+f.err.Error())
		return
	}
	if _, err := time.Parse(time.RFC3339Nano, rec.ExpirationDateUTC); err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "certificateExpirationDateUtc is not an ISO 8601 date-time")
		return
	}
	if s.opts.RequireValidatedTransaction {
		s.mu.Lock()
		v, seen := s.validations[rec.TransactionID]
		s.mu.Unlock()
		der, _ := base64.StdEncoding.DecodeString(rec.CertificateRequest)
		if !seen || v.Code != "Success" || !bytes.Equal(v.CSR, der) {
			s.scepAnswer(w, e, "BadCertificateRequestIdInChallenge", "transaction was not validated with this CSR")
			return
		}
	}
	s.mu.Lock()
	rec.Time = s.nowLocked()
	s.issued = append(s.issued, rec)
	s.mu.Unlock()
	s.scepAnswer(w, e, "Success", "")
}

// handleFailure implements ScepActions/failureNotification.
func (s *Server) handleFailure(w http.ResponseWriter, r *http.Request, e *Entry) {
	inner, ok := s.intuneRequest(w, r, e, ScepAPIVersion, "notification")
	if !ok {
		return
	}
	f := &fieldReader{obj: inner, strict: !s.opts.Lenient}
	f.only("transactionId", "certificateRequest", "hResult", "errorDescription", "callerInfo")
	rec := FailureReport{
		TransactionID:      deref(f.str("transactionId", true)),
		CertificateRequest: deref(f.str("certificateRequest", true)),
		Description:        deref(f.str("errorDescription", true)),
		CallerInfo:         deref(f.str("callerInfo", !s.opts.Lenient)),
	}
	if f.err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "notification: "+f.err.Error())
		return
	}
	raw, ok := lookup(inner, "hResult", !s.opts.Lenient)
	if !ok {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "notification: member \"hResult\" is required")
		return
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "notification: hResult must be a JSON number")
		return
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "notification: hResult must be a JSON number")
		return
	}
	h, err := n.Int64()
	if err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "notification: hResult must be an int64")
		return
	}
	rec.HResult = h
	if !s.opts.Lenient && len(utf16.Encode([]rune(rec.Description))) > 255 {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "notification: errorDescription longer than 255 characters")
		return
	}
	s.mu.Lock()
	rec.Time = s.nowLocked()
	s.failures = append(s.failures, rec)
	s.mu.Unlock()
	s.scepAnswer(w, e, "Success", "")
}

// ---- JSON helpers ----------------------------------------------------------

func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	return m, nil
}

// lookup finds member name exactly, or case-insensitively when not strict.
func lookup(m map[string]json.RawMessage, name string, strict bool) (json.RawMessage, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	if strict {
		return nil, false
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// ---- CSR inspection --------------------------------------------------------

var (
	oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidSAN               = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage          = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidUPN               = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
)

// challengePassword extracts the PKCS#9 challengePassword from the raw TBS
// request (x509.CertificateRequest does not expose it).
func challengePassword(tbs []byte) (string, bool, error) {
	var req struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0"`
	}
	if rest, err := asn1.Unmarshal(tbs, &req); err != nil || len(rest) != 0 {
		return "", false, fmt.Errorf("malformed CertificationRequestInfo")
	}
	for _, raw := range req.Attributes {
		var attr struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		}
		if rest, err := asn1.Unmarshal(raw.FullBytes, &attr); err != nil || len(rest) != 0 {
			return "", false, fmt.Errorf("malformed attribute")
		}
		if !attr.Type.Equal(oidChallengePassword) {
			continue
		}
		if len(attr.Values) != 1 {
			return "", false, fmt.Errorf("challengePassword must have one value")
		}
		v := attr.Values[0]
		switch v.Tag {
		case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagT61String:
			return string(v.Bytes), true, nil
		case asn1.TagBMPString:
			if len(v.Bytes)%2 != 0 {
				return "", false, fmt.Errorf("odd BMPString")
			}
			u := make([]uint16, len(v.Bytes)/2)
			for i := range u {
				u[i] = uint16(v.Bytes[2*i])<<8 | uint16(v.Bytes[2*i+1])
			}
			return string(utf16.Decode(u)), true, nil
		default:
			return "", false, fmt.Errorf("challengePassword has unsupported string type %d", v.Tag)
		}
	}
	return "", false, nil
}

func findExtension(csr *x509.CertificateRequest, oid asn1.ObjectIdentifier) ([]byte, bool) {
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(oid) {
			return ext.Value, true
		}
	}
	return nil, false
}

// upnsAndSANPresence returns the UPN otherNames of the SAN extension (Go
// does not parse otherName) and whether a SAN extension is present.
func upnsAndSANPresence(csr *x509.CertificateRequest) ([]string, bool, error) {
	val, ok := findExtension(csr, oidSAN)
	if !ok {
		return nil, false, nil
	}
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(val, &names); err != nil || len(rest) != 0 {
		return nil, true, fmt.Errorf("malformed subjectAltName")
	}
	var upns []string
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
			continue
		}
		var other struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue // [0] EXPLICIT wrapper
		}
		// otherName is [0] IMPLICIT SEQUENCE { type-id, [0] EXPLICIT value }.
		seq := append([]byte{0x30}, n.FullBytes[1:]...)
		if rest, err := asn1.Unmarshal(seq, &other); err != nil || len(rest) != 0 ||
			other.Value.Class != asn1.ClassContextSpecific || other.Value.Tag != 0 {
			return nil, true, fmt.Errorf("malformed otherName")
		}
		if !other.Type.Equal(oidUPN) {
			continue
		}
		var upn string
		if rest, err := asn1.UnmarshalWithParams(other.Value.Bytes, &upn, "utf8"); err != nil || len(rest) != 0 {
			return nil, true, fmt.Errorf("malformed UPN otherName")
		}
		upns = append(upns, upn)
	}
	return upns, true, nil
}

func keyUsage(csr *x509.CertificateRequest) (x509.KeyUsage, bool, error) {
	val, ok := findExtension(csr, oidKeyUsage)
	if !ok {
		return 0, false, nil
	}
	var bits asn1.BitString
	if rest, err := asn1.Unmarshal(val, &bits); err != nil || len(rest) != 0 {
		return 0, true, fmt.Errorf("malformed keyUsage")
	}
	var ku int
	for i := 0; i < 9; i++ {
		if bits.At(i) != 0 {
			ku |= 1 << uint(i)
		}
	}
	return x509.KeyUsage(ku), true, nil
}

func extKeyUsages(csr *x509.CertificateRequest) ([]string, bool, error) {
	val, ok := findExtension(csr, oidExtKeyUsage)
	if !ok {
		return nil, false, nil
	}
	var oids []asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(val, &oids); err != nil || len(rest) != 0 {
		return nil, true, fmt.Errorf("malformed extKeyUsage")
	}
	out := make([]string, 0, len(oids))
	for _, o := range oids {
		out = append(out, o.String())
	}
	return out, true, nil
}

var ekuNames = map[string]string{
	"any":             "2.5.29.37.0",
	"serverauth":      "1.3.6.1.5.5.7.3.1",
	"clientauth":      "1.3.6.1.5.5.7.3.2",
	"codesigning":     "1.3.6.1.5.5.7.3.3",
	"emailprotection": "1.3.6.1.5.5.7.3.4",
	"ipsecendsystem":  "1.3.6.1.5.5.7.3.5",
	"ipsectunnel":     "1.3.6.1.5.5.7.3.6",
	"ipsecuser":       "1.3.6.1.5.5.7.3.7",
	"timestamping":    "1.3.6.1.5.5.7.3.8",
	"ocspsigning":     "1.3.6.1.5.5.7.3.9",
	"smartcardlogon":  "1.3.6.1.4.1.311.20.2.2",
}

func parseEKU(s string) (string, error) {
	if oid, ok := ekuNames[strings.ToLower(strings.TrimSpace(s))]; ok {
		return oid, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return "", fmt.Errorf("intunefake: unknown EKU %q", s)
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return "", fmt.Errorf("intunefake: unknown EKU %q", s)
		}
	}
	return s, nil
}

func keySize(pub any) int {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen()
	case *ecdsa.PublicKey:
		return k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return 256
	}
	return 0
}

func sameSet(got, want []string, fold bool) bool {
	norm := func(in []string) []string {
		out := make([]string, 0, len(in))
		for _, v := range in {
			if fold {
				v = strings.ToLower(v)
			}
			out = append(out, v)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(got), norm(want))
}
