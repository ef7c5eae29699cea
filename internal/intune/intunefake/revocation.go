package intunefake

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RevocationState is the lifecycle of a queued revocation request.
type RevocationState string

// States of a queued request (intune-protocol.md §11.4).
const (
	StateQueued   RevocationState = "queued"
	StateInFlight RevocationState = "in-flight"
	StateDone     RevocationState = "done"
	StateFailed   RevocationState = "failed"
)

// RevocationRequest is a download item.
type RevocationRequest struct {
	RequestContext  string `json:"requestContext"`
	SerialNumber    string `json:"serialNumber"`
	IssuerName      string `json:"issuerName,omitempty"`
	CAConfiguration string `json:"caConfiguration,omitempty"`
}

// RevocationItem is a queued request with its state.
type RevocationItem struct {
	RevocationRequest
	State      RevocationState
	LeaseUntil time.Time
	Deliveries int
}

// UploadedResult is one result as uploaded by the client.
type UploadedResult struct {
	RequestContext string
	Succeeded      bool
	// ErrorCode is the numeric CARequestErrorCode; ErrorCodeRaw is the JSON as sent.
	ErrorCode    int
	ErrorCodeRaw string
	ErrorMessage *string
	Known        bool // the requestContext was handed out by the fake
	Time         time.Time
}

var revocationCodes = map[string]int{
	"None": 0, "NonRetryableServiceException": 4000, "DataSerializationError": 4001,
	"ParameterDataInvalidError": 4002, "CryptographyError": 4003, "CertificateNotFoundError": 4004,
	"ConflictError": 4005, "NotSupportedError": 4006, "PayloadTooLargeError": 4007,
	"RetryableServiceException": 4100, "ServiceUnavailableException": 4101,
	"ServiceTooBusyException": 4102, "AuthenticationException": 4103,
}

func knownCode(n int) bool {
	for _, v := range revocationCodes {
		if v == n {
			return true
		}
	}
	return false
}

// EnqueueRevocation adds a raw request to the queue (any serial, any CA)
// and returns its requestContext (generated when empty).
func (s *Server) EnqueueRevocation(req RevocationRequest) (string, error) {
	if req.SerialNumber == "" {
		return "", fmt.Errorf("intunefake: serialNumber is required")
	}
	if req.RequestContext == "" {
		b, err := randomBytes(48)
		if err != nil {
			return "", err
		}
		req.RequestContext = base64.StdEncoding.EncodeToString(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.byContext[req.RequestContext]; dup {
		return "", fmt.Errorf("intunefake: requestContext %q already queued", req.RequestContext)
	}
	item := &RevocationItem{RevocationRequest: req, State: StateQueued}
	s.queue = append(s.queue, item)
	s.byContext[req.RequestContext] = item
	return req.RequestContext, nil
}

// RevokeIssued queues a revocation of a certificate previously reported by
// successNotification, found by its serial or thumbprint (compared
// case-insensitively, ignoring spaces, colons and leading zeros). The item
// carries the reported serial string, issuer and caConfiguration.
func (s *Server) RevokeIssued(serialOrThumbprint string) (string, error) {
	want := normalizeHex(serialOrThumbprint)
	var found *Issued
	for _, rec := range s.IssuedCertificates() {
		if normalizeHex(rec.SerialNumber) == want || normalizeHex(rec.Thumbprint) == want {
			found = &rec
		}
	}
	if found == nil {
		return "", fmt.Errorf("intunefake: no issued certificate %q", serialOrThumbprint)
	}
	return s.EnqueueRevocation(RevocationRequest{
		SerialNumber:    found.SerialNumber,
		IssuerName:      found.IssuingCA,
		CAConfiguration: deref(found.CAConfiguration),
	})
}

func normalizeHex(s string) string {
	s = strings.NewReplacer(" ", "", ":", "", "-", "").Replace(strings.ToUpper(strings.TrimSpace(s)))
	s = strings.TrimLeft(s, "0")
	return s
}

// Revocation returns the queued item with requestContext ctx.
func (s *Server) Revocation(requestContext string) (RevocationItem, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.byContext[requestContext]
	if !ok {
		return RevocationItem{}, false
	}
	return *it, true
}

// UploadedResults returns every result uploaded so far, in order.
func (s *Server) UploadedResults() []UploadedResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]UploadedResult(nil), s.uploads...)
}

// handleDownload implements CertificateAuthorityRequests/downloadRevocationRequests.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request, e *Entry) {
	inner, ok := s.intuneRequest(w, r, e, PkiAPIVersion, "downloadParameters")
	if !ok {
		return
	}
	strict := !s.opts.Lenient
	f := &fieldReader{obj: inner, strict: strict}
	f.only("maxRequests", "issuerName")
	issuer := f.str("issuerName", false)
	if f.err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "downloadParameters: "+f.err.Error())
		return
	}
	raw, ok := lookup(inner, "maxRequests", strict)
	if !ok {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "downloadParameters: maxRequests is required")
		return
	}
	max, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "downloadParameters: maxRequests must be an integer")
		return
	}
	if strict && (max < 1 || max > 500) {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("downloadParameters: maxRequests %d outside 1..500", max))
		return
	}
	if issuer != nil && s.opts.IssuerNameMaxLength > 0 && len(*issuer) > s.opts.IssuerNameMaxLength {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "downloadParameters: issuerName too long")
		return
	}
	filter := deref(issuer)

	s.mu.Lock()
	now := s.nowLocked()
	var out []RevocationRequest
	coolingDown := s.opts.CoolDown > 0 && s.downloadedAny && now.Before(s.lastDownload.Add(s.opts.CoolDown))
	if !coolingDown {
		var eligible []*RevocationItem
		for _, it := range s.queue {
			if it.State == StateQueued || (it.State == StateInFlight && !now.Before(it.LeaseUntil)) {
				eligible = append(eligible, it)
			}
		}
		match := func(it *RevocationItem) bool { return filter == "" || it.CAConfiguration == filter }
		var picked []*RevocationItem
		if s.opts.FilterMode == FilterIdeal {
			for _, it := range eligible {
				if match(it) && len(picked) < max {
					picked = append(picked, it)
				}
			}
		} else {
			if len(eligible) > max {
				eligible = eligible[:max]
			}
			for _, it := range eligible {
				if match(it) {
					picked = append(picked, it)
				}
			}
		}
		for _, it := range picked {
			it.State = StateInFlight
			it.LeaseUntil = now.Add(s.opts.CoolDown)
			it.Deliveries++
			out = append(out, it.RevocationRequest)
		}
		s.lastDownload = now
		s.downloadedAny = true
	}
	base := s.base
	s.mu.Unlock()
	if out == nil {
		out = []RevocationRequest{}
	}
	s.writeJSON(w, e, http.StatusOK, map[string]any{
		"@odata.context": base + PkiServicePath + "/$metadata#Collection(microsoft.management.services.api.caRevocationRequest)",
		"value":          out,
	})
}

// handleUpload implements CertificateAuthorityRequests/uploadRevocationResults.
// Member names match case-insensitively (the C# library may send
// PascalCase); errorCode may be a member name, a numeric string or a number.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request, e *Entry) {
	// Item members are matched case-insensitively in every mode because the
	// C# reference library really sends PascalCase (§7.2).
	outer, ok := s.intuneWrapper(w, r, e, PkiAPIVersion, "results")
	if !ok {
		return
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(outer, &items); err != nil || len(items) == 0 {
		s.reject(w, e, http.StatusBadRequest, "BadRequest", "results must be a non-empty array of objects")
		return
	}
	results := make([]UploadedResult, 0, len(items))
	for i, m := range items {
		f := &fieldReader{obj: m, strict: false}
		res := UploadedResult{
			RequestContext: deref(f.str("requestContext", true)),
			ErrorMessage:   f.str("errorMessage", false),
		}
		if f.err != nil {
			s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("results[%d]: %v", i, f.err))
			return
		}
		raw, ok := lookup(m, "succeeded", false)
		if !ok || json.Unmarshal(raw, &res.Succeeded) != nil || string(raw) == "null" {
			s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("results[%d]: succeeded must be a boolean", i))
			return
		}
		if raw, ok := lookup(m, "errorCode", false); ok && string(raw) != "null" {
			res.ErrorCodeRaw = string(raw)
			code, ok := parseRevocationCode(raw)
			if !ok {
				s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("results[%d]: unknown errorCode %s", i, raw))
				return
			}
			res.ErrorCode = code
		}
		if !s.opts.Lenient && res.Succeeded && res.ErrorCode != 0 {
			s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("results[%d]: succeeded with errorCode %d", i, res.ErrorCode))
			return
		}
		results = append(results, res)
	}
	s.mu.Lock()
	now := s.nowLocked()
	for i := range results {
		_, known := s.byContext[results[i].RequestContext]
		if !known && s.opts.RejectUnknownRequestContext {
			s.mu.Unlock()
			s.reject(w, e, http.StatusBadRequest, "BadRequest", fmt.Sprintf("results[%d]: unknown requestContext", i))
			return
		}
		results[i].Known = known
	}
	for i := range results {
		res := &results[i]
		res.Time = now
		s.uploads = append(s.uploads, *res)
		it, ok := s.byContext[res.RequestContext]
		if !ok {
			continue
		}
		switch {
		case res.Succeeded:
			it.State = StateDone
		case res.ErrorCode >= 4100:
			it.State = StateQueued
		default:
			it.State = StateFailed
		}
	}
	base := s.base
	s.mu.Unlock()
	s.writeJSON(w, e, http.StatusOK, map[string]any{
		"@odata.context": base + PkiServicePath + "/$metadata#Edm.Boolean",
		"value":          true,
	})
}

func parseRevocationCode(raw json.RawMessage) (int, bool) {
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, knownCode(n)
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return 0, false
	}
	for name, v := range revocationCodes {
		if strings.EqualFold(name, str) {
			return v, true
		}
	}
	if v, err := strconv.Atoi(str); err == nil {
		return v, knownCode(v)
	}
	return 0, false
}
