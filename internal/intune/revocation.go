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
// Items without a requestContext cannot be acknowledged and are dropped
// (and logged); every other item is returned as received.
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
		if dropped > 0 {
			c.log.Warn("intune revocation download: dropped items without requestContext",
				slog.Int("dropped", dropped), slog.String("clientRequestId", activityID))
		}
		out = items
		return []slog.Attr{slog.Int("items", len(items)), slog.Int("maxRequests", max)}, nil
	}
	if err := c.call(ctx, opDownload, "", body, parse); err != nil {
		return nil, err
	}
	return out, nil
}

// parseDownload decodes {"value": [ {requestContext, serialNumber, issuerName,
// caConfiguration}, ... ]}. Members are matched case-sensitively, as in
// Microsoft's Java library; null string members read as "".
func parseDownload(raw []byte) (items []RevocationRequest, dropped int, err error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return nil, 0, fmt.Errorf("answer is not a JSON object")
	}
	value, ok := doc["value"]
	if !ok {
		return nil, 0, fmt.Errorf("member \"value\" missing")
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(value, &entries); err != nil || string(value) == "null" {
		return nil, 0, fmt.Errorf("member \"value\" is not an array of objects")
	}
	items = make([]RevocationRequest, 0, len(entries))
	for i, e := range entries {
		var r RevocationRequest
		for name, dst := range map[string]*string{
			"requestContext":  &r.RequestContext,
			"serialNumber":    &r.SerialNumber,
			"issuerName":      &r.IssuerName,
			"caConfiguration": &r.CAConfiguration,
		} {
			if v, ok := e[name]; ok && string(v) != "null" {
				if err := json.Unmarshal(v, dst); err != nil {
					return nil, 0, fmt.Errorf("value[%d].%s is not a string", i, name)
				}
			}
		}
		if strings.TrimSpace(r.RequestContext) == "" {
			dropped++
			continue
		}
		items = append(items, r)
	}
	return items, dropped, nil
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
