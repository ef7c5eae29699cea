package intune

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// allocCap fails t when fn allocates more than limit bytes.
func allocCap(t *testing.T, what string, limit uint64, fn func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > limit {
		t.Errorf("%s: allocated %d KiB, over %d KiB", what, alloc>>10, limit>>10)
	}
}

// FuzzDiscoveryParse feeds arbitrary Graph endpoints answers to discovery.parse. Whatever it keeps is one of the
// two services, and the request the client then builds from it (base + "/" + operation path, as in
// Client.attempt) is an https POST to a host the Intune token may go to, with the operation's path as its path:
// not in a query, not in a fragment, not dropped. A refusal wraps ErrDiscovery and ErrMalformedResponse.
func FuzzDiscoveryParse(f *testing.F) {
	for _, s := range []string{
		`{"value":[{"providerName":"ScepRequestValidationFEService","uri":"https://fef.msub01.manage.microsoft.com/ScepRequestValidationFEService_2"},` +
			`{"providerName":"PkiConnectorFEService","uri":"https://fef.msub01.manage.microsoft.com/PkiConnectorFEService/"}]}`,
		`{"value":[{"providerName":" pkiconnectorfeservice ","uri":" https://graph.microsoft.com/x "},{"providerName":"PkiConnectorFEService","uri":"https://evil.example/"}]}`,
		`{"value":[{"providerName":"PkiConnectorFEService","uri":"https://evil.example@fef.manage.microsoft.com:443/p"}]}`,
		`{"value":[{"providerName":"PkiConnectorFEService","uri":"http://fef.manage.microsoft.com/"}]}`,
		`{"value":[{"providerName":"PkiConnectorFEService","uri":"https://fef.manage.microsoft.com/?a=b"}]}`,
		`{"value":[{"providerName":null,"uri":"https://fef.manage.microsoft.com/"}]}`,
		`{}`, `{"value":null}`, `not json`, `{"value":{}}`, `{"value":[]}`,
	} {
		f.Add([]byte(s))
	}
	c := &Client{serviceDomain: serviceDomain("https://api.manage.microsoft.com/"), graphHost: hostOf("https://graph.microsoft.com/"),
		log: slog.New(slog.DiscardHandler)}
	d := &discovery{c: c}
	f.Fuzz(func(t *testing.T, body []byte) {
		var (
			services map[string]string
			err      error
		)
		allocCap(t, "parse", 256<<10+32*uint64(len(body)), func() { services, err = d.parse(body, "fuzz") })
		if err != nil {
			if !errors.Is(err, ErrDiscovery) || !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("refusal %v is not ErrDiscovery + ErrMalformedResponse", err)
			}
			return
		}
		for name, base := range services {
			var ops []operation
			for _, op := range []operation{opValidate, opSuccess, opFailure, opDownload, opUpload} {
				if strings.ToLower(op.service) == name {
					ops = append(ops, op)
				}
			}
			if len(ops) == 0 {
				t.Fatalf("kept %q, not a service the client uses", name)
			}
			for _, op := range ops {
				req, err := http.NewRequest(http.MethodPost, base+"/"+op.suffix, nil)
				if err != nil {
					t.Fatalf("kept %q for %s, which does not make a request: %v", base, name, err)
				}
				u := req.URL
				if u.Scheme != "https" || !c.intuneHost(u.Hostname()) {
					t.Fatalf("kept %q for %s: the token would go to %s://%s", base, name, u.Scheme, u.Host)
				}
				if !strings.HasSuffix(u.Path, "/"+op.suffix) || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
					t.Fatalf("kept %q for %s: %s goes to path %q query %q fragment %q", base, name, op.name, u.Path, u.RawQuery, u.Fragment)
				}
			}
		}
	})
}

// FuzzParseDownload feeds arbitrary downloadRevocationRequests answers to parseDownload. What it accepts is an
// object whose "value" is an array; it returns one item per element except those dropped (items + dropped =
// elements): an element that is not an object, has a known member that is neither a string nor null, or a blank
// requestContext. Each item's strings are what encoding/json reads from its element (case-sensitive names, null
// as ""). Re-encoding the items in the same shape parses back to the same items with nothing dropped.
func FuzzParseDownload(f *testing.F) {
	for _, s := range []string{
		`{"value":[{"requestContext":"ctx-1","serialNumber":"01AB","issuerName":"CN=Test CA","caConfiguration":"host\\CA"}]}`,
		`{"value":[{"requestContext":"  ","serialNumber":"01"},{"requestContext":"c","serialNumber":null}],"@odata.context":"x"}`,
		`{"value":[{"RequestContext":"c"}]}`,
		`{"value":[{"requestContext":1}]}`,
		`{"value":[{"requestContext":"c","caConfiguration":{}},1,"x",{"requestContext":"d"}]}`,
		`{"value":[null]}`,
		`{"value":[]}`, `{"value":null}`, `{}`, `null`, `[]`, `{"value":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var (
			items   []RevocationRequest
			dropped []string
			err     error
		)
		allocCap(t, "parseDownload", 256<<10+64*uint64(len(raw)), func() { items, dropped, err = parseDownload(raw) })
		if err != nil {
			return
		}
		var doc map[string]json.RawMessage
		var value []json.RawMessage
		if err := json.Unmarshal(raw, &doc); err != nil || json.Unmarshal(doc["value"], &value) != nil {
			t.Fatalf("accepted %q, which encoding/json cannot read as {value: [...]}", raw)
		}
		if len(items)+len(dropped) != len(value) {
			t.Fatalf("%d items + %d dropped from %d elements", len(items), len(dropped), len(value))
		}
		i := 0
		for _, el := range value {
			// A map, not a struct: encoding/json matches struct fields in any case, the answer's members exactly.
			var e map[string]json.RawMessage
			if json.Unmarshal(el, &e) != nil {
				continue
			}
			var want RevocationRequest
			usable := true
			for name, dst := range map[string]*string{"requestContext": &want.RequestContext, "serialNumber": &want.SerialNumber,
				"issuerName": &want.IssuerName, "caConfiguration": &want.CAConfiguration} {
				if v, ok := e[name]; ok && json.Unmarshal(v, dst) != nil {
					usable = false
				}
			}
			if !usable || strings.TrimSpace(want.RequestContext) == "" {
				continue
			}
			if i >= len(items) || items[i] != want {
				t.Fatalf("item %d: got %+v, encoding/json reads %+v", i, items, want)
			}
			i++
		}
		if i != len(items) {
			t.Fatalf("%d items returned, %d usable elements", len(items), i)
		}
		wire := make([]map[string]string, 0, len(items))
		for _, it := range items {
			wire = append(wire, map[string]string{"requestContext": it.RequestContext, "serialNumber": it.SerialNumber,
				"issuerName": it.IssuerName, "caConfiguration": it.CAConfiguration})
		}
		again, _ := json.Marshal(map[string]any{"value": wire})
		back, d2, err := parseDownload(again)
		if err != nil || len(d2) != 0 || len(back) != len(items) {
			t.Fatalf("re-encoded items read back as %d items, %d dropped, %v", len(back), len(d2), err)
		}
		for i := range back {
			if back[i] != items[i] {
				t.Fatalf("re-encoded item %d reads back as %+v, want %+v", i, back[i], items[i])
			}
		}
	})
}
