package intune

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
)

// Limits of downloadRevocationRequests' maxRequests (§7.1, §7.6).
const (
	DefaultMaxRevocationRequests = 100
	MaxRevocationRequests        = 500
)

// RevocationRequest is one item of Intune's revocation queue (§7.3).
type RevocationRequest struct {
	// RequestContext is Intune's opaque handle; echo it unchanged in the result.
	RequestContext string
	// SerialNumber is the serial string reported in successNotification.
	SerialNumber string
	// IssuerName is the issuer Intune associates with the certificate (may be "").
	IssuerName string
	// CAConfiguration is the caConfiguration reported at issuance (may be "").
	CAConfiguration string
}

// RevocationResult is the outcome of one RevocationRequest (§7.4).
type RevocationResult struct {
	// RequestContext is copied from the RevocationRequest.
	RequestContext string
	// Succeeded is true when the certificate is revoked (or already was).
	Succeeded bool
	// ErrorCode must be RevocationNone on success and anything else on failure.
	ErrorCode RevocationErrorCode
	// ErrorMessage is free text for failures; it must be empty on success.
	ErrorMessage string
}

// DownloadRevocationRequests fetches up to max queued revocation requests
// (CertificateAuthorityRequests/downloadRevocationRequests, §7.1). max 0
// means DefaultMaxRevocationRequests; the issuerName filter is always null
// because Intune applies it after truncation (§7.6) — filter locally.
//
// An empty result means "nothing now", not "queue empty": Intune may hold
// further items back for a cool-down after each download.
// Items that cannot be acted on — no requestContext, or an element that is
// not an object of string members — are dropped (and logged); every other
// item is returned as received. One unreadable item does not cost the rest
// of the download: Intune has handed them all over, and offers none of them
// again for a while.
func (c *Client) DownloadRevocationRequests(ctx context.Context, max int) ([]RevocationRequest, error) {
	if max == 0 {
		max = DefaultMaxRevocationRequests
	}
	if max < 1 || max > MaxRevocationRequests {
		return nil, fmt.Errorf("%w: maxRequests %d outside 1..%d", ErrInvalidArgument, max, MaxRevocationRequests)
	}
	body := map[string]any{"downloadParameters": map[string]any{
		"maxRequests": max,
		"issuerName":  nil,
	}}
	var out []RevocationRequest
	parse := func(raw []byte, activityID string) ([]slog.Attr, error) {
		items, dropped, err := parseDownload(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v (client-request-id %s)", ErrMalformedResponse, opDownload.name, err, activityID)
		}
		if len(dropped) > 0 {
			c.log.Warn("intune revocation download: dropped items that cannot be acted on",
				slog.Int("dropped", len(dropped)), slog.String("first", dropped[0]), slog.String("clientRequestId", activityID))
		}
		out = items
		return []slog.Attr{slog.Int("items", len(items)), slog.Int("dropped", len(dropped)), slog.Int("maxRequests", max)}, nil
	}
	if err := c.call(ctx, opDownload, "", body, parse); err != nil {
		return nil, err
	}
	return out, nil
}

// parseDownload decodes {"value": [ {requestContext, serialNumber, issuerName,
// caConfiguration}, ... ]}. Members are matched case-sensitively, as in
// Microsoft's Java library; null string members read as "". An answer that is
// not that shape is an error; an element that is not an object, has a member
// of another type than string, or no requestContext is dropped, and dropped
// says why for each (by index: never its content).
func parseDownload(raw []byte) (items []RevocationRequest, dropped []string, err error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return nil, nil, fmt.Errorf("answer is not a JSON object")
	}
	value, ok := doc["value"]
	if !ok {
		return nil, nil, fmt.Errorf("member \"value\" missing")
	}
	var elements []json.RawMessage
	if err := json.Unmarshal(value, &elements); err != nil || string(value) == "null" {
		return nil, nil, fmt.Errorf("member \"value\" is not an array")
	}
	items = make([]RevocationRequest, 0, len(elements))
	for i, el := range elements {
		r, why := parseDownloadItem(el)
		if why != "" {
			dropped = append(dropped, fmt.Sprintf("value[%d]: %s", i, why))
			continue
		}
		items = append(items, r)
	}
	return items, dropped, nil
}

// parseDownloadItem reads one element of "value"; why says what makes it unusable, or is "".
func parseDownloadItem(el json.RawMessage) (r RevocationRequest, why string) {
	var e map[string]json.RawMessage
	if err := json.Unmarshal(el, &e); err != nil {
		return r, "not an object"
	}
	// A mistyped member is not read as "": an empty caConfiguration would route another CA's request here.
	for _, m := range []struct {
		name string
		dst  *string
	}{
		{"requestContext", &r.RequestContext},
		{"serialNumber", &r.SerialNumber},
		{"issuerName", &r.IssuerName},
		{"caConfiguration", &r.CAConfiguration},
	} {
		if v, ok := e[m.name]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, m.dst); err != nil {
				return r, m.name + " is not a string"
			}
		}
	}
	if strings.TrimSpace(r.RequestContext) == "" {
		return r, "no requestContext"
	}
	return r, ""
}

// UploadRevocationResults reports revocation outcomes
// (CertificateAuthorityRequests/uploadRevocationResults, §7.2). It returns
// nil only when Intune answered "value": true (or "true"); ErrUploadNotAccepted
// when it answered false. On any error the results must be kept and
// uploaded again later.
func (c *Client) UploadRevocationResults(ctx context.Context, results []RevocationResult) error {
	if len(results) == 0 {
		return fmt.Errorf("%w: no revocation results to upload", ErrInvalidArgument)
	}
	wire := make([]map[string]any, 0, len(results))
	for i, r := range results {
		if strings.TrimSpace(r.RequestContext) == "" {
			return fmt.Errorf("%w: result %d has an empty requestContext", ErrInvalidArgument, i)
		}
		if !r.ErrorCode.Known() {
			return fmt.Errorf("%w: result %d has undefined error code %d", ErrInvalidArgument, i, int(r.ErrorCode))
		}
		if r.Succeeded && (r.ErrorCode != RevocationNone || r.ErrorMessage != "") {
			return fmt.Errorf("%w: result %d succeeded but carries error code %s / a message", ErrInvalidArgument, i, r.ErrorCode)
		}
		if !r.Succeeded && r.ErrorCode == RevocationNone {
			return fmt.Errorf("%w: result %d failed with error code None", ErrInvalidArgument, i)
		}
		wire = append(wire, map[string]any{
			"requestContext": r.RequestContext,
			"succeeded":      r.Succeeded,
			"errorCode":      r.ErrorCode,
			"errorMessage":   nullIfEmpty(r.ErrorMessage),
		})
	}
	parse := func(raw []byte, activityID string) ([]slog.Attr, error) {
		attrs := []slog.Attr{slog.Int("results", len(results))}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
			return attrs, fmt.Errorf("%w: %s: answer is not a JSON object (client-request-id %s)", ErrMalformedResponse, opUpload.name, activityID)
		}
		v, ok := doc["value"]
		if !ok {
			return attrs, fmt.Errorf("%w: %s: member \"value\" missing (client-request-id %s)", ErrMalformedResponse, opUpload.name, activityID)
		}
		accepted, ok := parseBoolValue(v)
		if !ok {
			return attrs, fmt.Errorf("%w: %s: member \"value\" is not a boolean (client-request-id %s)", ErrMalformedResponse, opUpload.name, activityID)
		}
		attrs = append(attrs, slog.Bool("accepted", accepted))
		if !accepted {
			return attrs, fmt.Errorf("%w (client-request-id %s)", ErrUploadNotAccepted, activityID)
		}
		return attrs, nil
	}
	return c.call(ctx, opUpload, "", map[string]any{"results": wire}, parse)
}

// parseBoolValue reads an OData boolean that Microsoft's libraries also
// accept as the strings "true"/"false" (any case).
func parseBoolValue(v json.RawMessage) (value, ok bool) {
	if string(v) == "null" {
		return false, false
	}
	var b bool
	if err := json.Unmarshal(v, &b); err == nil {
		return b, true
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}
